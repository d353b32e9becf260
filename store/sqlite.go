package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// The embedded default: SQLite through modernc (no cgo), one writer, WAL.

var sqliteDialect = &dialect{
	name:  "sqlite",
	goose: goose.DialectSQLite3,
	// One writer: a claim cannot race another, and SQLite has no row locks.
	skipLocked: "",
	forUpdate:  "",
	// Times are stored as UTC text that julianday reads (fraction and Z).
	epochMillis: func(c string) string {
		return "CAST(ROUND((julianday(" + c + ") - 2440587.5) * 86400000.0) AS INTEGER)"
	},
	probe: func(ctx context.Context, db *DB) error {
		// A real committed write: user_version is otherwise unused, and a
		// new value each time makes SQLite write (and fsync) a page rather
		// than skip a no-op, so a full or read-only disk shows here.
		probe := time.Now().UnixNano() & 0x7fffffff
		if _, err := db.write.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", probe)); err != nil {
			return fmt.Errorf("store: write probe: %w", err)
		}
		return nil
	},
	// Unique and primary key constraint errors, by code, not message.
	uniqueViolation: func(err error) bool {
		var se *sqlite.Error
		if !errors.As(err, &se) {
			return false
		}
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	},
}

func openSQLite(ctx context.Context, opts Options) (*DB, error) {
	if opts.Path == "" {
		return nil, fmt.Errorf("store: no database path")
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o700); err != nil {
		return nil, fmt.Errorf("store: create directory: %w", err)
	}
	// The database is the appliance's whole state, tokens' hashes and
	// sealed sessions included: only its owner reads it (SPEC §18). SQLite
	// gives the WAL and shared-memory files the database file's mode.
	if err := ownerOnly(opts.Path); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db := &DB{path: opts.Path, d: sqliteDialect, logger: opts.Logger.With("component", "store")}
	w, err := sql.Open("sqlite", dsn(opts.Path, false))
	if err != nil {
		return nil, fmt.Errorf("store: open writer: %w", err)
	}
	db.write = conn{w, sqliteDialect}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", opts.Path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		w.Close()
		return nil, fmt.Errorf("store: %s: journal_mode is %q, want wal", opts.Path, mode)
	}

	r, err := sql.Open("sqlite", dsn(opts.Path, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open readers: %w", err)
	}
	db.read = conn{r, sqliteDialect}
	r.SetMaxOpenConns(opts.Readers)
	r.SetMaxIdleConns(opts.Readers)
	if err := r.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open readers: %w", err)
	}

	db.goose, err = goose.NewProvider(goose.DialectSQLite3, w, opts.Migrations,
		goose.WithDisableGlobalRegistry(true), goose.WithGoMigrations(goMigrations(db)...))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	return db, nil
}

// dsn builds a modernc DSN with the pragmas in it, so that every pooled
// connection gets them (a db.Exec("PRAGMA …") would reach only one).
func dsn(path string, readOnly bool) string {
	p := uriPath(path)
	q := []string{
		"_pragma=busy_timeout(10000)",
		"_pragma=journal_mode(WAL)",
		"_pragma=foreign_keys(ON)",
		// FULL: an acknowledged webhook survives power loss, not only kill -9;
		// group commit pays the fsync once for many events.
		"_pragma=synchronous(FULL)",
		"_txlock=immediate",
	}
	if !readOnly {
		// A new database gives freed pages back to the file system on
		// request (PRAGMA incremental_vacuum after a purge, SPEC §16). It
		// must be set before the first table, so it goes first; on an
		// existing database it changes nothing until that is converted.
		q = append([]string{"_pragma=auto_vacuum(INCREMENTAL)"}, q...)
	}
	if readOnly {
		// Readers share the OS page cache; a small private cache each keeps
		// the pool's memory small (SQLite's default is 2 MB a connection).
		q = append(q, "_pragma=query_only(ON)", "_pragma=cache_size(-512)")
	}
	return "file:" + p + "?" + strings.Join(q, "&")
}

// uriPath escapes what SQLite's URI parser treats specially in a file path.
func uriPath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
}

// ownerOnly creates the database file with mode 0600 if it is missing, and
// narrows an existing one (and its WAL and shared-memory files, written by
// an older build) to 0600.
func ownerOnly(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

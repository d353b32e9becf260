// Package store is the orchestrator's SQL: it opens the embedded SQLite
// database, applies the goose migrations and holds the queries of runs,
// schedules, webhook events and agent runs. It also owns the file locks kept
// beside the database. It imports nothing of the product's own packages.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Options configure Open.
type Options struct {
	// Path is the SQLite database file; its directory is created if missing.
	Path string
	// Migrations holds the goose SQL files (migrations.FS in production).
	Migrations fs.FS
	// Readers bounds the reader pool; zero picks a default from the CPU count.
	Readers int
	Logger  *slog.Logger
}

// DB is the orchestrator's database: one writer connection, so writers queue
// in Go instead of failing with "database is locked", beside a pool of
// read-only connections that WAL lets run while the writer works.
type DB struct {
	path     string
	write    *sql.DB
	read     *sql.DB
	goose    *goose.Provider
	logger   *slog.Logger
	migrated atomic.Bool

	// Group commit of new webhook events (events.go).
	inserts       chan insertReq
	closing       chan struct{}
	committerDone chan struct{}
	closeOnce     sync.Once
	batches       atomic.Int64
	// Prepared on first use by the group commit goroutine only.
	insertStmt, findStmt *sql.Stmt
}

// Open opens (creating if needed) the database at opts.Path and checks that
// WAL journaling is really on. It does not migrate; call Migrate.
func Open(ctx context.Context, opts Options) (*DB, error) {
	if opts.Path == "" {
		return nil, fmt.Errorf("store: no database path")
	}
	if opts.Migrations == nil {
		return nil, fmt.Errorf("store: no migrations")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Readers <= 0 {
		opts.Readers = max(4, 2*runtime.NumCPU())
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o700); err != nil {
		return nil, fmt.Errorf("store: create directory: %w", err)
	}
	db := &DB{path: opts.Path, logger: opts.Logger.With("component", "store")}
	var err error
	if db.write, err = sql.Open("sqlite", dsn(opts.Path, false)); err != nil {
		return nil, fmt.Errorf("store: open writer: %w", err)
	}
	db.write.SetMaxOpenConns(1)
	db.write.SetMaxIdleConns(1)
	db.write.SetConnMaxLifetime(0)
	db.write.SetConnMaxIdleTime(0)

	var mode string
	if err := db.write.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		db.write.Close()
		return nil, fmt.Errorf("store: open %s: %w", opts.Path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		db.write.Close()
		return nil, fmt.Errorf("store: %s: journal_mode is %q, want wal", opts.Path, mode)
	}

	if db.read, err = sql.Open("sqlite", dsn(opts.Path, true)); err != nil {
		db.write.Close()
		return nil, fmt.Errorf("store: open readers: %w", err)
	}
	db.read.SetMaxOpenConns(opts.Readers)
	db.read.SetMaxIdleConns(opts.Readers)
	if err := db.read.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open readers: %w", err)
	}

	db.goose, err = goose.NewProvider(goose.DialectSQLite3, db.write, opts.Migrations,
		goose.WithDisableGlobalRegistry(true))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	db.inserts = make(chan insertReq, 4*maxBatch)
	db.closing = make(chan struct{})
	db.committerDone = make(chan struct{})
	go db.groupCommit()
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

// Path returns the database file's path.
func (db *DB) Path() string { return db.path }

// Close stops the event writer and closes both pools.
func (db *DB) Close() error {
	if db.closing != nil {
		db.closeOnce.Do(func() {
			close(db.closing)
			<-db.committerDone
		})
	}
	var errs []error
	if db.read != nil {
		errs = append(errs, db.read.Close())
	}
	if db.write != nil {
		errs = append(errs, db.write.Close())
	}
	return errors.Join(errs...)
}

// MigrationState is one migration file and whether it is applied.
type MigrationState struct {
	Version   int64
	Name      string
	Applied   bool
	AppliedAt time.Time
}

// Migrate applies every pending migration and returns the versions applied.
func (db *DB) Migrate(ctx context.Context) ([]int64, error) {
	results, err := db.goose.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: migrate: %w", err)
	}
	applied := make([]int64, 0, len(results))
	for _, r := range results {
		applied = append(applied, r.Source.Version)
	}
	db.migrated.Store(true)
	return applied, nil
}

// MigrationStatus lists every known migration and whether it is applied.
func (db *DB) MigrationStatus(ctx context.Context) ([]MigrationState, error) {
	status, err := db.goose.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: migration status: %w", err)
	}
	out := make([]MigrationState, 0, len(status))
	for _, s := range status {
		out = append(out, MigrationState{
			Version:   s.Source.Version,
			Name:      filepath.Base(s.Source.Path),
			Applied:   s.State == goose.StateApplied,
			AppliedAt: s.AppliedAt.UTC(),
		})
	}
	return out, nil
}

// Ready reports whether the schema is up to date and the database accepts a
// durable write. It returns ErrNotMigrated while migrations are pending.
func (db *DB) Ready(ctx context.Context) error {
	if !db.migrated.Load() {
		pending, err := db.goose.HasPending(ctx)
		if err != nil {
			return fmt.Errorf("store: check migrations: %w", err)
		}
		if pending {
			return ErrNotMigrated
		}
		db.migrated.Store(true)
	}
	// A real committed write: user_version is otherwise unused, and a new
	// value each time makes SQLite write (and fsync) a page rather than skip
	// a no-op, so a full or read-only disk shows here.
	probe := time.Now().UnixNano() & 0x7fffffff
	if _, err := db.write.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", probe)); err != nil {
		return fmt.Errorf("store: write probe: %w", err)
	}
	return nil
}

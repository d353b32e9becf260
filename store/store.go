// Package store is the orchestrator's SQL: it opens the embedded SQLite
// database, applies the goose migrations and holds the queries of runs,
// schedules, webhook events and agent runs. It also owns the file locks kept
// beside the database. It imports nothing of the product's own packages.
package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Options configure Open.
type Options struct {
	// URL, when it is postgres:// or postgresql://, selects PostgreSQL
	// (SPEC §13); otherwise the database is the SQLite file at Path.
	URL string
	// Path is the SQLite database file; its directory is created if missing.
	Path string
	// Migrations holds the goose SQL files (migrations.FS in production).
	Migrations fs.FS
	// Readers bounds the reader pool (SQLite) or the whole pool
	// (PostgreSQL); zero picks a default from the CPU count.
	Readers int
	Logger  *slog.Logger
}

// DB is the orchestrator's database. On SQLite: one writer connection, so
// writers queue in Go instead of failing with "database is locked", beside a
// pool of read-only connections that WAL lets run while the writer works.
// On PostgreSQL: one pool for both, shared with other replicas.
type DB struct {
	path     string
	url      string // PostgreSQL only
	d        *dialect
	write    conn
	read     conn
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
	stmts eventStmts
}

// IsPostgresURL reports whether a DATABASE_URL selects PostgreSQL.
func IsPostgresURL(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// Open opens the database: PostgreSQL when opts.URL names one, else the
// SQLite file at opts.Path (created if needed, WAL checked). It does not
// migrate; call Migrate.
func Open(ctx context.Context, opts Options) (*DB, error) {
	if opts.Migrations == nil {
		return nil, fmt.Errorf("store: no migrations")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Readers <= 0 {
		opts.Readers = max(4, 2*runtime.NumCPU())
	}
	var db *DB
	var err error
	if IsPostgresURL(opts.URL) {
		db, err = openPostgres(ctx, opts)
	} else {
		db, err = openSQLite(ctx, opts)
	}
	if err != nil {
		return nil, err
	}
	db.inserts = make(chan insertReq, 4*maxBatch)
	db.closing = make(chan struct{})
	db.committerDone = make(chan struct{})
	go db.groupCommit()
	return db, nil
}

// Dialect names the database: "sqlite" or "postgres".
func (db *DB) Dialect() string { return db.d.name }

// Shared reports whether other replicas may use this database at the same
// time (PostgreSQL): then nothing in it is this process's alone.
func (db *DB) Shared() bool { return db.d.name == "postgres" }

// Path returns the SQLite database file's path ("" on PostgreSQL).
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
	if db.read.DB != nil && db.read.DB != db.write.DB {
		errs = append(errs, db.read.Close())
	}
	if db.write.DB != nil {
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
	// Part of migration 7's upgrade, outside any transaction (lean.go).
	if mode, err := db.AutoVacuum(ctx); err == nil && mode != 2 && mode != -1 {
		if err := db.convertAutoVacuum(ctx); err != nil {
			return applied, fmt.Errorf("store: migrate: %w", err)
		}
	} else if slices.Contains(applied, payloadTableVersion) {
		// Part of migration 13's (payloadtable.go); the conversion's
		// VACUUM above did the same.
		if err := db.compact(ctx); err != nil {
			db.logger.Warn("the database was migrated but not compacted; retention frees its old pages as their events go", "error", err)
		}
	}
	db.migrated.Store(true)
	return applied, nil
}

// MigrationStatus lists every known migration and whether it is applied.
func (db *DB) MigrationStatus(ctx context.Context) ([]MigrationState, error) {
	return migrationStates(ctx, db.goose)
}

func migrationStates(ctx context.Context, p *goose.Provider) ([]MigrationState, error) {
	status, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: migration status: %w", err)
	}
	out := make([]MigrationState, 0, len(status))
	for _, s := range status {
		out = append(out, MigrationState{
			Version:   s.Source.Version,
			Name:      migrationName(s.Source),
			Applied:   s.State == goose.StateApplied,
			AppliedAt: s.AppliedAt.UTC(),
		})
	}
	return out, nil
}

// migrationName is a migration's file name, or the Go migration's name.
func migrationName(src *goose.Source) string {
	if src.Type == goose.TypeGo {
		return GoMigrationNames[src.Version]
	}
	return filepath.Base(src.Path)
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
	return db.d.probe(ctx, db)
}

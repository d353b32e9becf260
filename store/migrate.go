package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// ReadMigrationStatus lists the migrations of the database opts names, and
// whether each is applied, without writing to it and without any lock: it
// may run beside a live server (SQLite readers do not wait for its writer;
// on PostgreSQL it skips the lock replicas migrate under).
func ReadMigrationStatus(ctx context.Context, opts Options) ([]MigrationState, error) {
	if opts.Migrations == nil {
		return nil, fmt.Errorf("store: no migrations")
	}
	d := sqliteDialect
	var pool *sql.DB
	if IsPostgresURL(opts.URL) {
		cfg, err := pgconnConfig(opts.URL)
		if err != nil {
			return nil, err
		}
		d, pool = postgresDialect, stdlib.OpenDB(*cfg)
		pool.SetMaxOpenConns(1)
	} else {
		var err error
		if pool, err = sql.Open("sqlite", dsn(opts.Path, true)); err != nil {
			return nil, fmt.Errorf("store: open %s: %w", opts.Path, err)
		}
		pool.SetMaxOpenConns(1)
	}
	defer pool.Close()
	// Without a locker, and over a read-only connection on SQLite: the
	// version table is only read (goose creates it only when it is missing,
	// which a database this appliance made never is).
	p, err := goose.NewProvider(d.goose, pool, opts.Migrations,
		goose.WithDisableGlobalRegistry(true), goose.WithGoMigrations(goMigrations(&DB{d: d})...))
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	if d == sqliteDialect {
		// No database yet (connecting would create the file): every
		// migration is pending.
		if _, err := os.Stat(opts.Path); errors.Is(err, os.ErrNotExist) {
			var out []MigrationState
			for _, src := range p.ListSources() {
				out = append(out, MigrationState{Version: src.Version, Name: migrationName(src)})
			}
			return out, nil
		}
	}
	return migrationStates(ctx, p)
}

// ErrNothingToUndo means the database has no migration applied.
var ErrNothingToUndo = errors.New("store: no migration is applied: nothing to undo")

// MigrateDown undoes this build's newest migration, and only that one: the
// way back from an upgrade that applied it, to the schema the previous
// release knows. before runs first with the versions it goes from and to
// (the command takes the pre-migrate snapshot there, so the undo can itself
// be undone); an error from it stops everything. A database not at this
// build's newest version is refused with what to do instead, and so is a
// migration that cannot be undone in place (7).
func (db *DB) MigrateDown(ctx context.Context, before func(from, to int64) error) (from, to int64, err error) {
	from, known, err := db.Versions(ctx)
	if err != nil {
		return 0, 0, err
	}
	switch {
	case from == 0:
		return 0, 0, ErrNothingToUndo
	case from != known:
		return from, from, fmt.Errorf("store: migrate down undoes only this build's newest migration (%05d), "+
			"and the database is at %05d: to go further back, restore a pre-migrate snapshot", known, from)
	}
	states, err := db.MigrationStatus(ctx)
	if err != nil {
		return from, from, err
	}
	for _, s := range states {
		if s.Applied && s.Version < from {
			to = s.Version
		}
	}
	if err := before(from, to); err != nil {
		return from, from, err
	}
	if _, err := db.goose.Down(ctx); err != nil {
		return from, from, fmt.Errorf("store: migrate down %05d: %w", from, err)
	}
	db.migrated.Store(false)
	return from, to, nil
}

package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// The scale-out path (SPEC §13): PostgreSQL through pgx, shared by several
// replicas. Team locks and leadership are advisory locks (pglock.go).

var postgresDialect = &dialect{
	name:     "postgres",
	goose:    goose.DialectPostgres,
	numbered: true,
	// Replicas claiming at once each take different events.
	skipLocked: " FOR UPDATE SKIP LOCKED",
	forUpdate:  " FOR UPDATE",
	epochMillis: func(c string) string {
		return "CAST(EXTRACT(EPOCH FROM " + c + ") * 1000 AS BIGINT)"
	},
	// A round trip: the server is there and answers (SPEC §13 /ready).
	probe: func(ctx context.Context, db *DB) error {
		var one int
		if err := db.write.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
			return fmt.Errorf("store: database round trip: %w", err)
		}
		return nil
	},
	uniqueViolation: func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "23505"
	},
}

func openPostgres(ctx context.Context, opts Options) (*DB, error) {
	cfg, err := pgconnConfig(opts.URL)
	if err != nil {
		return nil, err
	}
	pool := stdlib.OpenDB(*cfg)
	// One pool for ingest, dispatch and reads; a lost server's connections
	// are dropped and new ones made when it is back.
	pool.SetMaxOpenConns(opts.Readers + 4)
	pool.SetMaxIdleConns(opts.Readers + 4)
	pool.SetConnMaxLifetime(30 * time.Minute)
	pool.SetConnMaxIdleTime(5 * time.Minute)
	db := &DB{url: opts.URL, d: postgresDialect, logger: opts.Logger.With("component", "store")}
	db.write = conn{pool, postgresDialect}
	db.read = db.write
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := pool.PingContext(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: connect to PostgreSQL %s: %w", RedactURL(opts.URL), err)
	}
	// Replicas that start together migrate once: goose holds a session
	// advisory lock while it migrates, and the others wait for it (polled
	// every second, for up to 10 minutes).
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 600))
	if err != nil {
		pool.Close()
		return nil, err
	}
	db.goose, err = goose.NewProvider(goose.DialectPostgres, pool, opts.Migrations,
		goose.WithDisableGlobalRegistry(true), goose.WithSessionLocker(locker), goose.WithGoMigrations(goMigrations(db)...))
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	return db, nil
}

// pgconnConfig parses a postgres:// URL for pgx.
func pgconnConfig(url string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store: DATABASE_URL: %w", err)
	}
	return cfg, nil
}

// RedactURL names a PostgreSQL URL's server and database without its
// credentials, for messages and logs.
func RedactURL(u string) string {
	cfg, err := pgconn.ParseConfig(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
}

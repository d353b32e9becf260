package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/incidentfox/orchestrator-edge/migrations"
	"github.com/incidentfox/orchestrator-edge/store"
)

// migrateToPostgres copies the SQLite database into an empty PostgreSQL one
// (SPEC §17): the server must be stopped (it takes the instance lock); the
// target gets this build's schema, every table is copied in batches with
// progress on stderr and verified (row counts and a checksum per table).
func migrateToPostgres(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate-to-postgres", "migrate-to-postgres --to postgres://… | --to-env VAR [--data-dir DIR]", stdout)
	to := fs.String("to", "", "the PostgreSQL database to copy into (postgres:// or postgresql://); it must be empty")
	toEnv := fs.String("to-env", "", "the environment variable holding the target URL (keeps the password out of argv; default ORCHESTRATOR_MIGRATE_TO)")
	dataDir := fs.String("data-dir", "", "data directory (ORCHESTRATOR_DATA_DIR, default ./data)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// The target's password is better read from the environment (a
	// Secret) than from argv, which any process on the node can list.
	from := "--to"
	switch {
	case *to != "" && *toEnv != "":
		return &usageError{msg: "migrate-to-postgres: give --to or --to-env, not both"}
	case *toEnv != "":
		from, *to = *toEnv, getenv(*toEnv)
		if *to == "" {
			return &usageError{msg: "migrate-to-postgres: --to-env " + *toEnv + ": the variable is empty or unset"}
		}
	case *to == "" && getenv("ORCHESTRATOR_MIGRATE_TO") != "":
		from, *to = "ORCHESTRATOR_MIGRATE_TO", getenv("ORCHESTRATOR_MIGRATE_TO")
	}
	if fs.NArg() > 0 || !(strings.HasPrefix(*to, "postgres://") || strings.HasPrefix(*to, "postgresql://")) {
		if *to != "" && from != "--to" {
			return &usageError{msg: "migrate-to-postgres: " + from + " must hold a postgres:// or postgresql:// URL"}
		}
		return &usageError{msg: "migrate-to-postgres: --to postgres://user:pass@host:5432/db (or --to-env VAR, or ORCHESTRATOR_MIGRATE_TO) is required"}
	}
	cfg, err := dataConfig(getenv, *dataDir)
	if err != nil {
		return err
	}
	if cfg.DatabasePath == "" {
		return errors.New("migrate-to-postgres: DATABASE_URL already names PostgreSQL: the source must be the SQLite file")
	}
	lock, err := store.AcquireInstanceLock(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("migrate-to-postgres: stop the server first: %w", err)
	}
	defer lock.Release()
	start := time.Now()
	src, err := store.Open(ctx, store.Options{Path: cfg.DatabasePath, Migrations: migrations.FS})
	if err != nil {
		return fmt.Errorf("migrate-to-postgres: cannot read %s: %w", cfg.DatabasePath, err)
	}
	defer src.Close()
	current, known, err := src.Versions(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("migrate-to-postgres: cannot read %s: %w", cfg.DatabasePath, err)
	case current == 0:
		return fmt.Errorf("migrate-to-postgres: %s holds no orchestrator database", cfg.DatabasePath)
	case current != known:
		return fmt.Errorf("migrate-to-postgres: %s is at schema version %d, this build at %d: run ./bin/orchestrator migrate up first", cfg.DatabasePath, current, known)
	}
	dst, err := store.Open(ctx, store.Options{URL: *to, Migrations: migrations.FS})
	if err != nil {
		return fmt.Errorf("migrate-to-postgres: cannot open the target: %w", err)
	}
	defer dst.Close()
	if empty, err := dst.IsEmpty(ctx); err != nil {
		return fmt.Errorf("migrate-to-postgres: cannot read the target: %w", err)
	} else if !empty {
		return fmt.Errorf("migrate-to-postgres: refused: %w; copy only into an empty database", store.ErrTargetNotEmpty)
	}
	if _, err := dst.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate-to-postgres: migrating the target: %w", err)
	}
	copied, err := src.CopyTo(ctx, dst, stderr)
	if cerr := (*store.CopyError)(nil); errors.As(err, &cerr) && cerr.Emptied {
		return fmt.Errorf("migrate-to-postgres: %w (nothing in the SQLite file changed and the target was emptied again: run this again)", err)
	} else if err != nil {
		what := ""
		if cerr != nil && cerr.EmptyErr != nil {
			what = "; emptying the target again failed too: " + cerr.EmptyErr.Error()
		}
		return fmt.Errorf("migrate-to-postgres: %w (nothing in the SQLite file changed%s; to start again, drop and recreate the target database, then run this again)", err, what)
	}
	rows := 0
	for _, t := range copied {
		rows += t.Rows
	}
	fmt.Fprintf(stdout, "copied %d tables, %d rows, from %s to PostgreSQL in %s; every table verified (row count and checksum)\n",
		len(copied), rows, cfg.DatabasePath, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "next: start the orchestrator with DATABASE_URL set to the target (the chart: database.url or database.existingSecret)\n")
	return nil
}

package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"

	"github.com/incidentfox/orchestrator-edge/migrations"
	"github.com/incidentfox/orchestrator-edge/server/backups"
	"github.com/incidentfox/orchestrator-edge/store"
)

// migrate applies (up, the default), lists (status) or undoes the newest
// (down) schema migration. up and down take the instance lock on SQLite, so
// they refuse to run beside a live server; status only reads, and works
// while one runs.
func migrate(ctx context.Context, args []string, getenv func(string) string, stdout, _ io.Writer) error {
	fs := newFlagSet("migrate", "migrate [up|status|down] [--data-dir DIR]", stdout)
	dataDir := fs.String("data-dir", "", "data directory (ORCHESTRATOR_DATA_DIR, default ./data)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	action := "up"
	if fs.NArg() > 0 {
		// The action may come before flags: "migrate status --data-dir x".
		action = fs.Arg(0)
		if err := parseFlags(fs, fs.Args()[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return &usageError{msg: "migrate: takes one action, up, status or down"}
		}
	}
	if action != "up" && action != "status" && action != "down" {
		return &usageError{msg: fmt.Sprintf("migrate: unknown action %q (want up, status or down)", action)}
	}
	cfg, err := dataConfig(getenv, *dataDir)
	if err != nil {
		return err
	}
	opts := store.Options{URL: cfg.DatabaseURL.Reveal(), Path: cfg.DatabasePath, Migrations: migrations.FS}
	if action == "status" {
		states, err := store.ReadMigrationStatus(ctx, opts)
		if err != nil {
			return err
		}
		return printMigrationStatus(stdout, states)
	}
	if cfg.DatabaseURL == "" {
		lock, err := store.AcquireInstanceLock(cfg.DataDir)
		if err != nil {
			return err
		}
		defer lock.Release()
	}
	db, err := store.Open(ctx, opts)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.CheckSchema(ctx); err != nil {
		return err
	}
	m, err := backups.New(backups.Options{DB: db, Dir: filepath.Join(cfg.DataDir, "backups")})
	if err != nil {
		return err
	}

	if action == "down" {
		from, to, err := db.MigrateDown(ctx, func(from, to int64) error {
			snap, err := m.BeforeMigrateDown(ctx, from, to)
			if err != nil {
				return fmt.Errorf("%w: nothing was undone", err)
			}
			if snap != nil {
				fmt.Fprintf(stdout, "snapshot before migrating down: %s\n", filepath.Join(m.Dir(), snap.Name))
			}
			return nil
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "undid %05d: the schema is now %05d; start the release that knows %05d "+
			"(this build would apply %05d again at start)\n", from, to, to, from)
		return nil
	}
	if snap, err := m.BeforeMigrate(ctx); err != nil {
		return fmt.Errorf("%w: nothing was migrated", err)
	} else if snap != nil {
		fmt.Fprintf(stdout, "snapshot before migrating: %s\n", filepath.Join(m.Dir(), snap.Name))
	}
	applied, err := db.Migrate(ctx)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "schema is up to date")
	}
	for _, v := range applied {
		fmt.Fprintf(stdout, "applied %05d\n", v)
	}
	return nil
}

// printMigrationStatus writes one line per migration.
func printMigrationStatus(stdout io.Writer, states []store.MigrationState) error {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tSTATE\tAPPLIED AT")
	for _, s := range states {
		state, at := "pending", "-"
		if s.Applied {
			state, at = "applied", s.AppliedAt.Format("2006-01-02T15:04:05Z")
		}
		fmt.Fprintf(tw, "%05d\t%s\t%s\t%s\n", s.Version, s.Name, state, at)
	}
	return tw.Flush()
}

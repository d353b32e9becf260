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

// migrate applies (up, the default) or lists (status) the schema migrations.
// It takes the instance lock, so it refuses to run beside a live server.
func migrate(ctx context.Context, args []string, getenv func(string) string, stdout, _ io.Writer) error {
	fs := newFlagSet("migrate", "migrate [up|status] [--data-dir DIR]", stdout)
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
			return &usageError{msg: "migrate: takes one action, up or status"}
		}
	}
	if action != "up" && action != "status" {
		return &usageError{msg: fmt.Sprintf("migrate: unknown action %q (want up or status)", action)}
	}
	cfg, err := dataConfig(getenv, *dataDir)
	if err != nil {
		return err
	}
	lock, err := store.AcquireInstanceLock(cfg.DataDir)
	if err != nil {
		return err
	}
	defer lock.Release()
	db, err := store.Open(ctx, store.Options{Path: cfg.DatabasePath, Migrations: migrations.FS})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.CheckSchema(ctx); err != nil {
		return err
	}

	if action == "up" {
		m, err := backups.New(backups.Options{DB: db, Dir: filepath.Join(cfg.DataDir, "backups")})
		if err != nil {
			return err
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
	states, err := db.MigrationStatus(ctx)
	if err != nil {
		return err
	}
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

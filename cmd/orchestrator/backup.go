package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/migrations"
	"github.com/incidentfox/orchestrator-edge/server/config"
	"github.com/incidentfox/orchestrator-edge/store"
)

// dataConfig loads the configuration of a command that only needs the data
// directory (peer URLs are not needed).
func dataConfig(getenv func(string) string, dataDir string) (*config.Config, error) {
	flags := map[string]string{"ORCHESTRATOR_DEV": "1"}
	if dataDir != "" {
		flags["ORCHESTRATOR_DATA_DIR"] = dataDir
	}
	return config.Load(overlay(getenv, flags))
}

// backup writes a verified snapshot of the database to a file. It works
// while the server runs (it does not take the instance lock): the snapshot
// is one read transaction, and webhooks keep being acknowledged.
func backup(ctx context.Context, args []string, getenv func(string) string, stdout, _ io.Writer) error {
	fs := newFlagSet("backup", "backup --out FILE [--data-dir DIR]", stdout)
	out := fs.String("out", "", "where to write the snapshot (must not exist)")
	dataDir := fs.String("data-dir", "", "data directory (ORCHESTRATOR_DATA_DIR, default ./data)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		return &usageError{msg: "backup: --out FILE is required"}
	}
	cfg, err := dataConfig(getenv, *dataDir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(cfg.DatabasePath); err != nil {
		return fmt.Errorf("backup: no database at %s (set --data-dir)", cfg.DatabasePath)
	}
	db, err := store.Open(ctx, store.Options{Path: cfg.DatabasePath, Migrations: migrations.FS})
	if err != nil {
		return err
	}
	defer db.Close()
	start := time.Now()
	info, err := db.Snapshot(ctx, *out)
	if err != nil {
		return err
	}
	abs, _ := filepath.Abs(*out)
	return json.NewEncoder(stdout).Encode(map[string]any{"file": abs, "size": info.Size, "sha256": info.SHA256,
		"schema_version": info.SchemaVersion, "events": info.Events, "integrity": info.Integrity,
		"duration_ms": time.Since(start).Milliseconds()})
}

// restore installs a snapshot as the database. The server must be stopped:
// it takes the instance lock. The snapshot is verified (integrity, a schema
// this build knows) before anything is replaced, and the current database
// is kept beside the new one.
func restore(ctx context.Context, args []string, getenv func(string) string, stdout, _ io.Writer) error {
	fs := newFlagSet("restore", "restore --from FILE [--data-dir DIR]", stdout)
	from := fs.String("from", "", "the snapshot to install")
	dataDir := fs.String("data-dir", "", "data directory (ORCHESTRATOR_DATA_DIR, default ./data)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *from == "" || fs.NArg() > 0 {
		return &usageError{msg: "restore: --from FILE is required"}
	}
	cfg, err := dataConfig(getenv, *dataDir)
	if err != nil {
		return err
	}
	lock, err := store.AcquireInstanceLock(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("restore: stop the server first: %w", err)
	}
	defer lock.Release()
	known, err := store.KnownVersion(migrations.FS)
	if err != nil {
		return err
	}
	info, kept, err := store.Restore(ctx, cfg.DatabasePath, *from, known, wallclock.Now())
	if err != nil {
		if errors.Is(err, store.ErrNotSnapshot) || errors.Is(err, store.ErrSchemaTooNew) {
			return fmt.Errorf("restore: refused, nothing was replaced: %w", err)
		}
		return err
	}
	if kept != "" {
		fmt.Fprintf(stdout, "kept the previous database as %s\n", kept)
	}
	fmt.Fprintf(stdout, "restored %s (schema version %d, %d events, sha256 %s) into %s\n",
		*from, info.SchemaVersion, info.Events, info.SHA256, cfg.DatabasePath)
	return nil
}

package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/incidentfox/orchestrator-edge/migrations"
)

// `migrate down` undoes this build's newest migration and nothing more, on
// both databases: the hook runs first with the versions (the snapshot goes
// there), a failing hook leaves the schema alone, a second down is refused
// with what to do instead, and up brings the migration back.
func TestConformance_MigrateDownUndoesOnlyTheNewestMigration(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, where string) {
		ctx := context.Background()
		known := db.KnownVersion()
		// The version before the newest: versions may have gaps while
		// migrations of work landing in parallel are numbered ahead.
		srcs := db.goose.ListSources()
		prev := srcs[len(srcs)-2].Version
		stop := errors.New("no room for the snapshot")
		if _, _, err := db.MigrateDown(ctx, func(int64, int64) error { return stop }); !errors.Is(err, stop) {
			t.Fatalf("down with a failing hook: %v", err)
		}
		if cur, _, _ := db.Versions(ctx); cur != known {
			t.Fatalf("a failed hook still changed the schema: %d", cur)
		}

		var hookFrom, hookTo int64
		from, to, err := db.MigrateDown(ctx, func(f, t int64) error { hookFrom, hookTo = f, t; return nil })
		if err != nil {
			t.Fatal(err)
		}
		if from != known || to != prev || hookFrom != from || hookTo != to {
			t.Fatalf("down went %d → %d (hook %d → %d), want %d → %d", from, to, hookFrom, hookTo, known, prev)
		}
		if cur, _, _ := db.Versions(ctx); cur != prev {
			t.Fatalf("schema after down: %d", cur)
		}
		if err := db.Ready(ctx); !errors.Is(err, ErrNotMigrated) {
			t.Fatalf("ready after down: %v, want ErrNotMigrated", err)
		}
		called := false
		if _, _, err := db.MigrateDown(ctx, func(int64, int64) error { called = true; return nil }); err == nil ||
			called || !strings.Contains(err.Error(), "restore a pre-migrate snapshot") {
			t.Fatalf("a second down: %v (hook called %v)", err, called)
		}
		if applied, err := db.Migrate(ctx); err != nil || len(applied) != 1 || applied[0] != known {
			t.Fatalf("up after down applied %v: %v", applied, err)
		}
		if err := db.Ready(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// A migration status is read without writing and without a lock: beside a
// server holding the database's writer in a transaction, and on
// PostgreSQL; where there is no database yet, everything is pending and no
// file is made.
func TestConformance_MigrationStatusOnlyReads(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, where string) {
		ctx := context.Background()
		opts := Options{Path: where, Migrations: migrations.FS}
		if db.Shared() {
			opts = Options{URL: where, Migrations: migrations.FS}
		} else {
			// The server's writer is busy (a write transaction open).
			tx, err := db.write.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback() }()
			if _, err := tx.ExecContext(ctx, "DELETE FROM orchestrator_ui_sessions"); err != nil {
				t.Fatal(err)
			}
		}
		states, err := ReadMigrationStatus(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(states) == 0 || len(states) < len(db.goose.ListSources())-1 {
			t.Fatalf("%d states", len(states))
		}
		for _, s := range states {
			if !s.Applied || s.Name == "" {
				t.Errorf("migration %d %q: applied %v", s.Version, s.Name, s.Applied)
			}
		}
	})

	missing := filepath.Join(t.TempDir(), "none", "orchestrator.db")
	states, err := ReadMigrationStatus(context.Background(), Options{Path: missing, Migrations: migrations.FS})
	if err != nil || len(states) == 0 {
		t.Fatalf("status of no database: %v, %v", states, err)
	}
	for _, s := range states {
		if s.Applied {
			t.Errorf("migration %d applied in no database", s.Version)
		}
	}
	if _, err := os.Stat(filepath.Dir(missing)); !os.IsNotExist(err) {
		t.Fatalf("reading the status made the directory: %v", err)
	}
}

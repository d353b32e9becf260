package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/incidentfox/orchestrator-edge/migrations"
)

func openTest(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(context.Background(), Options{Path: path, Migrations: migrations.FS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestOpen_PragmasReachEveryConnection(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "o.db"))
	ctx := context.Background()

	// Hold several reader connections at once so the pool must open new ones.
	var conns []*sql.Conn
	for range 4 {
		c, err := db.read.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	w, err := db.write.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conns = append(conns, w)
	for i, c := range conns {
		var mode string
		var fk, busy, sync int
		if err := c.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if mode != "wal" || fk != 1 || busy != 10000 || sync != 2 {
			t.Errorf("conn %d: journal_mode=%s foreign_keys=%d busy_timeout=%d synchronous=%d", i, mode, fk, busy, sync)
		}
		c.Close()
	}
}

func TestOpen_PathWithURICharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "odd?dir#100%")
	db := openTest(t, filepath.Join(dir, "o.db"))
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The file must be where it was asked for, not at a path cut at '?'.
	if _, err := os.Stat(filepath.Join(dir, "o.db")); err != nil {
		t.Fatal(err)
	}
}

func TestReaders_RefuseWrites(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err := db.read.Exec(`DELETE FROM orchestrator_webhook_events`)
	if err == nil {
		t.Fatal("a reader connection accepted a write")
	}
}

func TestReady_PendingUntilMigrated(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "m.db"))
	ctx := context.Background()
	if err := db.Ready(ctx); !errors.Is(err, ErrNotMigrated) {
		t.Fatalf("Ready before migrate = %v, want ErrNotMigrated", err)
	}
	applied, err := db.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) == 0 {
		t.Fatal("nothing applied on a new database")
	}
	if err := db.Ready(ctx); err != nil {
		t.Fatalf("Ready after migrate = %v", err)
	}
	again, err := db.Migrate(ctx)
	if err != nil || len(again) != 0 {
		t.Fatalf("second migrate applied %v, err %v", again, err)
	}
	states, err := db.MigrationStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if !s.Applied || s.AppliedAt.IsZero() {
			t.Errorf("migration %d %s not applied: %+v", s.Version, s.Name, s)
		}
	}
}

// A migrated database seen by a fresh process is ready without migrating.
func TestReady_MigratedByAnotherHandle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	if _, err := openTest(t, path).Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := openTest(t, path).Ready(context.Background()); err != nil {
		t.Fatalf("Ready = %v", err)
	}
}

// Two handles on one file stand for two processes (the server and a CLI).
// Each runs read-then-write transactions from many goroutines. With deferred
// transactions SQLite cannot upgrade a reader's snapshot and answers
// SQLITE_BUSY at once, whatever busy_timeout says; _txlock=immediate takes the
// write lock at BEGIN, where busy_timeout applies, so none fails.
func TestWriter_ReadThenWriteTransactionsNeverBusy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.db")
	a, b := openTest(t, path), openTest(t, path)
	ctx := context.Background()
	if _, err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.write.Exec(`INSERT INTO orchestrator_provisioning_runs (id, kind, org_id, team_node_id, status, steps, created_at, updated_at)
		VALUES ('0b8a4f0e-5d0c-4b8e-9a51-3c1d2e3f4a5b', 'provision', 'acme', 'sre', '0', '[]', 'x', 'x')`); err != nil {
		t.Fatal(err)
	}
	const perHandle = 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*perHandle)
	for _, db := range []*DB{a, b} {
		for range perHandle {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tx, err := db.write.BeginTx(ctx, nil)
				if err != nil {
					errs <- err
					return
				}
				defer tx.Rollback()
				var n int
				if err := tx.QueryRow(`SELECT CAST(status AS INTEGER) FROM orchestrator_provisioning_runs`).Scan(&n); err != nil {
					errs <- err
					return
				}
				if _, err := tx.Exec(`UPDATE orchestrator_provisioning_runs SET status = ?`, n+1); err != nil {
					errs <- err
					return
				}
				errs <- tx.Commit()
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("transaction failed: %v", err)
		}
	}
	var n int
	if err := a.read.QueryRow(`SELECT CAST(status AS INTEGER) FROM orchestrator_provisioning_runs`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2*perHandle {
		t.Fatalf("counter = %d, want %d (lost updates)", n, 2*perHandle)
	}
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
	"github.com/incidentfox/orchestrator-edge/migrations"
	"github.com/incidentfox/orchestrator-edge/store"
)

// `migrate status` only reads, so it answers while the server runs; `up`
// and `down` change the schema and still refuse beside it.
func TestMigrate_StatusWorksWhileTheServerRuns(t *testing.T) {
	dir := t.TempDir()
	srv, logs, _ := child(t, []string{"KUBECONFIG=/nonexistent"}, "serve", "--dev", "--addr", "127.0.0.1:0", "--data-dir", dir)
	waitLine(t, logs, "started")
	go func() { _, _ = io.Copy(io.Discard, logs) }()
	defer func() { _ = srv.Process.Signal(syscall.SIGTERM); _ = srv.Wait() }()

	var out bytes.Buffer
	if err := run(context.Background(), []string{"migrate", "status", "--data-dir", dir}, envOf(nil), &out, io.Discard); err != nil {
		t.Fatalf("status beside the server: %v", err)
	}
	if !regexp.MustCompile(`00001_initial.sql\s+applied`).MatchString(out.String()) || strings.Contains(out.String(), "pending") {
		t.Fatalf("status beside the server:\n%s", out.String())
	}
	for _, action := range []string{"up", "down"} {
		err := run(context.Background(), []string{"migrate", action, "--data-dir", dir}, envOf(nil), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "data directory is in use") {
			t.Errorf("migrate %s beside the server: %v", action, err)
		}
	}
}

// `migrate down` undoes the newest migration after the snapshot an upgrade
// would take (pre-migrate-<from>-<to>-…, verified), says what to start
// next, and goes no further: a second down names the snapshot way back.
func TestMigrate_DownUndoesTheNewestMigrationAfterASnapshot(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if err := run(ctx, []string{"migrate", "down", "--data-dir", dir}, envOf(nil), io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "nothing to undo") {
		t.Fatalf("down on an empty data directory: %v", err)
	}
	if err := run(ctx, []string{"migrate", "up", "--data-dir", dir}, envOf(nil), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	known, _ := store.KnownVersion(migrations.FS)
	prev := previousVersion(t, known)
	var out bytes.Buffer
	if err := run(ctx, []string{"migrate", "down", "--data-dir", dir}, envOf(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("undid %05d: the schema is now %05d", known, prev)
	if !strings.Contains(out.String(), want) {
		t.Fatalf("down said:\n%s\nwant %q", out.String(), want)
	}
	snaps, _ := filepath.Glob(filepath.Join(dir, "backups", fmt.Sprintf("pre-migrate-%d-%d-*.db", known, prev)))
	if len(snaps) != 1 || !strings.Contains(out.String(), snaps[0]) {
		t.Fatalf("snapshots %v; down said:\n%s", snaps, out.String())
	}
	if _, err := os.Stat(strings.TrimSuffix(snaps[0], ".db") + ".db.json"); err != nil {
		t.Errorf("the snapshot has no record beside it: %v", err)
	}
	out.Reset()
	if err := run(ctx, []string{"migrate", "status", "--data-dir", dir}, envOf(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(fmt.Sprintf(`(?m)^%05d\s.*\spending`, known)).MatchString(out.String()) ||
		!regexp.MustCompile(fmt.Sprintf(`(?m)^%05d\s.*\sapplied`, prev)).MatchString(out.String()) {
		t.Fatalf("status after down:\n%s", out.String())
	}
	err := run(ctx, []string{"migrate", "down", "--data-dir", dir}, envOf(nil), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "undoes only this build's newest migration") {
		t.Fatalf("a second down: %v", err)
	}
	if snaps, _ := filepath.Glob(filepath.Join(dir, "backups", "pre-migrate-*.db")); len(snaps) != 1 {
		t.Fatalf("a refused down left snapshots %v", snaps)
	}
	out.Reset()
	if err := run(ctx, []string{"migrate", "up", "--data-dir", dir}, envOf(nil), &out, io.Discard); err != nil ||
		!strings.Contains(out.String(), fmt.Sprintf("applied %05d", known)) {
		t.Fatalf("up after down: %v\n%s", err, out.String())
	}
}

// On PostgreSQL `migrate` follows DATABASE_URL (it used to look for a
// SQLite file): up, status and down, with no instance lock and no
// snapshot (PostgreSQL is backed up with pg_dump).
func TestMigrate_FollowsDatabaseURLToPostgres(t *testing.T) {
	env := envOf(map[string]string{"DATABASE_URL": pgtest.Database(t)})
	dir := t.TempDir()
	ctx := context.Background()
	var out bytes.Buffer
	if err := run(ctx, []string{"migrate", "up", "--data-dir", dir}, env, &out, io.Discard); err != nil ||
		!strings.Contains(out.String(), "applied 00001") {
		t.Fatalf("up: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"migrate", "status", "--data-dir", dir}, env, &out, io.Discard); err != nil ||
		strings.Contains(out.String(), "pending") {
		t.Fatalf("status: %v\n%s", err, out.String())
	}
	out.Reset()
	known, _ := store.KnownVersion(migrations.FS)
	if err := run(ctx, []string{"migrate", "down", "--data-dir", dir}, env, &out, io.Discard); err != nil ||
		!strings.Contains(out.String(), fmt.Sprintf("undid %05d", known)) || strings.Contains(out.String(), "snapshot") {
		t.Fatalf("down: %v\n%s", err, out.String())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("the data directory got %d entries on PostgreSQL", len(entries))
	}
}

// previousVersion is the migration before the newest: versions may have
// gaps while migrations of work landing in parallel are numbered ahead.
func previousVersion(t *testing.T, known int64) int64 {
	t.Helper()
	var prev int64
	names, _ := fs.Glob(migrations.FS, "*.sql")
	for _, n := range names {
		head, _, _ := strings.Cut(n, "_")
		if v, err := strconv.ParseInt(head, 10, 64); err == nil && v < known {
			prev = max(prev, v)
		}
	}
	for v := range store.GoMigrationNames {
		if v < known {
			prev = max(prev, v)
		}
	}
	return prev
}

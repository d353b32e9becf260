package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/migrations"
	"github.com/incidentfox/orchestrator-edge/store"
)

const fixtureAdmin = "fixture-admin"

// fixtureDir is a data directory holding a copy of the database release
// 0.1.0 wrote (testdata/README.md says how it was made).
func fixtureDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile("testdata/orchestrator-0.1.0.db")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "orchestrator.db"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func getJSON(t *testing.T, url string, out any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+fixtureAdmin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(out)
	return resp.StatusCode
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fixtureWritten is an hour after the last thing release 0.1.0 wrote into
// the fixture (its events arrived at 2026-11-24T11:42Z).
var fixtureWritten = time.Date(2026, 11, 24, 12, 42, 0, 0, time.UTC)

// onFixtureDay sets the clock of the test and of the servers it starts (they
// inherit the environment) to an hour after the fixture was written, so the
// retention chore, which runs at start, finds nothing of the fixture old
// enough to remove whatever day the test runs.
func onFixtureDay(t *testing.T) {
	t.Setenv(wallclock.OffsetEnv, time.Until(fixtureWritten).String())
}

// A database written by release 0.1.0 opens with this build: a snapshot is
// taken before migrating, it migrates, and its runs and events are served.
func TestUpgrade_Release010DatabaseMigratesAndIsServed(t *testing.T) {
	onFixtureDay(t)
	dir := fixtureDir(t)
	proc, logs, stdout := child(t, []string{"ORCHESTRATOR_DEV_ADMIN_TOKEN=" + fixtureAdmin, "KUBECONFIG=/nonexistent"},
		"serve", "--dev", "--addr", "127.0.0.1:0", "--data-dir", dir)
	base := "http://" + waitLine(t, logs, "listening")["addr"].(string)
	snap := waitLine(t, logs, "snapshot taken before migrating")
	waitLine(t, logs, "started")
	go drain(logs)

	var runs struct {
		Runs []map[string]any `json:"runs"`
	}
	if code := getJSON(t, base+"/api/v1/admin/provision/runs?team_node_id=fixture-team", &runs); code != 200 || len(runs.Runs) != 1 ||
		runs.Runs[0]["id"] != "6b92b2f3-8c06-4b1d-93c7-91e967327cb1" || runs.Runs[0]["status"] != "succeeded" {
		t.Fatalf("runs of the fixture = %d %v", code, runs)
	}
	var events struct {
		Events []map[string]any `json:"events"`
	}
	if code := getJSON(t, base+"/api/v1/admin/events?status=delivered", &events); code != 200 || len(events.Events) != 5 {
		t.Fatalf("events of the fixture = %d %v", code, events)
	}
	var one map[string]any
	if code := getJSON(t, base+"/api/v1/admin/events/"+events.Events[0]["id"].(string), &one); code != 200 || one["body"] == nil {
		t.Fatalf("an event of the fixture = %d %v", code, one)
	}
	// Migration 7 kept every id the API had handed out: each event of the
	// old file (read from the pre-migrate snapshot) opens by its UUID with
	// the same body and headers; a new event gets a new kind of id.
	name := snap["name"].(string)
	old, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "backups", name)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := old.Query(`SELECT id, body, headers FROM orchestrator_webhook_events`)
	if err != nil {
		t.Fatal(err)
	}
	var oldIDs int
	for rows.Next() {
		var id, headers string
		var body []byte
		if err := rows.Scan(&id, &body, &headers); err != nil {
			t.Fatal(err)
		}
		oldIDs++
		var ev map[string]any
		if code := getJSON(t, base+"/api/v1/admin/events/"+id, &ev); code != 200 || ev["id"] != id || ev["body"] != string(body) {
			t.Fatalf("event %s after the migration = %d %v; its body was %s", id, code, ev, body)
		}
		var h map[string]any
		_ = json.Unmarshal([]byte(headers), &h)
		if fmt.Sprint(ev["headers"]) != fmt.Sprint(h) {
			t.Fatalf("event %s headers = %v, were %v", id, ev["headers"], h)
		}
	}
	rows.Close()
	old.Close()
	if oldIDs != 5 {
		t.Fatalf("the snapshot holds %d events, want 5", oldIDs)
	}
	// The pre-migration snapshot is a verified copy of the old schema.
	known, _ := store.KnownVersion(migrations.FS)
	if !strings.HasPrefix(name, fmt.Sprintf("pre-migrate-2-%d-", known)) {
		t.Fatalf("snapshot name %q", name)
	}
	info, err := store.VerifySnapshot(context.Background(), filepath.Join(dir, "backups", name), 0)
	if err != nil || info.SchemaVersion != 2 || info.Events != 5 {
		t.Fatalf("pre-migrate snapshot: %+v %v", info, err)
	}
	var list struct {
		Backups []map[string]any `json:"backups"`
	}
	if code := getJSON(t, base+"/api/v1/admin/backups", &list); code != 200 || len(list.Backups) != 1 || list.Backups[0]["trigger"] != "pre-migrate" {
		t.Fatalf("backups = %d %v", code, list)
	}
	_ = proc.Process.Signal(syscall.SIGTERM)
	_ = proc.Wait()
	// The same upgrade converted the file to incremental auto-vacuum.
	if db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "orchestrator.db")+"?mode=ro"); err == nil {
		var mode int
		if err := db.QueryRow(`PRAGMA auto_vacuum`).Scan(&mode); err != nil || mode != 2 {
			t.Fatalf("auto_vacuum after the upgrade = %d %v, want 2 (incremental)", mode, err)
		}
		// Migration 13 moved the payloads to their own table.
		var payloads int
		if err := db.QueryRow(`SELECT COUNT(*) FROM orchestrator_event_payloads`).Scan(&payloads); err != nil || payloads != oldIDs {
			t.Fatalf("%d payloads after the upgrade (%v), want the %d events'", payloads, err, oldIDs)
		}
		db.Close()
	}
	// Dev mode says where the page is, beside the token.
	if !strings.Contains(stdout.String(), "dev mode: admin page "+base+"/ui/ (log in with the admin token above)") {
		t.Fatalf("stdout lacks the page's address %s/ui/:\n%s", base, stdout)
	}
}

func TestPageURL_WildcardHostsBecomeLocalhost(t *testing.T) {
	for addr, want := range map[string]string{"[::]:8070": "http://localhost:8070", "0.0.0.0:9": "http://localhost:9",
		":8070": "http://localhost:8070", "127.0.0.1:5": "http://127.0.0.1:5", "[::1]:7": "http://[::1]:7"} {
		if got := pageURL(addr); got != want {
			t.Errorf("pageURL(%q) = %q, want %q", addr, got, want)
		}
	}
}

// A database that a newer build migrated is refused before anything is
// touched, with the line SPEC §14 gives; so is restoring a snapshot of it.
func TestUpgrade_NewerSchemaIsRefusedUntouched(t *testing.T) {
	dir := fixtureDir(t)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "orchestrator.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (99, 1)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before := fileSum(t, filepath.Join(dir, "orchestrator.db"))
	cmd := exec.Command(os.Args[0], "serve", "--dev", "--addr", "127.0.0.1:0", "--data-dir", dir)
	cmd.Env = append(os.Environ(), "ORCHESTRATOR_TEST_MAIN=1")
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || !strings.Contains(string(out), fmt.Sprintf("database schema version 99 is newer than this build knows (%d): run a newer image or restore a backup", knownVersion(t))) {
		t.Fatalf("serve on a newer schema: %v %s", err, out)
	}
	if strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Fatalf("want one line, got %q", out)
	}
	if fileSum(t, filepath.Join(dir, "orchestrator.db")) != before {
		t.Fatal("the database changed")
	}
	if _, err := os.Stat(filepath.Join(dir, "backups")); err == nil {
		t.Fatal("a snapshot was taken of a database this build must not touch")
	}

	target := t.TempDir()
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"restore", "--from", filepath.Join(dir, "orchestrator.db"), "--data-dir", target}, envOf(nil), &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "newer than this build knows") {
		t.Fatalf("restore of a newer snapshot: %v", err)
	}
}

// backup → restore round trip, and files that are no snapshot of ours are
// refused with a clear message and nothing replaced.
func TestBackupRestore_RoundTripAndRefusals(t *testing.T) {
	dir := fixtureDir(t)
	ctx := context.Background()
	var out bytes.Buffer
	if err := run(ctx, []string{"migrate", "up", "--data-dir", dir}, envOf(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(t.TempDir(), "snap.db")
	out.Reset()
	if err := run(ctx, []string{"backup", "--out", snap, "--data-dir", dir}, envOf(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var info map[string]any
	if err := json.Unmarshal(out.Bytes(), &info); err != nil || info["integrity"] != "ok" || info["schema_version"] != float64(knownVersion(t)) || info["events"] != float64(5) {
		t.Fatalf("backup said %s (%v)", out.String(), err)
	}
	if err := run(ctx, []string{"backup", "--out", snap, "--data-dir", dir}, envOf(nil), io.Discard, io.Discard); err == nil {
		t.Fatal("backup overwrote an existing file")
	}

	// Change the live database, then restore: the snapshot's state is back
	// and the changed one is kept aside.
	db, _ := sql.Open("sqlite", "file:"+filepath.Join(dir, "orchestrator.db"))
	if _, err := db.Exec(`DELETE FROM orchestrator_webhook_events`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	out.Reset()
	if err := run(ctx, []string{"restore", "--from", snap, "--data-dir", dir}, envOf(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	restored, err := store.VerifySnapshot(ctx, filepath.Join(dir, "orchestrator.db"), 0)
	if err != nil || restored.Events != 5 || !strings.Contains(out.String(), "kept the previous database as ") {
		t.Fatalf("after restore: %+v %v %s", restored, err, out.String())
	}
	kept, _ := filepath.Glob(filepath.Join(dir, "orchestrator.db.before-restore-*"))
	if len(kept) != 1 {
		t.Fatalf("kept = %v", kept)
	}

	// Refusals: not SQLite, a SQLite file of something else, a corrupted
	// snapshot. The live database stays as it is.
	bad := t.TempDir()
	foreign := filepath.Join(bad, "foreign.db")
	fdb, _ := sql.Open("sqlite", "file:"+foreign)
	if _, err := fdb.Exec(`CREATE TABLE notes (x TEXT)`); err != nil {
		t.Fatal(err)
	}
	fdb.Close()
	corrupt := filepath.Join(bad, "corrupt.db")
	b, _ := os.ReadFile(snap)
	for i := 4096 + 100; i < len(b) && i < 4096+4000; i++ { // the second page and on: rows and btree structure
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(corrupt, b, 0o600); err != nil {
		t.Fatal(err)
	}
	notDB := filepath.Join(bad, "notes.txt")
	_ = os.WriteFile(notDB, []byte("not a database"), 0o600)
	live := fileSum(t, filepath.Join(dir, "orchestrator.db"))
	for file, want := range map[string]string{notDB: "is not a SQLite database", foreign: "not this appliance's database",
		corrupt: "not a usable snapshot", filepath.Join(bad, "missing.db"): "no such file"} {
		err := run(ctx, []string{"restore", "--from", file, "--data-dir", dir}, envOf(nil), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "refused, nothing was replaced") || !strings.Contains(err.Error(), want) {
			t.Errorf("restore from %s: %v, want %q", filepath.Base(file), err, want)
		}
	}
	if fileSum(t, filepath.Join(dir, "orchestrator.db")) != live {
		t.Fatal("a refused restore changed the database")
	}
}

// knownVersion is the newest migration this build carries.
func knownVersion(t *testing.T) int64 {
	t.Helper()
	v, err := store.KnownVersion(migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

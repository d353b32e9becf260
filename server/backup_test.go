package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/migrations"
	"github.com/incidentfox/orchestrator-edge/server/backups"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// A snapshot taken while webhooks keep arriving is consistent and holds
// every event acknowledged before it started; the acks go on during it.
func TestBackup_SnapshotUnderLoadHoldsEveryEarlierAck(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, noDispatch: true, backups: true})
	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body, h := signed(webhook.PagerDuty, fmt.Sprintf("load-%d-%d", w, i), pagerdutySecret, wallclock.Now())
				r := e.send(webhook.PagerDuty, body, h)
				if r.code != 200 {
					t.Errorf("ack during the snapshot = %d %s", r.code, r.raw)
					return
				}
				mu.Lock()
				acked = append(acked, r.body["event_id"].(string))
				mu.Unlock()
			}
		}()
	}
	waitFor(t, "some acks", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 200 })
	mu.Lock()
	before := append([]string(nil), acked...)
	mu.Unlock()
	r := e.do("POST", "/api/v1/admin/backups", adminToken, nil)
	mu.Lock()
	during := len(acked) - len(before)
	mu.Unlock()
	close(stop)
	wg.Wait()
	if r.code != 201 || r.body["integrity"] != "ok" || r.body["schema_version"] != float64(e.db.KnownVersion()) {
		t.Fatalf("backup = %d %s", r.code, r.raw)
	}
	path := filepath.Join(e.dataDir, "backups", r.body["name"].(string))
	info, err := store.VerifySnapshot(context.Background(), path, 0)
	if err != nil || info.SHA256 != r.body["sha256"] || info.Size != int64(r.body["size"].(float64)) {
		t.Fatalf("snapshot verifies as %+v %v, recorded %s", info, err, r.raw)
	}
	snap, err := store.Open(context.Background(), store.Options{Path: path, Migrations: migrations.FS})
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	for _, id := range before {
		if _, err := snap.GetEvent(context.Background(), id); err != nil {
			t.Fatalf("event %s acked before the snapshot is not in it: %v", id, err)
		}
	}
	t.Logf("%d events acked before the snapshot, all in it (%d events, %d bytes); %d more acked while it ran", len(before), info.Events, info.Size, during)
}

// One backup at a time (409), only admins with admin:backup and bound to
// no org, names that cannot leave the backups folder, and a download that
// is the recorded file.
func TestBackup_APIAuthConflictAndDownload(t *testing.T) {
	hold, entered := make(chan struct{}), make(chan struct{}, 1)
	var e *env
	e = newEnv(t, envOptions{backups: true, snapshot: func(ctx context.Context, dest string) (store.SnapshotInfo, error) {
		entered <- struct{}{}
		<-hold
		return e.db.Snapshot(ctx, dest)
	}})
	e.cs.AddAdmin("backup-only", peers.Identity{Role: "admin", Permissions: []string{"admin:backup"}})
	for _, c := range []struct {
		token string
		code  int
		err   string
	}{{"", 401, "missing_admin_token"}, {orgToken, 403, "insufficient_permissions"}, {scopedToken, 403, "insufficient_permissions"}} {
		if r := e.do("POST", "/api/v1/admin/backups", c.token, nil); r.code != c.code || r.body["error"] != c.err {
			t.Errorf("POST as %q = %d %s", c.token, r.code, r.raw)
		}
		if r := e.do("GET", "/api/v1/admin/backups", c.token, nil); r.code != c.code {
			t.Errorf("GET as %q = %d %s", c.token, r.code, r.raw)
		}
	}
	first := make(chan response, 1)
	go func() { first <- e.do("POST", "/api/v1/admin/backups", adminToken, nil) }()
	<-entered
	if r := e.do("POST", "/api/v1/admin/backups", adminToken, nil); r.code != 409 || r.body["error"] != "backup_in_progress" {
		t.Fatalf("second backup while one runs = %d %s", r.code, r.raw)
	}
	close(hold)
	r := <-first
	if r.code != 201 {
		t.Fatalf("first backup = %d %s", r.code, r.raw)
	}
	name := r.body["name"].(string)
	list := e.do("GET", "/api/v1/admin/backups", "backup-only", nil)
	if list.code != 200 || len(list.body["backups"].([]any)) != 1 {
		t.Fatalf("list = %d %s", list.code, list.raw)
	}
	dl := e.do("GET", "/api/v1/admin/backups/"+name, "backup-only", nil)
	want, _ := os.ReadFile(filepath.Join(e.dataDir, "backups", name))
	if dl.code != 200 || dl.raw != string(want) || dl.header.Get("X-Backup-Sha256") != r.body["sha256"] ||
		dl.header.Get("Content-Disposition") != `attachment; filename="`+name+`"` {
		t.Fatalf("download = %d (%d bytes, want %d) %v", dl.code, len(dl.raw), len(want), dl.header)
	}
	for _, bad := range []string{"..%2forchestrator.db", "orchestrator.db", "manual-x.db.json", "nope.db"} {
		if r := e.do("GET", "/api/v1/admin/backups/"+bad, adminToken, nil); r.code != 404 {
			t.Errorf("GET %s = %d %s", bad, r.code, r.raw)
		}
	}
	if r := e.do("DELETE", "/api/v1/admin/backups/"+name, orgToken, nil); r.code != 403 {
		t.Fatalf("delete by an org-bound admin = %d", r.code)
	}
	if r := e.do("DELETE", "/api/v1/admin/backups/"+name, adminToken, nil); r.code != 204 {
		t.Fatalf("delete = %d %s", r.code, r.raw)
	}
	if r := e.do("GET", "/api/v1/admin/backups/"+name, adminToken, nil); r.code != 404 {
		t.Fatalf("after delete = %d", r.code)
	}
}

// Scheduled backups keep exactly the newest N; manual ones are not pruned.
func TestBackup_RetentionKeepsExactlyN(t *testing.T) {
	now := time.Date(2026, 11, 24, 3, 30, 0, 0, time.UTC)
	clock := &clock{t: now}
	e := newEnv(t, envOptions{backups: true, backupKeep: 3, backupNow: clock.Now})
	manual, err := e.backups.Create(context.Background(), backups.Manual)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for range 5 {
		clock.Add(24 * time.Hour)
		info, err := e.backups.Create(context.Background(), backups.Scheduled)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, info.Name)
	}
	list, err := e.backups.List()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range list {
		got = append(got, b.Name)
	}
	want := []string{names[4], names[3], names[2], manual.Name}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
	files, _ := filepath.Glob(filepath.Join(e.dataDir, "backups", "*"))
	if len(files) != 8 { // four snapshots and their records
		t.Fatalf("files left: %v", files)
	}
	if !e.metric(`orchestrator_backups_total{outcome="ok",trigger="scheduled"} 5`) {
		t.Fatal("the backups counter does not say 5 scheduled")
	}
}

// The backups page: "back up now" and a download for an unbound admin with
// admin:backup; an org-bound admin is refused the page and the file.
func TestBackup_PageBackUpNowAndDownload(t *testing.T) {
	e, base := uiEnv(t, envOptions{backups: true})
	c := login(t, base, adminToken)
	req, _ := http.NewRequest("POST", base+"/ui/backups", nil)
	req.Header.Set("Origin", base)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	list, _ := e.backups.List()
	if resp.Request.URL.Path != "/ui/backups" || len(list) != 1 || !strings.Contains(string(after), list[0].Name+" written and verified") {
		t.Fatalf("back up now ended at %s with %d backups: %s", resp.Request.URL.Path, len(list), after)
	}
	dl, err := c.Get(base + "/ui/backups/" + list[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(dl.Body)
	dl.Body.Close()
	if dl.StatusCode != 200 || int64(len(body)) != list[0].Size || dl.Header.Get("X-Backup-Sha256") != list[0].SHA256 {
		t.Fatalf("download = %d, %d bytes", dl.StatusCode, len(body))
	}
	org := login(t, base, orgToken)
	for _, p := range []string{"/ui/backups", "/ui/backups/" + list[0].Name} {
		if code, page := getPage(t, org, base+p); code != 403 || strings.Contains(page, "SQLite format") {
			t.Errorf("%s as an org-bound admin = %d", p, code)
		}
	}
	// A failed backup shows on the overview and the backups page. (The
	// folder becomes a file: permissions would not stop root.)
	if err := os.RemoveAll(filepath.Join(e.dataDir, "backups")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dataDir, "backups"), []byte("not a folder"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.backups.Create(context.Background(), backups.Scheduled); err == nil {
		t.Fatal("a backup into a file instead of a folder succeeded")
	}
	for _, p := range []string{"/ui/overview", "/ui/backups"} {
		if _, page := getPage(t, c, base+p); !strings.Contains(page, `id="backup-failure"`) {
			t.Errorf("%s does not show the failed backup", p)
		}
	}
	if !e.metric(`orchestrator_backups_total{outcome="failed",trigger="scheduled"} 1`) {
		t.Fatal("the failure is not counted")
	}
}

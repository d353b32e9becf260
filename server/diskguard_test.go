package server_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/backups"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// smallVolume is a real 24 MiB file system for the test (a tmpfs), or —
// where mounting is refused — a plain folder with a statfs that reports a
// 24 MiB volume with the folder's real usage. It says which one ran.
func smallVolume(t *testing.T) (string, func(string) (backups.Volume, error)) {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", dir).CombinedOutput(); err == nil {
			t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
			t.Log("volume: a real 24 MiB tmpfs")
			return dir, nil
		} else {
			t.Logf("mount refused (%v %s)", err, strings.TrimSpace(string(out)))
		}
	}
	t.Log("volume: a folder with a statfs reporting 24 MiB")
	return dir, func(string) (backups.Volume, error) {
		var used int64
		_ = fsWalk(dir, func(n int64) { used += n })
		return backups.Volume{Size: 24 << 20, Available: 24<<20 - used}, nil
	}
}

// volumeWithFree is a statfs reporting a 1 GiB volume with free bytes
// free, whatever the machine's disk holds: the overview's outlook says
// 'not filling' beyond a year, which a test's week of events on a large
// real disk always is.
func volumeWithFree(free int64) func(string) (backups.Volume, error) {
	return func(string) (backups.Volume, error) {
		return backups.Volume{Size: 1 << 30, Available: free}, nil
	}
}

func fsWalk(dir string, add func(int64)) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			_ = fsWalk(dir+"/"+e.Name(), add)
		} else if fi, err := e.Info(); err == nil {
			add(fi.Size())
		}
	}
	return nil
}

// SPEC §16's disk guard on a small volume: a snapshot that would leave
// less than the reserve (10 %) free is refused with 507 before a byte is
// written (no half-written file), the failure is counted, and webhooks go
// on being acknowledged. Manual backups are bounded too.
func TestDiskGuard_ABackupThatWouldBreachTheReserveIsRefusedAndWebhooksGoOn(t *testing.T) {
	dir, statfs := smallVolume(t)
	e := newEnv(t, envOptions{dataDir: dir, backups: true, backupKeepManual: 2, statfs: statfs, webhooks: true, noDispatch: true})
	ctx := context.Background()
	// About 4 MiB of events: one snapshot fits, a second does not leave 10 %.
	for i := range 120 {
		big := randomHex(60 << 10) // stored compressed: random hex keeps about half its size
		ev := store.Event{Source: "github", DeliveryID: fmt.Sprintf("fill-%d", i),
			EventType: "push", Status: store.EventDelivered, Body: []byte(big), ReceivedAt: wallclock.Now()}
		if _, err := e.db.InsertEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if r := e.do("POST", "/api/v1/admin/backups", adminToken, nil); r.code != 201 {
		t.Fatalf("first backup = %d %s", r.code, r.raw)
	}
	r := e.do("POST", "/api/v1/admin/backups", adminToken, nil)
	if r.code != 507 || r.body["error"] != "insufficient_storage" || !strings.Contains(r.raw, "must leave 10%") {
		t.Fatalf("backup past the reserve = %d %s", r.code, r.raw)
	}
	entries, _ := os.ReadDir(dir + "/backups")
	for _, en := range entries {
		if strings.HasSuffix(en.Name(), ".partial") {
			t.Fatalf("a half-written file was left: %s", en.Name())
		}
	}
	if list, _ := e.backups.List(); len(list) != 1 {
		t.Fatalf("%d backups recorded, want 1", len(list))
	}
	if !e.metric(`orchestrator_backups_total{outcome="failed",trigger="manual"} 1`) {
		t.Error("the refused backup is not counted as failed")
	}
	// Webhooks are still acknowledged.
	for i := range 20 {
		body, h := signed(webhook.Slack, fmt.Sprintf("after-refusal-%d", i), slackSecret, wallclock.Now())
		if r := e.send(webhook.Slack, body, h); r.code != 200 {
			t.Fatalf("webhook after the refused backup = %d %s", r.code, r.raw)
		}
	}
	// The volume's figures are metrics.
	for _, name := range []string{"orchestrator_database_bytes", "orchestrator_data_volume_available_bytes",
		"orchestrator_data_volume_size_bytes", "orchestrator_backups_bytes"} {
		if !e.metric(name + " ") {
			t.Errorf("no %s gauge", name)
		}
	}
}

// Manual backups are bounded: with ORCHESTRATOR_BACKUP_KEEP_MANUAL=2 the
// oldest manual one goes when a third is made.
func TestDiskGuard_ManualBackupsAreBounded(t *testing.T) {
	e := newEnv(t, envOptions{backups: true, backupKeepManual: 2})
	var names []string
	for range 3 {
		info, err := e.backups.Create(context.Background(), backups.Manual)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, info.Name)
		time.Sleep(2 * time.Millisecond) // names carry the millisecond
	}
	list, _ := e.backups.List()
	if len(list) != 2 || list[0].Name != names[2] || list[1].Name != names[1] {
		t.Fatalf("backups kept: %+v, want the two newest of %v", list, names)
	}
}

// The overview shows the database's size, the volume's free space and
// when it fills at this week's rate: events arriving with nothing leaving
// fill it; as many arriving as retention removes (they arrived 30 days
// earlier) do not.
func TestDiskGuard_OverviewSaysWhenTheVolumeFills(t *testing.T) {
	e, base := uiEnv(t, envOptions{backups: true, statfs: volumeWithFree(2 << 20)})
	ctx := context.Background()
	now := wallclock.Now().UTC()
	add := func(prefix string, at time.Time, n int) {
		for i := range n {
			ev := store.Event{Source: "pagerduty", DeliveryID: fmt.Sprintf("%s-%d", prefix, i), EventType: "x",
				Status: store.EventDelivered, Body: []byte(`{"a":1}`), ReceivedAt: at}
			if _, err := e.db.InsertEvent(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	add("this-week", now.Add(-24*time.Hour), 700)
	c := login(t, base, adminToken)
	_, page := getPage(t, c, base+"/ui/overview")
	if !strings.Contains(page, `id="volume-free"`) || !strings.Contains(page, "Full in about") {
		t.Fatalf("overview without a filling volume card:\n%s", page)
	}
	// As many arrived 30 days ago (retention removes them this week).
	add("leaving", now.Add(-29*24*time.Hour), 700)
	e.srv.ForgetStats()
	if _, page = getPage(t, c, base+"/ui/overview"); !strings.Contains(page, "Not filling at this week") {
		t.Fatalf("overview says the volume fills while retention keeps pace:\n%s", page)
	}
}

// The overview's outlook counts a body apart from its event: body
// retention purges it within a week and its pages go back, so a week of
// events with large bodies fills the volume by their rows alone. Counting
// each event at the live file's average cost, bodies included, said it
// would fill dozens of times sooner.
func TestDiskGuard_OutlookCountsBodiesUntilTheirPurge(t *testing.T) {
	e, base := uiEnv(t, envOptions{backups: true, statfs: volumeWithFree(2 << 20)})
	ctx := context.Background()
	now := wallclock.Now().UTC()
	body := make([]byte, 16<<10)
	rand.Read(body) // stored compressed: random bytes stay their size
	const n = 300
	for i := range n {
		ev := store.Event{Source: "github", DeliveryID: fmt.Sprintf("big-%d", i), EventType: "push",
			Status: store.EventDelivered, Body: body, ReceivedAt: now.Add(-24 * time.Hour)}
		if _, err := e.db.InsertEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	c := login(t, base, adminToken)
	_, page := getPage(t, c, base+"/ui/overview")
	var days int
	if i := strings.Index(page, "Full in about "); i < 0 {
		t.Fatalf("the overview says the volume is not filling:\n%s", page)
	} else if _, err := fmt.Sscanf(page[i:], "Full in about %d days", &days); err != nil {
		t.Fatal(err)
	}
	fig, err := e.backups.Figures(ctx)
	if err != nil {
		t.Fatal(err)
	}
	payloads, err := e.db.PayloadSpace(ctx)
	if err != nil || payloads.Payloads != n || payloads.Bytes < n*16<<10 {
		t.Fatalf("payload space %+v %v: want %d payloads of at least 16 KiB", payloads, err, n)
	}
	perDay := func(perEvent int64) float64 { return float64(n) / 7 * float64(perEvent) }
	averaged := float64(fig.Available) / perDay(fig.UsedBytes/n)
	rows := float64(fig.Available) / perDay((fig.UsedBytes-payloads.Bytes)/n)
	t.Logf("full in about %d days; %.0f counting rows alone, %.0f at the average cost with bodies", days, rows, averaged)
	if float64(days) < rows/2 || float64(days) > rows*2 || float64(days) < 10*averaged {
		t.Fatalf("full in about %d days: want about %.0f (the rows alone), not %.0f (every event at its cost with its body)", days, rows, averaged)
	}
}

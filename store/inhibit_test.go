package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// TestInhibit_FiringAlertsAndTheReleaseOnBothDatabases: an org's firing
// alerts with labels are the newest firing event of each of its alerts
// (another org's, a resolved one's and an unlabelled one's are not), read
// again from a reopened database; an inhibited event whose inhibitor
// resolved is queued again once, however many replicas release at once,
// marked released_by the resolve; one whose own alert resolved meanwhile
// stays suppressed.
func TestInhibit_FiringAlertsAndTheReleaseOnBothDatabases(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		n := 0
		put := func(org, key, state, labels string) string {
			t.Helper()
			n++
			res, err := db.InsertEvent(ctx, Event{Source: "alertmanager", DeliveryID: fmt.Sprint("d-", n), EventType: "alertmanager." + state,
				Status: EventQueued, OrgID: org, TeamNodeID: "sre", ReceivedAt: t0, AlertKey: key, AlertState: state, AlertLabels: labels})
			if err != nil {
				t.Fatal(err)
			}
			return res.ID
		}
		put("acme", "node-n1", AlertStateFiring, `{"alertname":"NodeDown","node":"n1"}`)
		source := put("acme", "node-n1", AlertStateFiring, `{"alertname":"NodeDown","node":"n1"}`)
		put("globex", "node-n9", AlertStateFiring, `{"alertname":"NodeDown","node":"n9"}`)
		put("acme", "node-n2", AlertStateFiring, `{"alertname":"NodeDown","node":"n2"}`)
		put("acme", "node-n2", AlertStateResolved, "")
		put("acme", "pd-1", AlertStateFiring, "")
		podA := put("acme", "pod-a", AlertStateFiring, `{"alertname":"PodCrashLooping","node":"n1"}`)
		podB := put("acme", "pod-b", AlertStateFiring, `{"alertname":"PodCrashLooping","node":"n1"}`)
		list, seen, err := db.FiringAlerts(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		// What changed since a reading: the org's alert events after it.
		if ch, max, err := db.AlertChangesSince(ctx, "acme", seen); err != nil || len(ch) != 0 || max != seen {
			t.Fatalf("changes with nothing new = %+v %d %v", ch, max, err)
		}
		put("globex", "node-n9", AlertStateResolved, "")
		podC := put("acme", "pod-c", AlertStateFiring, `{"alertname":"PodCrashLooping","node":"n3"}`)
		gone := put("acme", "pod-c", AlertStateResolved, "")
		ch, max, err := db.AlertChangesSince(ctx, "acme", seen)
		if err != nil || len(ch) != 2 || ch[0].ID != podC || !ch[0].Firing || ch[0].Labels["node"] != "n3" || ch[1].ID != gone || ch[1].Firing ||
			ch[1].Ref != ch[0].Ref || max != seen+3 {
			t.Fatalf("changes = %+v %d %v", ch, max, err)
		}
		got := map[string]string{}
		for _, a := range list {
			got[a.Ref.Key] = a.ID + " " + a.Labels["node"]
		}
		if len(got) != 3 || got["node-n1"] != source+" n1" || got["pod-a"] != podA+" n1" || got["pod-b"] != podB+" n1" {
			t.Fatalf("acme's firing alerts = %v", got)
		}
		var outs []Outcome
		for _, id := range []string{podA, podB} {
			outs = append(outs, Outcome{ID: id, Status: EventSuppressed, From: EventQueued, At: t0, OrgID: "acme", TeamNodeID: "sre",
				SuppressedReason: SuppressedInhibited, SuppressedBy: source})
		}
		if err := db.RecordOutcomes(ctx, outs, nil, nil); err != nil {
			t.Fatal(err)
		}
		if rel, err := db.ReleaseInhibited(ctx, t0); err != nil || len(rel) != 0 {
			t.Fatalf("released while the source fires: %v %v", rel, err)
		}
		put("acme", "pod-b", AlertStateResolved, "") // pod-b resolved meanwhile
		resolve := put("acme", "node-n1", AlertStateResolved, "")
		var mu sync.Mutex
		var all []Release
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				rel, err := db.ReleaseInhibited(ctx, t0)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				all = append(all, rel...)
				mu.Unlock()
			})
		}
		wg.Wait()
		if len(all) != 1 || all[0].ID != podA || all[0].HeldBy != source || all[0].ResolvedBy != resolve {
			t.Fatalf("released %+v, want %s once, held by %s, resolved by %s", all, podA, source, resolve)
		}
		a, _ := db.GetEvent(ctx, podA)
		b, _ := db.GetEvent(ctx, podB)
		if a.Status != EventQueued || a.ReleasedBy != resolve || a.SuppressedBy != source || a.SuppressedReason != SuppressedInhibited {
			t.Fatalf("released event = %s by %q, held by %q (%s)", a.Status, a.ReleasedBy, a.SuppressedBy, a.SuppressedReason)
		}
		if b.Status != EventSuppressed || b.ReleasedBy != "" {
			t.Fatalf("the resolved target = %s released by %q", b.Status, b.ReleasedBy)
		}
		if list, _, _ := db.FiringAlerts(ctx, "acme"); len(list) != 1 || list[0].Ref.Key != "pod-a" {
			t.Fatalf("firing after the resolves = %+v", list)
		}
	})
}

// The firing alerts are the database's: a reopened database (a restart)
// reads the same.
func TestInhibit_FiringAlertsSurviveAReopen(t *testing.T) {
	path := t.TempDir() + "/o.db"
	db := openMigrated(t, Options{Path: path})
	ctx := context.Background()
	res, err := db.InsertEvent(ctx, Event{Source: "alertmanager", DeliveryID: "x", EventType: "alertmanager.firing", Status: EventQueued,
		OrgID: "acme", TeamNodeID: "sre", ReceivedAt: t0, AlertKey: "k", AlertState: AlertStateFiring, AlertLabels: `{"node":"n1"}`})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	again := openMigrated(t, Options{Path: path})
	list, _, err := again.FiringAlerts(ctx, "acme")
	if err != nil || len(list) != 1 || list[0].ID != res.ID || list[0].Labels["node"] != "n1" {
		t.Fatalf("after a reopen: %+v %v", list, err)
	}
}

// BenchmarkFiringAlerts reads an org's 10,000 firing alerts with their
// labels (SQLite): what dispatch reads at most once a second per org while
// its alerts are checked against inhibit rules.
func BenchmarkFiringAlerts(b *testing.B) {
	db := openMigrated(b, Options{Path: b.TempDir() + "/o.db"})
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < 10_000; i += 8 {
				if _, err := db.InsertEvent(ctx, Event{Source: "alertmanager", DeliveryID: fmt.Sprint("d-", i), EventType: "alertmanager.firing",
					Status: EventDelivered, OrgID: "acme", TeamNodeID: "sre", ReceivedAt: t0, AlertKey: fmt.Sprint("k-", i), AlertState: AlertStateFiring,
					AlertLabels: fmt.Sprintf(`{"alertname":"PodCrashLooping","namespace":"payments","node":"n%d","pod":"web-%d"}`, i%500, i)}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ResetTimer()
	for b.Loop() {
		list, _, err := db.FiringAlerts(ctx, "acme")
		if err != nil || len(list) != 10_000 {
			b.Fatalf("%d alerts, %v", len(list), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/read")
}

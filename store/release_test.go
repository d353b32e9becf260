package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
)

// TestRelease_AnEndedHoldQueuesItsFiringAlertsOnceOnBothDatabases (SPEC
// §21): what holds events back is listed by reason and holder; ending a
// hold queues again, once however many replicas release at once, each
// event of it that is still its alert's newest and firing, marked
// released_by what ended it; an older event of an alert that fired again
// stays suppressed (marked, so it leaves the list of holds), one whose
// alert resolved meanwhile was settled resolved by its resolve (not the
// hold's any more); another holder's events are untouched; a
// released event that is kept back again is no longer marked released.
func TestRelease_AnEndedHoldQueuesItsFiringAlertsOnceOnBothDatabases(t *testing.T) {
	replicas(t, func(t *testing.T, db, other *DB, _ string) {
		ctx := context.Background()
		n := 0
		put := func(key, state string) string {
			t.Helper()
			n++
			res, err := db.InsertEvent(ctx, Event{Source: "alertmanager", DeliveryID: fmt.Sprint("d-", n), EventType: "alertmanager." + state,
				Status: EventQueued, OrgID: "acme", TeamNodeID: "sre", ReceivedAt: t0, AlertKey: key, AlertState: state})
			if err != nil {
				t.Fatal(err)
			}
			return res.ID
		}
		hold := func(reason, by string, ids ...string) {
			t.Helper()
			var outs []Outcome
			for _, id := range ids {
				outs = append(outs, Outcome{ID: id, Status: EventSuppressed, From: EventQueued, At: t0, OrgID: "acme", TeamNodeID: "sre",
					SuppressedReason: reason, SuppressedBy: by})
			}
			if err := db.RecordOutcomes(ctx, outs, nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		older := put("a", AlertStateFiring)
		a := put("a", AlertStateFiring) // a fired again: older is not its newest
		b := put("b", AlertStateFiring)
		c := put("c", AlertStateFiring)
		hold(SuppressedSilence, "s1", older, a, b)
		hold(SuppressedHeld, "business-hours", c)
		put("b", AlertStateResolved) // b resolved meanwhile
		other1 := put("d", AlertStateFiring)
		hold(SuppressedSilence, "s2", other1)

		holds, err := other.Holds(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]string, 0, len(holds))
		for _, h := range holds {
			got = append(got, h.Reason+" "+h.By)
		}
		slices.Sort(got)
		if want := []string{"held business-hours", "silence s1", "silence s2"}; !slices.Equal(got, want) {
			t.Fatalf("holds = %v, want %v", got, want)
		}

		var mu sync.Mutex
		var all []Release
		var wg sync.WaitGroup
		for i := range 3 {
			wg.Go(func() {
				on := db
				if i%2 == 1 {
					on = other
				}
				rel, err := on.ReleaseHold(ctx, Hold{Reason: SuppressedSilence, By: "s1"}, ReleasedSilenceEnded, t0)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				all = append(all, rel...)
				mu.Unlock()
			})
		}
		wg.Wait()
		if len(all) != 1 || all[0].ID != a || all[0].HeldBy != "s1" || all[0].ResolvedBy != ReleasedSilenceEnded {
			t.Fatalf("released %+v, want %s once", all, a)
		}
		for id, want := range map[string]struct{ status, released string }{
			a: {EventQueued, ReleasedSilenceEnded}, older: {EventSuppressed, ReleasedSilenceEnded},
			b: {EventSuppressed, ""}, c: {EventSuppressed, ""}, other1: {EventSuppressed, ""},
		} {
			e, err := db.GetEvent(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if e.Status != want.status || e.ReleasedBy != want.released || e.SuppressedReason == "" {
				t.Errorf("event %s = %s released by %q (%s), want %s released by %q", id, e.Status, e.ReleasedBy, e.SuppressedReason, want.status, want.released)
			}
		}
		if b, err := db.GetEvent(ctx, b); err != nil || b.SuppressedReason != SuppressedResolved {
			t.Fatalf("the alert that resolved meanwhile = %+v %v", b, err)
		}
		if holds, err := db.Holds(ctx); err != nil || len(holds) != 2 {
			t.Fatalf("holds after s1 ended = %+v %v", holds, err)
		}
		if rel, err := db.ReleaseHold(ctx, Hold{Reason: SuppressedSilence, By: "s1"}, ReleasedSilenceEnded, t0); err != nil || len(rel) != 0 {
			t.Fatalf("a second release = %+v %v", rel, err)
		}

		// Released, then kept back again by another holder: the mark goes,
		// so that holder's end releases it in turn.
		if err := db.RecordOutcomes(ctx, []Outcome{{ID: a, Status: EventSuppressed, From: EventQueued, At: t0, OrgID: "acme", TeamNodeID: "sre",
			SuppressedReason: SuppressedHeld, SuppressedBy: "business-hours"}}, nil, nil); err != nil {
			t.Fatal(err)
		}
		if e, err := db.GetEvent(ctx, a); err != nil || e.Status != EventSuppressed || e.ReleasedBy != "" || e.SuppressedBy != "business-hours" {
			t.Fatalf("kept back again = %+v %v", e, err)
		}
		rel, err := other.ReleaseHold(ctx, Hold{Reason: SuppressedHeld, By: "business-hours"}, ReleasedIntervalOpened+":business-hours", t0)
		if err != nil || len(rel) != 2 {
			t.Fatalf("the interval opened: released %+v %v, want a and c", rel, err)
		}
	})
}

// BenchmarkReleaseHold ends a silence that kept back 10,000 firing alerts
// (a storm during a maintenance window), on SQLite and on PostgreSQL when
// one is configured: the pass that finds the hold and queues each event
// again once, as the release pass does when the silence ends. Run with
// ORCHESTRATOR_TEST_REQUIRE_POSTGRES=1 for both.
func BenchmarkReleaseHold(b *testing.B) {
	const n = 10_000
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			o := Options{Path: b.TempDir() + "/r.db"}
			if name == "postgres" {
				url := pgtest.Database(b)
				if url == "" {
					b.Skip("no PostgreSQL")
				}
				o = Options{URL: url}
			}
			db := openMigrated(b, o)
			ctx := context.Background()
			for b.Loop() {
				b.StopTimer()
				by := fmt.Sprint("s-", b.N, "-", time.Now().UnixNano())
				ids := make([]string, 0, n)
				for i := range n {
					res, err := db.InsertEvent(ctx, Event{Source: "alertmanager", DeliveryID: fmt.Sprint(by, "-", i), EventType: "alertmanager.firing",
						Status: EventQueued, OrgID: "acme", TeamNodeID: "sre", ReceivedAt: t0, AlertKey: fmt.Sprint(by, "-k-", i), AlertState: AlertStateFiring})
					if err != nil {
						b.Fatal(err)
					}
					ids = append(ids, res.ID)
				}
				outs := make([]Outcome, 0, n)
				for _, id := range ids {
					outs = append(outs, Outcome{ID: id, Status: EventSuppressed, From: EventQueued, At: t0, OrgID: "acme", TeamNodeID: "sre",
						SuppressedReason: SuppressedSilence, SuppressedBy: by})
				}
				if err := db.RecordOutcomes(ctx, outs, nil, nil); err != nil {
					b.Fatal(err)
				}
				if db.Shared() {
					// As autovacuum leaves it by the time a silence ends
					// (minutes after the storm): without statistics taken
					// after the storm, PostgreSQL may plan the newest-event
					// check as a scan per event (20-47 s here for 10,000).
					if _, err := db.write.ExecContext(ctx, `ANALYZE`); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				began := time.Now()
				holds, err := db.Holds(ctx)
				if err != nil || len(holds) != 1 {
					b.Fatalf("holds = %+v %v", holds, err)
				}
				rel, err := db.ReleaseHold(ctx, holds[0], ReleasedSilenceEnded, t0)
				if err != nil || len(rel) != n {
					b.Fatalf("released %d of %d: %v", len(rel), n, err)
				}
				b.Logf("%s: the hold found and %d events released in %s", name, n, time.Since(began).Round(time.Millisecond))
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/10k-release")
		})
	}
}

package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestNoise_SettleAndBulkRedriveOnBothDatabases: a resolve settles exactly
// its alert's waiting firing events — not a claimed one, not another
// alert's, not a redriven one — and is itself suppressed only when no
// firing reached the agent; a bulk redrive takes at most RedriveLimit.
func TestNoise_SettleAndBulkRedriveOnBothDatabases(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db, _ := b.open(t)
			ctx := context.Background()
			now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
			insert := func(delivery, key, state string) string {
				t.Helper()
				res, err := db.InsertEvent(ctx, Event{Source: "pagerduty", DeliveryID: delivery, EventType: "incident." + state, Status: EventQueued,
					OrgID: "o", TeamNodeID: "t", ReceivedAt: now, AlertKey: key, AlertState: state})
				if err != nil {
					t.Fatal(err)
				}
				return res.ID
			}
			waiting := insert("f1", "K", AlertStateFiring)
			waiting2 := insert("f2", "K", AlertStateFiring)
			other := insert("f3", "OTHER", AlertStateFiring)
			res, err := db.InsertEvent(ctx, Event{Source: "pagerduty", DeliveryID: "r1", EventType: "incident.resolved", Status: EventQueued,
				OrgID: "o", TeamNodeID: "t", ReceivedAt: now, AlertKey: "K", AlertState: AlertStateResolved})
			if err != nil || res.Settled != 2 || !res.Suppressed {
				t.Fatalf("resolve = %+v %v", res, err)
			}
			for _, id := range []string{waiting, waiting2, res.ID} {
				ev, _ := db.GetEvent(ctx, id)
				if ev.Status != EventSuppressed || ev.SuppressedReason != SuppressedResolved || ev.FinishedAt == nil {
					t.Fatalf("event %s = %s %s", id, ev.Status, ev.SuppressedReason)
				}
			}
			if ev, _ := db.GetEvent(ctx, other); ev.Status != EventQueued {
				t.Fatalf("another alert's firing = %s", ev.Status)
			}
			// A claimed firing is being delivered: its resolve goes too.
			claimedID := insert("f4", "C", AlertStateFiring)
			got, err := db.ClaimTeamEvents(ctx, now, now.Add(time.Minute), TeamKey{OrgID: "o", TeamNodeID: "t"}, Kind{Sources: []string{"pagerduty"}}, 10)
			if err != nil || len(got) != 2 { // other and f4
				t.Fatalf("claimed %d %v", len(got), err)
			}
			res, err = db.InsertEvent(ctx, Event{Source: "pagerduty", DeliveryID: "r2", EventType: "incident.resolved", Status: EventQueued,
				OrgID: "o", TeamNodeID: "t", ReceivedAt: now, AlertKey: "C", AlertState: AlertStateResolved})
			if err != nil || res.Settled != 0 || res.Suppressed {
				t.Fatalf("resolve of a claimed firing = %+v %v", res, err)
			}
			if ev, _ := db.GetEvent(ctx, claimedID); ev.Status != EventDispatching {
				t.Fatalf("the claimed firing = %s", ev.Status)
			}
			// A resolve of an alert nobody heard of here goes to the agent.
			res, _ = db.InsertEvent(ctx, Event{Source: "pagerduty", DeliveryID: "r3", EventType: "incident.resolved", Status: EventQueued,
				ReceivedAt: now, AlertKey: "UNKNOWN", AlertState: AlertStateResolved})
			if res.Suppressed {
				t.Fatal("a resolve of an unknown alert was suppressed")
			}

			// Bulk redrive: RedriveLimit at most per call.
			n := RedriveLimit + 1
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			for w := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < n; i += 16 {
						if _, err := db.InsertEvent(ctx, Event{Source: "github", DeliveryID: fmt.Sprint("dead-", i), EventType: "x", Status: EventQueued,
							OrgID: "o", TeamNodeID: "t", ReceivedAt: now.Add(time.Duration(i) * time.Millisecond), Body: []byte("{}")}); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if _, err := db.write.ExecContext(ctx, `UPDATE orchestrator_webhook_events SET status = ?, next_attempt_at = NULL WHERE source = ?`,
				EventDead, "github"); err != nil {
				t.Fatal(err)
			}
			f := EventFilter{Source: "github", Status: EventDead}
			dry, err := db.RedriveMatching(ctx, f, true, now)
			if err != nil || dry.Matched != n || !dry.More || dry.Redriven != 0 {
				t.Fatalf("dry run = %+v %v", dry, err)
			}
			first, err := db.RedriveMatching(ctx, f, false, now)
			if err != nil || first.Redriven != RedriveLimit || !first.More || first.IDs[0] == "" {
				t.Fatalf("first = %d more %v %v", first.Redriven, first.More, err)
			}
			rest, err := db.RedriveMatching(ctx, f, false, now)
			if err != nil || rest.Redriven != 1 || rest.More {
				t.Fatalf("rest = %d more %v %v", rest.Redriven, rest.More, err)
			}
			last, _ := db.GetEvent(ctx, rest.IDs[0])
			if last.DeliveryID != fmt.Sprint("dead-", n-1) || !last.Solo || last.Status != EventQueued {
				t.Fatalf("the newest is redriven last: %+v", last)
			}
		})
	}
}

// TestSilences_OnBothDatabases: set, list by state, the active set, expire
// once (a second time is a conflict), the audit of both, and retention.
func TestSilences_OnBothDatabases(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db, _ := b.open(t)
			ctx := context.Background()
			now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
			s, err := db.CreateSilence(ctx, Silence{OrgID: "acme", TeamNodeID: "sre", Sources: []string{"pagerduty", "alertmanager"},
				Service: "check*", StartsAt: now, EndsAt: now.Add(2 * time.Hour), Comment: "failover", CreatedBy: "alice", CreatedAt: now})
			if err != nil {
				t.Fatal(err)
			}
			later, err := db.CreateSilence(ctx, Silence{OrgID: "big", StartsAt: now.Add(time.Hour), EndsAt: now.Add(3 * time.Hour),
				Comment: "later", CreatedBy: "bob", CreatedAt: now})
			if err != nil {
				t.Fatal(err)
			}
			active, err := db.ActiveSilences(ctx, now.Add(time.Minute))
			if err != nil || len(active) != 1 || active[0].ID != s.ID || len(active[0].Sources) != 2 || active[0].Service != "check*" {
				t.Fatalf("active = %+v %v", active, err)
			}
			if l, err := db.ListSilences(ctx, "acme", "active", now); err != nil || len(l) != 1 {
				t.Fatalf("acme's = %d %v", len(l), err)
			}
			if _, err := db.ExpireSilence(ctx, s.ID, "carol", now.Add(10*time.Minute)); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExpireSilence(ctx, s.ID, "carol", now.Add(11*time.Minute)); !errors.Is(err, ErrConflict) {
				t.Fatalf("expire twice: %v", err)
			}
			if _, err := db.ExpireSilence(ctx, "nope", "carol", now); !errors.Is(err, ErrNotFound) {
				t.Fatalf("expire unknown: %v", err)
			}
			got, err := db.GetSilence(ctx, s.ID)
			if err != nil || got.ExpiredBy != "carol" || got.ExpiredAt == nil || got.Active(now.Add(20*time.Minute)) {
				t.Fatalf("expired = %+v %v", got, err)
			}
			if l, _ := db.ListSilences(ctx, "", "expired", now.Add(time.Hour)); len(l) != 1 || l[0].ID != s.ID {
				t.Fatalf("expired list = %+v", l)
			}
			if a, err := db.ListAudit(ctx, "acme", 10); err != nil || len(a) != 2 {
				t.Fatalf("audit = %+v %v", a, err)
			}
			// A year on, retention takes the ended silences and the audit.
			n, err := db.PurgeAudit(ctx, now.Add(365*24*time.Hour), 100)
			if err != nil || n != 5 { // 3 audit records, 2 silences
				t.Fatalf("purged %d %v", n, err)
			}
			if _, err := db.GetSilence(ctx, later.ID); !errors.Is(err, ErrNotFound) {
				t.Fatalf("the ended silence is still there: %v", err)
			}
		})
	}
}

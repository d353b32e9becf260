package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// An alert is one team's (SPEC §18, round 4). These cases run on both
// databases.

// routedAs is the router's result for ev: its team found.
func routedAs(ev Event, org, team string, at time.Time) Routed {
	return Routed{Outcome: Outcome{ID: ev.ID, Status: EventQueued, From: EventQueued, OrgID: org, TeamNodeID: team,
		MatchedBy: "service", At: at, NextAttemptAt: at}, Source: ev.Source, AlertKey: ev.AlertKey, AlertState: ev.AlertState, Solo: ev.Solo}
}

// TestAlerts_SettlingAndHistoryAreOneTeamsOnBothDatabases: two orgs' teams
// with the same source and key are two alerts. A resolve routed to one
// team, or to none, settles nothing of the other's; a resolve settles at
// its ack when its team is known, else when the router writes its team;
// a firing routed after its team's resolve is settled by it; a redriven
// resolve settles nothing; the repeat rule's history is the team's own.
func TestAlerts_SettlingAndHistoryAreOneTeamsOnBothDatabases(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		at := t0
		n := 0
		store := func(org, team, key, state string) Event {
			t.Helper()
			n++
			e := Event{Source: "alertmanager", DeliveryID: fmt.Sprint("d-", n), EventType: "alertmanager." + state, Status: EventQueued,
				OrgID: org, TeamNodeID: team, ReceivedAt: at, AlertKey: key, AlertState: state}
			res, err := db.InsertEvent(ctx, e)
			if err != nil {
				t.Fatal(err)
			}
			e.ID = res.ID
			return e
		}
		want := func(ev Event, status, reason, by, org string) {
			t.Helper()
			got, err := db.GetEvent(ctx, ev.ID)
			if err != nil || got.Status != status || got.SuppressedReason != reason || got.SuppressedBy != by || got.OrgID != org {
				t.Fatalf("event %s = %s %q by %q on %q (%v), want %s %q by %q on %q", ev.ID, got.Status, got.SuppressedReason,
					got.SuppressedBy, got.OrgID, err, status, reason, by, org)
			}
		}
		const key = `{}:{alertname="Down"}`
		ours := store("acme", "sre", key, AlertStateFiring)
		theirs := store("big", "intruder", key, AlertStateFiring)
		if res, _ := db.InsertEvent(ctx, Event{Source: "alertmanager", DeliveryID: "unrouted", EventType: "alertmanager.resolved",
			Status: EventQueued, ReceivedAt: at, AlertKey: key, AlertState: AlertStateResolved}); res.Settled != 0 || res.Suppressed {
			t.Fatalf("an unrouted resolve settled at its ack: %+v", res)
		}
		res, err := db.InsertEvent(ctx, Event{Source: "alertmanager", DeliveryID: "theirs-resolve", EventType: "alertmanager.resolved",
			Status: EventQueued, OrgID: "big", TeamNodeID: "intruder", ReceivedAt: at, AlertKey: key, AlertState: AlertStateResolved})
		if err != nil || res.Settled != 1 || !res.Suppressed {
			t.Fatalf("big's resolve = %+v %v", res, err)
		}
		want(theirs, EventSuppressed, SuppressedResolved, res.ID, "big")
		want(ours, EventQueued, "", "", "acme")
		// Another team of the same org is another alert too.
		sibling := store("acme", "dba", key, AlertStateResolved)
		want(ours, EventQueued, "", "", "acme")
		want(sibling, EventQueued, "", "", "acme")

		// A resolve stored before its team was known settles when the
		// router writes its team, in the same transaction.
		flap := store("acme", "sre", "flap", AlertStateFiring)
		late := store("", "", "flap", AlertStateResolved)
		settled, err := db.RecordRoutes(ctx, []Routed{routedAs(late, "acme", "sre", at)})
		if err != nil || settled["alertmanager"] != 2 {
			t.Fatalf("routing the resolve settled %v (%v)", settled, err)
		}
		want(flap, EventSuppressed, SuppressedResolved, late.ID, "acme")
		want(late, EventSuppressed, SuppressedResolved, flap.ID, "acme")

		// A firing routed after its team's resolve (it waited for its
		// lookup) is settled by that resolve; the resolve, whose alert the
		// agent never heard of, too.
		held := store("", "", "held", AlertStateFiring)
		closing := store("acme", "sre", "held", AlertStateResolved)
		want(closing, EventQueued, "", "", "acme")
		if settled, err := db.RecordRoutes(ctx, []Routed{routedAs(held, "acme", "sre", at)}); err != nil || settled["alertmanager"] != 2 {
			t.Fatalf("routing the firing settled %v (%v)", settled, err)
		}
		want(held, EventSuppressed, SuppressedResolved, closing.ID, "acme")
		want(closing, EventSuppressed, SuppressedResolved, held.ID, "acme")
		// Routed to another team, it would have stayed.
		elsewhere := store("", "", "held2", AlertStateFiring)
		store("acme", "sre", "held2", AlertStateResolved)
		if settled, err := db.RecordRoutes(ctx, []Routed{routedAs(elsewhere, "big", "intruder", at)}); err != nil || len(settled) != 0 {
			t.Fatalf("routing another team's firing settled %v (%v)", settled, err)
		}
		want(elsewhere, EventQueued, "", "", "big")

		// A redriven resolve goes past noise control: it settles nothing.
		waiting := store("acme", "sre", "redriven", AlertStateFiring)
		redriven := store("", "", "redriven", AlertStateResolved)
		r := routedAs(redriven, "acme", "sre", at)
		r.Solo = true
		if settled, err := db.RecordRoutes(ctx, []Routed{r}); err != nil || len(settled) != 0 {
			t.Fatalf("a redriven resolve settled %v (%v)", settled, err)
		}
		want(waiting, EventQueued, "", "", "acme")

		// The repeat rule reads the team's own deliveries.
		delivered := store("big", "intruder", "repeat", AlertStateFiring)
		if err := db.RecordOutcomes(ctx, []Outcome{{ID: delivered.ID, Status: EventDelivered, At: at, From: EventQueued}}, nil, nil); err != nil {
			t.Fatal(err)
		}
		later := store("acme", "sre", "repeat", AlertStateFiring)
		var key2 int64
		fmt.Sscan(later.ID, &key2)
		if h, err := db.AlertHistoryOf(ctx, AlertRef{OrgID: "acme", TeamNodeID: "sre", Source: "alertmanager", Key: "repeat"}, key2); err != nil || h.Delivered != "" {
			t.Fatalf("acme's history = %+v %v: another org's delivery", h, err)
		}
		if h, err := db.AlertHistoryOf(ctx, AlertRef{OrgID: "big", TeamNodeID: "intruder", Source: "alertmanager", Key: "repeat"}, key2); err != nil || h.Delivered != delivered.ID {
			t.Fatalf("big's history = %+v %v", h, err)
		}
	})
}

// TestAlerts_ReplicasRoutingAFiringAndItsResolveAtOnceAgree: two replicas
// (two store handles on one PostgreSQL; on SQLite, the one writer) route a
// firing and its resolve at the same moment, for 100 alerts. Whichever
// commits last sees the other's team: every firing ends settled by its
// resolve, never left queued to reach the agent. On PostgreSQL each
// alert's settling takes an advisory lock first; without it both
// transactions miss each other.
func TestAlerts_ReplicasRoutingAFiringAndItsResolveAtOnceAgree(t *testing.T) {
	replicas(t, func(t *testing.T, one, other *DB, _ string) {
		ctx := context.Background()
		const n = 100
		firings, resolves := make([]Event, n), make([]Event, n)
		for i := range n {
			for j, state := range []string{AlertStateFiring, AlertStateResolved} {
				e := Event{Source: "pagerduty", DeliveryID: fmt.Sprint(state, i), EventType: "incident." + state, Status: EventQueued,
					ReceivedAt: t0, AlertKey: fmt.Sprint("INC-", i), AlertState: state}
				res, err := one.InsertEvent(ctx, e)
				if err != nil {
					t.Fatal(err)
				}
				e.ID = res.ID
				if j == 0 {
					firings[i] = e
				} else {
					resolves[i] = e
				}
			}
		}
		var wg sync.WaitGroup
		errs := make(chan error, 2*n)
		for i := range n {
			for _, job := range []struct {
				db *DB
				ev Event
			}{{one, firings[i]}, {other, resolves[i]}} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := job.db.RecordRoutes(ctx, []Routed{routedAs(job.ev, "acme", "sre", t0)}); err != nil {
						errs <- err
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for i := range n {
			f, _ := one.GetEvent(ctx, firings[i].ID)
			r, _ := one.GetEvent(ctx, resolves[i].ID)
			if f.Status != EventSuppressed || f.SuppressedBy != r.ID || r.Status != EventSuppressed || r.SuppressedBy != f.ID {
				t.Fatalf("alert %d: firing %s by %q, resolve %s by %q", i, f.Status, f.SuppressedBy, r.Status, r.SuppressedBy)
			}
		}
	})
}

package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestSettle_KeptBackResolvesOnBothDatabases (SPEC §21): an alert's firing
// events kept back — inhibited, silenced (or muted), held — when the
// alert resolves take the reason resolved, suppressed_by the resolve,
// whether the resolve settles at its ack or when the router writes its
// team; what held each stays in its last_error; the settle count (what
// orchestrator_suppressed_total adds) does not count them again; the
// release pass then never queues them. Another reason (repeat), another
// alert, another team's alert of the same key and a released event (queued
// again) are not kept back by this.
func TestSettle_KeptBackResolvesOnBothDatabases(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		n := 0
		put := func(org, team, key, state, labels string) Event {
			t.Helper()
			n++
			e := Event{Source: "alertmanager", DeliveryID: fmt.Sprint("k-", n), EventType: "alertmanager." + state, Status: EventQueued,
				OrgID: org, TeamNodeID: team, ReceivedAt: t0, AlertKey: key, AlertState: state, AlertLabels: labels}
			res, err := db.InsertEvent(ctx, e)
			if err != nil {
				t.Fatal(err)
			}
			e.ID = res.ID
			return e
		}
		keep := func(e Event, reason, by, why string) {
			t.Helper()
			if err := db.RecordOutcomes(ctx, []Outcome{{ID: e.ID, Status: EventSuppressed, From: EventQueued, At: t0, OrgID: e.OrgID,
				TeamNodeID: e.TeamNodeID, SuppressedReason: reason, SuppressedBy: by, LastError: "suppressed: " + why}}, nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		source := put("acme", "sre", "node-n1", AlertStateFiring, `{"alertname":"NodeDown","node":"n1"}`)
		const pod = `{"alertname":"PodCrashLooping","node":"n1"}`
		inhibited := put("acme", "sre", "pod-a", AlertStateFiring, pod)
		keep(inhibited, SuppressedInhibited, source.ID, "inhibited by event "+source.ID+` (node="n1") under rule 1 while it fires`)
		silenced := put("acme", "sre", "pod-a", AlertStateFiring, pod)
		keep(silenced, SuppressedSilence, "sil-1", "silence sil-1 (failover)")
		held := put("acme", "sre", "pod-a", AlertStateFiring, pod)
		keep(held, SuppressedHeld, "business-hours", "outside business-hours")
		repeat := put("acme", "sre", "pod-a", AlertStateFiring, pod)
		keep(repeat, SuppressedRepeat, inhibited.ID, "a repeat")
		otherAlert := put("acme", "sre", "pod-b", AlertStateFiring, pod)
		keep(otherAlert, SuppressedInhibited, source.ID, "inhibited")
		otherTeam := put("acme", "dba", "pod-a", AlertStateFiring, pod)
		keep(otherTeam, SuppressedInhibited, source.ID, "inhibited")
		before, _ := db.GetEvent(ctx, inhibited.ID)

		resolve := put("acme", "sre", "pod-a", AlertStateResolved, "")
		want := func(e Event, status, reason, by, why string) {
			t.Helper()
			got, err := db.GetEvent(ctx, e.ID)
			if err != nil || got.Status != status || got.SuppressedReason != reason || got.SuppressedBy != by || !strings.Contains(got.LastError, why) {
				t.Fatalf("event %s = %s %q by %q (%q, %v), want %s %q by %q with %q", e.ID, got.Status, got.SuppressedReason, got.SuppressedBy,
					got.LastError, err, status, reason, by, why)
			}
		}
		want(inhibited, EventSuppressed, SuppressedResolved, resolve.ID,
			"suppressed: resolved by event "+resolve.ID+" while kept back (inhibited: inhibited by event "+source.ID+` (node="n1") under rule 1 while it fires)`)
		want(silenced, EventSuppressed, SuppressedResolved, resolve.ID, "while kept back (silence: silence sil-1 (failover))")
		want(held, EventSuppressed, SuppressedResolved, resolve.ID, "while kept back (held: outside business-hours)")
		want(repeat, EventSuppressed, SuppressedRepeat, inhibited.ID, "suppressed: a repeat")
		want(otherAlert, EventSuppressed, SuppressedInhibited, source.ID, "suppressed: inhibited")
		want(otherTeam, EventSuppressed, SuppressedInhibited, source.ID, "suppressed: inhibited")
		// No firing of the alert reached the agent: the resolve is
		// suppressed too, naming the newest firing (as before).
		want(resolve, EventSuppressed, SuppressedResolved, repeat.ID, "")
		if after, _ := db.GetEvent(ctx, inhibited.ID); after.FinishedAt == nil || before.FinishedAt == nil || !after.FinishedAt.Equal(*before.FinishedAt) {
			t.Fatalf("finished_at %v, was %v", after.FinishedAt, before.FinishedAt)
		}

		// The inhibitor resolves: pod-b is released, pod-a (resolved) not.
		put("acme", "sre", "node-n1", AlertStateResolved, "")
		rel, err := db.ReleaseInhibited(ctx, t0)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range rel {
			ids = append(ids, r.ID)
		}
		if strings.Join(ids, ",") != otherAlert.ID+","+otherTeam.ID && strings.Join(ids, ",") != otherTeam.ID+","+otherAlert.ID {
			t.Fatalf("released %v, want %s and %s", ids, otherAlert.ID, otherTeam.ID)
		}
		want(inhibited, EventSuppressed, SuppressedResolved, resolve.ID, "")

		// The settle count: the resolve of an alert with one waiting firing
		// and one inhibited counts the waiting one alone.
		waiting := put("acme", "sre", "pod-c", AlertStateFiring, pod)
		kept := put("acme", "sre", "pod-c", AlertStateFiring, pod)
		keep(kept, SuppressedInhibited, source.ID, "inhibited")
		r, err := db.InsertEvent(ctx, Event{Source: "alertmanager", DeliveryID: "pod-c-resolved", EventType: "alertmanager.resolved",
			Status: EventQueued, OrgID: "acme", TeamNodeID: "sre", ReceivedAt: t0, AlertKey: "pod-c", AlertState: AlertStateResolved})
		if err != nil || r.Settled != 1 || !r.Suppressed {
			t.Fatalf("pod-c's resolve = %+v %v, want 1 settled", r, err)
		}
		want(waiting, EventSuppressed, SuppressedResolved, r.ID, "")
		want(kept, EventSuppressed, SuppressedResolved, r.ID, "while kept back (inhibited: inhibited)")

		// A resolve stored before its team was known settles the kept-back
		// events when the router writes its team; the count is the
		// resolve's own suppression alone.
		late := put("acme", "sre", "pod-d", AlertStateFiring, pod)
		keep(late, SuppressedInhibited, source.ID, "inhibited")
		unrouted := put("", "", "pod-d", AlertStateResolved, "")
		settled, err := db.RecordRoutes(ctx, []Routed{routedAs(unrouted, "acme", "sre", t0)})
		if err != nil || settled["alertmanager"] != 1 {
			t.Fatalf("routing the resolve settled %v (%v), want 1 (the resolve)", settled, err)
		}
		want(late, EventSuppressed, SuppressedResolved, unrouted.ID, "while kept back (inhibited: inhibited)")
		want(unrouted, EventSuppressed, SuppressedResolved, late.ID, "")
	})
}

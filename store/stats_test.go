package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestHistogram_QuantilesAreBucketBounds(t *testing.T) {
	h := NewHistogram([]time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond})
	if _, _, ok := h.Quantile(0.5); ok {
		t.Fatal("an empty histogram has a quantile")
	}
	for range 90 {
		h.Observe(500 * time.Microsecond)
	}
	for range 9 {
		h.Observe(50 * time.Millisecond)
	}
	h.Observe(time.Second)
	for _, c := range []struct {
		q    float64
		want time.Duration
		over bool
	}{{0.5, time.Millisecond, false}, {0.9, time.Millisecond, false}, {0.95, 100 * time.Millisecond, false},
		{0.99, 100 * time.Millisecond, false}, {1, 100 * time.Millisecond, true}} {
		if d, over, ok := h.Quantile(c.q); !ok || d != c.want || over != c.over {
			t.Errorf("q%.2f = %v over=%v; want %v over=%v", c.q, d, over, c.want, c.over)
		}
	}
	// A value on a bound counts above it.
	g := NewHistogram([]time.Duration{time.Millisecond})
	g.Observe(time.Millisecond)
	if g.Counts[1] != 1 {
		t.Fatalf("counts %v", g.Counts)
	}
}

// The page's figures on both databases: events per source and hour, per
// team and status, ack latency rows, ack→agent latency through lone calls
// and digests, and the teams with their latest run.
func TestConformance_PageStatistics(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		since := t0.Add(-24 * time.Hour)
		// Outside the window: before it and at its end.
		routed(t, db, "o", "t", "github", 1, since.Add(-time.Second))
		routed(t, db, "o", "t", "github", 1, t0)
		// Hour 0 and hour 23; another org; an unrouted event.
		pd := routed(t, db, "o", "t", "pagerduty", 3, since)
		routed(t, db, "o", "t2", "pagerduty", 2, t0.Add(-time.Minute))
		routed(t, db, "p", "u", "slack", 4, t0.Add(-90*time.Minute))
		un, _ := db.InsertEvent(ctx, newEvent("coralogix", "c1", t0.Add(-time.Hour)))
		w := Window{Since: since, Until: t0, Slots: 24}
		got, err := db.EventsPerSlot(ctx, w, "")
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(got, func(a, b SlotCount) int { return a.Slot*10 + len(a.Source) - b.Slot*10 - len(b.Source) })
		want := []SlotCount{{"pagerduty", 0, 3}, {"slack", 22, 4}, {"coralogix", 23, 1}, {"pagerduty", 23, 2}}
		if !slices.Equal(got, want) {
			t.Fatalf("per slot = %v; want %v", got, want)
		}
		if got, _ := db.EventsPerSlot(ctx, w, "p"); !slices.Equal(got, []SlotCount{{"slack", 22, 4}}) {
			t.Fatalf("org p per slot = %v", got)
		}
		st, err := db.EventStatuses(ctx, since, t0, "")
		if err != nil {
			t.Fatal(err)
		}
		per := map[string]int{}
		for _, c := range st {
			per[c.OrgID+"/"+c.TeamNodeID+"/"+c.Status] += c.Count
		}
		if len(st) != 4 || per["//queued"] != 1 || per["o/t/queued"] != 3 || per["o/t2/queued"] != 2 || per["p/u/queued"] != 4 {
			t.Fatalf("statuses = %+v (unrouted %s)", st, un.ID)
		}

		// Ack latency rows: in the window only.
		c1, c2 := make([]int64, len(AckBuckets)+1), make([]int64, len(AckBuckets)+1)
		c1[0], c1[3], c2[3], c2[len(AckBuckets)] = 5, 1, 2, 1
		if err := db.AddAckStats(ctx, []AckStat{{ID: uuid.NewString(), Source: "slack", At: t0.Add(-time.Hour), Counts: c1},
			{ID: uuid.NewString(), Source: "github", At: t0.Add(-time.Minute), Counts: c2},
			{ID: uuid.NewString(), Source: "github", At: since.Add(-time.Minute), Counts: c2}}); err != nil {
			t.Fatal(err)
		}
		ack, err := db.AckLatency(ctx, since, t0)
		if err != nil || ack.Total() != 9 || ack.Counts[3] != 3 || ack.Counts[len(AckBuckets)] != 1 {
			t.Fatalf("ack = %v %v", ack, err)
		}
		if n, err := db.PurgeAckStats(ctx, since); err != nil || n != 1 {
			t.Fatalf("purged %d %v", n, err)
		}

		// Ack→agent: three pagerduty events in a digest started 40 s after
		// the first arrived; a lone event retried (a failed call, then one
		// 3 s after arrival); an event not delivered counts not.
		digest := AgentRun{ID: uuid.NewString(), TriggerSource: "pagerduty", OrgID: "o", TeamNodeID: "t", AgentName: "a",
			Status: "succeeded", StartedAt: since.Add(40 * time.Second), Duration: time.Second, EventCount: 3}
		slack := routed(t, db, "o", "t", "slack", 2, t0.Add(-2*time.Hour))
		failed := AgentRun{ID: uuid.NewString(), TriggerSource: "slack", WebhookEventID: slack[0], OrgID: "o", TeamNodeID: "t",
			AgentName: "a", Status: "failed", StartedAt: t0.Add(-2*time.Hour + 100*time.Millisecond)}
		lone := AgentRun{ID: uuid.NewString(), TriggerSource: "slack", WebhookEventID: slack[0], OrgID: "o", TeamNodeID: "t",
			AgentName: "a", Status: "succeeded", StartedAt: t0.Add(-2*time.Hour + 3*time.Second)}
		var outs []Outcome
		for _, id := range pd {
			outs = append(outs, Outcome{ID: id, Status: EventDelivered, At: digest.StartedAt, From: EventQueued, DigestRunID: digest.ID, DigestSize: 3})
		}
		outs = append(outs, Outcome{ID: slack[0], Status: EventDelivered, At: lone.StartedAt, From: EventQueued})
		if err := db.RecordOutcomes(ctx, outs, []AgentRun{digest, failed, lone}, nil); err != nil {
			t.Fatal(err)
		}
		lat, err := db.AgentLatency(ctx, since, t0, "")
		if err != nil {
			t.Fatal(err)
		}
		// 3 s lands below 5 s (bucket 5); the digest's 40 s, 39.999 s and
		// 39.998 s below 1 min (bucket 8).
		if lat.Total() != 4 || lat.Counts[5] != 1 || lat.Counts[8] != 3 {
			t.Fatalf("ack→agent = %v", lat.Counts)
		}
		if other, _ := db.AgentLatency(ctx, since, t0, "p"); other.Total() != 0 {
			t.Fatalf("org p ack→agent = %v", other.Counts)
		}

		// Teams: every team with a run here or a routed event, each with
		// its latest run and whether it was provisioned here (a run that
		// succeeded: one refused with 409 routing_conflict, or still
		// running, provisioned nothing).
		run := func(kind, org, team string, at time.Time, status string) Run {
			r := Run{ID: uuid.NewString(), Kind: kind, OrgID: org, TeamNodeID: team, Status: status, CreatedAt: at, UpdatedAt: at}
			if _, err := db.StartRun(ctx, r, at); err != nil {
				t.Fatal(err)
			}
			return r
		}
		run(RunKindProvision, "o", "t", t0.Add(-3*time.Hour), RunFailed)
		run(RunKindProvision, "o", "t", t0.Add(-2*time.Hour), RunSucceeded)
		last := run(RunKindDeprovision, "o", "t", t0.Add(-time.Hour), RunSucceeded)
		run(RunKindDeprovision, "o", "never", t0, RunSucceeded)
		other := run(RunKindProvision, "p", "u", t0, RunRunning)
		run(RunKindProvision, "o", "refused", t0, RunFailed)
		teams, err := db.Teams(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		var listed []string
		for _, tm := range teams {
			listed = append(listed, fmt.Sprintf("%s/%s provisioned=%v last=%v", tm.OrgID, tm.TeamNodeID, tm.Provisioned(), tm.Last.ID != ""))
		}
		if want := []string{"o/never provisioned=false last=true", "o/refused provisioned=false last=true", "o/t provisioned=true last=true",
			"o/t2 provisioned=false last=false", "p/u provisioned=false last=true"}; !slices.Equal(listed, want) {
			t.Fatalf("teams = %v, want %v", listed, want)
		}
		if teams[2].Last.ID != last.ID || !teams[2].FirstProvisioned.Equal(t0.Add(-2*time.Hour)) || teams[4].Last.ID != other.ID {
			t.Fatalf("teams = %+v", teams)
		}
		if only, err := db.Teams(ctx, "p"); err != nil || len(only) != 1 || only[0].TeamNodeID != "u" {
			t.Fatalf("org p teams = %+v %v", only, err)
		}
		if only, err := db.Teams(ctx, "o"); err != nil || len(only) != 4 || only[3].TeamNodeID != "t2" {
			t.Fatalf("org o teams = %+v %v", only, err)
		}
	})
}

package dispatch

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/migrations"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/prometheus/client_golang/prometheus"
)

// A team's budget is the team's, however the queue scan describes it: the
// TeamKey of each scan carries the oldest due time, which moves as events
// are claimed. Keying the buckets by the whole TeamKey gave every scan a
// fresh, full bucket — the team limit did not hold under live traffic
// (a benchmark delivered 243 Slack mentions of one team within seconds at
// 60 a minute).
func TestTeamBudget_HoldsAcrossScansOfTheSameTeam(t *testing.T) {
	db, err := store.Open(context.Background(), store.Options{Path: filepath.Join(t.TempDir(), "d.db"), Migrations: migrations.FS})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	reg, err := webhook.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Options{Store: db, Sources: reg, Config: peers.NewConfigService(peers.Options{BaseURL: "http://127.0.0.1:1"}),
		Agent: peers.NewAgent(peers.Options{BaseURL: "http://127.0.0.1:1"}), TeamPerMinute: 6,
		Registry: prometheus.NewRegistry(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	first := store.TeamKey{OrgID: "acme", TeamNodeID: "sre", OldestDue: now.Add(-time.Minute)}
	if got, _, err := d.take(first, 6, now); err != nil || got != 6 {
		t.Fatalf("first scan granted %d (%v), want the burst of 6", got, err)
	}
	later := store.TeamKey{OrgID: "acme", TeamNodeID: "sre", OldestDue: now.Add(-time.Second)}
	if got, wait, err := d.take(later, 6, now); err != nil || got != 0 || wait <= 0 {
		t.Fatalf("a later scan of the same team granted %d (wait %s, %v), want 0: the budget is spent", got, wait, err)
	}
	// A call that found no event gives its grant back to the same bucket.
	if err := d.give(later, 1, now); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := d.take(first, 6, now); got != 1 {
		t.Fatalf("after one grant returned, %d granted, want 1", got)
	}
}

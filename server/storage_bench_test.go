package server_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// BenchmarkBytesPerStoredEvent measures what a stored event costs in the
// SQLite file (SPEC §16 sizing): signed Slack samples (real headers,
// redacted) go through the door into a real file and are delivered (each
// with its agent call's row); then the database's size is divided by the
// events, with their bodies and after the bodies are purged. The figures size the volume:
// docs/backups.md and the chart's persistence.size comment use them.
func BenchmarkBytesPerStoredEvent(b *testing.B) {
	const n = 20000
	// Dispatch runs: a delivered event also costs its agent call's row.
	e := newEnv(b, envOptions{webhooks: true, backups: true, workers: 8, teamPerMinute: 1_000_000}) // the limit would pace 20,000 mentions of one team over hours
	ctx := context.Background()
	before, err := e.db.UsedBytes(ctx)
	if err != nil {
		b.Fatal(err)
	}
	now := wallclock.Now()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				body, h := signed(webhook.Slack, fmt.Sprintf("size-%06d", i), slackSecret, now)
				if r := e.send(webhook.Slack, body, h); r.code != 200 {
					b.Errorf("send = %d %s", r.code, r.raw)
					return
				}
			}
		}()
	}
	wg.Wait()
	for {
		if depth, err := e.db.QueueDepth(ctx, ""); err != nil || depth == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Pages in use in the live file, and the compacted size a snapshot
	// writes (VACUUM INTO), each with the bodies and after their purge.
	snap := func(name string) float64 {
		info, err := e.db.Snapshot(ctx, e.dataDir+"/"+name)
		if err != nil {
			b.Fatal(err)
		}
		return float64(info.Size)
	}
	with, err := e.db.UsedBytes(ctx)
	if err != nil {
		b.Fatal(err)
	}
	snapWith := snap("with.db")
	if _, err := e.db.PurgeBodies(ctx, wallclock.Now().Add(time.Hour), wallclock.Now(), 1<<30); err != nil {
		b.Fatal(err)
	}
	without, err := e.db.UsedBytes(ctx)
	if err != nil {
		b.Fatal(err)
	}
	snapWithout := snap("without.db")
	// The events table with its indexes alone (issue 27's measure), and
	// the agent calls' rows, in each compacted copy.
	for _, c := range []struct{ name, file string }{{"with its body", "with.db"}, {"after the purge", "without.db"}} {
		space, err := store.SpaceByTable(ctx, e.dataDir+"/"+c.file)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Printf("storage: compacted, %s: events table and its indexes %.0f bytes per event, agent calls %.0f, everything else %.0f\n",
			c.name, float64(space["orchestrator_webhook_events"])/n, float64(space["orchestrator_agent_runs"])/n,
			float64(space[""]-space["orchestrator_webhook_events"]-space["orchestrator_agent_runs"])/n)
		if c.file == "with.db" {
			b.ReportMetric(float64(space["orchestrator_webhook_events"])/n, "events_table_bytes/event")
		} else {
			b.ReportMetric(float64(space["orchestrator_webhook_events"])/n, "events_table_bytes/event_purged")
		}
	}
	perWith, perWithout := float64(with-before)/n, float64(without-before)/n
	cWith, cWithout := snapWith/n, snapWithout/n
	fmt.Printf("storage: %d Slack events (%d-byte sample bodies), live file: %.0f bytes per event with its body, %.0f after the purge (its pages stay in use until rows go)\n",
		n, len(webhook.Sample(webhook.Slack, "size-000000", now)), perWith, perWithout)
	fmt.Printf("storage: compacted (a snapshot): %.0f bytes per event with its body, %.0f after the purge\n", cWith, cWithout)
	// The volume for N events a day at the defaults: the live file holds 30
	// days of events (7 with bodies); 7 scheduled and at most 5 manual
	// snapshots hold compacted copies; 10 % of the volume stays free.
	for _, perDay := range []int{1000, 10000, 100000} {
		live := float64(perDay) * 30 * perWith
		copyOf := float64(perDay) * (7*cWith + 23*cWithout)
		fmt.Printf("storage: %d events a day → database about %.0f MB, each snapshot about %.0f MB, volume needed about %.1f GB\n",
			perDay, live/1e6, copyOf/1e6, (live+12*copyOf)/0.9/1e9)
	}
	b.ReportMetric(cWith, "bytes/event")
	b.ReportMetric(cWithout, "bytes/event_purged")
}

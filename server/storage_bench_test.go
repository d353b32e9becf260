package server_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/retention"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// BenchmarkBytesPerStoredEvent measures what a stored event costs (SPEC §16
// sizing): signed Slack samples (real headers, redacted) go through the
// door into a real SQLite file and are delivered (each with its agent
// call's row); then the database is measured with the bodies and after
// the retention chore purged them. The figures that size the volume are
// the LIVE file's — the pages in use after a checkpoint, without a VACUUM
// (page_count - freelist_count), as a running appliance holds them —
// beside the compacted ones a snapshot writes. docs/backups.md, the README
// and the chart's persistence.size comment use them.
func BenchmarkBytesPerStoredEvent(b *testing.B) {
	const n = 20000
	// Dispatch runs: a delivered event also costs its agent call's row.
	e := newEnv(b, envOptions{webhooks: true, backups: true, workers: 8, teamPerMinute: 1_000_000}) // the limit would pace 20,000 mentions of one team over hours
	ctx := context.Background()
	if err := e.db.GiveSpaceBack(ctx); err != nil {
		b.Fatal(err)
	}
	before, err := e.db.UsedBytes(ctx)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
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
	dbPath := e.db.Path()
	// live measures the live file after a checkpoint: its pages in use,
	// the events' share of them (the events table, the payloads and their
	// indexes), and the file on disk.
	type figures struct{ used, events, agent, file float64 }
	live := func() figures {
		if err := e.db.GiveSpaceBack(ctx); err != nil { // incremental vacuum, then the WAL checkpointed and truncated
			b.Fatal(err)
		}
		used, err := e.db.UsedBytes(ctx)
		if err != nil {
			b.Fatal(err)
		}
		space, err := store.SpaceByTable(ctx, dbPath)
		if err != nil {
			b.Fatal(err)
		}
		return figures{used: float64(used - before), file: float64(e.db.FileBytes()),
			events: float64(space["orchestrator_webhook_events"] + space["orchestrator_event_payloads"]),
			agent:  float64(space["orchestrator_agent_runs"])}
	}
	compacted := func(name string) figures {
		info, err := e.db.Snapshot(ctx, e.dataDir+"/"+name)
		if err != nil {
			b.Fatal(err)
		}
		space, err := store.SpaceByTable(ctx, e.dataDir+"/"+name)
		if err != nil {
			b.Fatal(err)
		}
		return figures{used: float64(info.Size), file: float64(info.Size),
			events: float64(space["orchestrator_webhook_events"] + space["orchestrator_event_payloads"]),
			agent:  float64(space["orchestrator_agent_runs"])}
	}
	with, cWith := live(), compacted("with.db")
	// The retention chore's body purge, as it runs: small batches, then
	// the space given back.
	chore, err := retention.New(retention.Options{Store: e.db, Bodies: time.Nanosecond, Events: 30 * 24 * time.Hour,
		Audit: 400 * 24 * time.Hour, Now: func() time.Time { return time.Now().Add(time.Hour) }})
	if err != nil {
		b.Fatal(err)
	}
	if rep, err := chore.Once(ctx); err != nil || rep.Bodies != n {
		b.Fatalf("the body purge: %+v %v", rep, err)
	}
	without, cWithout := live(), compacted("without.db")
	per := func(v float64) float64 { return v / n }
	fmt.Printf("storage: %d Slack events (%d-byte sample bodies), each delivered with its agent call\n",
		n, len(webhook.Sample(webhook.Slack, "size-000000", now)))
	fmt.Printf("storage: LIVE file (pages in use after a checkpoint, no VACUUM): events table, payloads and their indexes %.0f bytes per event with its body, %.0f after the purge (goals 800 and 300); agent calls %.0f; the whole file %.0f and %.0f\n",
		per(with.events), per(without.events), per(with.agent), per(with.used), per(without.used))
	fmt.Printf("storage: the file on disk after the retention pass (incremental vacuum, WAL truncated): %.1f MB with the bodies, %.1f MB after the purge\n",
		with.file/1e6, without.file/1e6)
	fmt.Printf("storage: compacted (a snapshot): events table, payloads and their indexes %.0f bytes per event with its body, %.0f after the purge; the whole file %.0f and %.0f\n",
		per(cWith.events), per(cWithout.events), per(cWith.used), per(cWithout.used))
	// The volume for N events a day at the defaults: the live file holds 30
	// days of events, the last 7 with their bodies; 7 scheduled and at
	// most 5 manual snapshots hold compacted copies; 10 % of the volume
	// stays free.
	for _, perDay := range []int{1000, 10000, 100000} {
		db := float64(perDay) * (7*per(with.used) + 23*per(without.used))
		copyOf := float64(perDay) * (7*per(cWith.used) + 23*per(cWithout.used))
		fmt.Printf("storage: %d events a day → database about %.0f MB, each snapshot about %.0f MB, volume needed about %.1f GB\n",
			perDay, db/1e6, copyOf/1e6, (db+12*copyOf)/0.9/1e9)
	}
	b.ReportMetric(per(with.events), "live_events_bytes/event")
	b.ReportMetric(per(without.events), "live_events_bytes/event_purged")
	b.ReportMetric(per(with.used), "live_bytes/event")
	b.ReportMetric(per(without.used), "live_bytes/event_purged")
	b.ReportMetric(per(cWith.used), "compacted_bytes/event")
	b.ReportMetric(per(cWithout.used), "compacted_bytes/event_purged")
}

package server_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
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
//
// On PostgreSQL (the same events through the door into a real PostgreSQL
// 15) it prints the tables' sizes after a VACUUM (not FULL: what
// autovacuum leaves) with the bodies and after their purge.
func BenchmarkBytesPerStoredEvent(b *testing.B) {
	b.Run("sqlite", benchBytesSQLite)
	b.Run("postgres", benchBytesPostgres)
}

// storeEvents sends n signed Slack mentions through the door and waits
// until every one is delivered. Each is signed as it is sent: on a loaded
// machine a run takes longer than the door's ±5 minutes.
func storeEvents(b *testing.B, e *env, prefix string, n int) {
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				body, h := signed(webhook.Slack, fmt.Sprintf("%s-%06d", prefix, i), slackSecret, wallclock.Now())
				if r := e.send(webhook.Slack, body, h); r.code != 200 {
					b.Errorf("send = %d %s", r.code, r.raw)
					return
				}
			}
		}()
	}
	wg.Wait()
	for {
		if depth, err := e.db.QueueDepth(context.Background(), ""); err != nil || depth == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// purgeBodies runs the retention chore's body purge as it runs in the
// appliance (small batches, then the space given back) on every body.
func purgeBodies(b *testing.B, e *env, n int) {
	chore, err := retention.New(retention.Options{Store: e.db, Bodies: time.Nanosecond, Events: 30 * 24 * time.Hour,
		Audit: 400 * 24 * time.Hour, Now: func() time.Time { return wallclock.Now().Add(time.Hour) }})
	if err != nil {
		b.Fatal(err)
	}
	if rep, err := chore.Once(context.Background()); err != nil || rep.Bodies != n {
		b.Fatalf("the body purge: %+v %v", rep, err)
	}
}

func benchBytesSQLite(b *testing.B) {
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
	now := wallclock.Now()
	storeEvents(b, e, "size", n)
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
	purgeBodies(b, e, n)
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

func benchBytesPostgres(b *testing.B) {
	const n = 20000
	pg := pgtest.StartDurableServer(b)
	url := freshDatabase(b, pg.URL, "sizing")
	e := newEnv(b, envOptions{webhooks: true, workers: 8, teamPerMinute: 1_000_000, databaseURL: url})
	raw, err := sql.Open("pgx", url)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	// size is each table's bytes (with its indexes and TOAST) after a
	// VACUUM: what autovacuum leaves between its runs.
	size := func() (events, payloads, agent float64) {
		if _, err := raw.Exec(`VACUUM ANALYZE`); err != nil {
			b.Fatal(err)
		}
		var ev, pl, ag int64
		if err := raw.QueryRow(`SELECT pg_total_relation_size('orchestrator_webhook_events'), pg_total_relation_size('orchestrator_event_payloads'),
			pg_total_relation_size('orchestrator_agent_runs')`).Scan(&ev, &pl, &ag); err != nil {
			b.Fatal(err)
		}
		return float64(ev) / n, float64(pl) / n, float64(ag) / n
	}
	storeEvents(b, e, "pg", n)
	ev, pl, ag := size()
	purgeBodies(b, e, n)
	ev2, pl2, _ := size()
	// The space of purged bodies is for new ones: a second day's events
	// with their bodies (their payloads reuse the freed pages, or VACUUM
	// cut the empty pages off the table's end).
	storeEvents(b, e, "pg-next", n)
	ev3, pl3, _ := size()
	fmt.Printf("storage: PostgreSQL 15, %d Slack events each delivered with its agent call (bytes per event, each table with its indexes and TOAST, after VACUUM, not FULL):\n", n)
	fmt.Printf("storage: PostgreSQL with the bodies: events table %.0f + payloads %.0f = %.0f; agent calls %.0f\n", ev, pl, ev+pl, ag)
	fmt.Printf("storage: PostgreSQL after the purge: events table %.0f + payloads %.0f = %.0f\n", ev2, pl2, ev2+pl2)
	fmt.Printf("storage: PostgreSQL after %d more events with their bodies: payloads %.0f per new event (%.0f the first time); events table %.0f per event of the %d\n",
		n, pl3, pl, ev3/2, 2*n)
	b.ReportMetric(ev+pl, "pg_events_bytes/event")
	b.ReportMetric(ev2+pl2, "pg_events_bytes/event_purged")
}

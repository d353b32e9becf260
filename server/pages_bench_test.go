package server_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/store"
	_ "modernc.org/sqlite" // "sqlite" driver, to fill the file directly
)

// fillMillion writes n events straight into the SQLite file (InsertEvent's
// group commit would take minutes): spread evenly over span before end,
// routed to 40 teams of 4 orgs, mostly delivered in digests of 10 (one agent
// run each), some dead, unrouted, ignored or queued; and an ack latency row
// per source every 10 s of the last day, as a busy replica writes them.
func fillMillion(b *testing.B, path string, n int, end time.Time, span time.Duration) {
	b.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ts := func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }
	sources := []string{"slack", "github", "pagerduty", "incidentio", "coralogix"}
	statuses := []string{"delivered", "delivered", "delivered", "delivered", "delivered", "dead", "unrouted", "ignored", "queued", "delivered"}
	payload := store.EncodePayload(nil, []byte(`{"incident":{"id":"Q1","title":"disk full on db-7","status":"triggered","service":{"id":"PF9KMXH"}}}`))
	const batch = 10_000
	var digest string
	for i := 0; i < n; i += batch {
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		ev, err := tx.Prepare(`INSERT INTO orchestrator_webhook_events (source, delivery_id, event_type, status, routing_identifiers,
			org_id, team_node_id, matched_by, attempts, received_at, updated_at, digest_run_id, digest_size)
			VALUES (?, ?, 'incident.triggered', ?, '{}', ?, ?, 'test', 1, ?, ?, ?, ?)`)
		if err != nil {
			b.Fatal(err)
		}
		run, err := tx.Prepare(`INSERT INTO orchestrator_agent_runs (id, trigger_source, org_id, team_node_id, agent_name, status,
			duration_ms, started_at, finished_at, event_count) VALUES (?, ?, ?, ?, 'investigation', 'succeeded', 2000, ?, ?, 10)`)
		if err != nil {
			b.Fatal(err)
		}
		for j := i; j < min(n, i+batch); j++ {
			at := end.Add(-span + time.Duration(j)*span/time.Duration(n))
			st := statuses[j%len(statuses)]
			org, team := any(fmt.Sprintf("org%d", j%4)), any(fmt.Sprintf("team%d", j%40))
			if st == "unrouted" {
				org, team = nil, nil
			}
			var digestID, size any
			if st == "delivered" {
				if j%10 == 0 {
					digest = uuid.NewString()
					started := at.Add(30 * time.Second)
					if _, err := run.Exec(digest, sources[j%len(sources)], org, team, ts(started), ts(started.Add(2*time.Second))); err != nil {
						b.Fatal(err)
					}
				}
				digestID, size = digest, 10
			}
			if _, err := ev.Exec(sources[j%len(sources)], fmt.Sprintf("bench-%d", j), st, org, team, at.UnixMilli(), at.UnixMilli(), digestID, size); err != nil {
				b.Fatal(err)
			}
		}
		ev.Close()
		run.Close()
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	// Every event's payload, in its own table.
	if _, err := db.Exec(`INSERT INTO orchestrator_event_payloads (event_id, payload) SELECT id, ? FROM orchestrator_webhook_events ORDER BY id`,
		payload); err != nil {
		b.Fatal(err)
	}
	tx, _ := db.Begin()
	counts := "0,12,40,22,9,4,2,1,0,0,0,0,0,0,0,0,0"
	for at := end.Add(-24 * time.Hour); at.Before(end); at = at.Add(10 * time.Second) {
		for _, src := range sources {
			if _, err := tx.Exec(`INSERT INTO orchestrator_ack_stats (id, source, at, events, counts) VALUES (?, ?, ?, 90, ?)`,
				uuid.NewString(), src, ts(at), counts); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPagesAtAMillionEvents times the admin pages with a million
// stored events: spread over 30 days (a busy appliance's retention), and all
// in the last day (a storm day, the charts' worst case). "cold" computes the
// last day's figures for the page; "cached" reuses them (the binary's
// default keeps them 30 s).
func BenchmarkPagesAtAMillionEvents(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_PAGES_EVENTS")); err == nil && v > 0 {
		n = v
	}
	for _, c := range []struct {
		name string
		span time.Duration
	}{{"30 days", 30 * 24 * time.Hour}, {"one day", 24 * time.Hour}} {
		e := newEnv(b, envOptions{ui: true, webhooks: true, statsMaxAge: time.Hour})
		if err := e.srv.Open(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = e.srv.Shutdown(context.Background()) })
		base := "http://" + e.srv.Addr()
		end := wallclock.Now().UTC()
		start := time.Now()
		fillMillion(b, filepath.Join(e.dataDir, "orchestrator.db"), n, end, c.span)
		filled := time.Since(start)
		for i := range 40 {
			if _, err := e.db.StartRun(context.Background(), store.Run{ID: uuid.NewString(), Kind: store.RunKindProvision,
				OrgID: fmt.Sprintf("org%d", i%4), TeamNodeID: fmt.Sprintf("team%d", i), Status: store.RunSucceeded,
				CreatedAt: end.Add(-time.Hour), UpdatedAt: end.Add(-time.Hour)}, end); err != nil {
				b.Fatal(err)
			}
		}
		c2 := login(b, base, adminToken)
		timePage := func(path string, cold bool) time.Duration {
			var took []time.Duration
			for range 5 {
				if cold {
					e.srv.ForgetStats()
				}
				t0 := time.Now()
				resp, err := c2.Get(base + path)
				if err != nil {
					b.Fatal(err)
				}
				var sb strings.Builder
				_, _ = fmt.Fprint(&sb, resp.Status)
				buf := make([]byte, 64<<10)
				for {
					if _, err := resp.Body.Read(buf); err != nil {
						break
					}
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("%s = %s", path, sb.String())
				}
				took = append(took, time.Since(t0))
			}
			slices.Sort(took)
			return took[len(took)/2]
		}
		fmt.Printf("pages, %d events over %s (filled in %s):\n", n, c.name, filled.Round(time.Second))
		for _, p := range []struct {
			path string
			cold bool
		}{{"/ui/overview", true}, {"/ui/overview", false}, {"/ui/teams", true}, {"/ui/teams", false},
			{"/ui/events", false}, {"/ui/events?org_id=org1&team_node_id=team1&status=dead", false},
			{"/ui/events?q=bench-123456", false}} {
			what := "cached"
			if p.cold {
				what = "cold"
			}
			if !strings.HasPrefix(p.path, "/ui/overview") && !strings.HasPrefix(p.path, "/ui/teams") {
				what = ""
			}
			fmt.Printf("pages   %-55s %-6s median %s\n", p.path, what, timePage(p.path, p.cold).Round(100*time.Microsecond))
		}
	}
}

package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// BENCH_EVENTS sets how many events BenchmarkProcess seeds (default 1 000 000).
func benchEvents() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

// seed writes n delivered events straight into the database, in bulk, the
// way they would look after a long time in production.
func seed(b *testing.B, path string, n int) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)&_txlock=immediate")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	const rows = 500
	q := `INSERT INTO orchestrator_webhook_events (source, delivery_id, event_type, status, routing_identifiers, org_id, team_node_id,
		matched_by, attempts, next_attempt_at, received_at, updated_at, finished_at) VALUES ` +
		strings.TrimSuffix(strings.Repeat("(?, ?, 'app_mention', 'delivered', '{\"slack_channel_id\":\"C0A4967KRBM\"}', 'acme', 'platform-sre', 'slack_channel_id', 0, ?, ?, ?, ?),", rows), ",")
	stmt, err := db.Prepare(q)
	if err != nil {
		b.Fatal(err)
	}
	// Payloads live in their own table, keyed by the event's id.
	pq := `INSERT INTO orchestrator_event_payloads (event_id, payload) VALUES ` +
		strings.TrimSuffix(strings.Repeat("((SELECT id FROM orchestrator_webhook_events WHERE source = ? AND delivery_id = ?), ?),", rows), ",")
	pstmt, err := db.Prepare(pq)
	if err != nil {
		b.Fatal(err)
	}
	sources := []string{"slack", "github", "pagerduty", "incidentio", "coralogix"}
	start := wallclock.Now().Add(-time.Duration(n) * time.Second / 10)
	tx, _ := db.Begin()
	for i := 0; i < n; i += rows {
		args, pargs := make([]any, 0, rows*6), make([]any, 0, rows*3)
		for j := i; j < i+rows; j++ {
			at := start.Add(time.Duration(j) * 100 * time.Millisecond).UnixMilli()
			src := sources[j%len(sources)]
			payload := store.EncodePayload(map[string]string{"content-type": "application/json"}, webhook.Sample(src, strconv.Itoa(j), start))
			args = append(args, src, fmt.Sprintf("seed-%d", j), at, at, at, at)
			pargs = append(pargs, src, fmt.Sprintf("seed-%d", j), payload)
		}
		if _, err := tx.Stmt(stmt).Exec(args...); err != nil {
			b.Fatal(err)
		}
		if _, err := tx.Stmt(pstmt).Exec(pargs...); err != nil {
			b.Fatal(err)
		}
		if (i/rows)%200 == 199 {
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
			tx, _ = db.Begin()
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

func rssKB(pid int, field string) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			n, _ := strconv.Atoi(strings.Fields(l)[1])
			return n
		}
	}
	return 0
}

func pctl(l []time.Duration, p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	slices.Sort(l)
	return l[min(len(l)-1, int(float64(len(l))*p))]
}

// BenchmarkProcess measures the real binary: start-to-ready with a large
// event store, the events list at that size, and ack and ack-to-agent
// latency plus RSS under a fixed offered rate. It prints its figures.
func BenchmarkProcess(b *testing.B) {
	const admin, secret = "bench-admin", "bench-slack"
	n := benchEvents()
	dir := b.TempDir()
	if err := run(context.Background(), []string{"migrate", "up", "--data-dir", dir}, envOf(nil), io.Discard, io.Discard); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	seed(b, filepath.Join(dir, "orchestrator.db"), n)
	fi, _ := os.Stat(filepath.Join(dir, "orchestrator.db"))
	fmt.Printf("seeded %d events in %v (database %.0f MB)\n", n, time.Since(t0).Round(time.Second), float64(fi.Size())/1e6)

	f := startPeerFakes(b, admin)
	agent := f.agent
	env := append(f.env, "SLACK_SIGNING_SECRET="+secret, "ORCHESTRATOR_DATA_DIR="+dir)
	tStart := time.Now()
	proc, logs, _ := child(b, env, "serve")
	base := "http://" + waitLine(b, logs, "listening")["addr"].(string)
	go drain(logs)
	waitReady(b, base)
	fmt.Printf("start to /ready with %d events: %v; idle RSS %d MiB\n", n, time.Since(tStart).Round(time.Millisecond), rssKB(proc.Process.Pid, "VmRSS")/1024)

	for _, q := range []string{"", "?source=slack&status=delivered", "?team_node_id=platform-sre&limit=200", "?since=" + wallclock.Now().Add(-time.Hour).UTC().Format(time.RFC3339)} {
		var d []time.Duration
		for range 20 {
			req, _ := http.NewRequest("GET", base+"/api/v1/admin/events"+q, nil)
			req.Header.Set("Authorization", "Bearer "+admin)
			t := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("list %s: %v", q, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			d = append(d, time.Since(t))
		}
		fmt.Printf("events list %q at %d events: p50 %v p99 %v\n", q, n, pctl(d, .5).Round(time.Microsecond), pctl(d, .99).Round(time.Microsecond))
	}

	// Fixed offered rate: open loop, one request every 1/rate.
	const rate, seconds = 1000, 5
	var mu sync.Mutex
	var acks []time.Duration
	ackAt := map[string]time.Time{}
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 10 * time.Second}
	peak := 0
	tick := time.NewTicker(time.Second / rate)
	end := time.Now().Add(seconds * time.Second)
	i := 0
	for now := range tick.C {
		if now.After(end) {
			break
		}
		i++
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body := webhook.Sample(webhook.Slack, fmt.Sprintf("rate%d", i), wallclock.Now())
			req, _ := http.NewRequest("POST", base+"/webhooks/slack/events", bytes.NewReader(body))
			req.Header = webhook.Sign(webhook.Slack, secret, body, wallclock.Now(), "")
			t := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			var out struct {
				EventID string `json:"event_id"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			done := time.Now()
			mu.Lock()
			acks = append(acks, done.Sub(t))
			ackAt[out.EventID] = done
			mu.Unlock()
		}(i)
		if i%100 == 0 {
			peak = max(peak, rssKB(proc.Process.Pid, "VmRSS"))
		}
	}
	tick.Stop()
	wg.Wait()
	// Ack to agent: when the agent received each event, after its ack.
	deadline := time.Now().Add(60 * time.Second)
	var toAgent []time.Duration
	for time.Now().Before(deadline) {
		toAgent = toAgent[:0]
		for _, c := range agent.CallsTo(peerstest.RouteAgentRun) {
			if at, ok := ackAt[c.Header.Get("X-Correlation-ID")]; ok {
				toAgent = append(toAgent, c.At.Sub(at))
			}
		}
		if len(toAgent) == len(ackAt) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Printf("offered %d events/s for %ds: %d acked, ack p50 %v p99 %v; ack to agent p50 %v p99 %v (%d reached the agent); peak RSS %d MiB (VmHWM %d MiB)\n",
		rate, seconds, len(acks), pctl(acks, .5).Round(time.Microsecond), pctl(acks, .99).Round(time.Microsecond),
		pctl(toAgent, .5).Round(time.Microsecond), pctl(toAgent, .99).Round(time.Microsecond), len(toAgent),
		peak/1024, rssKB(proc.Process.Pid, "VmHWM")/1024)
	_ = proc.Process.Signal(syscall.SIGTERM)
	_ = proc.Wait()
}

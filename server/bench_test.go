package server_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/config"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

// load sends total signed Slack events to url from conc goroutines over
// keep-alive connections and returns the accepted rate and ack latencies.
func load(b *testing.B, url string, conc, total int, bodies [][]byte, headers []http.Header) (float64, []time.Duration) {
	tr := &http.Transport{MaxIdleConns: conc, MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var next, ok atomic.Int64
	lat := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				req, _ := http.NewRequest("POST", url, bytes.NewReader(bodies[i]))
				req.Header = headers[i]
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					b.Errorf("request: %v", err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat[w] = append(lat[w], time.Since(t0))
				if resp.StatusCode == 200 {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	if int(ok.Load()) != total {
		b.Errorf("%d of %d accepted", ok.Load(), total)
	}
	return float64(ok.Load()) / elapsed.Seconds(), all
}

func pct(l []time.Duration, p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	return l[min(len(l)-1, int(float64(len(l))*p))]
}

// BenchmarkIngestVsBareHandler measures the whole ingest path (verify,
// rate limiter, dedupe, durable group-committed insert into SQLite with
// synchronous=FULL, ack) against a bare net/http handler that only reads the
// body, under the same load in the same run: once with dispatch idle, once
// with dispatch running and delivering every event (Slack mentions, never
// folded, with no team limit: the most writer work dispatch can make). Run
// with `make bench`.
func BenchmarkIngestVsBareHandler(b *testing.B) {
	const total = 20000
	for _, conc := range []int{32, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			bodies, headers := make([][]byte, total), make([]http.Header, total)
			for i := range total {
				bodies[i] = webhook.Sample(webhook.Slack, fmt.Sprintf("b%d_%d", conc, i), wallclock.Now())
				headers[i] = webhook.Sign(webhook.Slack, slackSecret, bodies[i], wallclock.Now(), "")
			}
			bare := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.ReadAll(r.Body)
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"ok":true}`))
			})}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go func() { _ = bare.Serve(ln) }()
			defer bare.Close()

			b.ResetTimer()
			bareRate, bareLat := load(b, "http://"+ln.Addr().String()+"/", conc, total, bodies, headers)
			idle := ingestRun(b, envOptions{webhooks: true, noDispatch: true}, conc, bodies, headers)
			// Dispatch at the defaults: team limit 60/min, routing cache.
			running := ingestRun(b, envOptions{webhooks: true, teamPerMinute: 60, routingTTL: 30 * time.Second,
				coalesce: config.DefaultCoalesceSources, poll: time.Second}, conc, bodies, headers)
			// And with no team limit: every mention its own agent call.
			busy := ingestRun(b, envOptions{webhooks: true, teamPerMinute: 1_000_000, routingTTL: 30 * time.Second,
				coalesce: config.DefaultCoalesceSources, poll: time.Second}, conc, bodies, headers)
			// The same on PostgreSQL 15 on this machine (fsync on, as in
			// production), dispatch idle and running (SPEC §13).
			pg := pgtest.StartDurableServer(b)
			pgIdle := ingestRun(b, envOptions{webhooks: true, noDispatch: true, databaseURL: freshDatabase(b, pg.URL, fmt.Sprintf("idle%d", conc))},
				conc, bodies, headers)
			pgRunning := ingestRun(b, envOptions{webhooks: true, teamPerMinute: 60, routingTTL: 30 * time.Second,
				coalesce: config.DefaultCoalesceSources, poll: time.Second, databaseURL: freshDatabase(b, pg.URL, fmt.Sprintf("run%d", conc))},
				conc, bodies, headers)
			b.StopTimer()

			b.ReportMetric(idle.rate, "events/s")
			b.ReportMetric(running.rate, "events/s_dispatching")
			b.ReportMetric(bareRate, "bare_req/s")
			fmt.Printf("ingest c=%d: bare handler %.0f req/s p50 %v p99 %v\n", conc, bareRate,
				pct(bareLat, .5).Round(time.Microsecond), pct(bareLat, .99).Round(time.Microsecond))
			for _, r := range []struct {
				name string
				ingestResult
			}{{"dispatch idle", idle}, {"dispatch running (defaults)", running}, {"dispatch running, no team limit", busy},
				{"PostgreSQL, dispatch idle", pgIdle}, {"PostgreSQL, dispatch running (defaults)", pgRunning}} {
				fmt.Printf("ingest c=%d, %s: %.0f events/s p50 %v p99 %v (%.1f events per commit; %d delivered during the run) | %.2f of bare\n",
					conc, r.name, r.rate, pct(r.lat, .5).Round(time.Microsecond), pct(r.lat, .99).Round(time.Microsecond),
					r.perCommit, r.delivered, r.rate/bareRate)
			}
			fmt.Printf("ingest c=%d: dispatch running reaches %.2f of the rate with dispatch idle (%.2f with no team limit)\n",
				conc, running.rate/idle.rate, busy.rate/idle.rate)
			fmt.Printf("ingest c=%d: PostgreSQL reaches %.2f of SQLite's durable ingest rate (dispatch idle), %.2f with dispatch running\n",
				conc, pgIdle.rate/idle.rate, pgRunning.rate/running.rate)
		})
	}
}

type ingestResult struct {
	rate      float64
	lat       []time.Duration
	perCommit float64
	delivered int
}

// freshDatabase makes an empty database on a PostgreSQL server.
func freshDatabase(b *testing.B, serverURL, name string) string {
	db, err := sql.Open("pgx", serverURL)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		b.Fatal(err)
	}
	return strings.Replace(serverURL, "/postgres?", "/"+name+"?", 1)
}

// ingestRun loads a fresh server (a new database) with the events.
func ingestRun(b *testing.B, o envOptions, conc int, bodies [][]byte, headers []http.Header) ingestResult {
	e := newEnv(b, o)
	if err := e.srv.Open(); err != nil {
		b.Fatal(err)
	}
	defer e.srv.Shutdown(context.Background())
	batches0 := e.db.CommitBatches()
	rate, lat := load(b, "http://"+e.srv.Addr()+"/webhooks/slack/events", conc, len(bodies), bodies, headers)
	batches := e.db.CommitBatches() - batches0
	return ingestResult{rate: rate, lat: lat, perCommit: float64(len(bodies)) / float64(max(1, batches)),
		delivered: len(e.agent.CallsTo(peerstest.RouteAgentRun))}
}

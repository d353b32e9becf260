package server_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/retention"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

// BenchmarkAckDuringPurge measures SPEC §16's promise that acknowledgements
// do not wait behind a purge: a SQLite file holds BENCH_PURGE_EVENTS
// (default 1,000,000) events all older than the 30-day retention; signed
// Slack mentions are sent by 8 senders, first with no purge (the baseline),
// then while the retention chore deletes the old events in its small
// batches; the ack p50/p99 of both, the purge's duration and rate are printed.
func BenchmarkAckDuringPurge(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_PURGE_EVENTS")); err == nil && v > 0 {
		n = v
	}
	e := newEnv(b, envOptions{webhooks: true, noDispatch: true})
	if err := e.srv.Open(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.srv.Shutdown(context.Background()) })
	url := "http://" + e.srv.Addr() + "/webhooks/slack/events"
	start := time.Now()
	fillMillion(b, filepath.Join(e.dataDir, "orchestrator.db"), n, wallclock.Now().Add(-40*24*time.Hour), 7*24*time.Hour)
	fmt.Printf("purge: %d events stored in %s, all older than the retention\n", n, time.Since(start).Round(time.Second))

	const conc, per = 8, 4000
	batch := func(tag string) ([][]byte, []http.Header) {
		bodies, headers := make([][]byte, per), make([]http.Header, per)
		for i := range per {
			bodies[i] = webhook.Sample(webhook.Slack, fmt.Sprintf("%s%d", tag, i), wallclock.Now())
			headers[i] = webhook.Sign(webhook.Slack, slackSecret, bodies[i], wallclock.Now(), "")
		}
		return bodies, headers
	}
	bodies, headers := batch("base")
	baseRate, base := load(b, url, conc, per, bodies, headers)

	chore, err := retention.New(retention.Options{Store: e.db, Events: 30 * 24 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var rep retention.Report
	var took time.Duration
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		t0 := time.Now()
		rep, err = chore.Once(context.Background())
		took = time.Since(t0)
	}()
	// Send until the purge is over, a batch at a time, keeping every ack.
	var during []time.Duration
	rates := 0.0
	for round := 0; ; round++ {
		bodies, headers := batch(fmt.Sprintf("during%d-", round))
		r, lat := load(b, url, conc, per, bodies, headers)
		during, rates = append(during, lat...), rates+r
		select {
		case <-done:
			wg.Wait()
			if err != nil {
				b.Fatal(err)
			}
			slices.Sort(during)
			fmt.Printf("purge: %d events deleted in %s (%.0f rows/s, batches sized to hold the writer about 4 ms)\n", rep.Events, took.Round(time.Millisecond),
				float64(rep.Events)/took.Seconds())
			fmt.Printf("purge: ack without a purge p50 %s p99 %s (%.0f events/s); during the purge p50 %s p99 %s (%.0f events/s, %d acks)\n",
				pct(base, 0.5), pct(base, 0.99), baseRate, pct(during, 0.5), pct(during, 0.99), rates/float64(round+1), len(during))
			b.ReportMetric(float64(pct(during, 0.99).Microseconds())/1000, "ms_p99_during_purge")
			b.ReportMetric(float64(pct(base, 0.99).Microseconds())/1000, "ms_p99_baseline")
			return
		default:
		}
	}
}

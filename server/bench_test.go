package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
// body, under the same load in the same run. Run with `make bench`.
func BenchmarkIngestVsBareHandler(b *testing.B) {
	const total = 20000
	for _, conc := range []int{32, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			e := newBenchEnv(b)
			if err := e.srv.Open(); err != nil {
				b.Fatal(err)
			}
			defer e.srv.Shutdown(context.Background())

			bodies, headers := make([][]byte, total), make([]http.Header, total)
			for i := range total {
				bodies[i] = webhook.Sample(webhook.Slack, fmt.Sprintf("b%d_%d", conc, i), time.Now())
				headers[i] = webhook.Sign(webhook.Slack, slackSecret, bodies[i], time.Now(), "")
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
			batches0 := e.db.CommitBatches()
			rate, lat := load(b, "http://"+e.srv.Addr()+"/webhooks/slack/events", conc, total, bodies, headers)
			b.StopTimer()
			batches := e.db.CommitBatches() - batches0

			b.ReportMetric(rate, "events/s")
			b.ReportMetric(float64(pct(lat, .5).Microseconds())/1000, "p50_ms")
			b.ReportMetric(float64(pct(lat, .99).Microseconds())/1000, "p99_ms")
			b.ReportMetric(bareRate, "bare_req/s")
			b.ReportMetric(rate/bareRate, "ratio")
			fmt.Printf("ingest c=%d: %.0f events/s p50 %v p99 %v (%.1f events per commit) | bare handler: %.0f req/s p50 %v p99 %v | ratio %.2f\n",
				conc, rate, pct(lat, .5).Round(time.Microsecond), pct(lat, .99).Round(time.Microsecond), float64(total)/float64(max(1, batches)),
				bareRate, pct(bareLat, .5).Round(time.Microsecond), pct(bareLat, .99).Round(time.Microsecond), rate/bareRate)
		})
	}
}

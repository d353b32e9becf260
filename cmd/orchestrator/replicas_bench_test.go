package main

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

// BenchmarkReplicas measures claims and deliveries on one PostgreSQL (fsync
// on) with one replica and with three: BENCH_REPLICA_EVENTS (3 000) signed
// Slack mentions — each its own agent call, no team limit — sent to the
// replicas round-robin, timed from the first send until every one is
// delivered. The agent fake takes 20 ms a call, so one replica's 8 workers
// cap it near 400 calls/s; three have 24 workers. All on this 2-core
// machine: load generator, replicas, PostgreSQL and the fakes share it.
func BenchmarkReplicas(b *testing.B) {
	const admin, secret, total = "bench-admin", "bench-slack", 3000
	pg := pgtest.StartDurableServer(b)
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			f := startPeerFakes(b, admin)
			f.agent.Fail(peerstest.RouteAgentRun, peerstest.Fault{Delay: 20 * time.Millisecond})
			url := freshPG(b, pg.URL, fmt.Sprintf("replicas%d", n))
			reps := startReplicas(b, n, append(f.env, "DATABASE_URL="+url, "SLACK_SIGNING_SECRET="+secret))
			bodies := make([][]byte, total)
			for i := range bodies {
				bodies[i] = webhook.Sample(webhook.Slack, fmt.Sprintf("n%d_%d", n, i), wallclock.Now())
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}, Timeout: 30 * time.Second}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1)) - 1
						if i >= total {
							return
						}
						req, _ := http.NewRequest("POST", reps[i%n].base+"/webhooks/slack/events", bytes.NewReader(bodies[i]))
						req.Header = webhook.Sign(webhook.Slack, secret, bodies[i], wallclock.Now(), "")
						resp, err := client.Do(req)
						if err != nil || resp.StatusCode != 200 {
							b.Errorf("send: %v %v", err, resp)
							return
						}
						resp.Body.Close()
					}
				}()
			}
			wg.Wait()
			acked := time.Since(start)
			db := sharedDB(b, url)
			waitUntil(b, 10*time.Minute, "every event delivered", func() bool {
				return statusCounts(b, db)["delivered"] == total
			})
			drained := time.Since(start)
			b.StopTimer()
			calls := len(f.agent.CallsTo(peerstest.RouteAgentRun))
			b.ReportMetric(float64(total)/drained.Seconds(), "delivered/s")
			fmt.Printf("replicas=%d on PostgreSQL: %d events acked in %v (%.0f/s), all delivered after %v: %.0f claims+deliveries/s, %d agent calls\n",
				n, total, acked.Round(time.Millisecond), float64(total)/acked.Seconds(), drained.Round(time.Millisecond),
				float64(total)/drained.Seconds(), calls)
			for _, r := range reps {
				_ = r.cmd.Process.Signal(syscall.SIGTERM)
				_ = r.cmd.Wait()
			}
		})
	}
}

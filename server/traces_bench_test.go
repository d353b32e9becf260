package server_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/config"
	"github.com/incidentfox/orchestrator-edge/server/tracing"
	"github.com/incidentfox/orchestrator-edge/server/tracing/tracingtest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

// BenchmarkIngestTracing measures what tracing costs the door, side by
// side in one run (SPEC §22): the door with no tracing code at all (the
// baseline), tracing off (the no-op tracer, the default), and tracing on
// (every trace sampled, exported over OTLP/HTTP to a receiver on this
// machine), with dispatch idle so that only ingest is measured. Each
// variant runs three times in turn and its median rate is compared, so
// that a slow moment of a shared machine does not land on one variant
// only. Printed, not a gate; run with `make bench`.
func BenchmarkIngestTracing(b *testing.B) {
	const total, conc, rounds = 10000, 32, 3
	rcv := tracingtest.NewHTTP(b).Discard()
	on, err := tracing.New(context.Background(), tracing.Options{Config: config.Tracing{Enabled: true, Endpoint: rcv.URL + "/v1/traces",
		Protocol: "http/protobuf", Timeout: 10 * time.Second, ServiceName: config.DefaultServiceName, Sampler: "always_on"}})
	if err != nil {
		b.Fatal(err)
	}
	defer on.Shutdown(context.Background())
	variants := []struct {
		name string
		tr   *tracing.Tracing
	}{{"no tracing code", nil}, {"tracing off", tracing.Off()}, {"tracing on (always sampled)", on}}
	rates := make([][]float64, len(variants))
	p99s := make([][]time.Duration, len(variants))
	b.ResetTimer()
	for round := range rounds {
		for i, v := range variants {
			bodies, headers := make([][]byte, total), make([]http.Header, total)
			for j := range total {
				bodies[j] = webhook.Sample(webhook.Slack, fmt.Sprintf("t%d_%d_%d", round, i, j), wallclock.Now())
				headers[j] = webhook.Sign(webhook.Slack, slackSecret, bodies[j], wallclock.Now(), "")
			}
			r := ingestRun(b, envOptions{webhooks: true, noDispatch: true, tracing: v.tr}, conc, bodies, headers)
			rates[i] = append(rates[i], r.rate)
			p99s[i] = append(p99s[i], pct(r.lat, .99))
		}
	}
	b.StopTimer()
	_ = on.ForceFlush(context.Background())
	median := func(xs []float64) float64 { s := slices.Clone(xs); slices.Sort(s); return s[len(s)/2] }
	base := median(rates[0])
	for i, v := range variants {
		slices.Sort(p99s[i])
		fmt.Printf("ingest tracing c=%d, %s: median %.0f events/s of %d runs %v, p99 %v | %+.1f %% vs no tracing code\n",
			conc, v.name, median(rates[i]), rounds, roundAll(rates[i]), p99s[i][len(p99s[i])/2].Round(time.Microsecond),
			(median(rates[i])/base-1)*100)
	}
	fmt.Printf("ingest tracing: the receiver took %d spans from %d traced events\n", rcv.Count(), rounds*total)
	b.ReportMetric(median(rates[1])/base, "off/none")
	b.ReportMetric(median(rates[2])/base, "on/none")
}

func roundAll(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x)
	}
	return out
}

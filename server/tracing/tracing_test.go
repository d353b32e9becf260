package tracing

import (
	"context"
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/incidentfox/orchestrator-edge/server/config"
	"github.com/incidentfox/orchestrator-edge/server/tracing/tracingtest"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"
)

func load(t *testing.T, env map[string]string) config.Tracing {
	t.Helper()
	env["ORCHESTRATOR_DEV"] = "1"
	c, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return c.Tracing
}

// Off by default: the no-op provider, no exporter and no goroutine, so
// nothing ever reaches out from an air-gapped appliance.
func TestNew_OffByDefaultStartsNothing(t *testing.T) {
	before := exporterGoroutines()
	reg := prometheus.NewRegistry()
	tr, err := New(context.Background(), Options{Config: load(t, map[string]string{"OTEL_SERVICE_NAME": "x"}), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.Provider.(noop.TracerProvider); !ok || tr.Enabled || tr.sdk != nil {
		t.Fatalf("tracing off built %T (enabled %v)", tr.Provider, tr.Enabled)
	}
	_, span := tr.Tracer().Start(context.Background(), "door")
	span.End()
	if span.SpanContext().IsValid() {
		t.Error("a span without a parent got an id with tracing off")
	}
	if after := exporterGoroutines(); after > before {
		t.Errorf("goroutines running the SDK or an exporter: %d -> %d with tracing off", before, after)
	}
}

// exporterGoroutines counts the goroutines whose stacks run OpenTelemetry's
// SDK, an OTLP exporter or gRPC. Counting only those, rather than every
// goroutine, keeps the runtime's and the test framework's own goroutines,
// which come and go, out of the comparison.
func exporterGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "go.opentelemetry.io/otel/sdk") || strings.Contains(g, "go.opentelemetry.io/otel/exporters") || strings.Contains(g, "google.golang.org/grpc") {
			count++
		}
	}
	return count
}

// On, spans reach the collector over OTLP/HTTP and gRPC with the configured
// headers and service name, and are counted.
func TestNew_ExportsOverHTTPAndGRPC(t *testing.T) {
	for _, proto := range []string{"http/protobuf", "grpc"} {
		t.Run(proto, func(t *testing.T) {
			var rcv *tracingtest.Receiver
			if proto == "grpc" {
				rcv = tracingtest.NewGRPC(t)
			} else {
				rcv = tracingtest.NewHTTP(t)
			}
			reg := prometheus.NewRegistry()
			tr, err := New(context.Background(), Options{Registry: reg, Version: "v9", Config: load(t, map[string]string{
				"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.URL, "OTEL_EXPORTER_OTLP_PROTOCOL": proto,
				"OTEL_EXPORTER_OTLP_HEADERS": "x-scope-orgid=acme",
			})})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Shutdown(context.Background())
			_, span := tr.Tracer().Start(context.Background(), "webhook.door")
			span.End()
			if err := tr.ForceFlush(context.Background()); err != nil {
				t.Fatal(err)
			}
			spans := rcv.Spans()
			if len(spans) != 1 || spans[0].Name != "webhook.door" || spans[0].Service != "orchestrator-edge" || spans[0].TraceID != span.SpanContext().TraceID().String() {
				t.Fatalf("received %+v", spans)
			}
			h := rcv.Headers()
			if len(h) != 1 || len(h[0]["x-scope-orgid"]) == 0 && len(h[0]["X-Scope-Orgid"]) == 0 {
				t.Errorf("headers %v", h)
			}
			spansTotal := func(o string) float64 { return spansTotal(t, reg, o) }
			if spansTotal("exported") != 1 || spansTotal("ended") != 1 || spansTotal("dropped") != 0 {
				t.Errorf("exported %v ended %v dropped %v", spansTotal("exported"), spansTotal("ended"), spansTotal("dropped"))
			}
		})
	}
}

// A collector nobody answers at: the spans are dropped and counted, and the
// code that made them never waits for it.
func TestNew_UnreachableCollectorDropsSpansWithAMetric(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connections are refused
	reg := prometheus.NewRegistry()
	tr, err := New(context.Background(), Options{Registry: reg, Config: load(t, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr, "OTEL_EXPORTER_OTLP_TIMEOUT": "300",
	})})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	for range 3 {
		_, span := tr.Tracer().Start(context.Background(), "webhook.door")
		span.End()
	}
	if err := tr.ForceFlush(context.Background()); err == nil {
		t.Fatal("flush to a closed port succeeded")
	}
	if got := spansTotal(t, reg, "dropped"); got != 3 {
		t.Errorf("dropped = %v, want 3", got)
	}
}

// spansTotal reads orchestrator_trace_spans_total{outcome}.
func spansTotal(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "orchestrator_trace_spans_total" {
			continue
		}
		for _, m := range mf.Metric {
			if m.Label[0].GetValue() == outcome {
				return m.Counter.GetValue()
			}
		}
	}
	return 0
}

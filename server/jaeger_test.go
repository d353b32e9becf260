package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/config"
	"github.com/incidentfox/orchestrator-edge/server/tracing"
	"github.com/incidentfox/orchestrator-edge/store"
)

// jaegerBinary is a real Jaeger v2, built by hack/jaeger.sh (make jaeger)
// into the cache. Missing, the test fails where the real parts are
// required (make test, CI) and is skipped elsewhere.
func jaegerBinary(t *testing.T) string {
	t.Helper()
	path := os.Getenv("JAEGER")
	if path == "" {
		home, _ := os.UserHomeDir()
		path = filepath.Join(home, ".cache", "orchestrator-edge", "jaeger-v1.75.0", "jaeger")
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("ORCHESTRATOR_TEST_REQUIRE_JAEGER") == "1" || os.Getenv("CI") == "true" {
			t.Fatalf("jaeger is required: run hack/jaeger.sh (%v)", err)
		}
		t.Skip("jaeger not built (hack/jaeger.sh)")
	}
	return path
}

// jaeger is a running Jaeger: its OTLP receivers and its query API.
type jaeger struct {
	otlpHTTP, otlpGRPC, query string
}

// startJaeger runs Jaeger v2 all-in-one with in-memory storage on free
// ports, stopped with the test.
func startJaeger(t *testing.T) jaeger {
	t.Helper()
	bin := jaegerBinary(t)
	j := jaeger{otlpHTTP: freePort(t), otlpGRPC: freePort(t), query: freePort(t)}
	queryGRPC := freePort(t)
	cfg := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: %[3]s
    grpc:
      endpoint: %[4]s
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: %[1]s
      grpc:
        endpoint: %[2]s
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, j.otlpHTTP, j.otlpGRPC, j.query, queryGRPC)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "jaeger.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	runProcess(t, "jaeger", bin, "--config", filepath.Join(dir, "jaeger.yaml"))
	waitFor(t, "jaeger's query API", func() bool {
		resp, err := http.Get("http://" + j.query + "/api/services")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return j
}

// jaegerSpan is a span as Jaeger's query API returns it.
type jaegerSpan struct {
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	ProcessID     string `json:"processID"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Tags []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
}

// trace reads one trace from Jaeger's query API: its spans, and the
// service of each span (by span id).
func (j jaeger) trace(traceID string) ([]jaegerSpan, map[string]string) {
	resp, err := http.Get("http://" + j.query + "/api/traces/" + traceID)
	if err != nil {
		return nil, nil
	}
	defer resp.Body.Close()
	var out struct {
		Data []struct {
			Spans     []jaegerSpan `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		} `json:"data"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&out) != nil || len(out.Data) == 0 {
		return nil, nil
	}
	services := map[string]string{}
	for _, s := range out.Data[0].Spans {
		services[s.SpanID] = out.Data[0].Processes[s.ProcessID].ServiceName
	}
	return out.Data[0].Spans, services
}

// A real Alertmanager with its tracing pointed at a real Jaeger, and the
// appliance's OTLP (configured by the OTEL_* variables) at the same Jaeger:
// one trace holds Alertmanager's notification and our door, routing,
// dispatch and agent call, as Jaeger's query API returns it.
func TestTraces_ARealAlertmanagerAndJaegerShowOneTrace(t *testing.T) {
	j := startJaeger(t)
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"ORCHESTRATOR_DEV": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + j.otlpHTTP}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := tracing.New(context.Background(), tracing.Options{Config: cfg.Tracing, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	e := newEnv(t, envOptions{webhooks: true, tracing: tr})
	if err := e.srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.srv.Shutdown(context.Background()) })
	am := startTracedAlertmanager(t, "http://"+e.srv.Addr(), alertmanagerTok, j.otlpGRPC)

	pushAlerts(t, am, time.Now().Add(time.Hour), map[string]string{"alertname": "CheckoutDown", "service": "checkout", "severity": "critical"})
	ev := waitAlertmanagerEvent(t, e, "alertmanager.firing", func(store.Event) bool { return true })
	traceID := tracing.TraceID(ev.Trace)
	if traceID == "" {
		t.Fatal("the event keeps no trace")
	}
	var spans []jaegerSpan
	var services map[string]string
	byName := map[string]jaegerSpan{}
	waitFor(t, "the trace in jaeger", func() bool {
		_ = tr.ForceFlush(context.Background())
		spans, services = j.trace(traceID)
		clear(byName)
		amSpans := 0
		for _, s := range spans {
			byName[s.OperationName] = s
			if services[s.SpanID] == "alertmanager" {
				amSpans++
			}
		}
		_, door := byName["webhook alertmanager"]
		_, call := byName["agent call"]
		return door && call && amSpans > 0
	})
	door := byName["webhook alertmanager"]
	if len(door.References) != 1 || services[door.References[0].SpanID] != "alertmanager" {
		t.Fatalf("the door span's parent is not Alertmanager's: %+v", door.References)
	}
	if services[door.SpanID] != "orchestrator-edge" {
		t.Fatalf("the door span's service is %q", services[door.SpanID])
	}
	var names []string
	for _, s := range spans {
		names = append(names, services[s.SpanID]+":"+s.OperationName)
	}
	for _, want := range []string{"orchestrator-edge:verify", "orchestrator-edge:store", "orchestrator-edge:routing lookup",
		"orchestrator-edge:dispatch", "orchestrator-edge:claim", "orchestrator-edge:impersonation token",
		"orchestrator-edge:team config", "orchestrator-edge:agent call"} {
		if !strings.Contains(strings.Join(names, "\n"), want) {
			t.Errorf("jaeger's trace has no %s; it has %v", want, names)
		}
	}
	t.Logf("one trace %s in jaeger: %d spans (%s)", traceID, len(spans), strings.Join(names, ", "))
}

// startTracedAlertmanager runs Alertmanager with its webhook pointed at the
// orchestrator and its own tracing (the configuration file's tracing:
// section) sending every trace to otlpGRPC.
func startTracedAlertmanager(t *testing.T, orchestrator, token, otlpGRPC string) string {
	t.Helper()
	cfg := fmt.Sprintf(`route:
  receiver: orchestrator
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: orchestrator
    webhook_configs:
      - url: %[1]s/webhooks/alertmanager
        http_config:
          authorization: {type: Bearer, credentials: %[2]s}
tracing:
  endpoint: %[3]s
  client_type: grpc
  insecure: true
  sampling_fraction: 1
`, orchestrator, token, otlpGRPC)
	return runAlertmanager(t, cfg)
}

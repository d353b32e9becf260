package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Tracing is off unless the standard variables ask for it: no exporter and
// nothing reaching out by default (an air-gapped appliance).
func TestTracing_OffUnlessAsked(t *testing.T) {
	for _, kv := range []map[string]string{
		nil,
		{"OTEL_SERVICE_NAME": "edge-eu"},
		{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"},
		{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"},
	} {
		c, err := Load(prod(kv))
		if err != nil {
			t.Fatal(err)
		}
		if c.Tracing.Enabled {
			t.Errorf("%v: tracing enabled", kv)
		}
	}
	c, _ := Load(prod(nil))
	if c.Tracing.ServiceName != "orchestrator-edge" || c.Tracing.Sampler != "parentbased_always_on" {
		t.Errorf("defaults: %+v", c.Tracing)
	}
}

// The endpoint variables follow the OpenTelemetry rules: the generic one is
// a base URL (http/protobuf adds /v1/traces), the signal's own is used as it
// is, gRPC takes the collector's URL; headers are URL-decoded and the
// traces' own win.
func TestTracing_StandardVariables(t *testing.T) {
	cases := []struct {
		env                map[string]string
		endpoint, protocol string
	}{
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, "http://localhost:4318/v1/traces", "http/protobuf"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318/"}, "http://jaeger:4318/v1/traces", "http/protobuf"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://tempo.example/otlp/v1/traces"}, "https://tempo.example/otlp/v1/traces", "http/protobuf"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "http://jaeger:4317", "grpc"},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, "http://localhost:4317", "grpc"},
	}
	for _, tc := range cases {
		c, err := Load(prod(tc.env))
		if err != nil {
			t.Fatalf("%v: %v", tc.env, err)
		}
		if !c.Tracing.Enabled || c.Tracing.Endpoint != tc.endpoint || c.Tracing.Protocol != tc.protocol {
			t.Errorf("%v: enabled %v endpoint %q protocol %q, want %q %q", tc.env, c.Tracing.Enabled, c.Tracing.Endpoint, c.Tracing.Protocol, tc.endpoint, tc.protocol)
		}
	}
	c, err := Load(prod(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":       "http://jaeger:4318",
		"OTEL_EXPORTER_OTLP_HEADERS":        "X-Scope-OrgID=acme,Authorization=Basic%20abc%3D",
		"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "X-Scope-OrgID=tenant-2",
		"OTEL_EXPORTER_OTLP_TIMEOUT":        "2500",
		"OTEL_TRACES_SAMPLER":               "parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":           "0.25",
	}))
	if err != nil {
		t.Fatal(err)
	}
	tr := c.Tracing
	if tr.Headers["X-Scope-OrgID"].Reveal() != "tenant-2" || tr.Headers["Authorization"].Reveal() != "Basic abc=" ||
		tr.Timeout != 2500*time.Millisecond || tr.SamplerArg != 0.25 {
		t.Errorf("tracing = %+v", tr)
	}
	if s := fmt.Sprintf("%v", tr); strings.Contains(s, "abc") {
		t.Errorf("a header value printed: %s", s)
	}
}

// A bad value stops start-up naming the variable, never a header's value.
func TestTracing_BadValuesNamed(t *testing.T) {
	for env, want := range map[[2]string]string{
		{"OTEL_TRACES_EXPORTER", "zipkin"}:               "OTEL_TRACES_EXPORTER",
		{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"}:     "OTEL_EXPORTER_OTLP_PROTOCOL",
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "jaeger:4318"}:   "OTEL_EXPORTER_OTLP_ENDPOINT",
		{"OTEL_TRACES_SAMPLER", "sometimes"}:             "OTEL_TRACES_SAMPLER",
		{"OTEL_EXPORTER_OTLP_HEADERS", "api-key-s3cr3t"}: "OTEL_EXPORTER_OTLP_HEADERS",
		{"OTEL_EXPORTER_OTLP_TIMEOUT", "soon"}:           "OTEL_EXPORTER_OTLP_TIMEOUT",
	} {
		_, err := Load(prod(map[string]string{env[0]: env[1], "OTEL_TRACES_SAMPLER_ARG": "2"}))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s=%s: err %v, want it to name %s", env[0], env[1], err, want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("the error echoes a header: %v", err)
		}
	}
}

// The event page's link: an http(s) URL with {trace_id}.
func TestTracing_URLTemplate(t *testing.T) {
	c, err := Load(prod(map[string]string{"ORCHESTRATOR_TRACE_URL_TEMPLATE": "https://grafana.example/explore?traceId={trace_id}"}))
	if err != nil || c.Tracing.URLTemplate != "https://grafana.example/explore?traceId={trace_id}" {
		t.Fatalf("template %q: %v", c.Tracing.URLTemplate, err)
	}
}

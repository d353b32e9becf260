package config

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Tracing is the OpenTelemetry trace export (SPEC §22), read only from the
// standard OTEL_* variables. It is off unless they ask for it: an air-gapped
// appliance reaches out to nothing by default.
type Tracing struct {
	// Enabled: OTEL_TRACES_EXPORTER=otlp, or an OTLP endpoint is set (and
	// neither OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none).
	Enabled bool
	// Endpoint is the full URL spans are sent to (http/protobuf: with its
	// /v1/traces path) or, for gRPC, the collector's URL.
	Endpoint string
	// Protocol is http/protobuf (the default) or grpc.
	Protocol string
	// Headers are sent with every export (OTEL_EXPORTER_OTLP_HEADERS and
	// _TRACES_HEADERS, the latter winning): often a tenant's API key.
	Headers map[string]Secret
	// Timeout bounds one export (OTEL_EXPORTER_OTLP_TIMEOUT, ms; 10 s).
	Timeout time.Duration
	// ServiceName is OTEL_SERVICE_NAME (default orchestrator-edge).
	ServiceName string
	// Sampler and SamplerArg are OTEL_TRACES_SAMPLER and _ARG (default
	// parentbased_always_on).
	Sampler    string
	SamplerArg float64
	// URLTemplate links an event's trace from its page
	// (ORCHESTRATOR_TRACE_URL_TEMPLATE: an http(s) URL with {trace_id},
	// e.g. http://jaeger:16686/trace/{trace_id}; "" = no link).
	URLTemplate string
}

// DefaultServiceName is the service.name of the appliance's spans.
const DefaultServiceName = "orchestrator-edge"

// Samplers are the values OTEL_TRACES_SAMPLER may take.
var Samplers = []string{"always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"}

// OtelVariables are the standard OpenTelemetry variables the appliance or
// the SDK under it reads: the misspelling warner knows them, so that
// OTEL_EXPORTER_OTLP_ENDPIONT is named and these are not.
var OtelVariables = []string{
	"OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_PROPAGATORS",
	"OTEL_TRACES_EXPORTER", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
	"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
	"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
	"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
	"OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
	"OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
	"OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
	"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
	"OTEL_EXPORTER_OTLP_CLIENT_KEY", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
	"OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_EXPORT_TIMEOUT", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
	"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT",
	"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
	"OTEL_SPAN_EVENT_COUNT_LIMIT", "OTEL_SPAN_LINK_COUNT_LIMIT",
	"OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
}

// tracing reads the OTEL_* variables. Each one the SDK reads by itself is
// named through getenv too, so that none of them is warned about.
func (p *parser) tracing() Tracing {
	for _, name := range OtelVariables {
		_ = p.getenv(name)
	}
	t := Tracing{ServiceName: p.str("OTEL_SERVICE_NAME", DefaultServiceName), Timeout: 10 * time.Second}
	if v := p.raw("ORCHESTRATOR_TRACE_URL_TEMPLATE"); v != "" {
		u, err := url.Parse(strings.ReplaceAll(v, "{trace_id}", "0"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !strings.Contains(v, "{trace_id}") {
			p.fail("ORCHESTRATOR_TRACE_URL_TEMPLATE", "%q is not an http(s) URL with {trace_id} in it (e.g. http://jaeger:16686/trace/{trace_id})", v)
		}
		t.URLTemplate = v
	}
	exporter := strings.ToLower(p.raw("OTEL_TRACES_EXPORTER"))
	endpoint := p.raw("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	generic := p.raw("OTEL_EXPORTER_OTLP_ENDPOINT")
	switch exporter {
	case "", "otlp":
		t.Enabled = exporter == "otlp" || endpoint != "" || generic != ""
	case "none":
	default:
		p.fail("OTEL_TRACES_EXPORTER", "%q is not otlp or none", exporter)
	}
	if p.bool("OTEL_SDK_DISABLED", false) {
		t.Enabled = false
	}
	t.Protocol = strings.ToLower(p.str("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", p.str("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")))
	if t.Protocol != "http/protobuf" && t.Protocol != "grpc" {
		p.fail("OTEL_EXPORTER_OTLP_PROTOCOL", "%q is not http/protobuf or grpc", t.Protocol)
	}
	// The signal's own endpoint is used as it is; the generic one is a
	// base URL under which http/protobuf adds /v1/traces.
	switch {
	case endpoint != "":
		t.Endpoint = p.otlpURL("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
	case generic != "":
		t.Endpoint = p.otlpURL("OTEL_EXPORTER_OTLP_ENDPOINT", generic)
		if t.Protocol == "http/protobuf" {
			t.Endpoint = strings.TrimRight(t.Endpoint, "/") + "/v1/traces"
		}
	case t.Protocol == "grpc":
		t.Endpoint = "http://localhost:4317"
	default:
		t.Endpoint = "http://localhost:4318/v1/traces"
	}
	t.Headers = p.otlpHeaders("OTEL_EXPORTER_OTLP_HEADERS")
	for k, v := range p.otlpHeaders("OTEL_EXPORTER_OTLP_TRACES_HEADERS") {
		t.Headers[k] = v
	}
	if ms := p.int("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", p.int("OTEL_EXPORTER_OTLP_TIMEOUT", 10000, 1, 600000), 1, 600000); ms > 0 {
		t.Timeout = time.Duration(ms) * time.Millisecond
	}
	t.Sampler = strings.ToLower(p.str("OTEL_TRACES_SAMPLER", "parentbased_always_on"))
	if !slices.Contains(Samplers, t.Sampler) {
		p.fail("OTEL_TRACES_SAMPLER", "%q is not one of %s", t.Sampler, strings.Join(Samplers, ", "))
	}
	t.SamplerArg = 1
	if strings.HasSuffix(t.Sampler, "traceidratio") {
		if v := p.raw("OTEL_TRACES_SAMPLER_ARG"); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || f > 1 {
				p.fail("OTEL_TRACES_SAMPLER_ARG", "%q is not a ratio between 0 and 1", v)
			}
			t.SamplerArg = f
		}
	}
	return t
}

// otlpURL checks an OTLP endpoint: an absolute http(s) URL.
func (p *parser) otlpURL(name, v string) string {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.fail(name, "%q is not an absolute http(s) URL (e.g. http://jaeger:4318)", v)
		return ""
	}
	return v
}

// otlpHeaders reads key=value pairs, comma-separated, the values
// URL-encoded (the OpenTelemetry format). A bad entry is named by its
// position, never its value: headers carry API keys.
func (p *parser) otlpHeaders(name string) map[string]Secret {
	out := map[string]Secret{}
	for i, part := range strings.Split(p.raw(name), ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		val, err := url.PathUnescape(strings.TrimSpace(v))
		if !ok || k == "" || err != nil || strings.ContainsAny(k, " \t:") {
			p.fail(name, "entry %d is not key=value", i+1)
			return map[string]Secret{}
		}
		out[k] = Secret(val)
	}
	return out
}

// Package tracing sets up OpenTelemetry traces (SPEC §22): one trace per
// event, exported over OTLP when the standard OTEL_* variables ask for it
// (config.Tracing) and off otherwise — then no exporter, no goroutine and
// no connection exist, and the tracer is the SDK's no-op one, which still
// carries an incoming traceparent on to the agent.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/config"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Propagator reads and writes W3C traceparent (and tracestate): the one
// format Alertmanager, the agent and the peers speak.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Tracing is the process's tracer provider and how to stop it.
type Tracing struct {
	// Provider makes the tracers; the no-op one when tracing is off.
	Provider trace.TracerProvider
	// Enabled says spans are recorded and exported.
	Enabled bool
	sdk     *sdktrace.TracerProvider
}

// Off is tracing that records nothing and starts nothing.
func Off() *Tracing { return &Tracing{Provider: noop.NewTracerProvider()} }

// Options configure New.
type Options struct {
	Config   config.Tracing
	Version  string
	Registry prometheus.Registerer
}

// New builds the tracer provider cfg asks for. Off, it returns Off() and
// registers nothing else; on, spans are batched and exported in the
// background, and a failed export drops its spans (counted in
// orchestrator_trace_spans_total{outcome="dropped"}) without ever slowing
// what made them.
func New(ctx context.Context, o Options) (*Tracing, error) {
	spans := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orchestrator_trace_spans_total",
		Help: "Trace spans by outcome: ended (handed to the export queue), exported, dropped (the collector could not be reached or refused them).",
	}, []string{"outcome"})
	if o.Registry != nil {
		if err := o.Registry.Register(spans); err != nil {
			return nil, err
		}
	}
	if !o.Config.Enabled {
		return Off(), nil
	}
	exp, err := newExporter(ctx, o.Config)
	if err != nil {
		return nil, err
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", o.Config.ServiceName),
		attribute.String("service.version", o.Version),
	))
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	counted := &countingExporter{next: exp, exported: spans.WithLabelValues("exported"), dropped: spans.WithLabelValues("dropped")}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sampler(o.Config)),
		sdktrace.WithResource(res),
		sdktrace.WithSpanProcessor(endCounter{spans.WithLabelValues("ended")}),
		sdktrace.WithBatcher(counted),
	)
	return &Tracing{Provider: tp, Enabled: true, sdk: tp}, nil
}

// Shutdown exports what is queued, within ctx, and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.sdk == nil {
		return nil
	}
	return t.sdk.Shutdown(ctx)
}

// ForceFlush exports what is queued now (tests, and before a stop).
func (t *Tracing) ForceFlush(ctx context.Context) error {
	if t == nil || t.sdk == nil {
		return nil
	}
	return t.sdk.ForceFlush(ctx)
}

// Tracer is the appliance's tracer from t (no-op when t is nil).
func (t *Tracing) Tracer() trace.Tracer {
	if t == nil || t.Provider == nil {
		return noop.NewTracerProvider().Tracer(Name)
	}
	return t.Provider.Tracer(Name)
}

// Posts is the tracer of the answers' posts: nil when tracing is off, so
// the outbox does not read each answer's trace only to drop it.
func (t *Tracing) Posts() trace.Tracer {
	if t == nil || !t.Enabled {
		return nil
	}
	return t.Tracer()
}

// Name is the instrumentation scope of every span the appliance makes.
const Name = "github.com/incidentfox/orchestrator-edge"

// retry bounds how long one batch is retried on a collector that answers
// 429/503 or cannot be reached: the queue behind it keeps filling, so a
// batch that cannot go within the export timeout is dropped and counted.
func retry(timeout time.Duration) (bool, time.Duration, time.Duration, time.Duration) {
	return true, 500 * time.Millisecond, 2 * time.Second, timeout
}

func newExporter(ctx context.Context, c config.Tracing) (sdktrace.SpanExporter, error) {
	u, err := url.Parse(c.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("tracing: endpoint: %w", err)
	}
	headers := make(map[string]string, len(c.Headers))
	for k, v := range c.Headers {
		headers[k] = v.Reveal()
	}
	on, first, most, elapsed := retry(c.Timeout)
	if c.Protocol == "grpc" {
		opts := []otlptracegrpc.Option{
			otlptracegrpc.WithEndpoint(u.Host),
			otlptracegrpc.WithHeaders(headers),
			otlptracegrpc.WithTimeout(c.Timeout),
			otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: on, InitialInterval: first, MaxInterval: most, MaxElapsedTime: elapsed}),
		}
		if u.Scheme == "http" {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		return otlptracegrpc.New(ctx, opts...)
	}
	return otlptracehttp.New(ctx,
		otlptracehttp.WithEndpointURL(c.Endpoint),
		otlptracehttp.WithHeaders(headers),
		otlptracehttp.WithTimeout(c.Timeout),
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: on, InitialInterval: first, MaxInterval: most, MaxElapsedTime: elapsed}),
	)
}

func sampler(c config.Tracing) sdktrace.Sampler {
	switch c.Sampler {
	case "always_on":
		return sdktrace.AlwaysSample()
	case "always_off":
		return sdktrace.NeverSample()
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(c.SamplerArg)
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample())
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.SamplerArg))
	default:
		return sdktrace.ParentBased(sdktrace.AlwaysSample())
	}
}

// countingExporter counts what each export did with its spans.
type countingExporter struct {
	next              sdktrace.SpanExporter
	exported, dropped prometheus.Counter
}

func (e *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if err := e.next.ExportSpans(ctx, spans); err != nil {
		e.dropped.Add(float64(len(spans)))
		return err
	}
	e.exported.Add(float64(len(spans)))
	return nil
}

func (e *countingExporter) Shutdown(ctx context.Context) error {
	if err := e.next.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// endCounter counts the sampled spans that ended, before the batcher: the
// difference to exported + dropped is what is still queued (or what a full
// queue turned away).
type endCounter struct{ ended prometheus.Counter }

func (c endCounter) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (c endCounter) OnEnd(s sdktrace.ReadOnlySpan) {
	if s.SpanContext().IsSampled() {
		c.ended.Inc()
	}
}
func (c endCounter) Shutdown(context.Context) error   { return nil }
func (c endCounter) ForceFlush(context.Context) error { return nil }

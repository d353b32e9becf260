package tracing

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The attributes a span may carry: bounded, and never a body, a header's
// value, a token or a secret (SPEC §22).
const (
	AttrSource  = attribute.Key("orchestrator.source")
	AttrEventID = attribute.Key("orchestrator.event_id")
	AttrOrg     = attribute.Key("orchestrator.org_id")
	AttrTeam    = attribute.Key("orchestrator.team_node_id")
	AttrOutcome = attribute.Key("orchestrator.outcome")
	AttrAttempt = attribute.Key("orchestrator.attempt")
	// AttrEvents is how many events an agent call carries (a digest's
	// size); AttrAgent the agent called; AttrCached says the team's token
	// and config came from the cache (no Config Service call); AttrPeer
	// names the peer a client span called; AttrStatus its HTTP status.
	AttrEvents = attribute.Key("orchestrator.events")
	AttrAgent  = attribute.Key("orchestrator.agent")
	AttrCached = attribute.Key("orchestrator.cached")
	AttrPeer   = attribute.Key("orchestrator.peer")
	AttrStatus = attribute.Key("http.response.status_code")
)

// Extract returns ctx with the remote parent an incoming traceparent
// names. A malformed or absent one adds nothing: the door's span is then a
// new root, and the event is accepted all the same.
func Extract(ctx context.Context, h http.Header) context.Context {
	return Propagator.Extract(ctx, propagation.HeaderCarrier(h))
}

// Inject writes ctx's span as traceparent into an outgoing request's
// headers (nothing when ctx has none).
func Inject(ctx context.Context, h http.Header) {
	Propagator.Inject(ctx, propagation.HeaderCarrier(h))
}

// Ref is the stored form of sc (store.TraceLen bytes: trace id, span id,
// flags), nil when sc is not valid — an untraced event stores nothing.
func Ref(sc trace.SpanContext) []byte {
	if !sc.IsValid() {
		return nil
	}
	out := make([]byte, 0, store.TraceLen)
	tid, sid := sc.TraceID(), sc.SpanID()
	out = append(out, tid[:]...)
	out = append(out, sid[:]...)
	return append(out, byte(sc.TraceFlags()))
}

// SpanContext reads a stored reference (invalid when ref is not one).
func SpanContext(ref []byte) trace.SpanContext {
	if len(ref) != store.TraceLen {
		return trace.SpanContext{}
	}
	var tid trace.TraceID
	var sid trace.SpanID
	copy(tid[:], ref[:16])
	copy(sid[:], ref[16:24])
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.TraceFlags(ref[24]), Remote: true})
}

// WithRef returns ctx whose parent is the stored span ref names (ctx as it
// is when ref names none): dispatch continues the event's trace.
func WithRef(ctx context.Context, ref []byte) context.Context {
	sc := SpanContext(ref)
	if !sc.IsValid() {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// TraceID is the hex trace id of a stored reference ("" for none): the
// event page shows it.
func TraceID(ref []byte) string {
	sc := SpanContext(ref)
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}

// Observe records v on h with the trace id of sc as its exemplar when sc
// is sampled (a recorded trace to jump to), plainly otherwise.
func Observe(h prometheus.Observer, v float64, sc trace.SpanContext) {
	if eo, ok := h.(prometheus.ExemplarObserver); ok && sc.IsSampled() {
		eo.ObserveWithExemplar(v, prometheus.Labels{"trace_id": sc.TraceID().String()})
		return
	}
	h.Observe(v)
}

// LogHandler adds trace_id and span_id to every record logged with a
// context that carries a span (logger.InfoContext(ctx, …)): each log line
// about an event names its trace.
func LogHandler(h slog.Handler) slog.Handler { return logHandler{h} }

type logHandler struct{ slog.Handler }

func (l logHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return l.Handler.Handle(ctx, r)
}

func (l logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return logHandler{l.Handler.WithAttrs(as)}
}

func (l logHandler) WithGroup(name string) slog.Handler { return logHandler{l.Handler.WithGroup(name)} }

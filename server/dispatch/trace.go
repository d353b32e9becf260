package dispatch

import (
	"context"

	"github.com/incidentfox/orchestrator-edge/server/tracing"
	"github.com/incidentfox/orchestrator-edge/store"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Dispatch continues each event's trace (SPEC §22), however long after the
// ack it runs: the routing lookup, then per agent call the claim, the
// team's token and config, and the agent call itself, under the door's
// span the event keeps. A digest's call goes under its first traced event
// and links every event it folds.

// eventAttrs are the bounded attributes of a span about one event.
func eventAttrs(e store.Event) []attribute.KeyValue {
	return []attribute.KeyValue{tracing.AttrSource.String(e.Source), tracing.AttrEventID.String(e.ID),
		tracing.AttrAttempt.Int(e.Attempts + 1)}
}

// startRoute starts the routing lookup's span of e.
func (d *Dispatcher) startRoute(e store.Event) (context.Context, trace.Span) {
	return d.o.Tracer.Start(tracing.WithRef(d.work, e.Trace), "routing lookup", trace.WithAttributes(eventAttrs(e)...))
}

// endRoute ends it with where the event went.
func endRoute(span trace.Span, o store.Outcome, outcome string) {
	if span.IsRecording() {
		if outcome == "" {
			outcome = "routed"
		}
		span.SetAttributes(tracing.AttrOutcome.String(outcome), tracing.AttrOrg.String(o.OrgID), tracing.AttrTeam.String(o.TeamNodeID))
		if outcome == "failed" || outcome == "retry" || outcome == "dead" {
			span.SetStatus(codes.Error, outcome)
		}
	}
	span.End()
}

// startCall starts the span of one agent call, from its claim on: under
// the first traced event's trace; a digest links each event it folds.
func (d *Dispatcher) startCall(c call) (context.Context, trace.Span) {
	parent := d.work
	for _, e := range c.events {
		if sc := tracing.SpanContext(e.Trace); sc.IsValid() {
			parent = trace.ContextWithRemoteSpanContext(d.work, sc)
			break
		}
	}
	first := c.events[0]
	attrs := []attribute.KeyValue{tracing.AttrSource.String(first.Source), tracing.AttrOrg.String(c.team.OrgID),
		tracing.AttrTeam.String(c.team.TeamNodeID), tracing.AttrEvents.Int(len(c.events)), tracing.AttrAttempt.Int(first.Attempts + 1)}
	opts := []trace.SpanStartOption{}
	if len(c.events) == 1 {
		attrs = append(attrs, tracing.AttrEventID.String(first.ID))
	} else {
		links := make([]trace.Link, 0, len(c.events))
		for _, e := range c.events {
			if sc := tracing.SpanContext(e.Trace); sc.IsValid() {
				links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{tracing.AttrEventID.String(e.ID)}})
			}
		}
		opts = append(opts, trace.WithLinks(links...))
	}
	opts = append(opts, trace.WithAttributes(attrs...))
	if !c.claimed.IsZero() {
		opts = append(opts, trace.WithTimestamp(c.claimed))
	}
	ctx, span := d.o.Tracer.Start(parent, "dispatch", opts...)
	if !c.claimed.IsZero() && span.IsRecording() {
		_, claim := d.o.Tracer.Start(ctx, "claim", trace.WithTimestamp(c.claimed))
		claim.End(trace.WithTimestamp(c.claimedEnd))
	}
	return ctx, span
}

// endCall ends an agent call's span with its outcome.
func endCall(span trace.Span, outcome string) {
	if span.IsRecording() {
		span.SetAttributes(tracing.AttrOutcome.String(outcome))
		if outcome != "delivered" {
			span.SetStatus(codes.Error, outcome)
		}
	}
	span.End()
}

// step runs f under a child span named name; a failure marks the span.
func (d *Dispatcher) step(ctx context.Context, name string, f func(context.Context) error, attrs ...attribute.KeyValue) error {
	ctx, span := d.o.Tracer.Start(ctx, name, trace.WithAttributes(attrs...))
	err := f(ctx)
	if err != nil {
		span.SetStatus(codes.Error, "failed")
	}
	span.End()
	return err
}

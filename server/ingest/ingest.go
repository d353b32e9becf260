// Package ingest is the webhook door (SPEC §6): for every request, the body
// is capped, its headers must be clean text, the source's verifier checks
// the signature on the raw bytes, the source's token bucket limits it, what
// it says is kept as clean text with credentials redacted, and the event is
// stored durably (the store's group commit) before the answer acknowledges
// it. Nothing slow happens before the ack: dispatch reads the durable
// queue afterwards. The door also keeps the ack latencies it measures, for
// the admin page's charts.
package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/clientlimit"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/incidentfox/orchestrator-edge/server/tracing"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"
)

// ingestOutcomes are the outcome label values of
// orchestrator_webhook_events_total.
var ingestOutcomes = []string{"accepted", "duplicate", "bad_signature", "rate_limited", "too_large", "bad_request", "store_error", "insufficient_storage"}

// Store keeps the events (store.DB implements it).
type Store interface {
	InsertEvent(ctx context.Context, e store.Event) (store.InsertResult, error)
}

// AckStore keeps the ack latency figures (store.DB implements it).
type AckStore interface {
	AddAckStats(ctx context.Context, stats []store.AckStat) error
}

// Options configure a Door.
type Options struct {
	// Sources are every webhook source with its routes and verifiers.
	Sources *webhook.Registry
	Events  Store
	// Notify wakes the dispatcher after an event is stored, naming its team
	// when the team is already known ("" otherwise).
	Notify func(org, team string)
	// CachedRoute, if set, answers a routing lookup from memory only (no
	// I/O): an event whose route is cached is stored with its team, so it
	// needs no routing round after the ack.
	CachedRoute func(identifiers map[string]string) (org, team, matchedBy string, ok bool)
	// Rate and Burst limit each source (events/s; 0 = none).
	Rate  float64
	Burst int
	// SignatureFailuresPerMinute bounds the failed signature checks of one
	// client address (default 30): past it, that address is answered 429
	// before its body is read, until its bucket refills.
	SignatureFailuresPerMinute int
	// TrustedProxies are the proxies whose X-Forwarded-For names the client
	// (ORCHESTRATOR_TRUSTED_PROXIES); from anyone else it is ignored.
	TrustedProxies []netip.Prefix
	// LowDisk, if set, reports that the data volume is below half its
	// reserve: deliveries are then refused with 503 insufficient_storage
	// before their body is read, keeping the rest for what was accepted.
	LowDisk func() bool
	// BytesPerSecond limits the body bytes of each source (0 = none); its
	// burst is a second's worth, and never less than one largest body.
	BytesPerSecond int64
	// MaxBodyBytes caps a body (413 past it).
	MaxBodyBytes int64
	// AlertGroupWait holds a new firing alert event this long before it is
	// due, so that one which resolves meanwhile never reaches the agent
	// (ORCHESTRATOR_ALERT_GROUP_WAIT_SECONDS; 0 = no wait).
	AlertGroupWait time.Duration
	// Settled counts the events a resolve suppressed at ingest (the
	// dispatcher's orchestrator_suppressed_total, reason resolved).
	Settled func(source string, n int)
	// InternalToken is the internal trigger's shared secret.
	InternalToken string
	// Acks keeps the ack latency figures; nil: none are kept.
	Acks     AckStore
	Registry prometheus.Registerer
	Logger   *slog.Logger
	Now      func() time.Time
	// Tracer makes the door's spans (SPEC §22): the delivery's, ending at
	// the ack, with verify and store under it. nil: no tracing code runs
	// at all (the benchmarks' baseline); the no-op tracer still carries an
	// incoming traceparent to the event.
	Tracer trace.Tracer
}

// Door is the webhook door.
type Door struct {
	o        Options
	log      *slog.Logger
	out      httpx.Writer
	metrics  *ingestMetrics
	limiters map[string]*rate.Limiter
	// byteLimiters limit each source's body bytes.
	byteLimiters map[string]*rate.Limiter
	// failures counts failed signature checks per client address.
	failures *clientlimit.Limiter
	acks     ackStats
}

// defaultSignatureFailuresPerMinute leaves room for a sender whose secret
// is being rotated while one address (an ingress without
// ORCHESTRATOR_TRUSTED_PROXIES) stands for every sender.
const defaultSignatureFailuresPerMinute = 30

// New builds the door and registers the webhook metrics of SPEC §12.
func New(o Options) (*Door, error) {
	if o.Events == nil || o.Registry == nil || o.Logger == nil || o.Sources == nil {
		return nil, errors.New("ingest: sources, events, registry and logger are required")
	}
	if o.Now == nil {
		o.Now = wallclock.Now
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.SignatureFailuresPerMinute <= 0 {
		o.SignatureFailuresPerMinute = defaultSignatureFailuresPerMinute
	}
	m, err := newIngestMetrics(o.Registry, o.Sources.Names())
	if err != nil {
		return nil, err
	}
	log := o.Logger.With("component", "ingest")
	return &Door{o: o, log: log, out: httpx.Writer{Logger: log}, metrics: m,
		limiters:     newLimiters(o.Sources.Names(), o.Rate, o.Burst),
		byteLimiters: newLimiters(o.Sources.Names(), float64(o.BytesPerSecond), int(max(o.BytesPerSecond, o.MaxBodyBytes))), failures: clientlimit.New(o.SignatureFailuresPerMinute)}, nil
}

func (d *Door) now() time.Time { return d.o.Now().UTC() }

// Sources lists the source names, in the registry's order.
func (d *Door) Sources() []string { return d.o.Sources.Names() }

// Registry is the door's source registry.
func (d *Door) Registry() *webhook.Registry { return d.o.Sources }

// ingestMetrics are the webhook metrics of SPEC §12.
type ingestMetrics struct {
	events *prometheus.CounterVec
	ack    *prometheus.HistogramVec
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func newIngestMetrics(reg prometheus.Registerer, sources []string) (*ingestMetrics, error) {
	m := &ingestMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orchestrator_webhook_events_total",
			Help: "Webhook requests by source and outcome (accepted, duplicate, bad_signature, rate_limited, too_large, bad_request, store_error, insufficient_storage).",
		}, []string{"source", "outcome"}),
		ack: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orchestrator_webhook_ack_seconds",
			Help:    "Time from the start of a webhook request to its answer.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 3},
		}, []string{"source"}),
	}
	for _, c := range []prometheus.Collector{m.events, m.ack} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Every known series exists from the start at 0, so an alert's rate()
	// or increase() counts the first bad signature too.
	for _, src := range append(slices.Clone(sources), "internal") {
		for _, o := range ingestOutcomes {
			m.events.WithLabelValues(src, o)
		}
	}
	for _, src := range sources {
		m.ack.WithLabelValues(src)
	}
	return m, nil
}

// newLimiters makes one token bucket per source; perSecond 0 means none.
func newLimiters(sources []string, perSecond float64, burst int) map[string]*rate.Limiter {
	out := map[string]*rate.Limiter{}
	if perSecond <= 0 {
		return out
	}
	for _, src := range sources {
		out[src] = rate.NewLimiter(rate.Limit(perSecond), burst)
	}
	return out
}

// Answer is what the door says to one delivery.
type Answer struct {
	Status int
	// EventID names the stored event (or, for a duplicate, the first one).
	EventID   string
	Duplicate bool
	// Challenge is Slack's url_verification answer.
	Challenge string
	// Err, when set, is the refusal (its kind gives Status).
	Err error
	// Outcome is the metric's outcome label.
	Outcome string
	// Empty: the ack has no body (Slack's view_submission reads a body as
	// a response_action; an empty 200 closes the modal).
	Empty bool
}

// Handler is one route of a source: cap → verify → limit → clean → store → ack.
func (d *Door) Handler(source string, rt webhook.Route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if d.o.Tracer == nil {
			d.serve(r.Context(), w, r, source, rt)
			return
		}
		// One trace per event: the sender's (traceparent) when it sent one.
		ctx, span := d.o.Tracer.Start(tracing.Extract(r.Context(), r.Header), "webhook "+source,
			trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(tracing.AttrSource.String(source)))
		a := d.serve(ctx, w, r, source, rt)
		endDelivery(span, a)
	}
}

// endDelivery ends the delivery's span at the ack, with its outcome.
func endDelivery(span trace.Span, a Answer) {
	if !span.IsRecording() {
		span.End()
		return
	}
	attrs := []attribute.KeyValue{tracing.AttrOutcome.String(a.Outcome)}
	if a.EventID != "" {
		attrs = append(attrs, tracing.AttrEventID.String(a.EventID))
	}
	span.SetAttributes(attrs...)
	if a.Outcome == "store_error" || a.Outcome == "insufficient_storage" {
		span.SetStatus(codes.Error, a.Outcome)
	}
	span.End()
}

// serve answers one delivery and returns what it answered.
func (d *Door) serve(ctx context.Context, w http.ResponseWriter, r *http.Request, source string, rt webhook.Route) Answer {
	start := time.Now()
	client := clientlimit.ClientAddr(r, d.o.TrustedProxies)
	// A client past its failed signatures is refused before its body
	// is read: guessing costs it a request, not our bandwidth and HMACs.
	if wait := d.failures.Wait(client, d.now()); wait > 0 {
		a := Answer{Outcome: "rate_limited", Err: tooManySignatureFailures(wait)}
		d.answer(w, r, a)
		d.count(ctx, source, a.Outcome, time.Since(start))
		return a
	}
	if d.o.LowDisk != nil && d.o.LowDisk() {
		a := Answer{Outcome: "insufficient_storage", Err: insufficientStorage()}
		d.answer(w, r, a)
		d.count(ctx, source, a.Outcome, time.Since(start))
		return a
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, d.o.MaxBodyBytes))
	var a Answer
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			a = Answer{Outcome: "too_large", Err: apperr.Wrap(err, apperr.TooLarge, "body_too_large", "the body exceeds %d bytes", tooLarge.Limit)}
		} else {
			a = Answer{Outcome: "bad_request", Err: apperr.Wrap(err, apperr.Invalid, "bad_request", "the body could not be read")}
		}
	} else {
		a = d.accept(ctx, source, rt.Verifier, body, r.Header)
	}
	if a.Outcome == "bad_signature" {
		d.failures.Fail(client, d.now())
	}
	d.answer(w, r, a)
	d.count(ctx, source, a.Outcome, time.Since(start))
	return a
}

// span starts a child span of the delivery's when the door traces.
func (d *Door) span(ctx context.Context, name string) (context.Context, trace.Span) {
	if d.o.Tracer == nil {
		return ctx, nil
	}
	return d.o.Tracer.Start(ctx, name)
}

// end ends a span of span(), if one was started.
func end(s trace.Span) {
	if s != nil {
		s.End()
	}
}

// tooManySignatureFailures is the 429 of a client past its failed
// signature checks.
func tooManySignatureFailures(wait time.Duration) error {
	return &apperr.Error{Kind: apperr.RateLimited, Code: "too_many_signature_failures",
		Detail:            "too many failed signature checks from this address; retry later",
		RetryAfterSeconds: max(1, int(math.Ceil(wait.Seconds())))}
}

// lowDiskRetryAfter is how long a sender is asked to wait while the volume
// is below half its reserve: long enough for retention to free room.
const lowDiskRetryAfter = 60

// insufficientStorage is the 503 of a door whose volume is nearly full.
func insufficientStorage() error {
	return &apperr.Error{Kind: apperr.Unavailable, Code: "insufficient_storage",
		Detail:            "the data volume is nearly full; the delivery was not stored, retry later",
		RetryAfterSeconds: lowDiskRetryAfter}
}

// Accept takes one delivery of a source as the route would — verify, limit,
// clean, store — without HTTP: the admin page's sample buttons send their
// signed samples through it.
func (d *Door) Accept(ctx context.Context, source string, body []byte, h http.Header) Answer {
	start := time.Now()
	var v webhook.Verifier
	if src := d.o.Sources.Get(source); src != nil && len(src.Routes) > 0 {
		v = src.Routes[0].Verifier
	}
	var span trace.Span
	if d.o.Tracer != nil {
		ctx, span = d.o.Tracer.Start(ctx, "webhook "+source, trace.WithAttributes(tracing.AttrSource.String(source)))
	}
	a := d.accept(ctx, source, v, body, h)
	d.count(ctx, source, a.Outcome, time.Since(start))
	if span != nil {
		endDelivery(span, a)
	}
	return a
}

// count records one delivery's outcome and, when accepted, its ack time.
func (d *Door) count(ctx context.Context, source, outcome string, took time.Duration) {
	d.metrics.events.WithLabelValues(source, outcome).Inc()
	// The ack's exemplar is its trace (OpenMetrics), when one is recorded.
	tracing.Observe(d.metrics.ack.WithLabelValues(source), took.Seconds(), trace.SpanContextFromContext(ctx))
	if outcome == "accepted" && d.o.Acks != nil {
		d.acks.observe(source, took)
	}
}

func (d *Door) accept(ctx context.Context, source string, verifier webhook.Verifier, body []byte, h http.Header) Answer {
	if verifier == nil {
		return Answer{Outcome: "bad_request", Err: apperr.New(apperr.NotFound, "not_found", "no webhook source %q", source)}
	}
	// Everything the door stores is clean text (SPEC §18): a header that
	// is not valid UTF-8, or holds a NUL, is refused before anything else.
	if err := webhook.CheckHeaders(h); err != nil {
		return Answer{Outcome: "bad_request", Err: apperr.Wrap(err, apperr.Invalid, "bad_request", "%v", err)}
	}
	_, vspan := d.span(ctx, "verify")
	ev, err := verifier.Verify(body, h, d.now())
	end(vspan)
	switch {
	case errors.Is(err, webhook.ErrNoSecret), errors.Is(err, webhook.ErrSignature):
		return Answer{Outcome: "bad_signature", Err: apperr.Wrap(err, apperr.Unauthenticated, "signature_verification_failed", "%v", err)}
	case err != nil:
		return Answer{Outcome: "bad_request", Err: apperr.Wrap(err, apperr.Invalid, "bad_request", "%v", err)}
	}
	if ev.Challenge != "" {
		return Answer{Status: http.StatusOK, Challenge: ev.Challenge, Outcome: "accepted"}
	}
	if limiter := d.limiters[source]; limiter != nil && !limiter.AllowN(d.now(), 1) {
		retry := int(math.Ceil(1 / float64(limiter.Limit())))
		return Answer{Outcome: "rate_limited", Err: &apperr.Error{Kind: apperr.RateLimited, Code: "rate_limited",
			Detail: "too many " + source + " events; retry later", RetryAfterSeconds: max(1, retry)}}
	}
	// The byte limit counts verified deliveries only: forged ones cannot
	// spend a source's bytes (they count against their address instead).
	if limiter := d.byteLimiters[source]; limiter != nil && !limiter.AllowN(d.now(), len(body)) {
		retry := int(math.Ceil(float64(len(body)) / float64(limiter.Limit())))
		return Answer{Outcome: "rate_limited", Err: &apperr.Error{Kind: apperr.RateLimited, Code: "rate_limited",
			Detail: "too many bytes from " + source + "; retry later", RetryAfterSeconds: max(1, retry)}}
	}
	var verifyHeaders []string
	if src := d.o.Sources.Get(source); src != nil {
		verifyHeaders = src.VerifyHeaders
	}
	headers := storedHeaders(h, verifyHeaders)
	// Only the internal trigger marks its events (bound to no org).
	delete(headers, webhook.TriggerHeader)
	if ev.Source == webhook.Slack {
		// The app it came through is the route's, never the sender's word.
		delete(headers, webhook.AppHeader)
		if ev.App != "" {
			headers[webhook.AppHeader] = ev.App
		}
	}
	a := d.store(ctx, ev, headers, body, http.StatusOK)
	a.Empty = ev.AckEmpty && a.Err == nil
	return a
}

// record is the stored form of a verified event.
func (d *Door) record(ev webhook.Event, headers map[string]string, body []byte) store.Event {
	status, lastErr := store.EventQueued, ""
	if ev.Ignore != "" {
		status, lastErr = store.EventIgnored, "ignored: "+ev.Ignore
	}
	sum := sha256.Sum256(body)
	if ev.StoredBody != nil {
		body = ev.StoredBody
	}
	e := store.Event{
		Source: ev.Source, DeliveryID: ev.DeliveryID, EventType: ev.EventType, Status: status,
		Identifiers: ev.Identifiers, Headers: headers, Body: body, LastError: lastErr, ReceivedAt: d.now(),
		BodySHA256: hex.EncodeToString(sum[:]),
	}
	if a := ev.Alert; a != nil {
		e.AlertKey, e.AlertState, e.AlertSig, e.AlertLabels = a.Key, a.State, a.Signature(), a.LabelsJSON()
		if a.State == webhook.AlertFiring && d.o.AlertGroupWait > 0 && status == store.EventQueued {
			e.HoldUntil = e.ReceivedAt.Add(d.o.AlertGroupWait)
		}
	}
	return e
}

// store writes the event durably; only then is it acknowledged.
func (d *Door) store(ctx context.Context, ev webhook.Event, headers map[string]string, body []byte, okStatus int) Answer {
	e := d.record(ev, headers, body)
	status := e.Status
	// A route already in the dispatcher's cache is applied now, from memory:
	// in a storm every event after the first arrives knowing its team.
	// A source bound to orgs takes a cached route of its orgs only; the
	// router says why another is refused (SPEC §18, round 4). A feedback
	// click always goes through the router, which binds it to its run.
	if status == store.EventQueued && len(ev.Identifiers) > 0 && d.o.CachedRoute != nil && ev.Feedback == nil && ev.Click == nil {
		if org, team, by, ok := d.o.CachedRoute(ev.Identifiers); ok && d.o.Sources.Allows(ev.Source, headers, org) {
			e.OrgID, e.TeamNodeID, e.MatchedBy = org, team, by
		}
	}
	// The event keeps its trace: the door's span, which dispatch's hang
	// under however much later they run (nil when there is none).
	e.Trace = tracing.Ref(trace.SpanContextFromContext(ctx))
	sctx, sspan := d.span(ctx, "store")
	res, err := d.o.Events.InsertEvent(sctx, e)
	end(sspan)
	if err != nil {
		return Answer{Outcome: "store_error", Err: apperr.Wrap(err, apperr.Unavailable, "store_unavailable", "the event could not be stored; retry")}
	}
	if res.Duplicate {
		return Answer{Status: http.StatusOK, EventID: res.ID, Duplicate: true, Outcome: "duplicate"}
	}
	if status == store.EventQueued && !res.Suppressed && d.o.Notify != nil {
		d.o.Notify(e.OrgID, e.TeamNodeID)
	}
	if res.Settled > 0 || res.Suppressed {
		d.log.InfoContext(ctx, "a resolve settled its alert's waiting events", "event_id", res.ID, "source", ev.Source,
			"settled", res.Settled, "resolve_suppressed", res.Suppressed)
		if d.o.Settled != nil {
			d.o.Settled(ev.Source, res.Settled+btoi(res.Suppressed))
		}
	}
	return Answer{Status: okStatus, EventID: res.ID, Outcome: "accepted"}
}

// answer writes the door's answer: the ack, a duplicate's ack, Slack's
// challenge, or the refusal.
func (d *Door) answer(w http.ResponseWriter, r *http.Request, a Answer) {
	switch {
	case a.Err != nil:
		d.out.Error(w, r, a.Err)
	case a.Challenge != "":
		d.out.JSON(w, r, a.Status, map[string]string{"challenge": a.Challenge})
	case a.Empty:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(a.Status)
	case a.Duplicate:
		d.out.JSON(w, r, a.Status, map[string]any{"ok": true, "duplicate": true, "event_id": a.EventID})
	default:
		d.out.JSON(w, r, a.Status, map[string]any{"ok": true, "event_id": a.EventID})
	}
}

package answers

// The outbox: the worker pool that posts answers, durably. Deliveries are
// rows of a queue like the events queue (store.ClaimAnswerDeliveries on the
// same claim, lease and requeue machinery), retried in the one shared stage
// below: Permanent → failed; RetryAfter honoured; anything else retried
// with exponential backoff and jitter until the bound on attempts, then
// dead (queue.Policy, the dispatcher's own). A delivery is posted at least
// once: one taken from the queue (a retry, or a claim a crash left behind)
// first asks its notifier for the run's marker, so an answer posted just
// before a crash is not posted again where the destination's API lets it
// look.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/queue"
	"github.com/incidentfox/orchestrator-edge/server/tracing"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// OutboxStore is what the outbox needs of the store (store.DB).
type OutboxStore interface {
	Shared() bool
	ClaimAnswerDeliveries(ctx context.Context, now, leaseUntil time.Time, limit int) ([]store.AnswerDelivery, error)
	NextAnswerDue(ctx context.Context) (time.Time, bool, error)
	RecordAnswerOutcomes(ctx context.Context, outs []store.AnswerOutcome) error
	RequeueExpiredAnswers(ctx context.Context, now time.Time) (int, error)
	RequeuePostingAnswers(ctx context.Context, now time.Time) (int, error)
	AgentRunAnswers(ctx context.Context, runIDs []string) (map[string]store.RunAnswer, error)
}

// OutboxOptions configure an Outbox.
type OutboxOptions struct {
	Store OutboxStore
	// Notifiers post each destination type.
	Notifiers map[string]Notifier
	// Workers bounds concurrent posts (default 4).
	Workers int
	// Retry is the retry policy (default: the dispatcher's, 6 attempts
	// from 2 s to 5 min).
	Retry queue.Policy
	// Lease is how long a claim holds before another replica may take the
	// delivery (default 2 min); PostTimeout bounds one post (default half
	// the lease, at most 30 s).
	Lease       time.Duration
	PostTimeout time.Duration
	// Poll is how often the queue is looked at for due retries (default 1 s).
	Poll time.Duration
	// FlushEvery and FlushAt shape the batched outcome writes (defaults
	// 50 ms and 100).
	FlushEvery time.Duration
	FlushAt    int
	// PublicURL is ORCHESTRATOR_PUBLIC_URL: answers link their run on the
	// admin page ("" = no link).
	PublicURL string
	Logger    *slog.Logger
	Registry  prometheus.Registerer
	Now       func() time.Time
	// Tracer makes each post's span, in the trace of the event the answer
	// is for (EventTrace reads it); nil: none (tracing off).
	Tracer     trace.Tracer
	EventTrace func(ctx context.Context, eventID string) []byte
}

// Outbox posts answer deliveries.
type Outbox struct {
	o       OutboxOptions
	log     *slog.Logger
	total   *prometheus.CounterVec
	slots   *queue.Slots
	done    *queue.Completer[store.AnswerOutcome]
	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}

	mu     sync.Mutex
	handed []job
	// work is canceled when shutdown runs out of time; posts in flight then
	// go back to the queue without using an attempt.
	work       context.Context
	cancelWork context.CancelFunc
}

// job is one delivery to post.
type job struct {
	d      store.AnswerDelivery
	answer Answer
	dest   Destination
	// claimed: taken from the queue (not handed over as its run was
	// recorded) — a retry, or a claim a crash left: look for the marker.
	claimed bool
}

// Outcome label values of orchestrator_answer_deliveries_total.
var deliveryOutcomes = []string{store.AnswerPosted, queue.Retry, queue.Failed, queue.Dead}

// NewOutbox returns an Outbox and registers its metric.
func NewOutbox(o OutboxOptions) (*Outbox, error) {
	if o.Store == nil {
		return nil, errors.New("answers: the outbox needs a store")
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	o.Retry = o.Retry.WithDefaults()
	if o.Lease <= 0 {
		o.Lease = 2 * time.Minute
	}
	if o.PostTimeout <= 0 {
		o.PostTimeout = min(30*time.Second, o.Lease/2)
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Now == nil {
		o.Now = wallclock.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Outbox{o: o, log: o.Logger.With("component", "answers"), wake: make(chan struct{}, 1)}
	b.total = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orchestrator_answer_deliveries_total",
		Help: "Answer delivery attempts by destination type and outcome (posted, retry, failed, dead).",
	}, []string{"type", "outcome"})
	for _, t := range append(Types[:len(Types):len(Types)], "invalid") {
		for _, oc := range deliveryOutcomes {
			b.total.WithLabelValues(t, oc)
		}
	}
	if o.Registry != nil {
		if err := o.Registry.Register(b.total); err != nil {
			return nil, fmt.Errorf("answers: register metrics: %w", err)
		}
	}
	return b, nil
}

// Lease is how long a claim on a delivery holds: the dispatcher records new
// deliveries already claimed by this process for that long.
func (b *Outbox) Lease() time.Duration { return b.o.Lease }

// Start returns deliveries a crash left posting to the queue (on a database
// of its own; on a shared one only expired leases are taken back) and
// starts posting.
func (b *Outbox) Start(ctx context.Context) error {
	if !b.o.Store.Shared() {
		n, err := b.o.Store.RequeuePostingAnswers(ctx, b.now())
		if err != nil {
			return fmt.Errorf("answers: requeue deliveries in flight: %w", err)
		}
		if n > 0 {
			b.log.Warn("answer deliveries in flight at the last stop are queued again (each looks for its post first)", "count", n)
		}
	}
	b.work, b.cancelWork = context.WithCancel(context.WithoutCancel(ctx))
	b.slots = queue.NewSlots(b.o.Workers)
	b.done = &queue.Completer[store.AnswerOutcome]{Flush: b.o.Store.RecordAnswerOutcomes, Every: b.o.FlushEvery, At: b.o.FlushAt, Logger: b.log}
	b.done.Start()
	b.stop, b.stopped = make(chan struct{}), make(chan struct{})
	go b.loop()
	return nil
}

// Stop stops taking deliveries, lets posts in flight finish until ctx ends,
// then cancels them (they go back to the queue without using an attempt),
// returns what was handed over but not started to the queue, and writes
// every outcome before it returns.
func (b *Outbox) Stop(ctx context.Context) {
	if b.stop == nil {
		return
	}
	close(b.stop)
	<-b.stopped
	done := make(chan struct{})
	go func() { b.slots.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		b.cancelWork()
		<-done
	}
	b.cancelWork()
	b.mu.Lock()
	left := b.handed
	b.handed = nil
	b.mu.Unlock()
	for _, j := range left {
		b.done.Add(store.AnswerOutcome{ID: j.d.ID, Status: store.AnswerQueued, Attempts: j.d.Attempts, NextAttemptAt: b.now(),
			LastError: j.d.LastError, At: b.now()})
	}
	b.done.Close()
}

// Hand takes the deliveries of run that were just recorded: those recorded
// failed (a destination team config gets wrong, one without a credential)
// are counted; those recorded posting — claimed by this process — are
// posted now.
func (b *Outbox) Hand(run store.AgentRun, ds []store.AnswerDelivery) {
	a := FromRun(run, run.Answer, b.o.PublicURL)
	var jobs []job
	for _, d := range ds {
		switch d.Status {
		case store.AnswerFailed:
			b.count(d.Type, queue.Failed)
			b.log.Warn("answer not posted", "delivery_id", d.ID, "agent_run_id", d.AgentRunID, "type", d.Type,
				"org_id", d.OrgID, "team_node_id", d.TeamNodeID, "error", d.LastError)
		case store.AnswerPosting:
			dest, err := DecodeDestination(d.Destination)
			jobs = append(jobs, job{d: d, answer: a, dest: dest})
			if err != nil {
				b.log.Error("answer delivery with an unreadable destination", "delivery_id", d.ID, "error", err)
			}
		}
	}
	if len(jobs) == 0 {
		return
	}
	b.mu.Lock()
	b.handed = append(b.handed, jobs...)
	b.mu.Unlock()
	b.Notify()
}

// Notify wakes the outbox: deliveries were handed over or redelivered.
func (b *Outbox) Notify() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *Outbox) now() time.Time { return b.o.Now().UTC() }

// leaseCheckEvery is how often, on a shared database, deliveries whose
// claim expired (their replica died) are taken back.
const leaseCheckEvery = 5 * time.Second

// loop fills free workers: handed-over deliveries first, then due ones
// from the queue (looked for on each poll, a wake-up, or at once after a
// full claim).
func (b *Outbox) loop() {
	defer close(b.stopped)
	var lastLease time.Time
	look := true
	for {
		if free := b.slots.Free(); free > 0 {
			for _, j := range b.takeHanded(free) {
				b.slots.Go(func() { b.post(j) })
				free--
			}
			if free > 0 && look {
				n, err := b.claim(free)
				if err != nil {
					b.log.Error("claiming answer deliveries failed", "error", err)
				}
				look = n == free // a full claim: more may be due
			}
		}
		if now := time.Now(); b.o.Store.Shared() && now.Sub(lastLease) >= leaseCheckEvery {
			lastLease = now
			if n, err := b.o.Store.RequeueExpiredAnswers(b.work, b.now()); err != nil {
				b.log.Error("taking back expired answer claims failed", "error", err)
			} else if n > 0 {
				b.log.Warn("answer deliveries whose claim expired are queued again", "count", n, "lease", b.o.Lease.String())
				look = true
			}
		}
		// After a full claim, look again at once if a worker is free (a
		// full pool looks when one frees).
		wait := b.o.Poll
		if look && b.slots.Free() > 0 {
			wait = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-b.stop:
			t.Stop()
			return
		case <-b.wake:
			look = true
		case <-b.slots.Freed():
		case <-t.C:
			look = true
		}
		t.Stop()
	}
}

// takeHanded takes up to n handed-over deliveries. On a shared database, a
// delivery whose lease has too little left for a post (its record was
// slow) is left to the queue, which another replica may already have
// taken it from.
func (b *Outbox) takeHanded(n int) []job {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []job
	for len(b.handed) > 0 && len(out) < n {
		j := b.handed[0]
		b.handed = b.handed[1:]
		if b.o.Store.Shared() && b.now().Add(b.o.PostTimeout).After(j.d.NextAttemptAt) {
			b.log.Warn("answer delivery's claim ran out before it was posted; left to the queue", "delivery_id", j.d.ID)
			continue
		}
		out = append(out, j)
	}
	return out
}

// claim claims up to n due deliveries from the queue and starts them; it
// reads (without writing) whether any is due first, so that an idle
// outbox never takes the writer.
func (b *Outbox) claim(n int) (int, error) {
	ctx := b.work
	due, ok, err := b.o.Store.NextAnswerDue(ctx)
	if err != nil || !ok || due.After(b.now()) {
		return 0, err
	}
	now := b.now()
	ds, err := b.o.Store.ClaimAnswerDeliveries(ctx, now, now.Add(b.o.Lease), n)
	if err != nil || len(ds) == 0 {
		return 0, err
	}
	ids := make([]string, 0, len(ds))
	for _, d := range ds {
		ids = append(ids, d.AgentRunID)
	}
	runs, err := b.o.Store.AgentRunAnswers(ctx, ids)
	if err != nil {
		// Claimed but unreadable: back to the queue, no attempt used.
		for _, d := range ds {
			b.done.Add(store.AnswerOutcome{ID: d.ID, Status: store.AnswerQueued, Attempts: d.Attempts, NextAttemptAt: now.Add(b.o.Poll),
				LastError: d.LastError, At: now})
		}
		return 0, err
	}
	for _, d := range ds {
		r, ok := runs[d.AgentRunID]
		if !ok || r.Purged {
			b.finish(d, store.AnswerOutcome{ID: d.ID, Status: store.AnswerFailed, Attempts: d.Attempts,
				LastError: "the answer was purged by retention before it could be posted", At: now}, queue.Failed)
			continue
		}
		dest, err := DecodeDestination(d.Destination)
		j := job{d: d, answer: FromRun(r.Run, r.Answer, b.o.PublicURL), dest: dest, claimed: true}
		if err != nil {
			b.log.Error("answer delivery with an unreadable destination", "delivery_id", d.ID, "error", err)
		}
		b.slots.Go(func() { b.post(j) })
	}
	return len(ds), nil
}

// post makes one attempt at a delivery and records what it came to.
func (b *Outbox) post(j job) {
	span := b.startPost(j)
	p, found, err := b.attempt(j)
	now := b.now()
	out := store.AnswerOutcome{ID: j.d.ID, Attempts: j.d.Attempts, At: now}
	outcome := store.AnswerPosted
	switch {
	case err == nil:
		// The last error stays: "3 failed attempts, then posted" is worth
		// seeing.
		out.Status, out.MessageID, out.Link, out.LastError = store.AnswerPosted, p.MessageID, p.Link, j.d.LastError
	case b.work.Err() != nil:
		// Shutdown cut the post: back to the queue, no attempt used (the
		// retry looks for the post first, in case it landed).
		b.done.Add(store.AnswerOutcome{ID: j.d.ID, Status: store.AnswerQueued, Attempts: j.d.Attempts, NextAttemptAt: now,
			LastError: "interrupted by shutdown", At: now})
		return
	default:
		asked, _ := RetryDelay(err)
		dec := b.o.Retry.Fail(j.d.Attempts, IsPermanent(err), asked, now)
		out.Attempts, out.LastError, outcome = dec.Attempts, errorText(err), dec.Outcome
		switch dec.Outcome {
		case queue.Retry:
			out.Status, out.NextAttemptAt = store.AnswerQueued, dec.At
		case queue.Dead:
			out.Status = store.AnswerDead
		default:
			out.Status = store.AnswerFailed
		}
	}
	b.finish(j.d, out, outcome)
	ctx := b.work
	if span != nil {
		ctx = trace.ContextWithSpan(ctx, span)
		span.SetAttributes(tracing.AttrOutcome.String(outcome), tracing.AttrAttempt.Int(j.d.Attempts+1))
		if outcome != store.AnswerPosted {
			span.SetStatus(codes.Error, outcome)
		}
		span.End()
	}
	b.log.InfoContext(ctx, "answer delivery", "delivery_id", j.d.ID, "agent_run_id", j.d.AgentRunID, "type", j.d.Type,
		"org_id", j.d.OrgID, "team_node_id", j.d.TeamNodeID, "outcome", outcome, "found_earlier_post", found,
		"attempts", out.Attempts, "error", out.LastError)
}

// startPost starts a post's span under the trace of the answer's event (a
// new root for a digest's answer, which answers several), or returns nil
// when the outbox does not trace.
func (b *Outbox) startPost(j job) trace.Span {
	if b.o.Tracer == nil {
		return nil
	}
	ctx := b.work
	if j.d.EventID != "" && b.o.EventTrace != nil {
		ctx = tracing.WithRef(ctx, b.o.EventTrace(ctx, j.d.EventID))
	}
	_, span := b.o.Tracer.Start(ctx, "answer delivery", trace.WithAttributes(tracing.AttrEventID.String(j.d.EventID),
		tracing.AttrOrg.String(j.d.OrgID), tracing.AttrTeam.String(j.d.TeamNodeID), attribute.String("orchestrator.destination", j.d.Type)))
	return span
}

// finish records an outcome and counts it.
func (b *Outbox) finish(d store.AnswerDelivery, out store.AnswerOutcome, outcome string) {
	b.done.Add(out)
	b.count(d.Type, outcome)
}

func (b *Outbox) count(typ, outcome string) {
	if !KnownType(typ) {
		typ = "invalid"
	}
	b.total.WithLabelValues(typ, outcome).Inc()
}

// attempt posts j, after looking for an earlier post of the run when the
// delivery came from the queue. found says the post was already there.
func (b *Outbox) attempt(j job) (p Posted, found bool, err error) {
	n := b.o.Notifiers[j.dest.Type]
	if n == nil {
		return Posted{}, false, Permanent(fmt.Errorf("this appliance posts no %q destinations", j.dest.Type))
	}
	if err := j.dest.validate(); err != nil || j.dest.Type == "" {
		return Posted{}, false, Permanent(fmt.Errorf("invalid destination: %v", err))
	}
	if c, ok := n.(Checker); ok {
		if err := c.Check(j.dest); err != nil {
			return Posted{}, false, Permanent(err)
		}
	}
	ctx, cancel := context.WithTimeout(b.work, b.o.PostTimeout)
	defer cancel()
	if j.claimed {
		p, ok, err := n.Find(ctx, j.dest, j.answer)
		switch {
		case err == nil && ok:
			return p, true, nil
		case err != nil && !IsPermanent(err):
			// The API fails to say: try again later rather than risk a
			// second post.
			return Posted{}, false, fmt.Errorf("looking for an earlier post: %w", err)
		case err != nil:
			// The API refuses to let us look (a missing scope): post, at
			// least once.
			b.log.Warn("cannot look for an earlier post of this answer; posting (at least once)", "delivery_id", j.d.ID, "error", err)
		}
	}
	p, err = n.Post(ctx, j.dest, j.answer)
	return p, false, err
}

// KnownType reports whether t is a destination type (the store and the
// metrics name any other "invalid").
func KnownType(t string) bool { return slices.Contains(Types, t) }

// errorText keeps a last error short enough to store and show.
func errorText(err error) string { return cut(err.Error(), 1000) }

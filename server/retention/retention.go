// Package retention keeps what the appliance stores from growing without
// bound (SPEC §16): raw bodies and answer texts after
// ORCHESTRATOR_EVENT_BODY_RETENTION_DAYS, finished events after
// ORCHESTRATOR_EVENT_RETENTION_DAYS, provisioning runs, agent calls and
// their answer deliveries after ORCHESTRATOR_AUDIT_RETENTION_DAYS,
// idempotency keys when they expire, ack figures after 30 days. It runs at start and
// then every interval, on the leader. Deletes go in small batches with a
// pause between them, so acknowledgements never wait behind a purge.
package retention

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/store"
)

// Store is what retention deletes from (store.DB implements it).
type Store interface {
	PurgeBodies(ctx context.Context, cutoff, now time.Time, limit int) (int, error)
	PurgeFinishedEvents(ctx context.Context, cutoff time.Time, limit int) (int, error)
	PurgeRuns(ctx context.Context, cutoff time.Time, limit int) (int, error)
	PurgeAgentRuns(ctx context.Context, cutoff time.Time, limit int) (int, error)
	PurgeFeedback(ctx context.Context, cutoff time.Time, limit int) (int, error)
	PurgeAnswerDeliveries(ctx context.Context, cutoff time.Time, limit int) (int, error)
	PurgeAnswers(ctx context.Context, cutoff, now time.Time, limit int) (int, error)
	PurgeAudit(ctx context.Context, cutoff time.Time, limit int) (int, error)
	ForgetIdempotencyKeys(ctx context.Context, cutoff time.Time) (int, error)
	PurgeAckStats(ctx context.Context, cutoff time.Time) (int, error)
	GiveSpaceBack(ctx context.Context) error
}

// Options configure the retention chore.
type Options struct {
	Store Store
	// Bodies, Events, Audit and Keys are how long each is kept.
	Bodies, Events, Audit, Keys time.Duration
	// Batch is how many rows one delete takes to begin with (default 100);
	// it then grows or shrinks so that one delete holds the writer for
	// about BatchTime (default 4 ms), at most store.RetentionBatch rows.
	// Pause is the wait between two deletes (default 10 ms): the writer's
	// time for acknowledgements.
	Batch     int
	BatchTime time.Duration
	Pause     time.Duration
	// Every is how often it runs after the first pass (default 1 h).
	Every  time.Duration
	Now    func() time.Time
	Logger *slog.Logger
}

// Report says what one pass removed.
type Report struct {
	Bodies, Events, Runs, AgentRuns, Feedback, Audit, Keys, AckStats int
	// Answers are answer texts emptied (with the bodies), Deliveries the
	// answer deliveries deleted (with the agent runs).
	Answers, Deliveries int
}

// Chore runs retention.
type Chore struct {
	o   Options
	log *slog.Logger
}

// New returns the chore.
func New(o Options) (*Chore, error) {
	if o.Store == nil {
		return nil, errors.New("retention: a store is required")
	}
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if o.BatchTime <= 0 {
		o.BatchTime = 4 * time.Millisecond
	}
	if o.Pause <= 0 {
		o.Pause = 10 * time.Millisecond
	}
	if o.Every <= 0 {
		o.Every = time.Hour
	}
	if o.Now == nil {
		o.Now = wallclock.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Chore{o: o, log: o.Logger.With("component", "retention")}, nil
}

// Once runs one pass at the chore's clock.
func (c *Chore) Once(ctx context.Context) (Report, error) {
	now := c.o.Now().UTC()
	var rep Report
	var errs []error
	note := func(err error) {
		if err != nil && ctx.Err() == nil {
			errs = append(errs, err)
		}
	}
	var err error
	if c.o.Bodies > 0 {
		rep.Bodies, err = c.batches(ctx, func(ctx context.Context, n int) (int, error) {
			return c.o.Store.PurgeBodies(ctx, now.Add(-c.o.Bodies), now, n)
		})
		note(err)
	}
	if c.o.Bodies > 0 {
		// An answer is a conversation's content, like a body: its text goes
		// with the bodies, once nothing still waits to post it; the run and
		// its deliveries stay for the audit.
		rep.Answers, err = c.batches(ctx, func(ctx context.Context, n int) (int, error) {
			return c.o.Store.PurgeAnswers(ctx, now.Add(-c.o.Bodies), now, n)
		})
		note(err)
	}
	if c.o.Events > 0 {
		rep.Events, err = c.batches(ctx, func(ctx context.Context, n int) (int, error) {
			return c.o.Store.PurgeFinishedEvents(ctx, now.Add(-c.o.Events), n)
		})
		note(err)
	}
	if c.o.Audit > 0 {
		rep.Runs, err = c.batches(ctx, func(ctx context.Context, n int) (int, error) {
			return c.o.Store.PurgeRuns(ctx, now.Add(-c.o.Audit), n)
		})
		note(err)
		rep.AgentRuns, err = c.batches(ctx, func(ctx context.Context, n int) (int, error) {
			return c.o.Store.PurgeAgentRuns(ctx, now.Add(-c.o.Audit), n)
		})
		note(err)
		// Deliveries go with the agent calls they posted.
		rep.Deliveries, err = c.batches(ctx, func(ctx context.Context, n int) (int, error) {
			return c.o.Store.PurgeAnswerDeliveries(ctx, now.Add(-c.o.Audit), n)
		})
		note(err)
		// Feedback goes with the agent calls it was given on.
		rep.Feedback, err = c.batches(ctx, func(ctx context.Context, n int) (int, error) {
			return c.o.Store.PurgeFeedback(ctx, now.Add(-c.o.Audit), n)
		})
		note(err)
		// The admin audit, and silences that ended as long ago.
		rep.Audit, err = c.batches(ctx, func(ctx context.Context, n int) (int, error) {
			return c.o.Store.PurgeAudit(ctx, now.Add(-c.o.Audit), n)
		})
		note(err)
	}
	if c.o.Keys > 0 {
		rep.Keys, err = c.o.Store.ForgetIdempotencyKeys(ctx, now.Add(-c.o.Keys))
		note(err)
	}
	rep.AckStats, err = c.o.Store.PurgeAckStats(ctx, now.Add(-store.AckStatsRetention))
	note(err)
	if rep.Events+rep.Runs+rep.AgentRuns+rep.Feedback+rep.Audit+rep.AckStats+rep.Bodies+rep.Answers+rep.Deliveries > 0 {
		note(c.o.Store.GiveSpaceBack(ctx))
	}
	return rep, errors.Join(errs...)
}

// batches deletes in batches until one comes back short, pausing between,
// each batch sized so that it holds the writer for about BatchTime.
func (c *Chore) batches(ctx context.Context, purge func(context.Context, int) (int, error)) (int, error) {
	total, size := 0, min(c.o.Batch, store.RetentionBatch)
	for {
		t0 := time.Now()
		n, err := purge(ctx, size)
		took := time.Since(t0)
		total += n
		if err != nil || n < size {
			return total, err
		}
		switch {
		case took > c.o.BatchTime && size > 10:
			size = max(10, size/2)
		case took < c.o.BatchTime/2 && size < store.RetentionBatch:
			size = min(store.RetentionBatch, size*2)
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(c.o.Pause):
		}
	}
}

// Run runs a pass at once and then every interval until ctx ends.
func (c *Chore) Run(ctx context.Context) {
	for {
		rep, err := c.Once(ctx)
		if err != nil {
			c.log.Error("retention pass failed", "error", err)
		}
		if rep != (Report{}) {
			c.log.Info("retention", "bodies", rep.Bodies, "events", rep.Events, "runs", rep.Runs,
				"agent_runs", rep.AgentRuns, "answers", rep.Answers, "answer_deliveries", rep.Deliveries,
				"idempotency_keys", rep.Keys, "ack_stats", rep.AckStats)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.o.Every):
		}
	}
}

// Package dispatch delivers stored webhook events to the agent, after the
// ack, from the durable queue: a bounded pool of workers claims due events,
// finds the team (routing lookup), mints an impersonation token (cached),
// reads the team's entrance agent and dedicated URL, and calls the agent.
// Transient failures retry with exponential backoff and jitter up to a
// bound, then the event is dead; a per-team limit delays, never drops.
package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// ConfigService is what dispatch needs of the Config Service.
type ConfigService interface {
	RoutingLookup(ctx context.Context, token string, identifiers map[string]string) (peers.Route, error)
	ImpersonationToken(ctx context.Context, token, org, team string) (peers.Impersonation, error)
	ConfigMe(ctx context.Context, teamToken string) (map[string]any, error)
}

// AgentRunner calls the agent.
type AgentRunner interface {
	Run(ctx context.Context, baseURL, agent, teamToken, correlationID string, req peers.AgentRequest, timeout time.Duration) (json.RawMessage, error)
}

// Limits bound the agent call of one source.
type Limits struct {
	Timeout  time.Duration
	MaxTurns int
}

// Options configure a Dispatcher.
type Options struct {
	Store              *store.DB
	Config             ConfigService
	Agent              AgentRunner
	InternalAdminToken string
	Workers            int
	TeamPerMinute      int
	// MaxAttempts bounds transient failures before an event is dead (default 6).
	MaxAttempts int
	// BaseBackoff and MaxBackoff shape the retry delays (defaults 2 s, 5 min).
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// Poll is how often the queue is checked without a wake-up (default 1 s).
	Poll     time.Duration
	Limits   map[string]Limits
	Logger   *slog.Logger
	Registry prometheus.Registerer
	Now      func() time.Time
}

// Dispatcher runs the queue workers.
type Dispatcher struct {
	o       Options
	log     *slog.Logger
	wake    chan struct{}
	metrics metrics

	mu       sync.Mutex
	teams    map[string]*rate.Limiter
	imps     map[string]peers.Impersonation
	stop     chan struct{}
	loopDone chan struct{}
	workers  sync.WaitGroup
	// work is canceled when shutdown runs out of time; in-flight calls then
	// return their events to the queue.
	work       context.Context
	cancelWork context.CancelFunc
}

type metrics struct {
	total   *prometheus.CounterVec
	latency prometheus.Histogram
	depth   prometheus.Gauge
}

// New returns a Dispatcher and registers its metrics.
func New(o Options) (*Dispatcher, error) {
	if o.Store == nil || o.Config == nil || o.Agent == nil {
		return nil, errors.New("dispatch: store, config service and agent are required")
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.TeamPerMinute <= 0 {
		o.TeamPerMinute = 60
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 6
	}
	if o.BaseBackoff <= 0 {
		o.BaseBackoff = 2 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Dispatcher{o: o, log: o.Logger.With("component", "dispatch"), wake: make(chan struct{}, 1),
		teams: map[string]*rate.Limiter{}, imps: map[string]peers.Impersonation{}}
	d.metrics = metrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orchestrator_dispatch_total",
			Help: "Dispatch attempts by source and outcome (delivered, retry, dead, failed, unrouted, ignored, delayed).",
		}, []string{"source", "outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orchestrator_dispatch_latency_seconds",
			Help:    "Time from the ack of an event to its delivery to the agent.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800},
		}),
		depth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orchestrator_dispatch_queue_depth",
			Help: "Events queued or being dispatched.",
		}),
	}
	if o.Registry != nil {
		for _, c := range []prometheus.Collector{d.metrics.total, d.metrics.latency, d.metrics.depth} {
			if err := o.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("dispatch: register metrics: %w", err)
			}
		}
	}
	return d, nil
}

// Notify wakes the dispatcher: a new event was stored.
func (d *Dispatcher) Notify() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Start returns events a crash left in flight to the queue and starts the
// workers.
func (d *Dispatcher) Start(ctx context.Context) error {
	n, err := d.o.Store.RequeueDispatching(ctx, d.now())
	if err != nil {
		return fmt.Errorf("dispatch: requeue in-flight events: %w", err)
	}
	if n > 0 {
		d.log.Warn("events in flight at the last stop are queued again", "count", n)
	}
	d.stop, d.loopDone = make(chan struct{}), make(chan struct{})
	d.work, d.cancelWork = context.WithCancel(context.WithoutCancel(ctx))
	go d.loop()
	return nil
}

// Stop stops claiming, lets in-flight calls finish until ctx ends, then
// cancels them; canceled events go back to the queue without using an
// attempt.
func (d *Dispatcher) Stop(ctx context.Context) {
	if d.stop == nil {
		return
	}
	close(d.stop)
	<-d.loopDone
	done := make(chan struct{})
	go func() { d.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		d.cancelWork()
		<-done
	}
	d.cancelWork()
}

func (d *Dispatcher) now() time.Time { return d.o.Now().UTC() }

// loop claims due events while workers are free.
func (d *Dispatcher) loop() {
	defer close(d.loopDone)
	slots := make(chan struct{}, d.o.Workers)
	freed := make(chan struct{}, d.o.Workers)
	for {
		free := cap(slots) - len(slots)
		claimed := 0
		if free > 0 {
			events, err := d.o.Store.ClaimEvents(d.work, d.now(), free)
			if err != nil {
				d.log.Error("claiming events failed", "error", err)
			}
			for _, e := range events {
				slots <- struct{}{}
				d.workers.Add(1)
				go func(e store.Event) {
					defer d.workers.Done()
					d.handle(e)
					<-slots
					select {
					case freed <- struct{}{}:
					default:
					}
				}(e)
			}
			claimed = len(events)
		}
		if depth, err := d.o.Store.QueueDepth(d.work, ""); err == nil {
			d.metrics.depth.Set(float64(depth))
		}
		if claimed > 0 && claimed == free {
			continue // there may be more due right now
		}
		t := time.NewTimer(d.o.Poll)
		select {
		case <-d.stop:
			t.Stop()
			return
		case <-d.wake:
		case <-freed:
		case <-t.C:
		}
		t.Stop()
	}
}

// attemptError is why an attempt failed and whether to retry.
type attemptError struct {
	err       error
	transient bool
	status    int // upstream status, if any
}

func (a *attemptError) Error() string { return a.err.Error() }

// classify sorts a peer failure: 5xx, 429, timeouts and refused connections
// are transient; other 4xx are not.
func classify(err error) *attemptError {
	h, ok := peers.AsHTTPError(err)
	if !ok {
		return &attemptError{err: err, transient: true}
	}
	transient := h.Status == 0 || h.Timeout || h.Status >= 500 || h.Status == http.StatusTooManyRequests
	return &attemptError{err: err, transient: transient, status: h.Status}
}

// backoff is exponential with jitter: attempt n waits between half and all
// of base·2^(n-1), capped.
func (d *Dispatcher) backoff(attempt int) time.Duration {
	delay := d.o.BaseBackoff
	for i := 1; i < attempt && delay < d.o.MaxBackoff; i++ {
		delay *= 2
	}
	delay = min(delay, d.o.MaxBackoff)
	return delay/2 + time.Duration(rand.Int64N(int64(delay/2)+1))
}

// handle dispatches one claimed event and records the outcome.
func (d *Dispatcher) handle(e store.Event) {
	ctx := d.work
	o := store.Outcome{ID: e.ID, Attempts: e.Attempts, At: d.now()}
	outcome := d.attempt(ctx, e, &o)
	if ctx.Err() != nil && o.Status != store.EventDelivered {
		// Shutdown cut the call: back to the queue, no attempt used.
		o = store.Outcome{ID: e.ID, Status: store.EventQueued, Attempts: e.Attempts, At: d.now(), LastError: "interrupted by shutdown"}
		outcome = "interrupted"
	}
	o.At = d.now()
	if err := d.o.Store.RecordOutcome(context.WithoutCancel(ctx), o); err != nil {
		d.log.Error("recording a dispatch outcome failed; the event will be retried", "event_id", e.ID, "error", err)
	}
	d.metrics.total.WithLabelValues(e.Source, outcome).Inc()
	if o.Status == store.EventDelivered {
		d.metrics.latency.Observe(o.At.Sub(e.ReceivedAt).Seconds())
	}
	d.log.Info("dispatch", "event_id", e.ID, "source", e.Source, "outcome", outcome, "status", o.Status,
		"attempts", o.Attempts, "org_id", o.OrgID, "team_node_id", o.TeamNodeID, "error", o.LastError)
}

// attempt runs one dispatch attempt, filling o; it returns the metric outcome.
func (d *Dispatcher) attempt(ctx context.Context, e store.Event, o *store.Outcome) string {
	fail := func(err error) string {
		a := classify(err)
		o.LastError = errorText(err)
		if !a.transient {
			o.Status = store.EventFailed
			return "failed"
		}
		o.Attempts++
		if o.Attempts >= d.o.MaxAttempts {
			o.Status = store.EventDead
			return "dead"
		}
		o.Status, o.NextAttemptAt = store.EventQueued, d.now().Add(d.backoff(o.Attempts))
		return "retry"
	}
	if d.o.InternalAdminToken == "" {
		o.Status, o.LastError = store.EventFailed, "ORCHESTRATOR_INTERNAL_ADMIN_TOKEN is not set: webhook dispatch cannot authenticate"
		return "failed"
	}
	if len(e.Identifiers) == 0 {
		o.Status, o.LastError = store.EventUnrouted, "the event carries no routing identifier"
		return "unrouted"
	}
	route, err := d.o.Config.RoutingLookup(ctx, d.o.InternalAdminToken, e.Identifiers)
	if err != nil {
		return fail(fmt.Errorf("routing lookup: %w", err))
	}
	if !route.Found {
		o.Status, o.LastError = store.EventUnrouted, "no team's routing matches "+describeIdentifiers(e.Identifiers)
		return "unrouted"
	}
	o.OrgID, o.TeamNodeID, o.MatchedBy = route.OrgID, route.TeamNodeID, route.MatchedBy

	if wait := d.teamDelay(route.OrgID, route.TeamNodeID); wait > 0 {
		o.Status, o.NextAttemptAt = store.EventQueued, d.now().Add(wait)
		o.LastError = fmt.Sprintf("team dispatch limit (%d/min): delayed %s", d.o.TeamPerMinute, wait.Round(time.Millisecond))
		return "delayed"
	}

	imp, err := d.impersonate(ctx, route.OrgID, route.TeamNodeID)
	if err != nil {
		return fail(fmt.Errorf("impersonation token: %w", err))
	}
	cfg, err := d.o.Config.ConfigMe(ctx, imp)
	if err != nil {
		d.forget(route.OrgID, route.TeamNodeID, err)
		return fail(fmt.Errorf("team config: %w", err))
	}
	agentName, agentURL := d.agentTarget(cfg, route)

	limits := d.o.Limits[e.Source]
	if limits.Timeout <= 0 {
		limits = Limits{Timeout: 300 * time.Second, MaxTurns: 50}
	}
	msg, meta := webhook.Describe(e.Source, e.EventType, e.Body)
	req := peers.AgentRequest{
		Message: msg,
		Context: map[string]any{
			"metadata": map[string]any{e.Source: meta},
			"trigger": map[string]any{"source": e.Source, "event_id": e.ID, "delivery_id": e.DeliveryID,
				"event_type": e.EventType, "org_id": route.OrgID, "team_node_id": route.TeamNodeID},
		},
		Timeout: int(limits.Timeout / time.Second), MaxTurns: limits.MaxTurns, TriggerSource: e.Source,
	}
	start := d.now()
	_, err = d.o.Agent.Run(ctx, agentURL, agentName, imp, e.ID, req, limits.Timeout+10*time.Second)
	run := store.AgentRun{ID: newID(), TriggerSource: e.Source, WebhookEventID: e.ID, OrgID: route.OrgID,
		TeamNodeID: route.TeamNodeID, AgentName: agentName, Status: "succeeded", CorrelationID: e.ID,
		Duration: d.now().Sub(start), StartedAt: start}
	if err != nil {
		run.Status, run.Error = "failed", errorText(err)
		if h, ok := peers.AsHTTPError(err); ok {
			run.UpstreamStatus = h.Status
		}
	} else {
		run.UpstreamStatus = http.StatusOK
	}
	if ctx.Err() == nil {
		o.Run = &run // written with the outcome, in one transaction
	}
	if err != nil {
		d.forget(route.OrgID, route.TeamNodeID, err)
		return fail(fmt.Errorf("agent %s: %w", agentName, err))
	}
	o.Status, o.LastError = store.EventDelivered, ""
	return "delivered"
}

// teamDelay takes a dispatch slot of the team, or says how long to wait.
func (d *Dispatcher) teamDelay(org, team string) time.Duration {
	d.mu.Lock()
	lim := d.teams[org+"|"+team]
	if lim == nil {
		lim = rate.NewLimiter(rate.Limit(float64(d.o.TeamPerMinute)/60), d.o.TeamPerMinute)
		d.teams[org+"|"+team] = lim
	}
	d.mu.Unlock()
	now := d.o.Now()
	r := lim.ReserveN(now, 1)
	if wait := r.DelayFrom(now); wait > 0 {
		r.CancelAt(now)
		return wait
	}
	return 0
}

// impersonate returns a cached impersonation token, minting one when there
// is none or it expires within a minute.
func (d *Dispatcher) impersonate(ctx context.Context, org, team string) (string, error) {
	key := org + "|" + team
	d.mu.Lock()
	imp, ok := d.imps[key]
	d.mu.Unlock()
	if ok && d.o.Now().Add(time.Minute).Before(imp.ExpiresAt) {
		return imp.Token, nil
	}
	imp, err := d.o.Config.ImpersonationToken(ctx, d.o.InternalAdminToken, org, team)
	if err != nil {
		return "", err
	}
	if imp.ExpiresAt.IsZero() {
		imp.ExpiresAt = d.o.Now().Add(5 * time.Minute)
	}
	d.mu.Lock()
	d.imps[key] = imp
	d.mu.Unlock()
	return imp.Token, nil
}

// forget drops a cached token the peer refused.
func (d *Dispatcher) forget(org, team string, err error) {
	if h, ok := peers.AsHTTPError(err); ok && (h.Status == http.StatusUnauthorized || h.Status == http.StatusForbidden) {
		d.mu.Lock()
		delete(d.imps, org+"|"+team)
		d.mu.Unlock()
	}
}

// agentTarget reads the team's entrance agent and dedicated URL.
func (d *Dispatcher) agentTarget(cfg map[string]any, route peers.Route) (string, string) {
	name := "planner"
	if s, _ := cfg["entrance_agent"].(string); s != "" {
		if peers.ValidAgentName(s) {
			name = s
		} else {
			d.log.Warn("team's entrance_agent is not a valid agent name; using planner", "org_id", route.OrgID, "team_node_id", route.TeamNodeID)
		}
	}
	url, ok := peers.DedicatedURL(cfg)
	if !ok {
		d.log.Warn("team's dedicated_service_url is not an in-cluster Service URL; using the shared agent",
			"org_id", route.OrgID, "team_node_id", route.TeamNodeID)
	}
	return name, url
}

func describeIdentifiers(ids map[string]string) string {
	parts := make([]string, 0, len(ids))
	for k, v := range ids {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ", ")
}

// errorText keeps the last error short enough to store and show.
func errorText(err error) string {
	s := err.Error()
	if len(s) > 1000 {
		s = s[:1000] + "…"
	}
	return s
}

func newID() string { return uuid.NewString() }

// Package dispatch delivers stored webhook events to the agent, after the
// ack, from the durable queue, and stays cheap through alert storms (SPEC
// §6 Storms):
//
//   - the router finds each new event's team once (routing lookups cached,
//     misses too) and writes it back, still queued;
//   - the team loop is the team gate: it claims a team's due events only
//     while the team can take a call (its per-minute limit has a token), so
//     an event held back costs nothing — no claim, lookup or write;
//   - when a team can take calls, its Slack mentions and redriven events go
//     first, each alone; its alerts of the coalesced sources go together in
//     one agent call (a digest, up to CoalesceMax, oldest first); a lone
//     event still goes alone at once;
//   - outcomes and agent-run rows are written in batches by the completer.
//
// Transient failures retry with exponential backoff and jitter up to a
// bound, then dead; a digest retries as a whole.
package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/answers"
	"github.com/incidentfox/orchestrator-edge/server/noise"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/queue"
	"github.com/incidentfox/orchestrator-edge/server/routing"
	"github.com/incidentfox/orchestrator-edge/server/tracing"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ConfigService is what dispatch needs of the Config Service.
type ConfigService interface {
	RoutingLookup(ctx context.Context, token string, identifiers map[string]string) (peers.Route, error)
	ImpersonationToken(ctx context.Context, token, org, team string) (peers.Impersonation, error)
	ConfigMe(ctx context.Context, teamToken string) (map[string]any, error)
	// NodeExists: whether a routing rule's target team exists.
	NodeExists(ctx context.Context, token, org, node string) (bool, error)
}

// AgentRunner calls the agent.
type AgentRunner interface {
	Run(ctx context.Context, baseURL, agent, teamToken, correlationID string, req peers.AgentRequest, timeout time.Duration) (json.RawMessage, error)
	// Investigate is the streaming call (SPEC §19, "The conversation,
	// streamed").
	Investigate(ctx context.Context, baseURL, teamToken, correlationID string, req peers.InvestigateRequest, timeout time.Duration, h peers.StreamHandler) (json.RawMessage, error)
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
	// Sources describe each source's events to the agent and name the
	// metrics' source labels.
	Sources       *webhook.Registry
	Workers       int
	TeamPerMinute int
	// MaxAttempts bounds transient failures before an event is dead (default 6).
	MaxAttempts int
	// BaseBackoff and MaxBackoff shape the retry delays (defaults 2 s, 5 min).
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// Poll is how often the queue is checked without a wake-up (default 1 s).
	Poll time.Duration
	// RoutingCacheTTL is how long a routing lookup, found or not, is reused;
	// 0 turns the cache off.
	RoutingCacheTTL time.Duration
	// CoalesceSources are the alert sources folded into digests (never
	// slack); empty turns coalescing off. CoalesceMax bounds a digest
	// (default 50).
	CoalesceSources []string
	CoalesceMax     int
	// AlertRepeat: a firing event that says nothing new within this long of
	// its alert's last delivered firing is suppressed as a repeat (0: off).
	AlertRepeat time.Duration
	// CallsPerDay bounds each team's alert-triggered agent calls per UTC
	// day (0: no budget).
	CallsPerDay int
	// FlushEvery and FlushAt shape the batched outcome writes (defaults
	// 50 ms and 100 outcomes).
	FlushEvery time.Duration
	FlushAt    int
	Limits     map[string]Limits
	// AgentProtocol is how the agent is called unless a team's config says
	// (agent.protocol): ProtocolRun (the default) or ProtocolInvestigate
	// (ORCHESTRATOR_AGENT_PROTOCOL).
	AgentProtocol string
	// Progress, when set, shows a streamed run's progress in the Slack
	// thread its answer goes to (nil: no progress message).
	Progress *answers.ProgressPoster
	// Answers resolves where each call's answer goes (output_destinations
	// in the agent's request body).
	Answers answers.Resolver
	// Outbox, when set, posts the answers: each call's deliveries are
	// recorded with its run and handed to it (nil: the appliance records
	// and posts nothing).
	Outbox Outbox
	// Lease is how long a claim holds its events (SPEC §13): past it, an
	// event with no outcome goes back to the queue for any replica. Default:
	// the longest agent timeout plus a minute.
	Lease time.Duration
	// Rules gives the operator's routing rules in force (nil: none); read
	// for every event routed, so a reload takes effect at once.
	Rules func() *routing.Rules
	// Intervals gives the sources file's time intervals in force (nil:
	// none), which recurring silences name.
	Intervals func() *noise.Intervals
	// Inhibits gives the inhibit rules in force (nil: none), read for every
	// firing alert event screened, so a reload takes effect at once.
	Inhibits func() *noise.InhibitRules
	// SharedBudget keeps each team's dispatch budget in the database, so
	// that replicas sharing it share the limit (PostgreSQL).
	SharedBudget bool
	// Tracer makes the dispatch spans (SPEC §22); nil: the no-op one.
	Tracer   trace.Tracer
	Logger   *slog.Logger
	Registry prometheus.Registerer
	Now      func() time.Time
}

// Outbox is what dispatch needs of the answers outbox.
type Outbox interface {
	// Hand takes a run's deliveries once they are recorded.
	Hand(run store.AgentRun, deliveries []store.AnswerDelivery)
	// Lease is how long new deliveries are recorded claimed for.
	Lease() time.Duration
}

// Dispatcher runs the router, the team loop and the agent calls.
type Dispatcher struct {
	o       Options
	log     *slog.Logger
	wake    chan struct{} // the router: new events
	kick    chan struct{} // the team loop: routed events, a redrive
	metrics metrics
	routes  *routeCache
	done    *queue.Completer[completion]
	retry   queue.Policy

	mu         sync.Mutex
	teams      map[teamID]*bucket
	budgets    map[teamID]*dayBudget
	silenced   silenceCache
	inhibits   inhibitCache
	tctx       map[teamID]teamContext
	arrived    map[teamID]store.TeamKey // teams that got due work since the loop last looked
	rescan     atomic.Bool              // the router stored routes: scan the queue again
	stop       chan struct{}
	loopDone   chan struct{}
	routerDone chan struct{}
	expiryDone chan struct{}
	stopped    atomic.Bool
	slots      *queue.Slots
	// The teams with due events, as the last scan found them; only the team
	// loop touches these. A scan is O(queue), so it runs when something new
	// was routed (at most every rescanEvery) or every Poll, not on every
	// freed worker; a team whose due events ran out leaves the list.
	due   []store.TeamKey
	dueAt time.Time
	stale bool
	// work is canceled when shutdown runs out of time; in-flight calls then
	// return their events to the queue.
	work       context.Context
	cancelWork context.CancelFunc
}

type metrics struct {
	total      *prometheus.CounterVec
	coalesced  *prometheus.CounterVec
	suppressed *prometheus.CounterVec
	budget     prometheus.Counter
	released   *prometheus.CounterVec
	latency    prometheus.Histogram
	depth      prometheus.Gauge
}

// New returns a Dispatcher and registers its metrics.
func New(o Options) (*Dispatcher, error) {
	if o.Store == nil || o.Config == nil || o.Agent == nil || o.Sources == nil {
		return nil, errors.New("dispatch: store, sources, config service and agent are required")
	}
	if slices.Contains(o.CoalesceSources, webhook.Slack) {
		return nil, errors.New("dispatch: Slack mentions are never coalesced")
	}
	defaults := []struct {
		v   *int
		def int
	}{{&o.Workers, 8}, {&o.TeamPerMinute, 60}, {&o.MaxAttempts, 6}, {&o.CoalesceMax, 50}, {&o.FlushAt, 100}}
	for _, x := range defaults {
		if *x.v <= 0 {
			*x.v = x.def
		}
	}
	durations := []struct {
		v   *time.Duration
		def time.Duration
	}{{&o.BaseBackoff, 2 * time.Second}, {&o.MaxBackoff, 5 * time.Minute}, {&o.Poll, time.Second}, {&o.FlushEvery, 50 * time.Millisecond}}
	for _, x := range durations {
		if *x.v <= 0 {
			*x.v = x.def
		}
	}
	if o.Lease <= 0 {
		o.Lease = DefaultLease(o.Limits)
	}
	if o.Now == nil {
		o.Now = wallclock.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider().Tracer(tracing.Name)
	}
	d := &Dispatcher{retry: queue.Policy{MaxAttempts: o.MaxAttempts, Base: o.BaseBackoff, Max: o.MaxBackoff}, o: o, log: o.Logger.With("component", "dispatch"), wake: make(chan struct{}, 1), kick: make(chan struct{}, 1),
		teams: map[teamID]*bucket{}, budgets: map[teamID]*dayBudget{}, tctx: map[teamID]teamContext{}, arrived: map[teamID]store.TeamKey{},
		routes: &routeCache{ttl: o.RoutingCacheTTL, m: map[string]cachedRoute{}}}
	d.metrics = metrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orchestrator_dispatch_total",
			Help: "Dispatch attempts by source and outcome (delivered, retry, dead, failed, unrouted, interrupted, suppressed).",
		}, []string{"source", "outcome"}),
		coalesced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orchestrator_dispatch_coalesced_total",
			Help: "Events folded with others into one agent call (a digest), by source.",
		}, []string{"source"}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orchestrator_suppressed_total",
			Help: "Events kept from the agent by noise control, by source and reason (resolved, repeat, silence, inhibited, held, budget).",
		}, []string{"source", "reason"}),
		budget: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orchestrator_team_budget_exhausted_total",
			Help: "Alert events suppressed because their team's daily budget of alert-triggered agent calls was spent.",
		}),
		released: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orchestrator_released_total",
			Help: "Events kept back that were queued again when what held them ended, by reason (inhibited, silence, held).",
		}, []string{"reason"}),
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
	// Every known series exists from the start at 0 (alerts on increase()).
	for _, src := range o.Sources.Names() {
		for _, oc := range outcomes {
			d.metrics.total.WithLabelValues(src, oc)
		}
		d.metrics.coalesced.WithLabelValues(src)
		for _, r := range store.SuppressedReasons {
			d.metrics.suppressed.WithLabelValues(src, r)
		}
	}
	for _, r := range []string{store.SuppressedInhibited, store.SuppressedSilence, store.SuppressedHeld} {
		d.metrics.released.WithLabelValues(r)
	}
	if o.Registry != nil {
		for _, c := range []prometheus.Collector{d.metrics.total, d.metrics.coalesced, d.metrics.suppressed, d.metrics.budget, d.metrics.released,
			d.metrics.latency, d.metrics.depth} {
			if err := o.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("dispatch: register metrics: %w", err)
			}
		}
	}
	return d, nil
}

// outcomes are the outcome label values of orchestrator_dispatch_total.
var outcomes = []string{"delivered", "retry", "dead", "failed", "unrouted", "interrupted", "suppressed"}

// Notify wakes the dispatcher: an event was stored or redriven. With its
// team known (its route was cached at ingest, or it was routed before), the
// team joins the team loop's list at once, without a scan of the queue;
// otherwise the router finds its team first.
func (d *Dispatcher) Notify(org, team string) {
	if team == "" {
		select {
		case d.wake <- struct{}{}:
		default:
		}
		return
	}
	d.mu.Lock()
	d.arrived[teamID{org, team}] = store.TeamKey{OrgID: org, TeamNodeID: team}
	d.mu.Unlock()
	d.kickLoop()
}

// CachedRoute answers a routing lookup from the cache only, without I/O:
// ingest stores an event whose route is cached with its team already set.
func (d *Dispatcher) CachedRoute(ids map[string]string) (org, team, matchedBy string, ok bool) {
	if d.o.Rules != nil && d.o.Rules().HasAlways() {
		// Rules read before the lookup (when: always) must see every event.
		return "", "", "", false
	}
	r, ok := d.routes.get(identifiersKey(ids), d.o.Now())
	if !ok || !r.Found {
		return "", "", "", false
	}
	return r.OrgID, r.TeamNodeID, r.MatchedBy, true
}

// rescanQueue asks the team loop to scan the queue for due teams again.
func (d *Dispatcher) rescanQueue() {
	d.rescan.Store(true)
	d.kickLoop()
}

func (d *Dispatcher) kickLoop() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// DefaultLease is the claim lease SPEC §13 gives: the longest agent timeout
// plus 60 s.
func DefaultLease(limits map[string]Limits) time.Duration {
	longest := 5 * time.Minute
	for _, l := range limits {
		longest = max(longest, l.Timeout)
	}
	return longest + time.Minute
}

// Start returns events a crash left in flight to the queue and starts the
// router, the team loop and the completer. On a database of its own, every
// event left dispatching was this process's; on a shared one, other
// replicas' claims are live, and only expired leases are taken back.
func (d *Dispatcher) Start(ctx context.Context) error {
	if !d.o.Store.Shared() {
		n, err := d.o.Store.RequeueDispatching(ctx, d.now())
		if err != nil {
			return fmt.Errorf("dispatch: requeue in-flight events: %w", err)
		}
		if n > 0 {
			d.log.Warn("events in flight at the last stop are queued again", "count", n)
		}
	}
	d.stop, d.loopDone, d.routerDone, d.expiryDone = make(chan struct{}), make(chan struct{}), make(chan struct{}), make(chan struct{})
	d.stopped.Store(false)
	d.work, d.cancelWork = context.WithCancel(context.WithoutCancel(ctx))
	d.slots = queue.NewSlots(d.o.Workers)
	d.done = &queue.Completer[completion]{Flush: d.record, After: d.recorded, Weight: completion.weight,
		Every: d.o.FlushEvery, At: d.o.FlushAt, Logger: d.log}
	d.done.Start()
	go d.router()
	go d.loop()
	go d.expiries()
	return nil
}

// Stop stops claiming, lets in-flight calls finish until ctx ends, then
// cancels them (their events go back to the queue without using an
// attempt), and writes every outcome before it returns.
func (d *Dispatcher) Stop(ctx context.Context) {
	if d.stop == nil || !d.stopped.CompareAndSwap(false, true) {
		return // never started, or stopped already
	}
	close(d.stop)
	<-d.loopDone
	<-d.routerDone
	<-d.expiryDone
	done := make(chan struct{})
	go func() { d.slots.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		d.cancelWork()
		<-done
	}
	d.cancelWork()
	d.done.Close()
}

func (d *Dispatcher) now() time.Time { return d.o.Now().UTC() }

// leaseCheckEvery is how often the loop takes back events whose claim's
// lease passed (their replica died); cheap, one indexed UPDATE.
const leaseCheckEvery = 5 * time.Second

// errorText keeps the last error short enough to store and show.
func errorText(err error) string {
	s := err.Error()
	if len(s) > 1000 {
		s = s[:1000] + "…"
	}
	return s
}

func newID() string { return uuid.NewString() }

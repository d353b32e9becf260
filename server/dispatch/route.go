package dispatch

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/ids"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/routing"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// routeBatch is how many new events one routing round reads.
const routeBatch = 200

// maxCachedRoutes bounds the routing cache.
const maxCachedRoutes = 10000

// routeCache keeps routing lookups, found or not, for a while (SPEC §6
// Storms: ORCHESTRATOR_ROUTING_CACHE_SECONDS), so that a storm of alerts
// with the same identifiers costs one lookup, not one per event.
type routeCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]cachedRoute
}

type cachedRoute struct {
	route   peers.Route
	expires time.Time
}

// identifiersKey is a canonical form of a set of routing identifiers.
func identifiersKey(ids map[string]string) string {
	keys := make([]string, 0, len(ids))
	for k := range ids {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(ids[k])
		b.WriteByte(0)
	}
	return b.String()
}

func (c *routeCache) get(key string, now time.Time) (peers.Route, bool) {
	if c.ttl <= 0 {
		return peers.Route{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[key]
	if !ok || !now.Before(r.expires) {
		return peers.Route{}, false
	}
	return r.route, true
}

func (c *routeCache) put(key string, r peers.Route, now time.Time) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedRoutes {
		for k, v := range c.m { // expired first, then any: the cache stays bounded
			if !now.Before(v.expires) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < maxCachedRoutes {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[key] = cachedRoute{route: r, expires: now.Add(c.ttl)}
}

// errInvalidRoute: the routing lookup named a team by ids that are not ids.
var errInvalidRoute = errors.New("routing lookup answered an org or team id that is not a valid id")

// lookup routes one set of identifiers through the cache.
func (d *Dispatcher) lookup(ctx context.Context, idents map[string]string) (peers.Route, error) {
	key, now := identifiersKey(idents), d.o.Now()
	if r, ok := d.routes.get(key, now); ok {
		return r, nil
	}
	r, err := d.o.Config.RoutingLookup(ctx, d.o.InternalAdminToken, idents)
	if err != nil {
		return r, err
	}
	// A peer's ids are checked like a caller's (SPEC §18): they become map
	// keys, lock names and path segments of later calls.
	if r.Found && (!ids.Valid(r.OrgID) || !ids.Valid(r.TeamNodeID)) {
		return peers.Route{}, errInvalidRoute
	}
	d.routes.put(key, r, now)
	return r, nil
}

// router finds the team of each new event, once, and writes it back with
// the event still queued; events that match no team end unrouted. Then the
// team loop takes over.
func (d *Dispatcher) router() {
	defer close(d.routerDone)
	for {
		n, err := d.routeRound()
		if err != nil {
			d.log.Error("routing new events failed", "error", err)
		}
		if n > 0 {
			d.rescanQueue()
		}
		if n == routeBatch && err == nil {
			continue // more may be waiting
		}
		t := time.NewTimer(d.o.Poll)
		select {
		case <-d.stop:
			t.Stop()
			return
		case <-d.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// routeRound routes up to routeBatch new events and writes the results in
// one transaction.
func (d *Dispatcher) routeRound() (int, error) {
	events, err := d.o.Store.EventsToRoute(d.work, d.now(), routeBatch)
	if err != nil || len(events) == 0 {
		return 0, err
	}
	outs := make([]store.Routed, 0, len(events))
	for _, e := range events {
		if d.work.Err() != nil {
			return 0, nil // shutting down: the rest stay queued, unrouted yet
		}
		rctx, span := d.startRoute(e)
		o, outcome := d.route(rctx, e)
		endRoute(span, o, outcome)
		if e.Source == webhook.Slack && e.EventType == webhook.FeedbackEventType && o.Status == store.EventQueued && o.OrgID != "" {
			// A feedback click, its team found: recorded on its run here,
			// never sent to the agent.
			if o, ok := d.recordFeedback(e, o); !ok {
				outs = append(outs, store.Routed{Outcome: o})
			}
			continue
		}
		if e.Source == webhook.Slack && e.EventType == webhook.ClickEventType && o.Status == store.EventQueued && o.OrgID != "" {
			// A click on a conversation's button, its team found: carried
			// out here, never sent to the agent — by one replica's router
			// (the claim), never two.
			ok, err := d.o.Store.ClaimClick(d.work, e.ID, d.now(), d.now().Add(clickClaim))
			if err != nil || !ok {
				if err != nil {
					d.log.Warn("conversation: the click is not claimed", "event_id", e.ID, "error", err)
				}
				continue
			}
			outs = append(outs, store.Routed{Outcome: d.recordClick(e, o)})
			continue
		}
		outs = append(outs, store.Routed{Outcome: o, Source: e.Source, AlertKey: e.AlertKey, AlertState: e.AlertState, Solo: e.Solo})
		if outcome != "" {
			d.metrics.total.WithLabelValues(e.Source, outcome).Inc()
			d.log.InfoContext(rctx, "dispatch", "event_id", e.ID, "source", e.Source, "outcome", outcome, "status", o.Status,
				"attempts", o.Attempts, "error", o.LastError)
		}
	}
	// An alert is its team's (SPEC §18, round 4): a resolve settles its
	// team's waiting firing events once it has a team, here, in the same
	// transaction that writes the routes.
	settled, err := d.o.Store.RecordRoutes(context.WithoutCancel(d.work), outs)
	if err != nil {
		return 0, err
	}
	for source, n := range settled {
		d.CountSettled(source, n)
		d.log.Info("routed resolves settled their alerts' waiting events", "source", source, "suppressed", n)
	}
	return len(events), nil
}

// route decides one event's team; it returns the outcome to record and the
// metric outcome when the event ends here ("" when it goes on to its team).
// The identifiers are looked up first, then the operator's rules (SPEC §20);
// the decision is written with the outcome.
func (d *Dispatcher) route(ctx context.Context, e store.Event) (store.Outcome, string) {
	o := store.Outcome{ID: e.ID, From: store.EventQueued, Attempts: e.Attempts, At: d.now()}
	if d.o.InternalAdminToken == "" {
		o.Status, o.LastError = store.EventFailed, "ORCHESTRATOR_INTERNAL_ADMIN_TOKEN is not set: webhook dispatch cannot authenticate"
		return o, "failed"
	}
	res, err := d.Decide(ctx, e)
	if errors.Is(err, errInvalidRoute) {
		o.Status, o.LastError = store.EventFailed, "routing lookup: "+err.Error()
		return o, "failed"
	}
	if err != nil {
		return d.failed(o, e.Attempts, &stepError{"routing lookup", err})
	}
	o.Decision = res.Decision.Encode()
	switch res.Status {
	case routing.Ignored:
		o.Status, o.LastError, o.MatchedBy = store.EventIgnored, res.Reason, res.MatchedBy
		return o, "ignored"
	case routing.Unrouted:
		o.Status, o.LastError = store.EventUnrouted, res.Reason
		return o, "unrouted"
	}
	// A source bound to orgs routes to their teams only (SPEC §18, round
	// 4); the other org is not named: the event stays unrouted, readable
	// by admins of every org only.
	if !d.o.Sources.Allows(e.Source, e.Headers, res.OrgID) {
		what := routing.DescribeIdentifiers(e.Identifiers)
		if res.Rule != "" {
			what = "rule " + res.Rule
		}
		o.Status, o.LastError = store.EventUnrouted, what+" routes to a team of another org; "+d.o.Sources.Binding(e.Source, e.Headers)
		return o, "unrouted"
	}
	o.Status, o.OrgID, o.TeamNodeID, o.MatchedBy, o.NextAttemptAt = store.EventQueued, res.OrgID, res.TeamNodeID, res.MatchedBy, e.NextAttemptAt
	return o, ""
}

// Decide routes one stored event through the identifier lookup and the
// rules in force, calling only read-only lookups; it stores nothing (the
// routes test endpoint asks it too).
func (d *Dispatcher) Decide(ctx context.Context, e store.Event) (routing.Result, error) {
	var rules *routing.Rules
	if d.o.Rules != nil {
		rules = d.o.Rules()
	}
	in := routing.Input{Source: e.Source, EventType: e.EventType, Identifiers: e.Identifiers,
		Load: func() (map[string]string, map[string]any) {
			body := e.Body
			if body == nil && e.Key != 0 { // the routing round reads events without their body
				full, err := d.o.Store.GetEvent(ctx, e.ID)
				if err != nil {
					d.log.Warn("routing rules: the event's body could not be read", "event_id", e.ID, "error", err)
					return nil, nil
				}
				body = full.Body
			}
			return d.o.Sources.Get(e.Source).Labels(body, e.Identifiers), webhook.ParseBody(body)
		}}
	return routing.Route(ctx, rules, in, finder{d})
}

// finder is the Config Service as routing asks it, through the cache.
type finder struct{ d *Dispatcher }

func (f finder) Lookup(ctx context.Context, idents map[string]string) (routing.Found, error) {
	r, err := f.d.lookup(ctx, idents)
	return routing.Found{Found: r.Found, OrgID: r.OrgID, TeamNodeID: r.TeamNodeID, MatchedBy: r.MatchedBy}, err
}

// TeamExists asks the Config Service whether a rule's target exists,
// cached like the routing lookups (a rule's target is asked once per
// cache period, not once per event).
func (f finder) TeamExists(ctx context.Context, org, team string) (bool, error) {
	key, now := "\x01team\x00"+org+"\x00"+team, f.d.o.Now()
	if r, ok := f.d.routes.get(key, now); ok {
		return r.Found, nil
	}
	ok, err := f.d.o.Config.NodeExists(ctx, f.d.o.InternalAdminToken, org, team)
	if err != nil {
		return false, err
	}
	f.d.routes.put(key, peers.Route{Found: ok}, now)
	return ok, nil
}

// recordFeedback records a feedback click whose Slack app and channel
// routed to the team of o (SPEC §18, round 4): on the run its button
// names, when that run is of this team, as that person's one row on it;
// the click's event ends ignored either way, in the same transaction. ok
// is false when it could not be recorded: then the returned outcome (a
// retry, or ignored for a click that does not read) is the router's to
// write.
func (d *Dispatcher) recordFeedback(e store.Event, o store.Outcome) (store.Outcome, bool) {
	ev, err := webhook.ParseSlackInteraction(e.Body)
	if err != nil || ev.Feedback == nil {
		// It keeps its team and the routing decision: its org's admin
		// finds it and sees why.
		o.Status, o.Attempts, o.At = store.EventIgnored, e.Attempts, d.now()
		o.LastError = "ignored: the feedback click's stored payload does not read as one"
		return o, false
	}
	fb := ev.Feedback
	res, err := d.o.Store.RecordFeedback(context.WithoutCancel(d.work), store.FeedbackClick{EventID: e.ID, OrgID: o.OrgID,
		TeamNodeID: o.TeamNodeID, MatchedBy: o.MatchedBy, Ref: fb.Run, Value: fb.Value, UserID: fb.User, UserName: fb.UserName,
		SlackApp: e.Headers[webhook.AppHeader], At: e.ReceivedAt, Now: d.now(), Decision: o.Decision})
	if err != nil {
		// A retry is routed again, so it carries no team (a queued event
		// with a team would go on to the agent); a click that ends here
		// keeps its team and decision.
		o.At = d.now()
		retry, outcome := d.failed(o, e.Attempts, &stepError{"recording feedback", err})
		if retry.Status == store.EventQueued {
			retry.OrgID, retry.TeamNodeID, retry.MatchedBy, retry.Decision = "", "", "", nil
		}
		d.metrics.total.WithLabelValues(e.Source, outcome).Inc()
		return retry, false
	}
	if res.Applied {
		run := ""
		if res.Run != nil {
			run = res.Run.ID
		}
		d.log.Info("feedback", "event_id", e.ID, "value", fb.Value, "agent_run_id", run, "not_recorded", res.Reason,
			"org_id", o.OrgID, "team_node_id", o.TeamNodeID)
	}
	return store.Outcome{}, true
}

package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/answers"
	"github.com/incidentfox/orchestrator-edge/server/ids"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/queue"
	"github.com/incidentfox/orchestrator-edge/server/routing"
	"github.com/incidentfox/orchestrator-edge/server/tracing"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// failed fills o for a failed attempt: 5xx, 429, timeouts and refused
// connections retry with backoff until MaxAttempts (then dead); other
// failures end failed. It returns o and the metric outcome. Every agent
// call counts as an attempt, the failed ones as the one that delivered.
func (d *Dispatcher) failed(o store.Outcome, attempts int, err error) (store.Outcome, string) {
	o.LastError = errorText(err)
	dec := d.retry.Fail(attempts, !transient(err), 0, d.now())
	switch dec.Outcome {
	case queue.Failed:
		// Every agent call counts as an attempt, the failed one too.
		o.Status, o.Attempts = store.EventFailed, attempts+1
	case queue.Dead:
		o.Status, o.Attempts = store.EventDead, dec.Attempts
	default:
		o.Status, o.Attempts, o.NextAttemptAt = store.EventQueued, dec.Attempts, dec.At
	}
	return o, dec.Outcome
}

// transient: a peer's 5xx, 429, timeout or refused connection, or any
// failure that is not a peer's answer.
func transient(err error) bool {
	if _, ok := peers.AsStreamFailure(err); ok {
		return false // reported, not retried: the agent may have acted already
	}
	h, ok := peers.AsHTTPError(err)
	if !ok {
		return true
	}
	return h.Status == 0 || h.Timeout || h.Status >= 500 || h.Status == http.StatusTooManyRequests
}

// call is one agent call for a team: one event, or several folded into a
// digest.
type call struct {
	team   store.TeamKey
	events []store.Event
	// claimed and claimedEnd are when the claim that took the events ran
	// (the call's span starts there; zero: not known).
	claimed, claimedEnd time.Time
}

// deliver makes one agent call and hands every event's outcome, and the
// call's agent-run row, to the completer. A digest succeeds or fails as a
// whole: each folded event follows it.
func (d *Dispatcher) deliver(c call) {
	if c = d.dropUnreadable(c); len(c.events) == 0 {
		return
	}
	ctx, span := d.startCall(c)
	now := d.now()
	outs := make([]store.Outcome, len(c.events))
	for i, e := range c.events {
		outs[i] = store.Outcome{ID: e.ID, Attempts: e.Attempts, At: now, OrgID: c.team.OrgID, TeamNodeID: c.team.TeamNodeID}
	}
	run, plan, err := d.callAgent(ctx, c)
	outcome := "delivered"
	if err != nil {
		d.forget(c.team.OrgID, c.team.TeamNodeID, err)
		// One backoff for the whole digest, so it is retried as a whole.
		most := 0
		for _, e := range c.events {
			most = max(most, e.Attempts)
		}
		retryAt := time.Time{}
		for i, e := range c.events {
			o, oc := d.failed(outs[i], e.Attempts, err)
			if oc == "retry" {
				if retryAt.IsZero() {
					retryAt = d.now().Add(d.retry.Backoff(most + 1))
				}
				o.NextAttemptAt = retryAt
			}
			outs[i], outcome = o, oc
		}
	} else {
		// The call that delivered is an attempt too: a delivered event
		// says how many calls it took (1 when the first one did).
		step := routing.Step{Kind: routing.KindAgent}
		if run != nil {
			step.Agent = run.AgentName
			if len(c.events) > 1 {
				step.Detail = fmt.Sprintf("one call for %d events (a digest, run %s)", len(c.events), run.ID)
			} else {
				step.Detail = "run " + run.ID
			}
		}
		for i, e := range c.events {
			outs[i].Status, outs[i].Attempts = store.EventDelivered, e.Attempts+1
			outs[i].Decision = withStep(e, step)
		}
	}
	if ctx.Err() != nil && err != nil {
		// Shutdown cut the call: back to the queue, no attempt used.
		for i, e := range c.events {
			outs[i] = store.Outcome{ID: e.ID, Status: store.EventQueued, Attempts: e.Attempts, At: d.now(), LastError: "interrupted by shutdown"}
		}
		outcome, run = "interrupted", nil
	}
	digest := len(c.events) > 1
	at := d.now()
	for i, e := range c.events {
		outs[i].At = at
		if digest && run != nil {
			outs[i].DigestRunID, outs[i].DigestSize = run.ID, len(c.events)
		}
		d.metrics.total.WithLabelValues(e.Source, outcome).Inc()
		if digest {
			d.metrics.coalesced.WithLabelValues(e.Source).Inc()
		}
		if outs[i].Status == store.EventDelivered {
			tracing.Observe(d.metrics.latency, at.Sub(e.ReceivedAt).Seconds(), tracing.SpanContext(e.Trace))
		}
	}
	endCall(span, outcome)
	d.log.InfoContext(ctx, "dispatch", "events", len(c.events), "first_event_id", c.events[0].ID, "outcome", outcome,
		"status", outs[0].Status, "org_id", c.team.OrgID, "team_node_id", c.team.TeamNodeID, "error", outs[0].LastError)
	// The answer (or, once the call will not be retried, what went wrong)
	// goes where the question was asked.
	var deliveries []store.AnswerDelivery
	if run != nil && d.o.Outbox != nil && (outcome == "delivered" || outcome == queue.Failed || outcome == queue.Dead) {
		deliveries = d.deliveries(*run, plan)
	}
	d.done.Add(completion{outs: outs, run: run, deliveries: deliveries})
}

// deliveries are the rows of a run's answer, one per planned destination:
// posting (claimed by this process for the outbox's lease, handed to the
// outbox once recorded) or failed with the plan's reason. A run that
// succeeded without an answer text has nothing to post, and says so.
func (d *Dispatcher) deliveries(run store.AgentRun, plan answers.Plan) []store.AnswerDelivery {
	now := d.now()
	out := make([]store.AnswerDelivery, 0, len(plan.Deliveries))
	for i, p := range plan.Deliveries {
		typ := p.Destination.Type
		if !answers.KnownType(typ) {
			typ = "invalid"
		}
		row := store.AnswerDelivery{ID: newID(), AgentRunID: run.ID, Seq: i, EventID: run.WebhookEventID, OrgID: run.OrgID,
			TeamNodeID: run.TeamNodeID, Type: typ, Destination: answers.EncodeDestination(p.Destination), CreatedAt: now}
		switch {
		case !p.Post:
			row.Status, row.LastError = store.AnswerFailed, p.Failed
		case run.Status == "succeeded" && run.Answer == "":
			row.Status, row.LastError = store.AnswerFailed, "the agent's response carried no answer text (result, output or text)"
		default:
			row.Status, row.NextAttemptAt = store.AnswerPosting, now.Add(d.o.Outbox.Lease())
		}
		out = append(out, row)
	}
	return out
}

// withStep is the event's stored decision with one more step. An event
// that took its team at ingest from a cached lookup (a storm's events after
// the first) has no decision yet: it starts with that lookup.
func withStep(e store.Event, s routing.Step) []byte {
	dec := routing.DecodeDecision(e.Decision)
	if len(dec.Steps) == 0 && e.OrgID != "" && len(e.Identifiers) > 0 {
		found := true
		dec.Add(routing.Step{Kind: routing.KindLookup, Identifiers: e.Identifiers, Found: &found, OrgID: e.OrgID,
			TeamNodeID: e.TeamNodeID, MatchedBy: e.MatchedBy, Detail: "answered from the routing cache when the event arrived"})
	}
	dec.Add(s)
	return dec.Encode()
}

// dropUnreadable ends failed, without an agent call, the events of c whose
// stored payload cannot be read (a corrupt or crafted row: the agent would
// get nothing to look at), and returns the call with the rest.
func (d *Dispatcher) dropUnreadable(c call) call {
	if !slices.ContainsFunc(c.events, func(e store.Event) bool { return e.PayloadError != "" }) {
		return c
	}
	var outs []store.Outcome
	kept := make([]store.Event, 0, len(c.events))
	for _, e := range c.events {
		if e.PayloadError == "" {
			kept = append(kept, e)
			continue
		}
		outs = append(outs, store.Outcome{ID: e.ID, Status: store.EventFailed, Attempts: e.Attempts, At: d.now(),
			OrgID: c.team.OrgID, TeamNodeID: c.team.TeamNodeID, LastError: "stored payload unreadable: " + e.PayloadError})
		d.metrics.total.WithLabelValues(e.Source, "failed").Inc()
		d.log.Error("dispatch", "event_id", e.ID, "outcome", "failed", "error", e.PayloadError)
	}
	d.done.Add(completion{outs: outs})
	c.events = kept
	return c
}

// callAgent reads the team's context and calls its agent; it returns the
// agent-run row (nil if no call was made, else with the agent's answer
// text), where the answer goes, and the failure, if any.
func (d *Dispatcher) callAgent(ctx context.Context, c call) (*store.AgentRun, answers.Plan, error) {
	tc, err := d.context(ctx, c.team.OrgID, c.team.TeamNodeID)
	if err != nil {
		return nil, answers.Plan{}, err
	}
	agentName, agentURL := d.agentTarget(tc.cfg, c.team)
	req, correlation, runID, trigger := d.request(c)
	// The answer's feedback buttons carry this unguessable reference to the
	// run, never the correlation id (a lone event's is its sequential id).
	ref := store.NewFeedbackRef()
	req.Context["feedback_ref"] = ref
	plan := d.o.Answers.Resolve(tc.cfg, trigger)
	for _, w := range plan.Warnings {
		d.log.Warn("team's output_config: "+w, "org_id", c.team.OrgID, "team_node_id", c.team.TeamNodeID)
	}
	if len(plan.Destinations) > 0 {
		req.OutputDestinations = plan.Destinations
	}
	limits := Limits{}
	for _, e := range c.events {
		l := d.o.Limits[e.Source]
		if l.Timeout <= 0 {
			l = Limits{Timeout: 300 * time.Second, MaxTurns: 50}
		}
		limits.Timeout, limits.MaxTurns = max(limits.Timeout, l.Timeout), max(limits.MaxTurns, l.MaxTurns)
	}
	req.Timeout, req.MaxTurns = int(limits.Timeout/time.Second), limits.MaxTurns
	start := d.now()
	var raw json.RawMessage
	streamed := d.protocol(tc.cfg, c.team) == ProtocolInvestigate
	tools := &toolTally{}
	err = d.step(ctx, "agent call", func(ctx context.Context) error {
		var err error
		if streamed {
			raw, err = d.investigate(ctx, agentURL, tc.imp.Token, correlation, runID, c.team, req, limits.Timeout+10*time.Second, &plan, tools)
		} else {
			raw, err = d.o.Agent.Run(ctx, agentURL, agentName, tc.imp.Token, correlation, req, limits.Timeout+10*time.Second)
		}
		return err
	}, tracing.AttrAgent.String(agentName))
	run := &store.AgentRun{ID: runID, TriggerSource: budgetSource(req.TriggerSource, c.events), OrgID: c.team.OrgID,
		TeamNodeID: c.team.TeamNodeID, AgentName: agentName, Status: "succeeded", CorrelationID: correlation,
		Duration: d.now().Sub(start), StartedAt: start, EventCount: len(c.events), UpstreamStatus: http.StatusOK, FeedbackRef: ref,
		Answer: answers.Text(raw)}
	if len(c.events) == 1 {
		run.WebhookEventID = c.events[0].ID
	}
	if streamed {
		run.Summary = d.summarize(context.WithoutCancel(ctx), runID, tools, run.Duration)
	}
	if err != nil {
		run.Status, run.Error, run.UpstreamStatus, run.Answer = "failed", errorText(err), 0, ""
		if h, ok := peers.AsHTTPError(err); ok {
			run.UpstreamStatus = h.Status
		}
		if f, ok := peers.AsStreamFailure(err); ok {
			// The stream had begun: what people in the thread read is the
			// failure itself, with the run's link (never retried).
			run.UpstreamStatus, run.Answer = http.StatusOK, "The investigation did not finish: "+f.Reason+"."
		}
		return run, plan, fmt.Errorf("agent %s: %w", agentName, err)
	}
	return run, plan, nil
}

// budgetSource is what the stored agent call says triggered it: the
// request's trigger source, except for the calls the daily budget does not
// count — "redrive" (an operator redrove the event) and "resolve" (resolves
// alone, closing delivered alerts); store.CountAlertCalls leaves those out.
func budgetSource(source string, events []store.Event) string {
	if len(events) == 1 && events[0].Solo {
		return store.TriggerRedrive
	}
	if resolves, _ := splitResolves(events); len(resolves) == len(events) {
		return store.TriggerResolve
	}
	return source
}

// request builds the agent request of a call, and says what asked (for
// the answer's destinations). A lone event is described as itself, with
// its id as correlation id. A digest opens with a count line, then one line
// per event, oldest first; its correlation id is the digest's (= its agent
// run's) id.
func (d *Dispatcher) request(c call) (peers.AgentRequest, string, string, answers.Trigger) {
	trigger := map[string]any{"org_id": c.team.OrgID, "team_node_id": c.team.TeamNodeID}
	if len(c.events) == 1 {
		e := c.events[0]
		msg, meta := d.o.Sources.Describe(e.Source, e.EventType, e.Body, e.Headers)
		trigger["source"], trigger["event_id"], trigger["delivery_id"], trigger["event_type"] = e.Source, e.ID, e.DeliveryID, e.EventType
		return peers.AgentRequest{Message: msg, TriggerSource: e.Source,
				Context: map[string]any{"metadata": map[string]any{e.Source: meta}, "trigger": trigger}}, e.ID, newID(),
			answers.Trigger{Source: e.Source, Meta: meta}
	}
	sources := make([]string, 0, 2)
	id := newID()
	lines := make([]string, 0, len(c.events)+1)
	listed := make([]map[string]any, 0, len(c.events))
	type group struct {
		n        int
		subjects []string
	}
	groups := map[string]*group{}
	var order []string
	// Several waiting events of one alert saying the same (firing, with the
	// same fingerprints) are one line with a count (SPEC §6 Noise).
	same := map[string]int{} // alert identity → its line
	counts := map[int]int{}
	for _, e := range c.events {
		if !slices.Contains(sources, e.Source) {
			sources = append(sources, e.Source)
		}
		msg, meta := d.o.Sources.Describe(e.Source, e.EventType, e.Body, e.Headers)
		listed = append(listed, map[string]any{"source": e.Source, "event_id": e.ID, "delivery_id": e.DeliveryID,
			"event_type": e.EventType, "summary": msg})
		ident := ""
		if e.AlertKey != "" {
			ident = e.Source + "\x00" + e.AlertKey + "\x00" + e.AlertState + "\x00" + e.AlertSig
		}
		if i, ok := same[ident]; ok && ident != "" {
			counts[i]++
		} else {
			if ident != "" {
				same[ident] = len(lines)
			}
			counts[len(lines)] = 1
			lines = append(lines, "- "+webhook.EscapeText(msg))
		}
		k := e.Source + " " + e.EventType
		g := groups[k]
		if g == nil {
			g = &group{}
			groups[k] = g
			order = append(order, k)
		}
		g.n++
		if s := subject(meta); s != "" && len(g.subjects) < 3 && !slices.Contains(g.subjects, s) {
			g.subjects = append(g.subjects, s)
		}
	}
	sort.SliceStable(order, func(i, j int) bool { return groups[order[i]].n > groups[order[j]].n })
	parts := make([]string, 0, len(order))
	for _, k := range order {
		p := fmt.Sprintf("%d %s", groups[k].n, k)
		if s := groups[k].subjects; len(s) > 0 {
			p += " (" + strings.Join(s, ", ") + ")"
		}
		parts = append(parts, p)
	}
	for i, n := range counts {
		if n > 1 {
			lines[i] += fmt.Sprintf(" (×%d)", n)
		}
	}
	// Event types and subjects come from senders: one line each, escaped.
	head := webhook.EscapeText(fmt.Sprintf("%d alerts for %s/%s: %s", len(c.events), c.team.OrgID, c.team.TeamNodeID, strings.Join(parts, ", ")))
	trigger["source"], trigger["digest_id"], trigger["event_count"] = "digest", id, len(c.events)
	return peers.AgentRequest{Message: head + "\n" + strings.Join(lines, "\n"), TriggerSource: "digest",
			Context: map[string]any{"metadata": map[string]any{"events": listed}, "trigger": trigger}}, id, id,
		answers.Trigger{Digest: true, Sources: sources}
}

// subject is what an alert is about, for the count line: the PagerDuty
// service, the GitHub repository, the Coralogix application.
func subject(meta map[string]any) string {
	for _, k := range []string{"service_id", "repo", "application"} {
		if s, _ := meta[k].(string); s != "" {
			return s
		}
	}
	return ""
}

// agentTarget reads the team's entrance agent and dedicated URL.
func (d *Dispatcher) agentTarget(cfg map[string]any, t store.TeamKey) (string, string) {
	name := "planner"
	if s, _ := cfg["entrance_agent"].(string); s != "" {
		if ids.ValidAgent(s) {
			name = s
		} else {
			d.log.Warn("team's entrance_agent is not a valid agent name; using planner", "org_id", t.OrgID, "team_node_id", t.TeamNodeID)
		}
	}
	url, ok := peers.DedicatedURL(cfg)
	if !ok {
		d.log.Warn("team's dedicated_service_url is not an in-cluster Service URL; using the shared agent",
			"org_id", t.OrgID, "team_node_id", t.TeamNodeID)
	}
	return name, url
}

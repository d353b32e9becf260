package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// pd is a PagerDuty v3 delivery about an incident, signed.
func pd(delivery, incident, eventType string) ([]byte, http.Header) {
	body := fmt.Appendf(nil, `{"event":{"id":"%s","event_type":"%s","resource_type":"incident","occurred_at":"2026-11-26T01:00:00Z",
		"data":{"id":"%s","type":"incident","status":"x","title":"Checkout errors (%s)","service":{"id":"PF9KMXH","type":"service_reference"}}}}`,
		delivery, eventType, incident, incident)
	return body, webhook.Sign(webhook.PagerDuty, pagerdutySecret, body, wallclock.Now(), "")
}

// sendPD sends a PagerDuty delivery and returns its event id.
func (e *env) sendPD(t *testing.T, delivery, incident, eventType string) string {
	t.Helper()
	body, h := pd(delivery, incident, eventType)
	r := e.send(webhook.PagerDuty, body, h)
	if r.code != 200 {
		t.Fatalf("%s = %d %s", delivery, r.code, r.raw)
	}
	return r.body["event_id"].(string)
}

func (e *env) event(t *testing.T, id string) store.Event {
	t.Helper()
	ev, err := e.db.GetEvent(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// agentMessages are the messages of the agent calls so far.
func (e *env) agentMessages() []string {
	var out []string
	for _, c := range e.agent.CallsTo(peerstest.RouteAgentRun) {
		var req struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(c.Body, &req)
		out = append(out, req.Message)
	}
	return out
}

// TestNoise_AResolveSettlesItsWaitingFiringAtItsAck: a firing held back by
// the team's limit is settled by its resolve in the resolve's own
// transaction when the resolve's route is known at its ack (cached, as in
// a storm): both are suppressed (resolved) the moment the resolve is
// acknowledged, whatever the limit; the agent never hears of the incident.
// A resolve whose firing was delivered is delivered.
func TestNoise_AResolveSettlesItsWaitingFiringAtItsAck(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, teamPerMinute: 1, fakeClock: true, routingTTL: time.Hour})
	first := e.sendPD(t, "d-1", "INC-A", "incident.triggered")
	e.waitStatus(first, store.EventDelivered)
	// The team's one call a minute is spent: this firing waits.
	firing := e.sendPD(t, "d-2", "INC-B", "incident.triggered")
	waitFor(t, "the firing routed and waiting", func() bool { return e.event(t, firing).TeamNodeID != "" })
	if ev := e.event(t, firing); ev.Status != store.EventQueued {
		t.Fatalf("the firing is %s, want queued behind the team's limit", ev.Status)
	}
	resolve := e.sendPD(t, "d-3", "INC-B", "incident.resolved")
	// No waiting: the resolve's ack already settled both.
	f, r := e.event(t, firing), e.event(t, resolve)
	if f.Status != store.EventSuppressed || f.SuppressedReason != "resolved" || f.SuppressedBy != resolve {
		t.Fatalf("firing = %s %s by %s", f.Status, f.SuppressedReason, f.SuppressedBy)
	}
	if r.Status != store.EventSuppressed || r.SuppressedReason != "resolved" || r.SuppressedBy != firing {
		t.Fatalf("resolve = %s %s by %s", r.Status, r.SuppressedReason, r.SuppressedBy)
	}
	d := e.do("GET", "/api/v1/admin/events/"+firing, adminToken, nil)
	if d.body["suppressed_reason"] != "resolved" || d.body["suppressed_by"] != resolve || d.body["status"] != "suppressed" {
		t.Fatalf("event API = %s", d.raw)
	}
	// The incident delivered first resolves: the agent hears of that.
	closing := e.sendPD(t, "d-4", "INC-A", "incident.resolved")
	if ev := e.event(t, closing); ev.Status != store.EventQueued {
		t.Fatalf("a delivered incident's resolve is %s, want queued", ev.Status)
	}
	e.clock.Add(time.Minute)
	e.disp.Notify("", "")
	e.waitStatus(closing, store.EventDelivered)
	msgs := e.agentMessages()
	if len(msgs) != 2 || strings.Contains(strings.Join(msgs, "\n"), "INC-B") {
		t.Fatalf("agent heard %q", msgs)
	}
	for _, line := range []string{`orchestrator_suppressed_total{reason="resolved",source="pagerduty"} 2`,
		`orchestrator_dispatch_total{outcome="suppressed",source="pagerduty"} 2`} {
		if !e.metric(line) {
			t.Errorf("metrics lack %s", line)
		}
	}
	if r := e.do("GET", "/api/v1/admin/events?suppressed_reason=resolved", adminToken, nil); len(r.body["events"].([]any)) != 2 {
		t.Fatalf("filter = %s", r.raw)
	}
	if r := e.do("GET", "/api/v1/admin/events?suppressed_reason=bored", adminToken, nil); r.code != 400 {
		t.Fatalf("unknown reason = %d", r.code)
	}
}

// TestNoise_GroupWaitLetsAFlappingAlertResolveFirst: with a group wait a
// new firing is held that long; resolved within it, the agent never hears
// of it (the resolve settles it as soon as the router gives the resolve
// its team, while the clock stands still); unresolved, it goes when the
// wait is over.
func TestNoise_GroupWaitLetsAFlappingAlertResolveFirst(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, fakeClock: true, groupWait: 30 * time.Second})
	flap := e.sendPD(t, "g-1", "INC-F", "incident.triggered")
	steady := e.sendPD(t, "g-2", "INC-S", "incident.triggered")
	resolve := e.sendPD(t, "g-3", "INC-F", "incident.resolved")
	if f := e.waitStatus(flap, store.EventSuppressed); f.SuppressedBy != resolve {
		t.Fatalf("the flapping firing = %s by %s", f.Status, f.SuppressedBy)
	}
	if r := e.waitStatus(resolve, store.EventSuppressed); r.SuppressedBy != flap {
		t.Fatalf("the resolve = %s by %s", r.Status, r.SuppressedBy)
	}
	if s := e.event(t, steady); s.Status != store.EventQueued {
		t.Fatalf("the steady firing = %s, want held", s.Status)
	}
	if n := len(e.agentMessages()); n != 0 {
		t.Fatalf("%d agent calls during the group wait", n)
	}
	e.clock.Add(31 * time.Second)
	e.disp.Notify("", "")
	e.waitStatus(steady, store.EventDelivered)
	if msgs := e.agentMessages(); len(msgs) != 1 || !strings.Contains(msgs[0], "INC-S") {
		t.Fatalf("agent heard %q", msgs)
	}
}

// TestNoise_RepeatsAreSuppressedUntilResolvedOrTheWindowPasses.
func TestNoise_RepeatsAreSuppressedUntilResolvedOrTheWindowPasses(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, fakeClock: true, alertRepeat: 4 * time.Hour})
	first := e.sendPD(t, "r-1", "INC-R", "incident.triggered")
	e.waitStatus(first, store.EventDelivered)
	again := e.sendPD(t, "r-2", "INC-R", "incident.triggered")
	ev := e.waitStatus(again, store.EventSuppressed)
	if ev.SuppressedReason != "repeat" || ev.SuppressedBy != first || !strings.Contains(ev.LastError, "a repeat of event "+first) {
		t.Fatalf("repeat = %+v", ev)
	}
	// The window passes: the same alert is news again.
	e.clock.Add(4*time.Hour + time.Minute)
	later := e.sendPD(t, "r-3", "INC-R", "incident.triggered")
	e.waitStatus(later, store.EventDelivered)
	// A resolve in between: the next firing is news.
	resolve := e.sendPD(t, "r-4", "INC-R", "incident.resolved")
	e.waitStatus(resolve, store.EventDelivered)
	reopened := e.sendPD(t, "r-5", "INC-R", "incident.reopened")
	e.waitStatus(reopened, store.EventDelivered)
	if n := len(e.agentMessages()); n != 4 {
		t.Fatalf("agent calls = %d, want 4 (the first, after the window, the resolve, the reopen)", n)
	}
	// A redriven repeat goes: an operator asked.
	if r := e.do("POST", "/api/v1/admin/events/"+again+"/redrive", adminToken, nil); r.code != 200 {
		t.Fatalf("redrive = %d %s", r.code, r.raw)
	}
	e.waitStatus(again, store.EventDelivered)
	if !e.metric(`orchestrator_suppressed_total{reason="repeat",source="pagerduty"} 1`) {
		t.Error("metrics lack the repeat")
	}
}

// amBody is an Alertmanager notification of a group with these firing fingerprints.
func amBody(group string, fingerprints ...string) []byte {
	var alerts []string
	for _, f := range fingerprints {
		alerts = append(alerts, fmt.Sprintf(`{"status":"firing","labels":{"alertname":"Down","service":"checkout","fp":"%s"},"annotations":{},
			"startsAt":"2026-11-26T01:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"%s"}`, f, f))
	}
	return fmt.Appendf(nil, `{"version":"4","groupKey":"%s","status":"firing","receiver":"o","groupLabels":{"alertname":"Down"},
		"commonLabels":{"alertname":"Down","service":"checkout"},"commonAnnotations":{},"externalURL":"","alerts":[%s],"n":%d}`,
		group, strings.Join(alerts, ","), time.Now().UnixNano())
}

// An Alertmanager group that fires again with the same alerts is a repeat;
// a new alert joining the group is news.
func TestNoise_AnAlertJoiningAnAlertmanagerGroupIsNews(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, fakeClock: true, alertRepeat: 4 * time.Hour})
	send := func(fps ...string) string {
		body := amBody("{}:{alertname=Down}", fps...)
		r := e.send(webhook.Alertmanager, body, webhook.Sign(webhook.Alertmanager, alertmanagerTok, body, wallclock.Now(), ""))
		return r.body["event_id"].(string)
	}
	e.waitStatus(send("aaa"), store.EventDelivered)
	if ev := e.waitStatus(send("aaa"), store.EventSuppressed, store.EventDelivered); ev.Status != store.EventSuppressed || ev.SuppressedReason != "repeat" {
		t.Fatalf("the same alerts again = %s %s", ev.Status, ev.SuppressedReason)
	}
	if ev := e.waitStatus(send("aaa", "bbb"), store.EventSuppressed, store.EventDelivered); ev.Status != store.EventDelivered {
		t.Fatalf("a new alert joining = %s %s", ev.Status, ev.SuppressedReason)
	}
}

// Waiting firing events of one alert fold into one digest line with a count.
func TestNoise_WaitingRepeatsFoldIntoOneDigestLine(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, fakeClock: true, teamPerMinute: 1, coalesce: []string{webhook.PagerDuty},
		alertRepeat: 4 * time.Hour})
	e.waitStatus(e.sendPD(t, "w-0", "INC-0", "incident.triggered"), store.EventDelivered)
	var ids []string
	for i := range 3 {
		ids = append(ids, e.sendPD(t, fmt.Sprint("w-j", i), "INC-J", "incident.triggered"))
	}
	ids = append(ids, e.sendPD(t, "w-k", "INC-K", "incident.triggered"))
	waitFor(t, "all routed", func() bool { return e.event(t, ids[3]).TeamNodeID != "" })
	e.clock.Add(time.Minute)
	e.disp.Notify("", "")
	for _, id := range ids {
		e.waitStatus(id, store.EventDelivered)
	}
	msgs := e.agentMessages()
	if len(msgs) != 2 {
		t.Fatalf("agent calls = %d", len(msgs))
	}
	digest := msgs[1]
	if !strings.HasPrefix(digest, "4 alerts for acme/platform-sre") || strings.Count(digest, "INC-J") != 1 ||
		!strings.Contains(digest, "Checkout errors (INC-J) (×3)") || !strings.Contains(digest, "(INC-K)") {
		t.Fatalf("digest = %q", digest)
	}
}

// TestNoise_TheDailyBudgetKeepsAlertsBackNotPeople.
func TestNoise_TheDailyBudgetKeepsAlertsBackNotPeople(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, fakeClock: true, callsPerDay: 2})
	for i := range 2 {
		e.waitStatus(e.sendPD(t, fmt.Sprint("b-", i), fmt.Sprint("INC-", i), "incident.triggered"), store.EventDelivered)
	}
	over := e.sendPD(t, "b-2", "INC-2", "incident.triggered")
	ev := e.waitStatus(over, store.EventSuppressed, store.EventDelivered)
	day := e.clock.Now().UTC().Format(time.DateOnly)
	if ev.Status != store.EventSuppressed || ev.SuppressedReason != "budget" || ev.SuppressedBy != day {
		t.Fatalf("the third alert = %s %s %s", ev.Status, ev.SuppressedReason, ev.SuppressedBy)
	}
	body := webhook.Sample(webhook.Slack, "budget", wallclock.Now())
	mention := e.send(webhook.Slack, body, slackSigned(t, slackSecret, body)).body["event_id"].(string)
	e.waitStatus(mention, store.EventDelivered)
	if !e.metric("orchestrator_team_budget_exhausted_total 1") {
		t.Error("metrics lack the exhausted budget")
	}
	if used, budget := e.disp.CallsToday("acme", "platform-sre", e.clock.Now()); used != 2 || budget != 2 {
		t.Fatalf("calls today = %d of %d", used, budget)
	}
	// A new UTC day: a new budget.
	e.clock.Add(24 * time.Hour)
	next := e.sendPD(t, "b-3", "INC-3", "incident.triggered")
	e.waitStatus(next, store.EventDelivered)
}

// A resolve of a delivered alert closes the agent's investigation: it is
// delivered even when the team's daily budget is spent (it used to end
// suppressed (budget), so the agent never heard the alert ended), and a
// call of resolves alone does not count against the budget; the next new
// firing is still kept back.
func TestNoise_AResolveOfADeliveredAlertGoesPastASpentBudget(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, fakeClock: true, callsPerDay: 1})
	e.waitStatus(e.sendPD(t, "r-1", "INC-R", "incident.triggered"), store.EventDelivered)
	resolve := e.sendPD(t, "r-2", "INC-R", "incident.resolved")
	ev := e.waitStatus(resolve, store.EventDelivered, store.EventSuppressed)
	if ev.Status != store.EventDelivered {
		t.Fatalf("the resolve past the budget = %s (%s)", ev.Status, ev.SuppressedReason)
	}
	msgs := e.agentMessages()
	if len(msgs) != 2 || !strings.Contains(msgs[1], "INC-R") {
		t.Fatalf("the agent heard %q", msgs)
	}
	if v := e.do("GET", "/api/v1/admin/events/"+resolve, adminToken, nil); v.body["agent_runs"].([]any)[0].(map[string]any)["trigger_source"] != "resolve" {
		t.Fatalf("the resolve's call: %s", v.raw)
	}
	e.clock.Add(6 * time.Second) // the count read back from the stored calls
	if used, budget := e.disp.CallsToday("acme", "platform-sre", e.clock.Now()); used != 1 || budget != 1 {
		t.Fatalf("calls today = %d of %d, want 1 of 1 (the resolve does not count)", used, budget)
	}
	next := e.waitStatus(e.sendPD(t, "r-3", "INC-S", "incident.triggered"), store.EventSuppressed, store.EventDelivered)
	if next.Status != store.EventSuppressed || next.SuppressedReason != "budget" {
		t.Fatalf("a new firing past the budget = %s %s", next.Status, next.SuppressedReason)
	}
}

// TestSilences_APIScopeValidationAndEffect: a silence keeps its org's
// matching alert events from the agent, never a person's mention; it needs
// admin:silence, a comment and an end within 30 days; an admin of another
// org can neither set one for this org nor see or expire this org's; an
// expired silence is kept, with who expired it; both changes are audited.
func TestSilences_APIScopeValidationAndEffect(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true})
	e.cs.AddAdmin(bigToken, peers.Identity{Role: "admin", Permissions: []string{"admin:*"}, OrgID: "big"})
	ends := wallclock.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)
	valid := map[string]any{"org_id": "acme", "team_node_id": "platform-sre", "sources": []string{"pagerduty"},
		"match": map[string]any{"service": "PF9K*"}, "ends_at": ends, "comment": "checkout DB failover window"}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for kk, vv := range valid {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	noOrg := map[string]any{"org_id": "nosuchorg", "ends_at": ends, "comment": "who is this for?"}
	for name, c := range map[string]struct {
		token string
		body  map[string]any
		code  int
		want  string
	}{
		"no comment":          {adminToken, with("comment", "  "), 400, "comment: required"},
		"no end":              {adminToken, with("ends_at", nil), 400, "ends_at: required"},
		"too long":            {adminToken, with("ends_at", wallclock.Now().Add(31*24*time.Hour).UTC().Format(time.RFC3339)), 400, "at most 30 days"},
		"in the past":         {adminToken, with("ends_at", wallclock.Now().Add(-time.Minute).UTC().Format(time.RFC3339)), 400, "must be in the future"},
		"people":              {adminToken, with("sources", []string{"slack"}), 400, "slack cannot be silenced"},
		"unknown source":      {adminToken, with("sources", []string{"smtp"}), 400, "not a webhook source"},
		"unknown field":       {adminToken, with("everything", true), 400, ""},
		"another org's admin": {bigToken, valid, 403, ""},
		"no permission":       {scopedToken, valid, 403, ""},
		"no token":            {"", valid, 401, ""},
		// An org or team the Config Service does not know would silence
		// nothing: refused, and only to an admin who may act on that org
		// (another org's admin and an outsider learn nothing of it).
		"unknown org":                      {adminToken, noOrg, 422, `"unknown_org","detail":"org_id: the Config Service knows no org nosuchorg"`},
		"unknown team":                     {adminToken, with("team_node_id", "ghost"), 422, "knows no team ghost in org acme"},
		"unknown org, another org's admin": {bigToken, noOrg, 403, "insufficient_permissions"},
		"unknown org, acme's admin":        {orgToken, noOrg, 403, "insufficient_permissions"},
		"unknown org, no token":            {"", noOrg, 401, ""},
	} {
		r := e.do("POST", "/api/v1/admin/silences", c.token, c.body)
		if r.code != c.code || !strings.Contains(r.raw, c.want) {
			t.Errorf("%s = %d %s", name, r.code, r.raw)
		}
	}
	r := e.do("POST", "/api/v1/admin/silences", adminToken, valid)
	if r.code != 201 || r.body["state"] != "active" || r.body["created_by"] == "" {
		t.Fatalf("create = %d %s", r.code, r.raw)
	}
	id := r.body["id"].(string)

	silenced := e.sendPD(t, "s-1", "INC-S1", "incident.triggered")
	ev := e.waitStatus(silenced, store.EventSuppressed, store.EventDelivered)
	if ev.Status != store.EventSuppressed || ev.SuppressedReason != "silence" || ev.SuppressedBy != id ||
		!strings.Contains(ev.LastError, "checkout DB failover window") {
		t.Fatalf("silenced alert = %s %s %s %q", ev.Status, ev.SuppressedReason, ev.SuppressedBy, ev.LastError)
	}
	// Another source is not in the silence; a person is never silenced.
	gh, h := signed(webhook.GitHub, "s-gh", githubSecret, wallclock.Now())
	e.waitStatus(e.send(webhook.GitHub, gh, h).body["event_id"].(string), store.EventDelivered)
	body := webhook.Sample(webhook.Slack, "during-silence", wallclock.Now())
	e.waitStatus(e.send(webhook.Slack, body, slackSigned(t, slackSecret, body)).body["event_id"].(string), store.EventDelivered)

	// Another org's admin sees none of it, and cannot expire it.
	if l := e.do("GET", "/api/v1/admin/silences", bigToken, nil); l.code != 200 || len(l.body["silences"].([]any)) != 0 {
		t.Fatalf("another org's list = %d %s", l.code, l.raw)
	}
	if g := e.do("GET", "/api/v1/admin/silences/"+id, bigToken, nil); g.code != 404 {
		t.Fatalf("another org's get = %d", g.code)
	}
	if d := e.do("DELETE", "/api/v1/admin/silences/"+id, bigToken, nil); d.code != 404 {
		t.Fatalf("another org's expire = %d", d.code)
	}
	if l := e.do("GET", "/api/v1/admin/silences?state=active", orgToken, nil); len(l.body["silences"].([]any)) != 1 {
		t.Fatalf("acme's own admin = %s", l.raw)
	}
	d := e.do("DELETE", "/api/v1/admin/silences/"+id, adminToken, nil)
	if d.code != 200 || d.body["state"] != "expired" || d.body["expired_by"] == "" {
		t.Fatalf("expire = %d %s", d.code, d.raw)
	}
	if again := e.do("DELETE", "/api/v1/admin/silences/"+id, adminToken, nil); again.code != 409 {
		t.Fatalf("expire twice = %d", again.code)
	}
	after := e.sendPD(t, "s-2", "INC-S2", "incident.triggered")
	e.waitStatus(after, store.EventDelivered)
	if l := e.do("GET", "/api/v1/admin/silences?state=expired", adminToken, nil); len(l.body["silences"].([]any)) != 1 {
		t.Fatalf("expired list = %s", l.raw)
	}
	audit, err := e.db.ListAudit(context.Background(), "acme", 10)
	actions := map[string]string{}
	for _, a := range audit {
		actions[a.Action] = a.Actor
	}
	if err != nil || len(audit) != 2 || actions["silence.create"] != "alice" || actions["silence.expire"] != "alice" {
		t.Fatalf("audit = %+v %v", audit, err)
	}
	// The audit API: the org's own admin sees it, another org's does not.
	if r := e.do("GET", "/api/v1/admin/audit", orgToken, nil); r.code != 200 || len(r.body["audit"].([]any)) != 2 {
		t.Fatalf("audit API for acme's admin = %d %s", r.code, r.raw)
	}
	if r := e.do("GET", "/api/v1/admin/audit", bigToken, nil); r.code != 200 || len(r.body["audit"].([]any)) != 0 {
		t.Fatalf("audit API for another org's admin = %d %s", r.code, r.raw)
	}
	if r := e.do("GET", "/api/v1/admin/audit?org_id=acme", bigToken, nil); r.code != 403 {
		t.Fatalf("another org's admin asking for acme's audit = %d", r.code)
	}
	if r := e.do("GET", "/api/v1/admin/audit", scopedToken, nil); r.code != 403 {
		t.Fatalf("without admin:audit:read = %d", r.code)
	}
	if !e.metric(`orchestrator_suppressed_total{reason="silence",source="pagerduty"} 1`) {
		t.Error("metrics lack the silenced event")
	}
}

// TestBulkRedrive_DryRunThenRedriveScopedAndAudited.
func TestBulkRedrive_DryRunThenRedriveScopedAndAudited(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, fakeClock: true, callsPerDay: 1})
	e.cs.AddAdmin(bigToken, peers.Identity{Role: "admin", Permissions: []string{"admin:*"}, OrgID: "big"})
	e.waitStatus(e.sendPD(t, "bulk-0", "INC-0", "incident.triggered"), store.EventDelivered)
	var kept []string
	for i := range 3 {
		id := e.sendPD(t, fmt.Sprint("bulk-", i+1), fmt.Sprint("INC-", i+1), "incident.triggered")
		e.waitStatus(id, store.EventSuppressed)
		kept = append(kept, id)
	}
	filter := map[string]any{"suppressed_reason": "budget", "source": "pagerduty", "dry_run": true}
	dry := e.do("POST", "/api/v1/admin/events/redrive", adminToken, filter)
	if dry.code != 200 || dry.body["matched"] != float64(3) || dry.body["redriven"] != float64(0) || dry.body["limit"] != float64(10000) {
		t.Fatalf("dry run = %d %s", dry.code, dry.raw)
	}
	if ev := e.event(t, kept[0]); ev.Status != store.EventSuppressed {
		t.Fatal("a dry run changed an event")
	}
	// Another org's admin: nothing of acme's matches, nothing moves.
	if other := e.do("POST", "/api/v1/admin/events/redrive", bigToken, map[string]any{"suppressed_reason": "budget"}); other.body["matched"] != float64(0) {
		t.Fatalf("another org's redrive = %s", other.raw)
	}
	if other := e.do("POST", "/api/v1/admin/events/redrive", bigToken, map[string]any{"org_id": "acme"}); other.code != 403 {
		t.Fatalf("another org's redrive naming acme = %d", other.code)
	}
	for name, bad := range map[string]map[string]any{"status": {"status": "delivered"}, "reason": {"suppressed_reason": "bored"},
		"source": {"source": "smtp"}, "range": {"since": "2026-11-26T10:00:00Z", "until": "2026-11-26T09:00:00Z"}} {
		if r := e.do("POST", "/api/v1/admin/events/redrive", adminToken, bad); r.code != 400 {
			t.Errorf("bad %s = %d %s", name, r.code, r.raw)
		}
	}
	if r := e.do("POST", "/api/v1/admin/events/redrive", scopedToken, filter); r.code != 403 {
		t.Fatalf("without admin:events:redrive = %d", r.code)
	}
	if r := e.do("POST", "/api/v1/admin/events/12345/redrive", adminToken, nil); r.code != 404 {
		t.Fatalf("one event's redrive route still there = %d %s", r.code, r.raw)
	}
	filter["dry_run"] = false
	done := e.do("POST", "/api/v1/admin/events/redrive", adminToken, filter)
	if done.code != 200 || done.body["redriven"] != float64(3) {
		t.Fatalf("redrive = %d %s", done.code, done.raw)
	}
	// Redriven events go alone and past noise control (the budget is
	// spent); each keeps why it had been kept back (its history), and the
	// API says it was redriven. They do not count against the budget (an
	// operator asked for them): still 1 of 1, where the page used to say
	// "4 of 1", and the overview's calls saved no longer counts them.
	for _, id := range kept {
		ev := e.waitStatus(id, store.EventDelivered)
		if !ev.Solo || ev.SuppressedReason != "budget" || ev.SuppressedBy != e.clock.Now().UTC().Format(time.DateOnly) {
			t.Fatalf("redriven = %+v", ev)
		}
		if v := e.do("GET", "/api/v1/admin/events/"+id, adminToken, nil); v.body["redriven"] != true || v.body["suppressed_reason"] != "budget" ||
			v.body["status"] != "delivered" || v.body["agent_runs"].([]any)[0].(map[string]any)["trigger_source"] != "redrive" {
			t.Fatalf("the redriven event in the API: %s", v.raw)
		}
	}
	e.clock.Add(6 * time.Second) // past the count's 5 s sync: read back from the stored calls
	if used, budget := e.disp.CallsToday("acme", "platform-sre", e.clock.Now()); used != 1 || budget != 1 {
		t.Fatalf("calls today after redriving 3 = %d of %d, want 1 of 1", used, budget)
	}
	if saved, err := e.db.SuppressedSince(context.Background(), "", e.clock.Now().Add(-time.Hour)); err != nil || len(saved) != 0 {
		t.Fatalf("calls saved after the redrive: %v %v", saved, err)
	}
	// Every real bulk redrive is audited, the other org's attempt too.
	// (The fake clock stands still: both have the same time.)
	audit, err := e.db.ListAudit(context.Background(), "", 10)
	byOrg := map[string]store.Audit{}
	for _, a := range audit {
		byOrg[a.OrgID] = a
	}
	// The redrive across orgs is also in acme's audit, naming the whole.
	if all, acme, big := byOrg[""], byOrg["acme"], byOrg["big"]; err != nil || len(audit) != 3 || all.Action != "events.redrive" || all.Actor != "alice" ||
		all.Detail["redriven"] != float64(3) || acme.Actor != "alice" || acme.Detail["redriven"] != float64(3) || acme.Detail["redrive_audit_id"] != all.ID ||
		big.Action != "events.redrive" || big.Detail["redriven"] != float64(0) {
		t.Fatalf("audit = %+v %v", audit, err)
	}
}

package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// pd is a PagerDuty v3 delivery about an incident, signed.
func pd(delivery, incident, eventType string) ([]byte, http.Header) {
	body := fmt.Appendf(nil, `{"event":{"id":"%s","event_type":"%s","resource_type":"incident","occurred_at":"2026-11-26T01:00:00Z",
		"data":{"id":"%s","type":"incident","status":"x","title":"Checkout errors (%s)","service":{"id":"PF9KMXH","type":"service_reference"}}}}`,
		delivery, eventType, incident, incident)
	return body, webhook.Sign(webhook.PagerDuty, pagerdutySecret, body, time.Now(), "")
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
// transaction: both are suppressed (resolved) the moment the resolve is
// acknowledged, whatever the limit; the agent never hears of the incident.
// A resolve whose firing was delivered is delivered.
func TestNoise_AResolveSettlesItsWaitingFiringAtItsAck(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, teamPerMinute: 1, fakeClock: true})
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
// of it; unresolved, it goes when the wait is over.
func TestNoise_GroupWaitLetsAFlappingAlertResolveFirst(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, fakeClock: true, groupWait: 30 * time.Second})
	flap := e.sendPD(t, "g-1", "INC-F", "incident.triggered")
	steady := e.sendPD(t, "g-2", "INC-S", "incident.triggered")
	resolve := e.sendPD(t, "g-3", "INC-F", "incident.resolved")
	if f := e.event(t, flap); f.Status != store.EventSuppressed || f.SuppressedBy != resolve {
		t.Fatalf("the flapping firing = %s by %s", f.Status, f.SuppressedBy)
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
		r := e.send(webhook.Alertmanager, body, webhook.Sign(webhook.Alertmanager, alertmanagerTok, body, time.Now(), ""))
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
	body := webhook.Sample(webhook.Slack, "budget", time.Now())
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

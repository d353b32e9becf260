package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

var sources = webhook.Builtin[:]

// signed returns a sample body of the source and its correctly signed headers.
func signed(source, id string, secret string, at time.Time) ([]byte, http.Header) {
	body := webhook.Sample(source, id, at)
	return body, webhook.Sign(source, secret, body, at, "delivery-"+id)
}

func TestWebhook_EverySourceVerifiesStoresAndDispatches(t *testing.T) {
	for _, src := range sources {
		t.Run(src, func(t *testing.T) {
			e := newEnv(t, envOptions{webhooks: true, extraSecrets: map[string]string{src: rotationSecret(src)}})
			now := wallclock.Now()
			body, h := signed(src, "ok1", secrets[src], now)
			r := e.send(src, body, h)
			if r.code != 200 || r.body["ok"] != true || r.body["event_id"] == nil {
				t.Fatalf("valid = %d %s", r.code, r.raw)
			}
			ev := e.waitStatus(r.body["event_id"].(string), store.EventDelivered)
			if ev.OrgID != peerstest.DevOrg || ev.TeamNodeID != peerstest.DevTeam || ev.Attempts != 1 {
				t.Fatalf("delivered event = %+v", ev)
			}
			call := e.agent.CallsTo(peerstest.RouteAgentRun)
			if len(call) != 1 || call[0].Header.Get("X-Correlation-ID") != ev.ID || call[0].Header.Get("X-IncidentFox-Team-Token") == "" {
				t.Fatalf("agent calls = %d", len(call))
			}
			if !strings.Contains(string(call[0].Body), `"trigger_source":"`+src+`"`) || !strings.Contains(string(call[0].Body), `"metadata":{"`+src+`"`) {
				t.Fatalf("agent body = %s", call[0].Body)
			}

			tamperedBody := append([]byte{}, body...)
			tamperedBody[len(tamperedBody)-3] ^= 1
			_, other := signed(src, "ok1", rotationSecret(src)+"x", now)
			if src == webhook.IncidentIO {
				_, other = signed(src, "ok1", "whsec_b3RoZXIta2V5", now)
			}
			cases := map[string]struct {
				body []byte
				h    http.Header
			}{
				"wrong secret":    {body, other},
				"missing headers": {body, http.Header{}},
			}
			if src != webhook.Coralogix && src != webhook.Alertmanager { // tokens: nothing signs the body
				cases["tampered body"] = struct {
					body []byte
					h    http.Header
				}{tamperedBody, h}
			}
			if src == webhook.Slack || src == webhook.IncidentIO {
				_, stale := signed(src, "ok1", secrets[src], now.Add(-6*time.Minute))
				_, future := signed(src, "ok1", secrets[src], now.Add(6*time.Minute))
				cases["stale timestamp"] = struct {
					body []byte
					h    http.Header
				}{body, stale}
				cases["future timestamp"] = struct {
					body []byte
					h    http.Header
				}{body, future}
			}
			for name, c := range cases {
				want, code := 401, "signature_verification_failed"
				// Slack, GitHub and incident.io always send a header besides
				// the signature; without it the request is no delivery: 400.
				if name == "missing headers" && src != webhook.PagerDuty && src != webhook.Coralogix && src != webhook.Alertmanager {
					want, code = 400, "bad_request"
				}
				if r := e.send(src, c.body, c.h); r.code != want || r.body["error"] != code {
					t.Errorf("%s = %d %s, want %d %s", name, r.code, r.raw, want, code)
				}
			}
			// The second secret of a rotation list verifies.
			b2, h2 := signed(src, "rot", rotationSecret(src), now)
			if r := e.send(src, b2, h2); r.code != 200 {
				t.Errorf("rotation secret = %d %s", r.code, r.raw)
			}
			// Redelivery: 200 duplicate, no second agent call.
			if src == webhook.Slack {
				h.Set("X-Slack-Retry-Num", "1")
				h.Set("X-Slack-Retry-Reason", "http_timeout")
			}
			dup := e.send(src, body, h)
			if dup.code != 200 || dup.body["duplicate"] != true || dup.body["event_id"] != ev.ID {
				t.Fatalf("redelivery = %d %s", dup.code, dup.raw)
			}
			e.waitStatus(b2IDs(t, e, src), store.EventDelivered)
			if got := len(e.agent.CallsTo(peerstest.RouteAgentRun)); got != 2 { // the first event and the rotation one
				t.Fatalf("agent calls after a redelivery = %d, want 2", got)
			}
			// Oversize: 413.
			big := append([]byte(`{"pad":"`), make([]byte, 1<<20)...)
			if r := e.send(src, big, h); r.code != 413 || r.body["error"] != "body_too_large" {
				t.Errorf("oversize = %d %s", r.code, r.raw)
			}
			for _, line := range []string{
				`orchestrator_webhook_events_total{outcome="duplicate",source="` + src + `"} 1`,
				`orchestrator_webhook_events_total{outcome="accepted",source="` + src + `"} 2`,
				`orchestrator_webhook_events_total{outcome="too_large",source="` + src + `"} 1`,
				`orchestrator_webhook_ack_seconds_count{source="` + src + `"}`,
				`orchestrator_dispatch_total{outcome="delivered",source="` + src + `"} 2`,
			} {
				if !e.metric(line) {
					t.Errorf("metrics lack %s", line)
				}
			}
		})
	}
}

func rotationSecret(src string) string {
	if src == webhook.IncidentIO {
		return "whsec_cm90YXRpb24tc2Vjb25k"
	}
	return "rotation-" + src
}

// b2IDs finds the id of the rotation event (delivery "…rot").
func b2IDs(t *testing.T, e *env, src string) string {
	t.Helper()
	evs, _, err := e.db.ListEvents(context.Background(), store.EventFilter{Source: src, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if strings.Contains(ev.DeliveryID, "rot") {
			return ev.ID
		}
		// Alertmanager's delivery id is the body's hash; its sample names
		// itself in a label.
		if full, err := e.db.GetEvent(context.Background(), ev.ID); err == nil && strings.Contains(string(full.Body), `"sample":"rot`) {
			return ev.ID
		}
	}
	t.Fatalf("no rotation event among %d", len(evs))
	return ""
}

// metric reports whether /metrics has a line starting with prefix.
func (e *env) metric(line string) bool {
	return strings.Contains(e.do("GET", "/metrics", "", nil).raw, line)
}

func TestSlack_URLVerificationNeedsAValidSignature(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true})
	body := []byte(`{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`)
	r := e.send(webhook.Slack, body, webhook.Sign(webhook.Slack, slackSecret, body, wallclock.Now(), ""))
	if r.code != 200 || r.body["challenge"] != "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" {
		t.Fatalf("challenge = %d %s", r.code, r.raw)
	}
	r = e.send(webhook.Slack, body, webhook.Sign(webhook.Slack, "not-the-secret", body, wallclock.Now(), ""))
	if r.code != 401 || strings.Contains(r.raw, "3eZbrw1aBm2") {
		t.Fatalf("unsigned challenge = %d %s", r.code, r.raw)
	}
	if evs, _, _ := e.db.ListEvents(context.Background(), store.EventFilter{Limit: 5}); len(evs) != 0 {
		t.Fatal("url_verification was stored")
	}
}

func TestWebhook_RateLimitAnswers429WithRetryAfter(t *testing.T) {
	// The clock stands still, so no token refills between the requests.
	e := newEnv(t, envOptions{webhooks: true, rate: 1, burst: 2, noDispatch: true, fakeClock: true})
	for _, src := range sources {
		codes := []int{}
		var last response
		for i := range 3 {
			body, h := signed(src, fmt.Sprint("rl", i), secrets[src], wallclock.Now())
			last = e.send(src, body, h)
			codes = append(codes, last.code)
		}
		// Each source has its own bucket: two pass, the third waits.
		if fmt.Sprint(codes) != "[200 200 429]" || last.header.Get("Retry-After") != "1" || last.body["error"] != "rate_limited" {
			t.Fatalf("%s: codes = %v, last = %s Retry-After=%q", src, codes, last.raw, last.header.Get("Retry-After"))
		}
		if evs, _, _ := e.db.ListEvents(context.Background(), store.EventFilter{Source: src, Limit: 5}); len(evs) != 2 {
			t.Fatalf("%s: %d events stored, want 2", src, len(evs))
		}
		if !e.metric(`orchestrator_webhook_events_total{outcome="rate_limited",source="` + src + `"} 1`) {
			t.Errorf("%s: rate_limited not counted", src)
		}
	}
}

func TestDispatch_TwoFailuresThenSuccessIsDelivered(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true})
	e.agent.Fail(peerstest.RouteAgentRun, peerstest.Fault{Status: 502, Times: 2})
	body, h := signed(webhook.Slack, "retry", slackSecret, wallclock.Now())
	r := e.send(webhook.Slack, body, h)
	ev := e.waitStatus(r.body["event_id"].(string), store.EventDelivered)
	if got := len(e.agent.CallsTo(peerstest.RouteAgentRun)); got != 3 {
		t.Fatalf("agent called %d times, want 3", got)
	}
	if ev.Attempts != 3 {
		t.Fatalf("attempts = %d, want 3 (two failed calls and the one that delivered)", ev.Attempts)
	}
	detail := e.do("GET", "/api/v1/admin/events/"+ev.ID, adminToken, nil)
	if runs := detail.body["agent_runs"].([]any); len(runs) != 3 {
		t.Fatalf("agent runs recorded = %d", len(runs))
	}
}

func TestDispatch_AlwaysFailingAgentEndsDead(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, maxAttempts: 4})
	e.agent.Fail(peerstest.RouteAgentRun, peerstest.Fault{Status: 503})
	body, h := signed(webhook.PagerDuty, "dead", pagerdutySecret, wallclock.Now())
	r := e.send(webhook.PagerDuty, body, h)
	ev := e.waitStatus(r.body["event_id"].(string), store.EventDead)
	if got := len(e.agent.CallsTo(peerstest.RouteAgentRun)); got != 4 || ev.Attempts != 4 || !strings.Contains(ev.LastError, "503") {
		t.Fatalf("calls %d, event %+v", got, ev)
	}
}

func TestDispatch_Agent4xxFailsWithoutRetry(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true})
	e.agent.Fail(peerstest.RouteAgentRun, peerstest.Fault{Status: 400})
	body, h := signed(webhook.GitHub, "bad", githubSecret, wallclock.Now())
	r := e.send(webhook.GitHub, body, h)
	ev := e.waitStatus(r.body["event_id"].(string), store.EventFailed)
	if got := len(e.agent.CallsTo(peerstest.RouteAgentRun)); got != 1 || ev.Attempts != 1 {
		t.Fatalf("calls %d, attempts %d", got, ev.Attempts)
	}
}

func TestDispatch_UnroutedWaitsAndIsRedrivenAfterRoutingIsFixed(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true})
	body := []byte(`{"type":"event_callback","event_id":"EvUnrouted","event":{"type":"app_mention","channel":"C0NOBODY","text":"<@U1> help"}}`)
	r := e.send(webhook.Slack, body, webhook.Sign(webhook.Slack, slackSecret, body, wallclock.Now(), ""))
	id := r.body["event_id"].(string)
	ev := e.waitStatus(id, store.EventUnrouted)
	if len(e.agent.Calls()) != 0 || !strings.Contains(ev.LastError, "C0NOBODY") {
		t.Fatalf("unrouted event %+v, agent calls %d", ev, len(e.agent.Calls()))
	}
	// Redrive before the fix: unrouted again.
	if rr := e.do("POST", "/api/v1/admin/events/"+id+"/redrive", adminToken, nil); rr.code != 200 || rr.body["status"] != "queued" {
		t.Fatalf("redrive = %d %s", rr.code, rr.raw)
	}
	e.waitStatus(id, store.EventUnrouted)
	// Fix the routing, redrive: delivered to the team.
	e.cs.AddTeam("acme", "late-team", map[string]any{"routing": map[string]any{"slack_channel_ids": []any{"C0NOBODY"}}})
	e.do("POST", "/api/v1/admin/events/"+id+"/redrive", adminToken, nil)
	ev = e.waitStatus(id, store.EventDelivered)
	if ev.TeamNodeID != "late-team" || len(e.agent.Calls()) != 1 {
		t.Fatalf("after fix: %+v, agent calls %d", ev, len(e.agent.Calls()))
	}
	// A delivered event is not redrivable; unknown ids are 404.
	if rr := e.do("POST", "/api/v1/admin/events/"+id+"/redrive", adminToken, nil); rr.code != 409 || rr.body["error"] != "not_redrivable" {
		t.Fatalf("redrive delivered = %d %s", rr.code, rr.raw)
	}
	if rr := e.do("POST", "/api/v1/admin/events/nope/redrive", adminToken, nil); rr.code != 404 || rr.body["error"] != "event_not_found" {
		t.Fatalf("redrive unknown = %d %s", rr.code, rr.raw)
	}
}

// The ack never waits for routing or the agent: with the agent held, the
// ack has already come back and the event sits in dispatch.
func TestWebhook_AckDoesNotWaitForTheAgent(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true})
	hold := make(chan struct{})
	defer close(hold)
	e.agent.Fail(peerstest.RouteAgentRun, peerstest.Fault{Until: hold})
	var slowest time.Duration
	var ids []string
	for i := range 20 {
		body, h := signed(webhook.Slack, fmt.Sprint("fast", i), slackSecret, wallclock.Now())
		start := time.Now()
		r := e.send(webhook.Slack, body, h)
		if d := time.Since(start); d > slowest {
			slowest = d
		}
		if r.code != 200 {
			t.Fatalf("ack = %d %s", r.code, r.raw)
		}
		ids = append(ids, r.body["event_id"].(string))
	}
	waitFor(t, "the agent call", func() bool { return len(e.agent.CallsTo(peerstest.RouteAgentRun)) > 0 })
	if ev, _ := e.db.GetEvent(context.Background(), ids[0]); ev.Status == store.EventDelivered {
		t.Fatal("delivered while the agent was held")
	}
	t.Logf("slowest of 20 acks with the agent held: %v", slowest)
}

func TestSlack_BotMessagesAndOtherEventsAreIgnored(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true})
	for i, inner := range []string{
		`{"type":"app_mention","bot_id":"B01","channel":"C0A4967KRBM","text":"<@U1> loop?"}`,
		`{"type":"message","subtype":"bot_message","channel":"C0A4967KRBM","text":"hi"}`,
		`{"type":"reaction_added","user":"U1","reaction":"eyes"}`,
	} {
		body := []byte(fmt.Sprintf(`{"type":"event_callback","event_id":"EvIgn%d","event":%s}`, i, inner))
		r := e.send(webhook.Slack, body, webhook.Sign(webhook.Slack, slackSecret, body, wallclock.Now(), ""))
		if r.code != 200 {
			t.Fatalf("ack = %d %s", r.code, r.raw)
		}
		if ev, _ := e.db.GetEvent(context.Background(), r.body["event_id"].(string)); ev.Status != store.EventIgnored {
			t.Fatalf("event %d status %q", i, ev.Status)
		}
	}
	// GitHub's ping too.
	body := []byte(`{"zen":"Keep it logically awesome.","hook_id":1}`)
	h := webhook.Sign(webhook.GitHub, githubSecret, body, wallclock.Now(), "ping-1")
	h.Set("X-GitHub-Event", "ping")
	if r := e.send(webhook.GitHub, body, h); r.code != 200 {
		t.Fatalf("ping = %d", r.code)
	}
	// Let a queued event through to prove the queue runs, then check the
	// ignored ones never reached the agent.
	b, hh := signed(webhook.Slack, "after", slackSecret, wallclock.Now())
	e.waitStatus(e.send(webhook.Slack, b, hh).body["event_id"].(string), store.EventDelivered)
	if got := len(e.agent.Calls()); got != 1 {
		t.Fatalf("agent calls = %d, want 1", got)
	}
}

// The per-team limit delays dispatch and never drops an event.
func TestDispatch_TeamLimitDelaysNeverDrops(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, teamPerMinute: 2, fakeClock: true})
	var ids []string
	for i := range 5 {
		body, h := signed(webhook.GitHub, fmt.Sprint("lim", i), githubSecret, wallclock.Now())
		ids = append(ids, e.send(webhook.GitHub, body, h).body["event_id"].(string))
	}
	count := func(pred func(store.Event) bool) int {
		n := 0
		for _, id := range ids {
			if ev, _ := e.db.GetEvent(context.Background(), id); pred(ev) {
				n++
			}
		}
		return n
	}
	delivered := func(ev store.Event) bool { return ev.Status == store.EventDelivered }
	// Two go at once (the burst). The other three are routed to the team and
	// then wait untouched: held back by the team gate, they are not claimed,
	// looked up or written again, so no attempt or error is recorded.
	waitFor(t, "two delivered and three routed, waiting", func() bool {
		return count(delivered) == 2 && count(func(ev store.Event) bool { return ev.Status == store.EventQueued && ev.TeamNodeID != "" }) == 3
	})
	e.disp.Notify("", "")
	if n := count(func(ev store.Event) bool {
		return ev.Status == store.EventQueued && ev.Attempts == 0 && ev.LastError == ""
	}); n != 3 {
		t.Fatalf("%d of the held-back events are untouched, want 3", n)
	}
	if got := len(e.agent.CallsTo(peerstest.RouteAgentRun)); got != 2 {
		t.Fatalf("agent calls within the burst = %d, want 2", got)
	}
	// Time passes: every event gets through, none is dropped.
	waitFor(t, "all five delivered", func() bool {
		e.clock.Add(30 * time.Second)
		e.disp.Notify("", "")
		time.Sleep(5 * time.Millisecond)
		return count(delivered) == 5
	})
	if got := len(e.agent.CallsTo(peerstest.RouteAgentRun)); got != 5 {
		t.Fatalf("agent calls = %d, want 5", got)
	}
}

func TestInternalSlackTrigger(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true})
	body := map[string]any{"channel_id": "C0A4967KRBM", "text": "check the payments error budget", "event_id": "job-17"}
	if r := e.do("POST", "/api/v1/internal/slack/trigger", "wrong", body); r.code != 401 {
		t.Fatalf("wrong token = %d", r.code)
	}
	if r := e.do("POST", "/api/v1/internal/slack/trigger", "", body); r.code != 401 {
		t.Fatalf("no token = %d", r.code)
	}
	r := e.do("POST", "/api/v1/internal/slack/trigger", "", body, "X-Internal-Token", internalToken)
	if r.code != 202 || r.body["event_id"] == nil {
		t.Fatalf("trigger = %d %s", r.code, r.raw)
	}
	ev := e.waitStatus(r.body["event_id"].(string), store.EventDelivered)
	if ev.Source != "slack" || ev.TeamNodeID != peerstest.DevTeam || !strings.Contains(string(e.agent.Calls()[0].Body), "check the payments error budget") {
		t.Fatalf("event = %+v", ev)
	}
	if r := e.do("POST", "/api/v1/internal/slack/trigger", internalToken, body); r.code != 200 || r.body["duplicate"] != true {
		t.Fatalf("same event_id = %d %s", r.code, r.raw)
	}
	if r := e.do("POST", "/api/v1/internal/slack/trigger", internalToken, map[string]any{"channel_id": "C1"}); r.code != 400 || r.body["error"] != "invalid_text" {
		t.Fatalf("no text = %d %s", r.code, r.raw)
	}
	off := newEnv(t, envOptions{webhooks: true, noInternal: true})
	if r := off.do("POST", "/api/v1/internal/slack/trigger", internalToken, body); r.code != 404 {
		t.Fatalf("with the token unset the endpoint is off: %d", r.code)
	}
}

func TestEventsAPI_FiltersDetailRedactionAndPurge(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true})
	ids := map[string]string{}
	for _, src := range sources {
		body, h := signed(src, "api", secrets[src], wallclock.Now())
		ids[src] = e.send(src, body, h).body["event_id"].(string)
		e.waitStatus(ids[src], store.EventDelivered)
	}
	list := e.do("GET", "/api/v1/admin/events?source=coralogix&status=delivered", adminToken, nil)
	if list.code != 200 || len(list.body["events"].([]any)) != 1 {
		t.Fatalf("filtered list = %d %s", list.code, list.raw)
	}
	page := e.do("GET", "/api/v1/admin/events?limit=3", adminToken, nil)
	next, _ := page.body["next_cursor"].(string)
	rest := e.do("GET", "/api/v1/admin/events?limit=3&cursor="+next, adminToken, nil)
	if len(page.body["events"].([]any)) != 3 || len(rest.body["events"].([]any)) != len(sources)-3 {
		t.Fatalf("pages = %s / %s", page.raw, rest.raw)
	}
	if r := e.do("GET", "/api/v1/admin/events?since="+wallclock.Now().Add(time.Hour).UTC().Format(time.RFC3339), adminToken, nil); len(r.body["events"].([]any)) != 0 {
		t.Fatalf("since the future = %s", r.raw)
	}
	for _, q := range []string{"source=smtp", "status=lost", "since=yesterday", "limit=0", "cursor=abc"} {
		if r := e.do("GET", "/api/v1/admin/events?"+q, adminToken, nil); r.code != 400 {
			t.Errorf("%s = %d", q, r.code)
		}
	}
	d := e.do("GET", "/api/v1/admin/events/"+ids[webhook.Coralogix], adminToken, nil)
	headers := d.body["headers"].(map[string]any)
	if _, kept := headers["authorization"]; d.code != 200 || kept || strings.Contains(d.raw, coralogixToken) || d.body["body"] == nil {
		t.Fatalf("detail = %d %s", d.code, d.raw)
	}
	if r := e.do("GET", "/api/v1/admin/events/"+ids[webhook.Slack], "", nil); r.code != 401 {
		t.Fatalf("no token = %d", r.code)
	}

	// Retention purges bodies, keeps metadata; a purged event is not redrivable.
	n, err := e.db.PurgeBodies(context.Background(), wallclock.Now().Add(time.Minute), wallclock.Now(), 1<<30)
	if err != nil || n != len(sources) {
		t.Fatalf("purged %d %v", n, err)
	}
	d = e.do("GET", "/api/v1/admin/events/"+ids[webhook.Slack], adminToken, nil)
	if d.body["body"] != nil || d.body["body_purged_at"] == nil || d.body["status"] != "delivered" || d.body["headers"] != nil {
		t.Fatalf("after purge (the headers go with the body) = %s", d.raw)
	}
	unrouted := []byte(`{"type":"event_callback","event_id":"EvOld","event":{"type":"app_mention","channel":"C0NONE","text":"x"}}`)
	uid := e.send(webhook.Slack, unrouted, webhook.Sign(webhook.Slack, slackSecret, unrouted, wallclock.Now(), "")).body["event_id"].(string)
	e.waitStatus(uid, store.EventUnrouted)
	if _, err := e.db.PurgeBodies(context.Background(), wallclock.Now().Add(time.Minute), wallclock.Now(), 1<<30); err != nil {
		t.Fatal(err)
	}
	if r := e.do("POST", "/api/v1/admin/events/"+uid+"/redrive", adminToken, nil); r.code != 409 || r.body["error"] != "body_purged" {
		t.Fatalf("redrive purged = %d %s", r.code, r.raw)
	}
}

// Shutdown that runs out of time returns in-flight events to the queue
// without using an attempt; the next start delivers them.
func TestDispatch_ShutdownReturnsInFlightEventsToTheQueue(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true})
	hold := make(chan struct{})
	e.agent.Fail(peerstest.RouteAgentRun, peerstest.Fault{Until: hold, Times: 1})
	body, h := signed(webhook.Slack, "inflight", slackSecret, wallclock.Now())
	id := e.send(webhook.Slack, body, h).body["event_id"].(string)
	waitFor(t, "the agent call", func() bool { return len(e.agent.Calls()) > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	e.disp.Stop(ctx)
	close(hold)
	ev, _ := e.db.GetEvent(context.Background(), id)
	if ev.Status != store.EventQueued || ev.Attempts != 0 {
		t.Fatalf("after shutdown: %+v", ev)
	}
	if err := e.disp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(id, store.EventDelivered)
}

// Any header whose name says authorization, token, secret, key, password,
// cookie or session is stored as "[redacted]" — by rule, not by a short list
// of names (the review found Proxy-Authorization and X-Api-Key stored in
// the clear); the others are kept for the audit trail.
func TestWebhook_CredentialHeadersAreRedactedByRule(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, noDispatch: true})
	body, h := signed(webhook.GitHub, "redact", githubSecret, wallclock.Now())
	creds := map[string]string{
		"Proxy-Authorization": "Basic cHJveHk6c2VjcmV0LXZhbHVlLTE=", "X-Api-Key": "secret-value-2",
		"X-Auth-Token": "secret-value-3", "X-Client-Secret": "secret-value-4", "X-Db-Password": "secret-value-5",
		"Set-Cookie": "sid=secret-value-6", "X-Session-Id": "secret-value-7", "Api_Key": "secret-value-8",
		"X-Amz-Security-Token": "secret-value-9", "Cookie": "a=secret-value-10",
	}
	for k, v := range creds {
		h.Set(k, v)
	}
	h.Set("X-Trace-Id", "trace-kept")
	r := e.send(webhook.GitHub, body, h)
	if r.code != 200 {
		t.Fatalf("ack = %d %s", r.code, r.raw)
	}
	d := e.do("GET", "/api/v1/admin/events/"+r.body["event_id"].(string), adminToken, nil)
	headers, _ := d.body["headers"].(map[string]any)
	for k := range creds {
		if got := headers[strings.ToLower(k)]; got != "[redacted]" {
			t.Errorf("%s stored as %v", k, got)
		}
	}
	if strings.Contains(d.raw, "secret-value") {
		t.Fatalf("a credential is in the event: %s", d.raw)
	}
	if headers["x-trace-id"] != "trace-kept" || headers["x-github-event"] != "issues" {
		t.Fatalf("plain headers not kept: %v", headers)
	}
}

// A store that cannot write answers 503, never 200.
func TestWebhook_StoreFailureIs503(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, noDispatch: true})
	e.db.Close()
	body, h := signed(webhook.Slack, "closed", slackSecret, wallclock.Now())
	if r := e.send(webhook.Slack, body, h); r.code != 503 || r.body["error"] != "store_unavailable" {
		t.Fatalf("closed store = %d %s", r.code, r.raw)
	}
}

package server_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/pyhmac"
	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/slack-go/slack"
)

// acmeFile is SPEC §6's example source, plus a Slack app.
const acmeFile = `sources:
  - name: acme-deploys
    verify:
      kind: hmac
      header: X-Acme-Signature
      algorithm: sha512
      encoding: base64
      prefix: "v1="
      signed: "{id}.{timestamp}.{body}"
      timestamp_header: X-Acme-Timestamp
      secret_env: ACME_DEPLOYS_SECRET
      id_header: X-Acme-Delivery
    delivery_id: {header: X-Acme-Delivery}
    event_type: {pointer: /kind}
    routing: {service: /service}
    alert: {key: /incident/id, state: /status, firing: [triggered], resolved: [resolved]}
    coalesce: true
    describe: "{event_type} of {/app} {/version} to {/environment}"
slack_apps:
  - slug: sre-bot
    signing_secret_env: SREBOT_SIGNING_SECRET
`

const sreBotSecret = "sre-bot-signing-secret"

func acmeEnv(t *testing.T, secrets string) *env {
	return newEnv(t, envOptions{webhooks: true, sourcesFile: acmeFile,
		sourceEnv: map[string]string{"ACME_DEPLOYS_SECRET": secrets, "SREBOT_SIGNING_SECRET": sreBotSecret}})
}

// acmeDelivery is a deploy notification signed by Python's hmac.
func acmeDelivery(t *testing.T, secret, delivery, version string, at time.Time) ([]byte, http.Header) {
	body := []byte(`{"kind":"deploy.finished","app":"checkout","version":"` + version + `","environment":"prod",
		"service":"checkout","incident":{"id":"INC-` + delivery + `"},"status":"triggered"}`)
	ts := strconv.FormatInt(at.Unix(), 10)
	sig := pyhmac.Sign(t, "sha512", "base64", secret, []byte(delivery+"."+ts+"."+string(body)))
	return body, http.Header{"X-Acme-Signature": {"v1=" + sig}, "X-Acme-Timestamp": {ts}, "X-Acme-Delivery": {delivery},
		"Content-Type": {"application/json"}}
}

// TestConfiguredSource_SignedByPythonAcceptedRotatedRefusedAndDelivered:
// a source declared in the sources file, signed by an independent HMAC
// implementation, is accepted under either secret of a rotation, refused
// once a secret is retired, deduplicated, and reaches the agent described
// by its template; the API, metrics and the served OpenAPI know it.
func TestConfiguredSource_SignedByPythonAcceptedRotatedRefusedAndDelivered(t *testing.T) {
	e := acmeEnv(t, "old-secret,new-secret")
	now := wallclock.Now()
	var ids []string
	for i, secret := range []string{"new-secret", "old-secret"} {
		body, h := acmeDelivery(t, secret, "d"+strconv.Itoa(i), "1.4."+strconv.Itoa(i), now)
		r := e.sendTo("/webhooks/acme-deploys", body, h)
		if r.code != 200 || r.body["ok"] != true {
			t.Fatalf("signed with %s = %d %s", secret, r.code, r.raw)
		}
		ids = append(ids, r.body["event_id"].(string))
		ev := e.waitStatus(ids[i], store.EventDelivered)
		if ev.Source != "acme-deploys" || ev.EventType != "deploy.finished" || ev.TeamNodeID != peerstest.DevTeam || ev.MatchedBy != "service" {
			t.Fatalf("event = %+v", ev)
		}
	}
	calls := e.agent.CallsTo(peerstest.RouteAgentRun)
	if len(calls) != 2 {
		t.Fatalf("agent calls = %d", len(calls))
	}
	var req struct {
		Message       string `json:"message"`
		TriggerSource string `json:"trigger_source"`
		Context       struct {
			Metadata map[string]map[string]any `json:"metadata"`
		} `json:"context"`
	}
	if err := json.Unmarshal(calls[0].Body, &req); err != nil {
		t.Fatal(err)
	}
	if req.Message != "deploy.finished of checkout 1.4.0 to prod" || req.TriggerSource != "acme-deploys" ||
		req.Context.Metadata["acme-deploys"]["payload"] == nil {
		t.Fatalf("agent request = %s", calls[0].Body)
	}

	// A redelivery (same delivery id) is a duplicate.
	body, h := acmeDelivery(t, "new-secret", "d0", "1.4.0", now)
	if r := e.sendTo("/webhooks/acme-deploys", body, h); r.code != 200 || r.body["duplicate"] != true || r.body["event_id"] != ids[0] {
		t.Fatalf("redelivery = %d %s", r.code, r.raw)
	}
	// Refused: a secret never configured, a stale timestamp, no signature,
	// a tampered body; and a body without the event type's field is 400.
	refusals := map[string]func() ([]byte, http.Header){
		"a wrong secret": func() ([]byte, http.Header) { return acmeDelivery(t, "guess", "x1", "1", now) },
		"a stale timestamp": func() ([]byte, http.Header) {
			return acmeDelivery(t, "new-secret", "x2", "1", now.Add(-10*time.Minute))
		},
		"no signature": func() ([]byte, http.Header) {
			b, h := acmeDelivery(t, "new-secret", "x3", "1", now)
			h.Del("X-Acme-Signature")
			return b, h
		},
		"a tampered body": func() ([]byte, http.Header) {
			b, h := acmeDelivery(t, "new-secret", "x4", "1", now)
			return []byte(strings.Replace(string(b), "prod", "dev!", 1)), h
		},
	}
	for what, f := range refusals {
		b, h := f()
		if r := e.sendTo("/webhooks/acme-deploys", b, h); r.code != 401 || r.body["error"] != "signature_verification_failed" {
			t.Errorf("%s = %d %s", what, r.code, r.raw)
		}
	}
	odd := []byte(`{"app":"checkout"}`)
	ts := strconv.FormatInt(now.Unix(), 10)
	oh := http.Header{"X-Acme-Signature": {"v1=" + pyhmac.Sign(t, "sha512", "base64", "new-secret", []byte("x5."+ts+"."+string(odd)))},
		"X-Acme-Timestamp": {ts}, "X-Acme-Delivery": {"x5"}}
	if r := e.sendTo("/webhooks/acme-deploys", odd, oh); r.code != 400 || !strings.Contains(r.raw, "event type /kind is not in the body") {
		t.Errorf("no event type = %d %s", r.code, r.raw)
	}
	// Round 4: a captured delivery sent again under a new delivery id does
	// not verify (the id is signed), and a signed body with bytes after its
	// JSON is a 400: neither becomes a second event.
	b, h := acmeDelivery(t, "new-secret", "d0", "1.4.0", now)
	h.Set("X-Acme-Delivery", "d0-again")
	if r := e.sendTo("/webhooks/acme-deploys", b, h); r.code != 401 || r.body["error"] != "signature_verification_failed" {
		t.Errorf("a new id on a captured delivery = %d %s", r.code, r.raw)
	}
	trailing := []byte(`{"kind":"deploy.finished","service":"checkout"}{"kind":"again"}`)
	th := http.Header{"X-Acme-Signature": {"v1=" + pyhmac.Sign(t, "sha512", "base64", "new-secret", []byte("x6."+ts+"."+string(trailing)))},
		"X-Acme-Timestamp": {ts}, "X-Acme-Delivery": {"x6"}, "Content-Type": {"application/json"}}
	if r := e.sendTo("/webhooks/acme-deploys", trailing, th); r.code != 400 || r.body["error"] != "bad_request" ||
		!strings.Contains(r.raw, "not one JSON object or array") {
		t.Errorf("bytes after the body = %d %s", r.code, r.raw)
	}

	// The API filters by it, refuses a source that does not exist, and the
	// served document describes its route.
	if r := e.do("GET", "/api/v1/admin/events?source=acme-deploys", adminToken, nil); r.code != 200 || len(r.body["events"].([]any)) != 2 {
		t.Fatalf("filtered = %d %s", r.code, r.raw)
	}
	if r := e.do("GET", "/api/v1/admin/events?source=acme", adminToken, nil); r.code != 400 || !strings.Contains(r.raw, "acme-deploys") {
		t.Fatalf("unknown source = %d %s", r.code, r.raw)
	}
	if r := e.do("GET", "/api/v1/openapi.json", "", nil); !strings.Contains(r.raw, `"/webhooks/acme-deploys"`) ||
		!strings.Contains(r.raw, `"/webhooks/slack/sre-bot/interactions"`) || strings.Contains(r.raw, "new-secret") {
		t.Fatalf("the served document lacks the configured routes")
	}
	for _, line := range []string{
		`orchestrator_webhook_events_total{outcome="accepted",source="acme-deploys"} 2`,
		`orchestrator_webhook_events_total{outcome="bad_signature",source="acme-deploys"} 5`,
		`orchestrator_webhook_events_total{outcome="duplicate",source="acme-deploys"} 1`,
		`orchestrator_dispatch_total{outcome="delivered",source="acme-deploys"} 2`,
	} {
		if !e.metric(line) {
			t.Errorf("metrics lack %s", line)
		}
	}

	// The rotation ends: the old secret is retired and refused.
	after := acmeEnv(t, "new-secret")
	b, h = acmeDelivery(t, "old-secret", "r1", "2.0", now)
	if r := after.sendTo("/webhooks/acme-deploys", b, h); r.code != 401 {
		t.Fatalf("retired secret = %d %s", r.code, r.raw)
	}
	b, h = acmeDelivery(t, "new-secret", "r2", "2.0", now)
	if r := after.sendTo("/webhooks/acme-deploys", b, h); r.code != 200 {
		t.Fatalf("current secret = %d %s", r.code, r.raw)
	}
}

// slackSigned signs a Slack request with our signer and checks it with
// slack-go's verifier: Slack's own scheme, as an independent library reads it.
// slack-go checks the timestamp against the machine's clock, the server
// against wallclock (which a run at another date moves): each is given a
// signature made at its own time.
func slackSigned(t *testing.T, secret string, body []byte) http.Header {
	t.Helper()
	form := strings.HasPrefix(string(body), "payload=")
	sign := func(at time.Time) http.Header {
		h := webhook.Sign(webhook.Slack, secret, body, at, "")
		if form {
			h.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		return h
	}
	h := sign(wallclock.Now())
	sv, err := slack.NewSecretsVerifier(sign(time.Now()), secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sv.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := sv.Ensure(); err != nil {
		t.Fatalf("slack-go refuses the signature: %v", err)
	}
	return h
}

// TestSlackApps_EachAppItsOwnSecretAndItsSlugReachesTheAgent: a Slack app
// from the sources file has its own routes and secret; an unknown slug is
// 404; the app reaches the agent as slack.app, and a sender cannot forge it.
func TestSlackApps_EachAppItsOwnSecretAndItsSlugReachesTheAgent(t *testing.T) {
	e := acmeEnv(t, "s")
	body := webhook.Sample(webhook.Slack, "app1", wallclock.Now())
	r := e.sendTo("/webhooks/slack/sre-bot/events", body, slackSigned(t, sreBotSecret, body))
	if r.code != 200 {
		t.Fatalf("app mention = %d %s", r.code, r.raw)
	}
	e.waitStatus(r.body["event_id"].(string), store.EventDelivered)
	call := e.agent.CallsTo(peerstest.RouteAgentRun)
	if len(call) != 1 || !strings.Contains(string(call[0].Body), `"app":"sre-bot"`) {
		t.Fatalf("agent call = %v", call)
	}
	other := webhook.Sample(webhook.Slack, "app2", wallclock.Now())
	if r := e.sendTo("/webhooks/slack/sre-bot/events", other, slackSigned(t, slackSecret, other)); r.code != 401 {
		t.Errorf("default app's secret on sre-bot = %d", r.code)
	}
	if r := e.sendTo("/webhooks/slack/events", other, slackSigned(t, sreBotSecret, other)); r.code != 401 {
		t.Errorf("sre-bot's secret on the default app = %d", r.code)
	}
	if r := e.sendTo("/webhooks/slack/nope/events", other, slackSigned(t, sreBotSecret, other)); r.code != 404 || r.body["error"] != "not_found" {
		t.Errorf("unknown slug = %d %s", r.code, r.raw)
	}
	// A sender claiming an app through the header the door uses gets nowhere.
	h := slackSigned(t, slackSecret, other)
	h.Set("X-Orchestrator-Slack-App", "sre-bot")
	r = e.sendTo("/webhooks/slack/events", other, h)
	e.waitStatus(r.body["event_id"].(string), store.EventDelivered)
	call = e.agent.CallsTo(peerstest.RouteAgentRun)
	if len(call) != 2 || !strings.Contains(string(call[1].Body), `"app":"default"`) {
		t.Fatalf("forged app reached the agent: %s", call[len(call)-1].Body)
	}
}

// interaction is a block_actions click as slack-go encodes it, form-encoded.
func interaction(t *testing.T, trigger, actionID, value, channel string) []byte {
	t.Helper()
	cb := slack.InteractionCallback{Type: slack.InteractionTypeBlockActions, TriggerID: trigger,
		User:      slack.User{ID: "U0ANA", Name: "ana"},
		Container: slack.Container{ChannelID: channel, MessageTs: "1700000000.000100"},
		ActionCallback: slack.ActionCallbacks{BlockActions: []*slack.BlockAction{
			{ActionID: actionID, Value: value, ActionTs: "1700000001.000200"}}}}
	cb.Channel.ID = channel
	payload, err := json.Marshal(cb)
	if err != nil {
		t.Fatal(err)
	}
	// slack-go reads it back as Slack sends it.
	req, _ := http.NewRequest("POST", "/", strings.NewReader(url.Values{"payload": {string(payload)}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if back, err := slack.InteractionCallbackParse(req); err != nil || back.TriggerID != trigger {
		t.Fatalf("slack-go cannot read the interaction: %v", err)
	}
	return []byte(url.Values{"payload": {string(payload)}}.Encode())
}

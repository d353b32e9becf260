package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// boundFile binds a configured source to org big and a Slack app to org
// acme.
const boundFile = `sources:
  - name: deploy-bot
    verify: {kind: token, header: X-Token, secret_env: DEPLOY_BOT_TOKEN}
    event_type: {value: deploy}
    routing: {service: /service}
    orgs: [big]
slack_apps:
  - slug: sre-bot
    signing_secret_env: SREBOT_SIGNING_SECRET
    orgs: [acme]
`

// TestSources_ABoundSourceRoutesOnlyToItsOrgs: one sender's secret cannot
// drive another org's agent by naming that org's service or channel (SPEC
// §18, round 4). Alertmanager is bound to acme (ORCHESTRATOR_SOURCE_ORGS),
// the default Slack app to big, the configured deploy-bot to big and the
// Slack app sre-bot to acme. An event naming a team of another org ends
// unrouted, the reason said, whether its route was looked up or already
// cached at the door, and without the other org's team: only an admin of
// every org reads it. The internal trigger is bound to no org, and a
// webhook sender cannot pass for it.
func TestSources_ABoundSourceRoutesOnlyToItsOrgs(t *testing.T) {
	e := twoOrgs(t, envOptions{webhooks: true, routingTTL: time.Hour, sourcesFile: boundFile,
		sourceEnv:  map[string]string{"DEPLOY_BOT_TOKEN": "deploy-token", "SREBOT_SIGNING_SECRET": sreBotSecret},
		sourceOrgs: map[string][]string{"alertmanager": {"acme"}, "slack": {"big"}}})
	refused := func(id, because string) {
		t.Helper()
		ev := e.waitStatus(id, store.EventUnrouted, store.EventDelivered)
		if ev.Status != store.EventUnrouted || ev.OrgID != "" || ev.TeamNodeID != "" || !strings.Contains(ev.LastError, because) ||
			strings.Contains(ev.LastError, "intruder") || strings.Contains(ev.LastError, "platform-sre") {
			t.Fatalf("event %s = %s on %q/%q: %q", id, ev.Status, ev.OrgID, ev.TeamNodeID, ev.LastError)
		}
		if r := e.do("GET", "/api/v1/admin/events/"+id, bigToken, nil); r.code != 404 {
			t.Fatalf("big's admin reads the refused event: %d", r.code)
		}
		if r := e.do("GET", "/api/v1/admin/events/"+id, adminToken, nil); r.code != 200 || r.body["status"] != "unrouted" {
			t.Fatalf("an admin of every org reads it: %d %s", r.code, r.raw)
		}
	}
	delivered := func(id, org string) {
		t.Helper()
		if ev := e.waitStatus(id, store.EventDelivered, store.EventUnrouted); ev.Status != store.EventDelivered || ev.OrgID != org {
			t.Fatalf("event %s = %s on %q: %q", id, ev.Status, ev.OrgID, ev.LastError)
		}
	}
	// Alertmanager, bound to acme: acme's service goes, big's does not,
	// looked up or cached.
	delivered(e.sendAM(t, amGroup("g1", "firing", "checkout", "a")), "acme")
	refused(e.sendAM(t, amGroup("g2", "firing", "billing", "b")), "source alertmanager is bound to org acme")
	waitFor(t, "big's route cached", func() bool { _, _, _, ok := e.disp.CachedRoute(map[string]string{"service": "billing"}); return ok })
	cached := e.sendAM(t, amGroup("g3", "firing", "billing", "c"))
	refused(cached, "source alertmanager is bound to org acme")

	// The configured source, bound to big.
	deploy := func(service string) string {
		body := []byte(`{"service":"` + service + `","n":"` + time.Now().String() + `"}`)
		r := e.sendTo("/webhooks/deploy-bot", body, http.Header{"X-Token": {"deploy-token"}, "Content-Type": {"application/json"}})
		if r.code != 200 {
			t.Fatalf("deploy-bot = %d %s", r.code, r.raw)
		}
		return r.body["event_id"].(string)
	}
	refused(deploy("checkout"), "source deploy-bot is bound to org big")
	delivered(deploy("billing"), "big")

	// Slack: the default app is bound to big, sre-bot to acme; the
	// channel C0A4967KRBM is acme's.
	body := webhook.Sample(webhook.Slack, "bound-default", time.Now())
	refused(e.send(webhook.Slack, body, slackSigned(t, slackSecret, body)).body["event_id"].(string), "source slack is bound to org big")
	body = webhook.Sample(webhook.Slack, "bound-app", time.Now())
	delivered(e.sendTo("/webhooks/slack/sre-bot/events", body, slackSigned(t, sreBotSecret, body)).body["event_id"].(string), "acme")
	// A default-app sender claiming to be the internal trigger is not.
	body = webhook.Sample(webhook.Slack, "forged-trigger", time.Now())
	h := slackSigned(t, slackSecret, body)
	h.Set("X-Orchestrator-Trigger", "internal")
	refused(e.send(webhook.Slack, body, h).body["event_id"].(string), "source slack is bound to org big")
	// The internal trigger is trusted appliance-wide.
	r := e.do("POST", "/api/v1/internal/slack/trigger", internalToken, map[string]any{"channel_id": "C0A4967KRBM", "text": "status?"})
	delivered(r.body["event_id"].(string), "acme")

	// A refused event redriven is refused again: the binding holds.
	if r := e.do("POST", "/api/v1/admin/events/"+cached+"/redrive", adminToken, nil); r.code != 200 {
		t.Fatalf("redrive = %d %s", r.code, r.raw)
	}
	refused(cached, "source alertmanager is bound to org acme")
	if len(e.agent.CallsTo(peerstest.RouteAgentRun)) != 4 {
		t.Fatalf("agent calls = %d, want 4", len(e.agent.CallsTo(peerstest.RouteAgentRun)))
	}
}

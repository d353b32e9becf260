package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// thiefToken is an admin with every permission, confined to org "aaa" —
// an org whose name sorts before "acme", so the multi-org Config Service
// fake resolves a shared identifier in the thief's favour (as the review's
// Config Service did).
const thiefToken = "admin-aaa-org-token"

// The review's reproduction of SPEC §18's first rule: an admin bound to org
// aaa provisions aaa/thief with every routing identifier of acme's team.
// Before the fix it succeeded, and acme's Slack mentions and PagerDuty
// incidents went to the thief's agent with the thief's team token. Now the
// run is refused with 409 routing_conflict before anything is written, the
// answer and the stored run name the identifiers but never acme's team, and
// acme's events still reach acme.
func TestTrust_OrgBoundAdminCannotClaimAnotherOrgsRoutingIdentifiers(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true})
	e.cs.AddOrg("aaa")
	e.cs.AddAdmin(thiefToken, peers.Identity{Role: "admin", Permissions: []string{"admin:*"}, OrgID: "aaa"})
	lookupsBefore := len(e.cs.CallsTo(peerstest.RouteRoutingLookup))

	stolen := map[string]any{
		"slack_channel_ids": []string{"C0A4967KRBM"}, "github_repos": []string{"acme/payments"},
		"pagerduty_service_ids": []string{"PF9KMXH"}, "incidentio_alert_source_ids": []string{"01GW2G3V0S59R238FAHPDS1R66"},
		"coralogix_team_names": []string{"acme"},
	}
	r := e.do("POST", provisionPath, thiefToken, map[string]any{"org_id": "aaa", "team_node_id": "thief", "routing": stolen})
	if r.code != 409 || r.body["error"] != "routing_conflict" {
		t.Fatalf("claiming acme's identifiers = %d %s", r.code, r.raw)
	}
	for _, want := range []string{"slack_channel_id \"C0A4967KRBM\"", "github_repo \"acme/payments\"", "pagerduty_service_id \"PF9KMXH\"",
		"incidentio_alert_source_id \"01GW2G3V0S59R238FAHPDS1R66\"", "coralogix_team_name \"acme\""} {
		if !strings.Contains(r.raw, strings.ReplaceAll(want, `"`, `\"`)) {
			t.Errorf("the answer does not name %s: %s", want, r.raw)
		}
	}
	if strings.Contains(r.raw, peerstest.DevTeam) {
		t.Fatalf("the answer names the owning team: %s", r.raw)
	}
	if st := steps(r.body); st["routing_check"] != "failed" || st["team_node"] != "skipped" || st["routing_config"] != "skipped" {
		t.Fatalf("steps = %v", st)
	}
	if e.cs.HasNode("aaa", "thief") || len(e.cs.Tokens("aaa", "thief")) != 0 {
		t.Fatal("the refused run wrote to the Config Service")
	}
	if n := len(e.cs.CallsTo(peerstest.RouteRoutingLookup)) - lookupsBefore; n != 5 {
		t.Fatalf("%d routing lookups, want one per identifier (5)", n)
	}
	// The stored run says the same, and names no other team either.
	run := e.do("GET", "/api/v1/admin/provision/runs/"+r.body["provisioning_run_id"].(string), thiefToken, nil)
	if run.code != 200 || !strings.HasPrefix(run.body["error"].(string), "routing_conflict:") || strings.Contains(run.raw, peerstest.DevTeam) {
		t.Fatalf("stored run = %d %s", run.code, run.raw)
	}

	// acme's Slack mention still goes to acme, with acme's token.
	body, h := signed(webhook.Slack, "after-claim", slackSecret, time.Now())
	sent := e.send(webhook.Slack, body, h)
	ev := e.waitStatus(sent.body["event_id"].(string), store.EventDelivered)
	if ev.OrgID != peerstest.DevOrg || ev.TeamNodeID != peerstest.DevTeam {
		t.Fatalf("acme's mention went to %s/%s", ev.OrgID, ev.TeamNodeID)
	}

	// Same check when routing changes for an existing team: the thief's own
	// channel is fine, adding acme's PagerDuty service later is not, and the
	// thief's routing stays as it was.
	own := map[string]any{"slack_channel_ids": []string{"CTHIEF0001"}}
	if r := e.do("POST", provisionPath, thiefToken, map[string]any{"org_id": "aaa", "team_node_id": "thief", "routing": own}); r.code != 200 {
		t.Fatalf("provisioning with its own channel = %d %s", r.code, r.raw)
	}
	// Provisioning the same team again with the identifiers it owns passes.
	if r := e.do("POST", provisionPath, thiefToken, map[string]any{"org_id": "aaa", "team_node_id": "thief", "routing": own}); r.code != 200 {
		t.Fatalf("re-provisioning with its own channel = %d %s", r.code, r.raw)
	}
	r = e.do("POST", provisionPath, thiefToken, map[string]any{"org_id": "aaa", "team_node_id": "thief",
		"routing": map[string]any{"slack_channel_ids": []string{"CTHIEF0001"}, "pagerduty_service_ids": []string{"PF9KMXH"}}})
	if r.code != 409 || r.body["error"] != "routing_conflict" || !strings.Contains(r.raw, "PF9KMXH") || strings.Contains(r.raw, "CTHIEF0001") {
		t.Fatalf("adding acme's service to an existing team = %d %s", r.code, r.raw)
	}
	cfg, _ := e.cs.NodeConfig("aaa", "thief")
	routing, _ := cfg["routing"].(map[string]any)
	if _, has := routing["pagerduty_service_ids"]; has {
		t.Fatalf("the refused change reached the thief's config: %v", routing)
	}
	pd, ph := signed(webhook.PagerDuty, "after-claim", pagerdutySecret, time.Now())
	sent = e.send(webhook.PagerDuty, pd, ph)
	ev = e.waitStatus(sent.body["event_id"].(string), store.EventDelivered)
	if ev.OrgID != peerstest.DevOrg || ev.TeamNodeID != peerstest.DevTeam {
		t.Fatalf("acme's incident went to %s/%s", ev.OrgID, ev.TeamNodeID)
	}
}

// A routing lookup that names a team by something that is not an id (here
// an org "a|b") is a peer's bad answer: the event fails, is not delivered,
// and the answer is not cached for ingest to reuse.
func TestTrust_RoutingAnswerWithInvalidIDsIsRefused(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, routingTTL: time.Minute})
	e.cs.AddTeam("a|b", "c", map[string]any{"routing": map[string]any{"slack_channel_ids": []any{"CPIPE00001"}}})
	body := []byte(`{"type":"event_callback","event_id":"Ev-pipe","event":{"type":"app_mention","channel":"CPIPE00001","text":"hi"}}`)
	now := time.Now()
	r := e.send(webhook.Slack, body, webhook.Sign(webhook.Slack, slackSecret, body, now, ""))
	if r.code != 200 {
		t.Fatalf("send = %d %s", r.code, r.raw)
	}
	ev := e.waitStatus(r.body["event_id"].(string), store.EventFailed)
	if !strings.Contains(ev.LastError, "not a valid id") || ev.OrgID != "" {
		t.Fatalf("event = %+v", ev)
	}
	if n := len(e.agent.CallsTo(peerstest.RouteAgentRun)); n != 0 {
		t.Fatalf("%d agent calls for a team with an invalid id", n)
	}
	if org, team, _, ok := e.disp.CachedRoute(map[string]string{"slack_channel_id": "CPIPE00001"}); ok {
		t.Fatalf("the invalid route %s/%s was cached", org, team)
	}
}

package server_test

import (
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
)

// Runs tell the truth about what they did. A provisioning refused with 409
// routing_conflict created nothing: the teams page does not call the team
// "provisioned here". Confirming a deprovisioning plan is one run (it used
// to record a second dry run first); dry runs say so in every run list (the
// page and the API's dry_run); and a dry run that failed changed nothing,
// so the overview's recent failures leave it out while a real failed
// deprovisioning stays.
func TestUI_RunsSayWhatTheyDid(t *testing.T) {
	e, base := uiEnv(t, envOptions{withCluster: true})
	c := login(t, base, adminToken)

	// The seeded team's Slack channel belongs to platform-sre: 409.
	if r := e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "acme", "team_node_id": "grabby",
		"routing": map[string]any{"slack_channel_ids": []string{"C0A4967KRBM"}}}); r.code != 409 || r.body["error"] != "routing_conflict" {
		t.Fatalf("claiming platform-sre's channel = %d %s", r.code, r.raw)
	}
	_, page := getPage(t, c, base+"/ui/teams")
	row := regexp.MustCompile(`(?s)acme / grabby</a><br><span class="muted provisioned">([^<]*)<`).FindStringSubmatch(page)
	if row == nil || row[1] != "not provisioned here" {
		t.Fatalf("the refused team on the teams page: %v", row)
	}
	_, page = getPage(t, c, base+"/ui/teams/acme/grabby")
	if !strings.Contains(page, `id="team-provisioned">no — no provisioning run here succeeded`) {
		t.Fatalf("the refused team's page does not say it was not provisioned")
	}

	// Plan, then confirm: two runs, the first a dry run.
	if r := e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "acme", "team_node_id": "leaving",
		"create_pipeline_schedule": true}); r.code != 200 {
		t.Fatalf("provision = %d %s", r.code, r.raw)
	}
	nc := noFollow(c)
	resp := formPost(t, nc, base, "/ui/teams/acme/leaving/deprovision", url.Values{"delete_k8s_resources": {"1"}})
	_, page = getPage(t, c, base+resp.Header.Get("Location"))
	digest := planDigestOf(t, page)
	resp = formPost(t, nc, base, "/ui/teams/acme/leaving/deprovision", url.Values{"delete_k8s_resources": {"1"}, "confirm": {"1"}, "plan": {digest}})
	if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, "/ui/runs/") {
		t.Fatalf("confirm answered %d → %s", resp.StatusCode, loc)
	}
	runs := e.do("GET", "/api/v1/admin/provision/runs?kind=deprovision&team_node_id=leaving", adminToken, nil)
	list, _ := runs.body["runs"].([]any)
	if len(list) != 2 {
		t.Fatalf("%d deprovisioning runs for a plan and its confirm, want 2: %s", len(list), runs.raw)
	}
	newest, oldest := list[0].(map[string]any), list[1].(map[string]any)
	if newest["dry_run"] != nil || newest["status"] != "succeeded" || oldest["dry_run"] != true {
		t.Fatalf("runs: confirm %v, plan %v", newest, oldest)
	}
	_, page = getPage(t, c, base+"/ui/runs")
	if n := strings.Count(page, "<td>deprovision (dry run)</td>"); n != 1 || !strings.Contains(page, "<td>deprovision</td>") {
		t.Fatalf("the runs list marks %d dry runs", n)
	}

	// A dry run that fails, then a real deprovisioning that fails: only
	// the second is a recent failure.
	e.cs.Fail(peerstest.RouteListTokens, peerstest.Fault{Status: 500})
	defer e.cs.Clear()
	dry := e.do("POST", "/api/v1/admin/deprovision/team", adminToken, map[string]any{"org_id": "acme", "team_node_id": "platform-sre",
		"delete_k8s_resources": false, "revoke_tokens": true, "dry_run": true})
	failed := e.do("POST", "/api/v1/admin/deprovision/team", adminToken, map[string]any{"org_id": "acme", "team_node_id": "grabby",
		"delete_k8s_resources": false, "revoke_tokens": true})
	if dry.code != 502 || failed.code != 502 {
		t.Fatalf("failing deprovisionings answered %d and %d", dry.code, failed.code)
	}
	_, page = getPage(t, c, base+"/ui/overview")
	failures := regexp.MustCompile(`(?s)<table id="failures">.*?</table>`).FindString(page)
	if strings.Contains(failures, "deprovision acme/platform-sre") || !strings.Contains(failures, "deprovision acme/grabby") {
		t.Fatalf("recent failures:\n%s", failures)
	}
}

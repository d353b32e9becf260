package server_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

// badCase is one malformed request and the 4xx it must get.
type badCase struct {
	name   string
	method string
	path   string
	token  string
	body   any
	header []string
	status int
	code   string
}

// TestBadInput_EveryEndpoint sends malformed requests to every endpoint:
// each gets its documented 4xx with an error code — never a 5xx, a panic or
// a hang.
func TestBadInput_EveryEndpoint(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, noDispatch: true})
	deep := `{"org_id":"acme","team_node_id":"t","routing":` + strings.Repeat(`[`, 40) + strings.Repeat(`]`, 40) + `}`
	now := wallclock.Now()
	slackBody := webhook.Sample(webhook.Slack, "bad", now)
	staleSlack := webhook.Sign(webhook.Slack, slackSecret, slackBody, now.Add(-10*time.Minute), "")
	futureSlack := webhook.Sign(webhook.Slack, slackSecret, slackBody, now.Add(10*time.Minute), "")
	incBody := webhook.Sample(webhook.IncidentIO, "bad", now)
	staleInc := webhook.Sign(webhook.IncidentIO, incidentioSecret, incBody, now.Add(-10*time.Minute), "wh-1")
	hdr := func(h http.Header) []string {
		var out []string
		for k, v := range h {
			out = append(out, k, v[0])
		}
		return out
	}
	githubBody := webhook.Sample(webhook.GitHub, "bad", now)
	githubSigned := webhook.Sign(webhook.GitHub, githubSecret, githubBody, now, "gh-bad-1")
	notJSON := append([]string{}, hdr(webhook.Sign(webhook.Slack, slackSecret, []byte("not json"), now, ""))...)
	const prov, deprov = "/api/v1/admin/provision/team", "/api/v1/admin/deprovision/team"
	cases := []badCase{
		// Provisioning.
		{"prov malformed", "POST", prov, adminToken, `{"org_id":`, nil, 400, "invalid_json"},
		{"prov array", "POST", prov, adminToken, `[1,2]`, nil, 400, "invalid_json"},
		{"prov string", "POST", prov, adminToken, `"acme"`, nil, 400, "invalid_json"},
		{"prov null", "POST", prov, adminToken, `null`, nil, 400, "invalid_json"},
		{"prov empty", "POST", prov, adminToken, ``, nil, 400, "empty_body"},
		{"prov whitespace", "POST", prov, adminToken, "  \n ", nil, 400, "empty_body"},
		{"prov unknown field", "POST", prov, adminToken, `{"org_id":"acme","team_node_id":"t","x":1}`, nil, 400, "unknown_field"},
		{"prov duplicate key", "POST", prov, adminToken, `{"org_id":"acme","team_node_id":"t","team_node_id":"u"}`, nil, 400, "duplicate_key"},
		{"prov nested duplicate key", "POST", prov, adminToken, `{"org_id":"acme","team_node_id":"t","routing":{"services":[],"services":["a"]}}`, nil, 400, "duplicate_key"},
		{"prov deep nesting", "POST", prov, adminToken, deep, nil, 400, "invalid_json"},
		{"prov invalid utf-8", "POST", prov, adminToken, "{\"org_id\":\"\xc3\x28\",\"team_node_id\":\"t\"}", nil, 400, "invalid_json"},
		{"prov number as id", "POST", prov, adminToken, `{"org_id":7,"team_node_id":"t"}`, nil, 400, "invalid_field_type"},
		{"prov bool as schedule", "POST", prov, adminToken, `{"org_id":"a","team_node_id":"t","pipeline_schedule":true}`, nil, 400, "invalid_field_type"},
		{"prov list of numbers", "POST", prov, adminToken, `{"org_id":"a","team_node_id":"t","slack_channel_ids":[1]}`, nil, 400, "invalid_field_type"},
		{"prov traversal id", "POST", prov, adminToken, `{"org_id":"../etc","team_node_id":"t"}`, nil, 400, "invalid_org_id"},
		{"prov slash id", "POST", prov, adminToken, `{"org_id":"acme","team_node_id":"a/b"}`, nil, 400, "invalid_team_node_id"},
		{"prov space id", "POST", prov, adminToken, `{"org_id":"ac me","team_node_id":"t"}`, nil, 400, "invalid_org_id"},
		{"prov unicode id", "POST", prov, adminToken, `{"org_id":"acmé","team_node_id":"t"}`, nil, 400, "invalid_org_id"},
		{"prov 129-char id", "POST", prov, adminToken, `{"org_id":"` + strings.Repeat("a", 129) + `","team_node_id":"t"}`, nil, 400, "invalid_org_id"},
		{"prov bad cron", "POST", prov, adminToken, `{"org_id":"a","team_node_id":"t","create_pipeline_schedule":true,"pipeline_schedule":"61 * * * *"}`, nil, 400, "invalid_cron_expression"},
		{"prov cron newline", "POST", prov, adminToken, `{"org_id":"a","team_node_id":"t","pipeline_schedule":"0 2 * * *\n"}`, nil, 400, "invalid_cron_expression"},
		{"prov bad mode", "POST", prov, adminToken, `{"org_id":"a","team_node_id":"t","deployment_mode":"DEDICATED"}`, nil, 400, "invalid_deployment_mode"},
		{"prov key with newline", "POST", prov, adminToken, `{"org_id":"a","team_node_id":"t","idempotency_key":"k\n1"}`, nil, 400, "invalid_idempotency_key"},
		{"prov huge key", "POST", prov, adminToken, `{"org_id":"a","team_node_id":"t","idempotency_key":"` + strings.Repeat("k", 300) + `"}`, nil, 400, "invalid_idempotency_key"},
		{"prov routing entry with NUL", "POST", prov, adminToken, `{"org_id":"a","team_node_id":"t","routing":{"services":["a\u0000b"]}}`, nil, 400, "invalid_routing"},
		{"prov text/plain", "POST", prov, adminToken, `{}`, []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type"},
		{"prov bad content type", "POST", prov, adminToken, `{}`, []string{"Content-Type", "application/json; charset"}, 415, "unsupported_media_type"},
		{"prov huge", "POST", prov, adminToken, `{"a":"` + strings.Repeat("x", 1<<20) + `"}`, nil, 413, "body_too_large"},
		{"prov no token", "POST", prov, "", `{"org_id":"a","team_node_id":"t"}`, nil, 401, "missing_admin_token"},
		{"prov basic auth", "POST", prov, "", `{}`, []string{"Authorization", "Basic YWRtaW46YWRtaW4="}, 401, "missing_admin_token"},
		{"prov GET", "GET", prov, adminToken, nil, nil, 405, "method_not_allowed"},
		// Deprovisioning.
		{"deprov wrong type", "POST", deprov, adminToken, `{"org_id":"a","team_node_id":"t","dry_run":"yes"}`, nil, 400, "invalid_field_type"},
		{"deprov unknown field", "POST", deprov, adminToken, `{"org_id":"a","team_node_id":"t","force":true}`, nil, 400, "unknown_field"},
		{"deprov bad id", "POST", deprov, adminToken, `{"org_id":"a","team_node_id":""}`, nil, 400, "invalid_team_node_id"},
		// Runs.
		{"runs bad limit", "GET", "/api/v1/admin/provision/runs?limit=-1", adminToken, nil, nil, 400, "invalid_query"},
		{"runs huge limit", "GET", "/api/v1/admin/provision/runs?limit=99999999999999999999", adminToken, nil, nil, 400, "invalid_query"},
		{"runs bad status", "GET", "/api/v1/admin/provision/runs?status=%00", adminToken, nil, nil, 400, "invalid_query"},
		{"runs cursor not an escape", "GET", "/api/v1/admin/provision/runs?cursor=%zz", adminToken, nil, nil, 400, "invalid_query"},
		{"runs limit lone percent", "GET", "/api/v1/admin/provision/runs?limit=%", adminToken, nil, nil, 400, "invalid_query"},
		{"events query not an escape", "GET", "/api/v1/admin/events?source=%zz", adminToken, nil, nil, 400, "invalid_query"},
		{"schedules query semicolon", "GET", "/api/v1/admin/schedules?org_id=a;team_node_id=b", adminToken, nil, nil, 400, "invalid_query"},
		{"webhook query not an escape", "POST", "/webhooks/slack/events?x=%zz", "", slackBody, hdr(webhook.Sign(webhook.Slack, slackSecret, slackBody, now, "")), 400, "invalid_query"},
		{"health query not an escape", "GET", "/health?%zz", "", nil, nil, 400, "invalid_query"},
		{"runs forged cursor", "GET", "/api/v1/admin/provision/runs?cursor=MjAyNnwn", adminToken, nil, nil, 400, "invalid_query"},
		{"run malformed id", "GET", "/api/v1/admin/provision/runs/12345", adminToken, nil, nil, 404, "run_not_found"},
		{"run sql-ish id", "GET", "/api/v1/admin/provision/runs/'%20OR%201=1--", adminToken, nil, nil, 404, "run_not_found"},
		{"run traversal", "GET", "/api/v1/admin/provision/runs/..%2f..%2fetc", adminToken, nil, nil, 404, "not_found"},
		// Events.
		{"events bad source", "GET", "/api/v1/admin/events?source=../x", adminToken, nil, nil, 400, "invalid_query"},
		{"events bad since", "GET", "/api/v1/admin/events?since=1700000000", adminToken, nil, nil, 400, "invalid_query"},
		{"events bad team", "GET", "/api/v1/admin/events?team_node_id=a%20b", adminToken, nil, nil, 400, "invalid_query"},
		{"event malformed id", "GET", "/api/v1/admin/events/not-a-uuid", adminToken, nil, nil, 404, "event_not_found"},
		{"redrive malformed id", "POST", "/api/v1/admin/events/x/redrive", adminToken, nil, nil, 404, "event_not_found"},
		// Schedules, sync, trigger, status, agents.
		{"schedule malformed id", "PATCH", "/api/v1/admin/schedules/x", adminToken, `{"enabled":true}`, nil, 404, "schedule_not_found"},
		{"sync unknown field", "POST", "/api/v1/admin/teams/sync-cronjobs", adminToken, `{"org_id":"a","team_node_id":"t","all":true}`, nil, 400, "unknown_field"},
		{"trigger bad id", "POST", "/api/v1/admin/pipeline/trigger", adminToken, `{"org_id":"a;rm","team_node_id":"t"}`, nil, 400, "invalid_org_id"},
		{"trigger empty", "POST", "/api/v1/admin/pipeline/trigger", adminToken, ``, nil, 400, "empty_body"},
		{"status bad org", "GET", "/api/v1/admin/teams/a%20b/t/deployment", adminToken, nil, nil, 400, "invalid_org_id"},
		{"agents no message", "POST", "/api/v1/admin/agents/run", adminToken, `{"org_id":"a","team_node_id":"t","agent_name":"p","message":""}`, nil, 400, "invalid_message"},
		{"agents bad name", "POST", "/api/v1/admin/agents/run", adminToken, `{"org_id":"a","team_node_id":"t","agent_name":"../p","message":"x"}`, nil, 400, "invalid_agent_name"},
		{"agents max turns", "POST", "/api/v1/admin/agents/run", adminToken, `{"org_id":"a","team_node_id":"t","agent_name":"p","message":"x","max_turns":0}`, nil, 400, "invalid_max_turns"},
		{"agents timeout type", "POST", "/api/v1/admin/agents/run", adminToken, `{"org_id":"a","team_node_id":"t","agent_name":"p","message":"x","timeout":"1m"}`, nil, 400, "invalid_field_type"},
		// Webhooks.
		{"slack stale", "POST", "/webhooks/slack/events", "", slackBody, hdr(staleSlack), 401, "signature_verification_failed"},
		{"slack future", "POST", "/webhooks/slack/events", "", slackBody, hdr(futureSlack), 401, "signature_verification_failed"},
		{"slack replayed ts text", "POST", "/webhooks/slack/events", "", slackBody, []string{"X-Slack-Request-Timestamp", "yesterday", "X-Slack-Signature", "v0=00"}, 401, "signature_verification_failed"},
		{"slack signed garbage", "POST", "/webhooks/slack/events", "", "not json", notJSON, 400, "bad_request"},
		{"slack header injection", "POST", "/webhooks/slack/events", "", slackBody, []string{"X-Slack-Request-Timestamp", fmt.Sprint(now.Unix()), "X-Slack-Signature", "v0=ab\r\nX-Evil: 1"}, 401, "signature_verification_failed"},
		{"slack no timestamp", "POST", "/webhooks/slack/events", "", slackBody, withoutHeader(hdr(webhook.Sign(webhook.Slack, slackSecret, slackBody, now, "")), "X-Slack-Request-Timestamp"), 400, "bad_request"},
		{"github no event header", "POST", "/webhooks/github", "", githubBody, withoutHeader(hdr(githubSigned), "X-Github-Event"), 400, "bad_request"},
		{"github no delivery", "POST", "/webhooks/github", "", githubBody, withoutHeader(hdr(githubSigned), "X-Github-Delivery"), 400, "bad_request"},
		{"github bad signature", "POST", "/webhooks/github", "", `{}`, []string{"X-GitHub-Event", "push", "X-GitHub-Delivery", "d-1", "X-Hub-Signature-256", "sha256=00"}, 401, "signature_verification_failed"},
		{"incidentio no webhook-id", "POST", "/webhooks/incidentio", "", incBody, withoutHeader(hdr(webhook.Sign(webhook.IncidentIO, incidentioSecret, incBody, now, "wh-2")), "Webhook-Id"), 400, "bad_request"},
		{"incidentio no timestamp", "POST", "/webhooks/incidentio", "", incBody, withoutHeader(hdr(webhook.Sign(webhook.IncidentIO, incidentioSecret, incBody, now, "wh-3")), "Webhook-Timestamp"), 400, "bad_request"},
		{"pagerduty too many sigs", "POST", "/webhooks/pagerduty", "", `{}`, []string{"X-Pagerduty-Signature", strings.Repeat("v1=00,", 100)}, 401, "signature_verification_failed"},
		{"incidentio stale", "POST", "/webhooks/incidentio", "", incBody, hdr(staleInc), 401, "signature_verification_failed"},
		{"coralogix wrong token", "POST", "/webhooks/coralogix", "", `{}`, []string{"X-Webhook-Token", "guess"}, 401, "signature_verification_failed"},
		{"coralogix oversize", "POST", "/webhooks/coralogix", "", strings.Repeat("x", 2<<20), []string{"X-Webhook-Token", coralogixToken}, 413, "body_too_large"},
		{"webhook GET", "GET", "/webhooks/github", "", nil, nil, 405, "method_not_allowed"},
		{"unknown webhook", "POST", "/webhooks/jira", "", `{}`, nil, 404, "not_found"},
		{"internal trigger no token", "POST", "/api/v1/internal/slack/trigger", "", `{"channel_id":"C1","text":"x"}`, nil, 401, "invalid_internal_token"},
		{"internal trigger bad json", "POST", "/api/v1/internal/slack/trigger", internalToken, `{"channel_id":`, nil, 400, "invalid_json"},
		// Paths.
		{"double slash", "GET", "//api/v1/admin/events", adminToken, nil, nil, 404, "not_found"},
		{"encoded traversal", "GET", "/api/v1/admin/../../etc/passwd", adminToken, nil, nil, 404, "not_found"},
	}
	if len(cases) < 60 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body any = c.body
			if b, ok := c.body.([]byte); ok {
				body = string(b)
			}
			r := e.do(c.method, c.path, c.token, body, c.header...)
			if r.code != c.status || r.body["error"] != c.code {
				t.Fatalf("%s %s = %d %s, want %d %s", c.method, c.path, r.code, truncate(r.raw), c.status, c.code)
			}
			if r.body["detail"] == nil {
				t.Fatalf("no detail: %s", r.raw)
			}
		})
	}
	t.Logf("%d bad-input cases", len(cases))
}

// withoutHeader drops one header (canonical name) from a name/value list.
func withoutHeader(h []string, name string) []string {
	var out []string
	for i := 0; i+1 < len(h); i += 2 {
		if h[i] != name {
			out = append(out, h[i], h[i+1])
		}
	}
	if len(out) == len(h) {
		panic("withoutHeader: no header " + name)
	}
	return out
}

func truncate(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// Headers sent a byte at a time (slowloris) are cut off by the server's
// header timeout instead of holding a connection for ever.
func TestBadInput_SlowlorisHeadersAreCutOff(t *testing.T) {
	e := newEnv(t, envOptions{})
	if err := e.srv.Open(); err != nil {
		t.Fatal(err)
	}
	defer e.srv.Shutdown(t.Context())
	conn, err := net.Dial("tcp", e.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// The read deadline only keeps a broken build from hanging: the server's
	// 5 s header timeout ends the connection long before, whatever the load.
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	// Keep dribbling until the server gives up on us.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if _, err := conn.Write([]byte("a")); err != nil {
				return
			}
		}
	}()
	line, err := bufio.NewReader(conn).ReadString('\n')
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept a dribbling header connection open for %v", time.Since(start))
	}
	if err == nil && !strings.Contains(line, "408") && !strings.Contains(line, "400") {
		t.Fatalf("slow headers got %q", line)
	}
	t.Logf("slow header connection closed after %v", time.Since(start).Round(time.Millisecond))
}

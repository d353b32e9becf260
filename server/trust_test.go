package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
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
	body, h := signed(webhook.Slack, "after-claim", slackSecret, wallclock.Now())
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
	pd, ph := signed(webhook.PagerDuty, "after-claim", pagerdutySecret, wallclock.Now())
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
	now := wallclock.Now()
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

// The review's reproduction of SPEC §18's second rule, on both databases:
// a GitHub delivery whose unsigned X-GitHub-Event holds a byte that is not
// UTF-8 arrived among 200 Slack mentions; on PostgreSQL the group commit it
// shared failed and most mentions got 503. Now the bad header is a 400,
// body-derived values are repaired (a NUL in a Coralogix team name, an id
// clipped in the middle of a character), and every mention is stored.
func TestTrust_UncleanTextAtTheDoorNeverFailsOthers(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			o := envOptions{webhooks: true, noDispatch: true}
			if db == "postgres" {
				o.databaseURL = pgtest.Database(t)
			}
			e := newEnv(t, o)
			now := wallclock.Now()
			var wg sync.WaitGroup
			codes := make([]int, 200)
			for i := range codes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					body, h := signed(webhook.Slack, fmt.Sprintf("mention-%d", i), slackSecret, now)
					codes[i] = e.send(webhook.Slack, body, h).code
				}()
			}
			bad := map[string]int{}
			var badMu sync.Mutex
			for name, event := range map[string]string{"not utf-8": "issues\xff", "NUL": "issues\x00", "not an event name": "Issues!"} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					body, h := signed(webhook.GitHub, "bad-"+name, githubSecret, now)
					h["X-Github-Event"] = []string{event}
					r := e.send(webhook.GitHub, body, h)
					badMu.Lock()
					defer badMu.Unlock()
					bad[name] = r.code
					if r.code == 400 && r.body["error"] != "bad_request" {
						t.Errorf("%s: %s", name, r.raw)
					}
				}()
			}
			// Body-derived values: repaired, stored, answered 200.
			nul := []byte(`{"alert_unique_identifier":"nul-1","alert_action":"trigger","team_name":"ac\u0000me","timestamp":"t"}`)
			longID := strings.Repeat("a", 254) + "é" + strings.Repeat("b", 40) // é straddles byte 255
			pd := []byte(`{"event":{"id":"` + longID + `","event_type":"incident.triggered\u0000","data":{"service":{"id":"PF9KMXH"}}}}`)
			wg.Wait()
			for i, c := range codes {
				if c != 200 {
					t.Fatalf("mention %d answered %d", i, c)
				}
			}
			for name, c := range bad {
				if c != 400 {
					t.Errorf("GitHub with X-GitHub-Event %s answered %d, want 400", name, c)
				}
			}
			r := e.send(webhook.Coralogix, nul, webhook.Sign(webhook.Coralogix, coralogixToken, nul, now, ""))
			if r.code != 200 {
				t.Fatalf("Coralogix with a NUL in its team name = %d %s", r.code, r.raw)
			}
			ev, err := e.db.GetEvent(context.Background(), r.body["event_id"].(string))
			if err != nil || ev.Identifiers["coralogix_team_name"] != "ac\uFFFDme" {
				t.Fatalf("stored identifiers %v %v", ev.Identifiers, err)
			}
			r = e.send(webhook.PagerDuty, pd, webhook.Sign(webhook.PagerDuty, pagerdutySecret, pd, now, ""))
			if r.code != 200 {
				t.Fatalf("PagerDuty with a long id = %d %s", r.code, r.raw)
			}
			ev, err = e.db.GetEvent(context.Background(), r.body["event_id"].(string))
			if err != nil || ev.DeliveryID != strings.Repeat("a", 254) || ev.EventType != "incident.triggered\uFFFD" {
				t.Fatalf("stored delivery id %q, type %q, %v", ev.DeliveryID, ev.EventType, err)
			}
			if n, _ := e.db.QueueDepth(context.Background(), ""); n != 202 {
				t.Fatalf("queue depth %d, want the 200 mentions and the 2 repaired alerts", n)
			}
		})
	}
}

// SPEC §18's fourth rule: a GitHub replay — the same signed body with a new
// X-GitHub-Delivery — is a duplicate of the first, and makes no new agent
// call; signature headers are not kept; Slack's legacy token is blanked in
// the stored body, whose hash stays the original's.
func TestTrust_GitHubReplayIsADuplicateAndSignaturesAreNotKept(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true})
	now := wallclock.Now()
	body, h := signed(webhook.GitHub, "replayed", githubSecret, now)
	first := e.send(webhook.GitHub, body, h)
	if first.code != 200 {
		t.Fatal(first.raw)
	}
	id := first.body["event_id"].(string)
	e.waitStatus(id, store.EventDelivered)
	for _, event := range []string{"issues", "pull_request"} {
		replay := webhook.Sign(webhook.GitHub, githubSecret, body, now, "a-new-delivery-"+event)
		replay.Set("X-GitHub-Event", event)
		r := e.send(webhook.GitHub, body, replay)
		if r.code != 200 || r.body["duplicate"] != true || r.body["event_id"] != id {
			t.Fatalf("replay as %s = %d %s", event, r.code, r.raw)
		}
	}
	if n := len(e.agent.CallsTo(peerstest.RouteAgentRun)); n != 1 {
		t.Fatalf("%d agent calls, want 1", n)
	}
	ev, _ := e.db.GetEvent(context.Background(), id)
	for k := range ev.Headers {
		if strings.Contains(k, "signature") {
			t.Fatalf("stored headers keep %s", k)
		}
	}

	sb, sh := signed(webhook.Slack, "legacy-token", slackSecret, now)
	if !strings.Contains(string(sb), `"token":"unused"`) {
		t.Fatalf("the sample has no legacy token: %s", sb)
	}
	r := e.send(webhook.Slack, sb, sh)
	sev, _ := e.db.GetEvent(context.Background(), r.body["event_id"].(string))
	sum := sha256.Sum256(sb)
	if want := strings.Replace(string(sb), `"token":"unused"`, `"token":""`, 1); string(sev.Body) != want || sev.BodySHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("stored Slack body %s (hash %s)", sev.Body, sev.BodySHA256)
	}
	if _, has := sev.Headers["x-slack-signature"]; has {
		t.Fatal("stored headers keep X-Slack-Signature")
	}
	detail := e.do("GET", "/api/v1/admin/events/"+sev.ID, adminToken, nil)
	if detail.code != 200 || strings.Contains(detail.raw, "unused") || strings.Contains(detail.raw, sh.Get("X-Slack-Signature")) {
		t.Fatalf("the event API shows the token or the signature: %s", detail.raw)
	}
}

// SPEC §18's sixth rule: credentials are redacted by the words of the
// header's name and by the shape of the value.
func TestTrust_HeaderRedactionByNameAndValue(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, noDispatch: true})
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhY21lIn0.c2lnbmF0dXJlLWJ5dGVz"
	body, h := signed(webhook.PagerDuty, "redact", pagerdutySecret, wallclock.Now())
	extra := map[string]string{
		"Authentication": "Bearer abcdef123456", "X-Auth": "s3cr3t-value", "X-Pass": "hunter2-value",
		"X-Forwarded-Client": "Basic dXNlcjpwYXNzd29yZA==", "X-Trace-Context": jwt,
		"X-Hook-Config": "whsec_c2VjcmV0LWtleS1ieXRlcw==", "X-Note": "xoxb-1234-5678-abcdef",
		"X-Request-Source": "pagerduty-webhooks",
	}
	for k, v := range extra {
		h.Set(k, v)
	}
	r := e.send(webhook.PagerDuty, body, h)
	ev, err := e.db.GetEvent(context.Background(), r.body["event_id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range extra {
		got := ev.Headers[strings.ToLower(k)]
		if k == "X-Request-Source" {
			if got != v {
				t.Errorf("plain header %s stored as %q", k, got)
			}
			continue
		}
		if got != "[redacted]" {
			t.Errorf("%s stored as %q", k, got)
		}
	}
}

// fromClient sends an admin API request as if from a client address.
func (e *env) fromClient(remote, token string, header ...string) response {
	e.t.Helper()
	req := httptest.NewRequest("GET", "/api/v1/admin/provision/runs", nil)
	req.RemoteAddr = remote
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	e.checkAPI(req, nil, rec)
	r := response{code: rec.Code, header: rec.Header(), raw: rec.Body.String(), path: req.URL.Path}
	_ = json.Unmarshal(rec.Body.Bytes(), &r.body)
	return r
}

// SPEC §18's fifth rule: the review's 200 random tokens made 200 /auth/me
// calls. Now a client's failures are limited (about 10 a minute, then 429
// with Retry-After), a refused token is answered from memory for a while,
// X-Forwarded-For is believed only from a trusted proxy, and another
// client's valid token still works.
func TestTrust_FailedAdminTokensCannotDriveTheConfigService(t *testing.T) {
	clk := &clock{t: wallclock.Now()}
	e := newEnv(t, envOptions{authNow: clk.Now, trustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	authMe := func() int { return len(e.cs.CallsTo(peerstest.RouteAuthMe)) }
	before := authMe()
	var limited response
	for i := range 200 {
		r := e.fromClient("203.0.113.7:4000", fmt.Sprintf("random-%d", i))
		switch {
		case i < 10 && (r.code != 401 || r.body["error"] != "invalid_admin_token"):
			t.Fatalf("failure %d = %d %s", i, r.code, r.raw)
		case i >= 10 && r.code != 429:
			t.Fatalf("failure %d = %d %s, want 429", i, r.code, r.raw)
		}
		if i == 10 {
			limited = r
		}
	}
	if n := authMe() - before; n != 10 {
		t.Fatalf("200 random tokens made %d /auth/me calls, want 10", n)
	}
	if limited.body["error"] != "too_many_auth_failures" || limited.header.Get("Retry-After") != "6" {
		t.Fatalf("limited answer = %s, Retry-After %q", limited.raw, limited.header.Get("Retry-After"))
	}
	// Another client is not limited, and a valid token works for it.
	if r := e.fromClient("198.51.100.2:4000", adminToken); r.code != 200 {
		t.Fatalf("another client's valid token = %d %s", r.code, r.raw)
	}
	// A forged X-Forwarded-For from an untrusted peer changes nothing.
	if r := e.fromClient("203.0.113.7:4001", "forged", "X-Forwarded-For", "192.0.2.99"); r.code != 429 {
		t.Fatalf("forged X-Forwarded-For = %d %s", r.code, r.raw)
	}
	// Through a trusted proxy, each client behind it has its own budget.
	before = authMe()
	for i := range 12 {
		r := e.fromClient("10.1.2.3:5000", "same-bad-token", "X-Forwarded-For", "192.0.2.50, 10.9.9.9")
		if want := map[bool]int{true: 401, false: 429}[i < 10]; r.code != want {
			t.Fatalf("proxied failure %d = %d, want %d", i, r.code, want)
		}
	}
	// The same refused token is asked about once, then answered from memory.
	if n := authMe() - before; n != 1 {
		t.Fatalf("one refused token asked %d times", n)
	}
	if r := e.fromClient("10.1.2.3:5000", "other-bad", "X-Forwarded-For", "192.0.2.51"); r.code != 401 {
		t.Fatalf("another client behind the proxy = %d", r.code)
	}
	// A minute later the first client may try again.
	clk.Add(time.Minute)
	if r := e.fromClient("203.0.113.7:4000", adminToken); r.code != 200 {
		t.Fatalf("after a minute = %d %s", r.code, r.raw)
	}
}

// SPEC §18's eighth rule: "." and ".." pass the id pattern but are path
// segments a URL resolves; they are refused everywhere an id is taken, and
// nothing reaches a peer.
func TestTrust_DotIDsAreRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	before := len(e.cs.Calls())
	for _, id := range []string{".", ".."} {
		for name, c := range map[string]struct {
			method, path string
			body         any
			code         string
		}{
			"provision org":  {"POST", provisionPath, map[string]any{"org_id": id, "team_node_id": "t"}, "invalid_org_id"},
			"provision team": {"POST", provisionPath, map[string]any{"org_id": "acme", "team_node_id": id}, "invalid_team_node_id"},
			"deprovision":    {"POST", "/api/v1/admin/deprovision/team", map[string]any{"org_id": "acme", "team_node_id": id}, "invalid_team_node_id"},
			"agent name": {"POST", "/api/v1/admin/agents/run", map[string]any{"org_id": "acme", "team_node_id": "t",
				"agent_name": id, "message": "hi"}, "invalid_agent_name"},
			"agent team": {"POST", "/api/v1/admin/agents/run", map[string]any{"org_id": "acme", "team_node_id": id,
				"agent_name": "planner", "message": "hi"}, "invalid_team_node_id"},
		} {
			r := e.do(c.method, c.path, adminToken, c.body)
			if r.code != 400 || r.body["error"] != c.code {
				t.Errorf("%s %q = %d %s, want 400 %s", name, id, r.code, r.raw, c.code)
			}
		}
	}
	for _, c := range e.cs.Calls()[before:] {
		if c.Route != peerstest.RouteAuthMe {
			t.Errorf("a peer was called: %s %s", c.Route, c.Path)
		}
	}
}

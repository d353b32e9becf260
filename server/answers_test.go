package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/config"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// agentDestinations reads output_destinations from the agent calls'
// bodies, in call order.
func agentDestinations(t *testing.T, e *env) [][]map[string]any {
	t.Helper()
	var out [][]map[string]any
	for _, c := range e.agent.CallsTo(peerstest.RouteAgentRun) {
		var body struct {
			OutputDestinations []map[string]any `json:"output_destinations"`
		}
		if err := json.Unmarshal(c.Body, &body); err != nil {
			t.Fatal(err)
		}
		out = append(out, body.OutputDestinations)
	}
	return out
}

// A mention's agent call names its thread as where the answer goes, and a
// PagerDuty incident its note, as the reference orchestrator passes them.
func TestAnswers_TheAgentIsToldWhereTheAnswerGoes(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true})
	now := time.Now()
	body, h := signed(webhook.Slack, "where1", slackSecret, now)
	e.waitStatus(e.send(webhook.Slack, body, h).body["event_id"].(string), store.EventDelivered)
	body, h = signed(webhook.PagerDuty, "where2", pagerdutySecret, now)
	e.waitStatus(e.send(webhook.PagerDuty, body, h).body["event_id"].(string), store.EventDelivered)

	got := agentDestinations(t, e)
	want := [][]map[string]any{
		{{"type": "slack", "channel_id": "C0A4967KRBM", "thread_ts": slackTS(t, e, 0)}},
		{{"type": "pagerduty_note", "incident_id": "Q1where2"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("output_destinations = %v, want %v", got, want)
	}
}

// slackTS is the ts of the i-th agent call's Slack mention.
func slackTS(t *testing.T, e *env, i int) string {
	t.Helper()
	var body struct {
		Context struct {
			Metadata struct {
				Slack map[string]any `json:"slack"`
			} `json:"metadata"`
		} `json:"context"`
	}
	if err := json.Unmarshal(e.agent.CallsTo(peerstest.RouteAgentRun)[i].Body, &body); err != nil {
		t.Fatal(err)
	}
	ts, _ := body.Context.Metadata.Slack["ts"].(string)
	if ts == "" {
		t.Fatal("the mention has no ts")
	}
	return ts
}

// deliveriesOf reads an event's answer deliveries from the event API.
func deliveriesOf(t *testing.T, e *env, eventID string) []map[string]any {
	t.Helper()
	r := e.do("GET", "/api/v1/admin/events/"+eventID, adminToken, nil)
	if r.code != 200 {
		t.Fatalf("event %s = %d %s", eventID, r.code, r.raw)
	}
	var out []map[string]any
	runs, _ := r.body["agent_runs"].([]any)
	for _, run := range runs {
		ds, _ := run.(map[string]any)["deliveries"].([]any)
		for _, d := range ds {
			out = append(out, d.(map[string]any))
		}
	}
	return out
}

// waitDelivery waits until the event's last agent run's deliveries are
// all in one of the states.
func waitDelivery(t *testing.T, e *env, eventID string, states ...string) []map[string]any {
	t.Helper()
	var got []map[string]any
	waitFor(t, "the answer's deliveries to be "+strings.Join(states, " or "), func() bool {
		got = deliveriesOf(t, e, eventID)
		if len(got) == 0 {
			return false
		}
		for _, d := range got {
			if !slices.Contains(states, d["status"].(string)) {
				return false
			}
		}
		return true
	})
	return got
}

func sendMention(t *testing.T, e *env, id string) (eventID, ts string) {
	t.Helper()
	body, h := signed(webhook.Slack, id, slackSecret, time.Now())
	r := e.send(webhook.Slack, body, h)
	if r.code != 200 {
		t.Fatalf("mention = %d %s", r.code, r.raw)
	}
	var m struct {
		Event struct {
			TS string `json:"ts"`
		} `json:"event"`
	}
	_ = json.Unmarshal(body, &m)
	return r.body["event_id"].(string), m.Event.TS
}

// A person's mention is answered in its thread: the agent is told the
// appliance posts there, the answer lands in the thread once with the
// feedback buttons and a link to the run, and the event API and the
// metrics say where it went.
func TestAnswers_AMentionIsAnsweredInItsThread(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, answers: true, publicURL: "https://orchestrator.example"})
	id, ts := sendMention(t, e, "answered1")
	ds := waitDelivery(t, e, id, store.AnswerPosted)
	msgs := e.slack.Messages("C0A4967KRBM")
	if len(msgs) != 1 || msgs[0].ThreadTS != ts || len(ds) != 1 {
		t.Fatalf("messages in the channel = %+v, deliveries %v", msgs, ds)
	}
	d := ds[0]
	if d["type"] != "slack" || d["message_id"] != msgs[0].TS || d["attempts"] != float64(0) || d["last_error"] != nil ||
		!strings.HasSuffix(d["link"].(string), "/archives/C0A4967KRBM/p"+strings.ReplaceAll(msgs[0].TS, ".", "")) {
		t.Fatalf("delivery = %v", d)
	}
	dest := d["destination"].(map[string]any)
	if dest["channel_id"] != "C0A4967KRBM" || dest["thread_ts"] != ts || dest["posted_by"] != "orchestrator" {
		t.Fatalf("destination = %v", dest)
	}
	if got := agentDestinations(t, e); !reflect.DeepEqual(got, [][]map[string]any{{dest}}) {
		t.Fatalf("the agent was told %v, want %v", got, dest)
	}
	blocks := string(msgs[0].Blocks)
	runID := d["agent_run_id"].(string)
	run, err := e.db.GetAgentRun(context.Background(), runID)
	if err != nil || run.Run.FeedbackRef == "" {
		t.Fatalf("run %s: %+v %v", runID, run.Run, err)
	}
	// The buttons carry the run's unguessable feedback reference.
	for _, want := range []string{"Investigated: why is checkout latency up?", `"action_id":"feedback_positive"`, `"value":"` + run.Run.FeedbackRef + `"`,
		"https://orchestrator.example/ui/agent-runs/" + runID} {
		if !strings.Contains(blocks, want) {
			t.Errorf("the message lacks %s: %s", want, blocks)
		}
	}
	if !e.metric(`orchestrator_answer_deliveries_total{outcome="posted",type="slack"} 1`) {
		t.Error("the posted answer is not counted")
	}
}

// A dead Slack API, then healed: the delivery is retried with backoff
// (each retry first looking for an earlier post), and posted once.
func TestAnswers_ADeadSlackAPIIsRetriedUntilItHeals(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, answers: true})
	e.slack.Fail(peerstest.RouteSlackPostMessage, peerstest.Fault{Status: http.StatusServiceUnavailable, Times: 3})
	id, ts := sendMention(t, e, "healed1")
	ds := waitDelivery(t, e, id, store.AnswerPosted)
	msgs := e.slack.Messages("C0A4967KRBM")
	if len(msgs) != 1 || msgs[0].ThreadTS != ts {
		t.Fatalf("%d messages after the API healed, want 1", len(msgs))
	}
	if ds[0]["attempts"] != float64(3) || ds[0]["last_error"] != "slack chat.postMessage: HTTP 503" {
		t.Fatalf("delivery = %v", ds[0])
	}
	if posts, looks := len(e.slack.CallsTo(peerstest.RouteSlackPostMessage)), len(e.slack.CallsTo(peerstest.RouteSlackReplies)); posts != 4 || looks != 3 {
		t.Fatalf("%d posts and %d looks for an earlier post, want 4 and 3", posts, looks)
	}
	if !e.metric(`orchestrator_answer_deliveries_total{outcome="retry",type="slack"} 3`) ||
		!e.metric(`orchestrator_answer_deliveries_total{outcome="posted",type="slack"} 1`) {
		t.Error("the retries and the post are not counted")
	}
}

// A 429 is retried no sooner than its Retry-After says.
func TestAnswers_SlacksRetryAfterIsHonoured(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, answers: true})
	e.slack.RateLimit(1, 2)
	id, _ := sendMention(t, e, "limited1")
	var first store.AnswerDelivery
	waitFor(t, "the rate-limited attempt", func() bool {
		runs, _ := e.db.EventAgentRuns(context.Background(), id)
		if len(runs) == 0 {
			return false
		}
		got, _ := e.db.RunDeliveries(context.Background(), []string{runs[0].ID})
		if len(got[runs[0].ID]) == 1 && got[runs[0].ID][0].Attempts == 1 {
			first = got[runs[0].ID][0]
			return true
		}
		return false
	})
	if wait := first.NextAttemptAt.Sub(first.UpdatedAt); first.Status != store.AnswerQueued || wait < 2*time.Second || wait > 2*time.Second+time.Millisecond {
		t.Fatalf("after a 429 with Retry-After: 2, %+v (next attempt %v after)", first, wait)
	}
	waitDelivery(t, e, id, store.AnswerPosted)
	if n := len(e.slack.Messages("C0A4967KRBM")); n != 1 {
		t.Fatalf("%d messages", n)
	}
}

// Slack's refusals that retrying cannot fix end the delivery failed at
// once, with Slack's reason; one with no bot token for its app is left to
// the agent (not marked posted_by) and recorded failed, saying which
// variable to set.
func TestAnswers_PermanentFailuresAndMissingCredentials(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, answers: true, sourcesFile: "slack_apps: [{slug: ops-bot, signing_secret_env: OPS_SIGNING}]",
		sourceEnv: map[string]string{"OPS_SIGNING": "ops-signing"}})
	e.cs.AddTeam(peerstest.DevOrg, peerstest.DevTeam, map[string]any{"routing": peerstest.DevRouting, "output_config": map[string]any{
		"trigger_overrides": map[string]any{"coralogix": []any{
			map[string]any{"type": "slack", "channel_id": "C0OUTSIDE"},
			map[string]any{"type": "slack", "channel_id": "C0A4967KRBM", "app": "ops-bot"},
		}}}})
	e.slack.AddChannel("C0OUTSIDE", false)
	body, h := signed(webhook.Coralogix, "perm1", coralogixToken, time.Now())
	id := e.send(webhook.Coralogix, body, h).body["event_id"].(string)
	ds := waitDelivery(t, e, id, store.AnswerFailed)
	if len(ds) != 2 || ds[0]["last_error"] != "slack chat.postMessage: not_in_channel" || ds[0]["attempts"] != float64(0) ||
		ds[1]["last_error"] != `not posted by the orchestrator: no Slack bot token for Slack app "ops-bot" (give it bot_token_env in the sources file's slack_apps); passed to the agent without posted_by` {
		t.Fatalf("deliveries = %v", ds)
	}
	told := agentDestinations(t, e)[0]
	if told[0]["posted_by"] != "orchestrator" || told[1]["posted_by"] != nil || told[1]["app"] != "ops-bot" {
		t.Fatalf("the agent was told %v", told)
	}
	if len(e.slack.Messages("C0A4967KRBM")) != 0 || len(e.slack.CallsTo(peerstest.RouteSlackPostMessage)) != 1 {
		t.Fatal("a post was made where none could land")
	}
}

// A mistake in team config spoils only its own destination: recorded
// failed with a reason naming the field, never posted anywhere a team
// wrote; the good destinations are posted.
func TestAnswers_BadTeamConfigFailsThatDestinationWithAClearReason(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, answers: true})
	e.cs.AddTeam(peerstest.DevOrg, peerstest.DevTeam, map[string]any{"routing": peerstest.DevRouting, "output_config": map[string]any{
		"default_destinations": []any{
			map[string]any{"type": "teams", "channel": "ops"},
			map[string]any{"type": "webhook", "url": "http://169.254.169.254/latest/meta-data"},
			map[string]any{"type": "slack"},
			map[string]any{"type": "slack", "channel_id": "C0A4967KRBM"},
		}}})
	body, h := signed(webhook.Coralogix, "bad1", coralogixToken, time.Now())
	id := e.send(webhook.Coralogix, body, h).body["event_id"].(string)
	ds := waitDelivery(t, e, id, store.AnswerFailed, store.AnswerPosted)
	want := []struct{ typ, status, err string }{
		{"invalid", "failed", `team config output_config.default_destinations[0]: unknown destination type "teams" (slack, github_issue_comment, github_pr_comment, pagerduty_note, webhook)`},
		{"webhook", "failed", "team config output_config.default_destinations[1]: a webhook destination names one the operator declared in the sources file (destinations:), never a URL"},
		{"slack", "failed", "team config output_config.default_destinations[2]: slack needs channel_id, a Slack channel id such as C0A4967KRBM"},
		{"slack", "posted", ""},
	}
	if len(ds) != len(want) {
		t.Fatalf("deliveries = %v", ds)
	}
	for i, w := range want {
		if ds[i]["type"] != w.typ || ds[i]["status"] != w.status || (w.err != "" && ds[i]["last_error"] != w.err) {
			t.Errorf("delivery %d = %v, want %+v", i, ds[i], w)
		}
	}
	if ev, _ := e.db.GetEvent(context.Background(), id); ev.Status != store.EventDelivered {
		t.Fatalf("the event is %s", ev.Status)
	}
	if len(e.slack.Messages("C0A4967KRBM")) != 1 {
		t.Fatal("the good destination was not posted once")
	}
	if !e.metric(`orchestrator_answer_deliveries_total{outcome="failed",type="invalid"} 1`) ||
		!e.metric(`orchestrator_answer_deliveries_total{outcome="failed",type="slack"} 1`) {
		t.Error("the failed destinations are not counted")
	}
}

// Attempts used up make a delivery dead; an admin of its org redelivers
// it (audited), and it is posted once Slack answers again. Another org's
// admin sees no such delivery, an admin without the permission and an
// outsider are refused, and a delivery not failed or dead is not
// redeliverable.
func TestAnswers_RedeliverIsOrgScopedAndAudited(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, answers: true})
	e.cs.AddAdmin("globex-admin", peers.Identity{Role: "admin", Permissions: []string{"admin:*"}, OrgID: "globex"})
	e.slack.Fail(peerstest.RouteSlackPostMessage, peerstest.Fault{Status: http.StatusBadGateway})
	id, _ := sendMention(t, e, "dead1")
	ds := waitDelivery(t, e, id, store.AnswerDead)
	if ds[0]["attempts"] != float64(6) || ds[0]["last_error"] != "slack chat.postMessage: HTTP 502" {
		t.Fatalf("dead delivery = %v", ds[0])
	}
	did := ds[0]["id"].(string)
	path := "/api/v1/admin/answers/" + did + "/redeliver"
	for _, c := range []struct {
		token string
		code  int
		error string
	}{
		{"", 401, "missing_admin_token"},
		{"globex-admin", 404, "delivery_not_found"},
		{scopedToken, 403, "insufficient_permissions"},
		{viewerToken, 403, "insufficient_permissions"},
		{orgToken, 200, ""},
		{orgToken, 409, "not_redeliverable"},
	} {
		r := e.do("POST", path, c.token, nil)
		if r.code != c.code || (c.error != "" && r.body["error"] != c.error) {
			t.Fatalf("redeliver as %q = %d %s, want %d %s", c.token, r.code, r.raw, c.code, c.error)
		}
		if c.code == 200 && (r.body["status"] != "queued" || r.body["attempts"] != float64(0)) {
			t.Fatalf("redelivered = %s", r.raw)
		}
		if c.code == 200 {
			e.slack.Clear()
		}
	}
	for _, bad := range []string{"../../events", "00000000-0000-4000-8000-000000000000", "x"} {
		if r := e.do("POST", "/api/v1/admin/answers/"+bad+"/redeliver", adminToken, nil); r.code != 404 {
			t.Fatalf("redeliver %q = %d %s", bad, r.code, r.raw)
		}
	}
	ds = waitDelivery(t, e, id, store.AnswerPosted)
	if n := len(e.slack.Messages("C0A4967KRBM")); n != 1 || ds[0]["attempts"] != float64(0) {
		t.Fatalf("%d messages after the redelivery, delivery %v", n, ds[0])
	}
	audit := e.do("GET", "/api/v1/admin/audit", orgToken, nil)
	if !strings.Contains(audit.raw, `"action":"answer.redeliver"`) || !strings.Contains(audit.raw, did) {
		t.Fatalf("audit = %s", audit.raw)
	}
	if other := e.do("GET", "/api/v1/admin/audit", "globex-admin", nil); strings.Contains(other.raw, did) {
		t.Fatalf("another org's admin sees the redelivery in its audit: %s", other.raw)
	}
}

// With posted_by agent the appliance only passes the destinations on:
// nothing is posted, nothing is marked, nothing is recorded.
func TestAnswers_PostedByAgentOnlyPassesThemOn(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, answers: true, postAnswers: "agent"})
	id, ts := sendMention(t, e, "agent1")
	e.waitStatus(id, store.EventDelivered)
	if got := agentDestinations(t, e); !reflect.DeepEqual(got, [][]map[string]any{{{"type": "slack", "channel_id": "C0A4967KRBM", "thread_ts": ts}}}) {
		t.Fatalf("the agent was told %v", got)
	}
	// The run is recorded in the transaction its deliveries would be.
	waitFor(t, "the run recorded", func() bool {
		runs, _ := e.db.EventAgentRuns(context.Background(), id)
		return len(runs) == 1
	})
	if ds := deliveriesOf(t, e, id); len(ds) != 0 || len(e.slack.Calls()) != 0 {
		t.Fatalf("deliveries %v, Slack calls %d", ds, len(e.slack.Calls()))
	}
}

// The pages say where each answer went: the event page lists each
// destination with its state, attempts, last error and a link to the
// posted message, and links the agent run; the agent-run page shows the
// answer and its deliveries, with a Redeliver button for a dead one that
// queues it again; the overview counts today's answers. Another org's
// admin finds none of it.
func TestAnswers_PagesShowWhereEachAnswerWent(t *testing.T) {
	e, base := uiEnv(t, envOptions{answers: true})
	e.cs.AddAdmin("globex-admin", peers.Identity{Role: "admin", Permissions: []string{"admin:*"}, OrgID: "globex"})
	posted, _ := sendMention(t, e, "page1")
	ds := waitDelivery(t, e, posted, store.AnswerPosted)
	e.slack.Fail(peerstest.RouteSlackPostMessage, peerstest.Fault{Status: http.StatusServiceUnavailable})
	dead, _ := sendMention(t, e, "page2")
	deadDs := waitDelivery(t, e, dead, store.AnswerDead)
	e.slack.Clear()

	c := login(t, base, orgToken)
	code, page := getPage(t, c, base+"/ui/events/"+posted)
	runID := ds[0]["agent_run_id"].(string)
	for _, want := range []string{`id="answers"`, "Slack C0A4967KRBM, thread ", `<span class="status posted">posted</span>`,
		`href="` + ds[0]["link"].(string) + `"`, `href="/ui/agent-runs/` + runID + `"`} {
		if code != 200 || !strings.Contains(page, want) {
			t.Fatalf("event page lacks %s: %d %s", want, code, page)
		}
	}
	deadRun := deadDs[0]["agent_run_id"].(string)
	code, page = getPage(t, c, base+"/ui/agent-runs/"+deadRun)
	for _, want := range []string{`id="agentrun-answer"`, "Investigated: why is checkout latency up?", `<span class="status dead">dead</span>`,
		"slack chat.postMessage: HTTP 503", `action="/ui/answers/` + deadDs[0]["id"].(string) + `/redeliver"`} {
		if code != 200 || !strings.Contains(page, want) {
			t.Fatalf("agent-run page lacks %s: %d %s", want, code, page)
		}
	}
	if _, page = getPage(t, c, base+"/ui/overview"); !strings.Contains(page, `<span id="answers-posted">1</span> posted`) ||
		!strings.Contains(page, `<span id="answers-failed">1</span> failed or dead`) {
		t.Fatalf("overview lacks today's answers: %s", page)
	}
	other := login(t, base, "globex-admin")
	for _, p := range []string{"/ui/agent-runs/" + deadRun, "/ui/agent-runs/not-a-run"} {
		if code, _ := getPage(t, other, base+p); code != 404 {
			t.Fatalf("another org's admin: %s = %d", p, code)
		}
	}
	if _, page := getPage(t, other, base+"/ui/overview"); !strings.Contains(page, `<span id="answers-posted">0</span> posted`) {
		t.Fatalf("another org's overview counts acme's answers: %s", page)
	}
	if resp := formPost(t, other, base, "/ui/answers/"+deadDs[0]["id"].(string)+"/redeliver", nil); resp.StatusCode != 404 {
		t.Fatalf("another org's admin redelivered: %d", resp.StatusCode)
	}
	resp := formPost(t, c, base, "/ui/answers/"+deadDs[0]["id"].(string)+"/redeliver", nil)
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/ui/agent-runs/"+deadRun {
		t.Fatalf("redeliver from the page = %d at %s", resp.StatusCode, resp.Request.URL.Path)
	}
	waitDelivery(t, e, dead, store.AnswerPosted)
	if n := len(e.slack.Messages("C0A4967KRBM")); n != 2 {
		t.Fatalf("%d messages after the page's redelivery", n)
	}
}

// A storm of 3,000 PagerDuty alerts for one team whose defaults name an
// alerts channel: one answer per digest (60 digests of 50), never one per
// alert, and no PagerDuty note on each folded incident.
func TestAnswers_AStormIsAnsweredPerDigestNotPerAlert(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, answers: true, noDispatch: true, teamPerMinute: 1_000_000,
		coalesce: config.DefaultCoalesceSources, routingTTL: 30 * time.Second, workers: 2})
	e.cs.AddTeam(peerstest.DevOrg, peerstest.DevTeam, map[string]any{"routing": peerstest.DevRouting, "output_config": map[string]any{
		"default_destinations": []any{map[string]any{"type": "slack", "channel_id": "C0ALERTS"}}}})
	e.slack.AddChannel("C0ALERTS", true)
	alerts := sendAlerts(t, e, "answered-storm", 3000)
	if err := e.outbox.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.outbox.Stop(context.Background()) })
	if err := e.disp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.disp.Stop(context.Background()) })
	waitFor(t, "every alert delivered and every answer posted", func() bool {
		n, err := e.db.QueueDepth(context.Background(), "")
		return err == nil && n == 0 && len(e.slack.Messages("C0ALERTS")) == len(e.agent.CallsTo(peerstest.RouteAgentRun))
	})
	calls := len(e.agent.CallsTo(peerstest.RouteAgentRun))
	if got := e.countStatus(alerts, store.EventDelivered); got != 3000 || calls != 60 {
		t.Fatalf("%d of 3000 delivered in %d agent calls, want 60 digests of 50", got, calls)
	}
	runs, _ := e.db.TeamAgentRuns(context.Background(), peerstest.DevOrg, peerstest.DevTeam)
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	deliveries, _ := e.db.RunDeliveries(context.Background(), ids)
	total := 0
	for _, ds := range deliveries {
		for _, d := range ds {
			total++
			if d.Type != "slack" || d.Status != store.AnswerPosted {
				t.Fatalf("a digest's delivery: %+v", d)
			}
		}
	}
	if total != 60 || len(e.slack.Messages("C0ALERTS")) != 60 {
		t.Fatalf("%d deliveries and %d messages for 60 digests", total, len(e.slack.Messages("C0ALERTS")))
	}
	t.Logf("3000 alerts: %d agent calls, %d answers posted", calls, total)
}

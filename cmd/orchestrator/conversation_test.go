package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

// channelButton finds, on the fake Slack's channel page (as user), the
// form of the button labelled label on the newest message holding want.
var pageForm = regexp.MustCompile(`(?s)<form method="post" action="([^"]+)">.*?name="action_id" value="([^"]+)">.*?<button type="submit">([^<]*)</button></form>`)

func channelPage(t *testing.T, slackURL, user string) string {
	t.Helper()
	resp, err := http.Get(slackURL + "?as=" + user)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return html.UnescapeString(string(b))
}

// pageClick clicks, as user, the button labelled label of the message
// whose text holds want, as a person does on the channel page; it waits
// for that button to show.
func pageClick(t *testing.T, slackURL, user, want, label string) {
	t.Helper()
	var action, id string
	waitUntil(t, time.Minute, "a "+label+" button on "+want, func() bool {
		for _, article := range strings.Split(channelPage(t, slackURL, user), "<article") {
			if !strings.Contains(article, want) {
				continue
			}
			for _, f := range pageForm.FindAllStringSubmatch(article, -1) {
				if f[3] == label {
					action, id = f[1], f[2]
					return true
				}
			}
		}
		return false
	})
	base, _ := url.Parse(slackURL)
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).PostForm(
		base.Scheme+"://"+base.Host+action, url.Values{"user": {user}, "action_id": {id}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"ok":true`) {
		t.Fatalf("click %s on %q as %s = %d %s", label, want, user, resp.StatusCode, b)
	}
}

// Dev mode with ORCHESTRATOR_AGENT_PROTOCOL=investigate: a Slack mention
// becomes dev mode's streamed investigation, and a newcomer follows the
// whole conversation on the fake Slack's channel page — the progress
// message, the agent's question with its options, the approval. Clicking
// there (the fake sends Slack's signed block_actions to the interactions
// door) answers the question — in words, in the modal its "Answer…"
// button opens (views.open; the modal's view_submission) — and, as the
// seeded team's approver, approves
// the restart (a bystander's click is refused with a message only they
// see); the fake agent goes on with what it was told, and its answer,
// saying so, replaces the progress message. The steps run without pause
// (devAgentPace 0): the test waits for what the page shows, never a time.
func TestDevMode_TheWholeConversationOnTheFakeSlack(t *testing.T) {
	pace := devAgentPace
	devAgentPace = 0
	defer func() { devAgentPace = pace }()
	base, stdout, _ := serveDev(t, t.TempDir(), map[string]string{"ORCHESTRATOR_AGENT_PROTOCOL": "investigate"})
	m := regexp.MustCompile(`dev mode: fake Slack channel (\S+)`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no fake Slack channel printed:\n%s", stdout)
	}
	slackURL := m[1]
	if code := sendSignedSample(t, base, "slack", devSecret("slack")); code != 200 {
		t.Fatalf("the mention = %d", code)
	}
	// The answer in words: "Answer…" opens the modal (views.open), shown
	// on the page as a form; sending it is the modal's view_submission.
	pageClick(t, slackURL, peerstest.DevApprover, peerstest.DevQuestion, "Answer…")
	var modal []string
	waitUntil(t, time.Minute, "the answer's modal", func() bool {
		modal = regexp.MustCompile(`<form method="post" action="(/views/[^"]+/submit)">`).FindStringSubmatch(channelPage(t, slackURL, peerstest.DevApprover))
		return modal != nil
	})
	u, _ := url.Parse(slackURL)
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).PostForm(
		u.Scheme+"://"+u.Host+modal[1], url.Values{"input_answer": {"prod-us"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("the modal's submission = %d", resp.StatusCode)
	}
	waitUntil(t, time.Minute, "the answered question", func() bool {
		return strings.Contains(channelPage(t, slackURL, peerstest.DevApprover), "Answered by <@"+peerstest.DevApprover+">: “prod-us”")
	})
	// Not an approver: told so, only them.
	pageClick(t, slackURL, peerstest.DevBystander, "rollout restart", "Approve")
	waitUntil(t, time.Minute, "the bystander's refusal", func() bool {
		p := channelPage(t, slackURL, peerstest.DevBystander)
		return strings.Contains(p, "Only visible to you") && strings.Contains(p, "Only the team's approvers (team config approvals.approvers)")
	})
	if strings.Contains(channelPage(t, slackURL, peerstest.DevApprover), "Only visible to you") {
		t.Fatal("the bystander's refusal is shown to the approver")
	}
	pageClick(t, slackURL, peerstest.DevApprover, "rollout restart", "Approve")
	var page string
	waitUntil(t, time.Minute, "the answer", func() bool {
		page = channelPage(t, slackURL, peerstest.DevApprover)
		return strings.Contains(page, "deployment/checkout was restarted (approved by "+peerstest.DevApprover+")")
	})
	for _, want := range []string{"Approved by <@" + peerstest.DevApprover + ">.", "pods of checkout in prod-us", "Helpful",
		"Tools: kubectl_get_pods, kubectl_logs, kubectl_rollout_restart · Question: answered by " + peerstest.DevApprover +
			" · Approval: approved by " + peerstest.DevApprover + " (restart-"} {
		if !strings.Contains(page, want) {
			t.Errorf("the channel page lacks %q:\n%s", want, page)
		}
	}
	for _, gone := range []string{"Investigating…", ">Stop<", ">prod-eu<", ">Approve<", "/submit"} {
		if strings.Contains(page, gone) {
			t.Errorf("the channel page still shows %q:\n%s", gone, page)
		}
	}
}

// sendClick posts a signed block_actions click on button actionID (value)
// by user to the interactions door of the process at base, and returns
// the click's event id.
func sendClick(t *testing.T, base, secret, user, trigger, actionID, value string) string {
	t.Helper()
	payload, _ := json.Marshal(map[string]any{"type": "block_actions", "trigger_id": trigger,
		"user":      map[string]any{"id": user, "username": strings.ToLower(user)},
		"container": map[string]any{"type": "message", "channel_id": "C0A4967KRBM", "message_ts": "1700000000.000100"},
		"channel":   map[string]any{"id": "C0A4967KRBM"},
		"actions":   []any{map[string]any{"type": "button", "action_id": actionID, "value": value, "action_ts": "1700000001.000200"}}})
	body := []byte(url.Values{"payload": {string(payload)}}.Encode())
	req, _ := http.NewRequest("POST", base+"/webhooks/slack/interactions", bytes.NewReader(body))
	req.Header = webhook.Sign(webhook.Slack, secret, body, wallclock.Now(), "")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 || out["event_id"] == nil {
		t.Fatalf("click %s by %s at %s = %d %v", actionID, user, base, resp.StatusCode, out)
	}
	return out["event_id"].(string)
}

// clickOutcome waits for a click's event to end and returns its last
// error ("" when it was carried out).
func clickOutcome(t *testing.T, base, admin, id string) string {
	t.Helper()
	var body map[string]any
	waitUntil(t, time.Minute, "the click "+id+" carried out or refused", func() bool {
		var code int
		code, body = apiCall(t, "GET", base+"/api/v1/admin/events/"+id, admin, nil)
		return code == 200 && slices.Contains([]any{"ignored", "delivered", "failed", "dead", "unrouted"}, body["status"])
	})
	if body["status"] != "ignored" {
		t.Fatalf("click event %s: %v", id, body)
	}
	s, _ := body["last_error"].(string)
	return s
}

var promptIDIn = regexp.MustCompile(`"value":"([0-9a-f-]{36})`)

// promptOn waits for the fake Slack's message whose blocks hold want and
// returns the prompt id its buttons carry.
func promptOn(t *testing.T, slack *peerstest.Slack, want string) string {
	t.Helper()
	var id string
	waitUntil(t, time.Minute, "a message with "+want, func() bool {
		for _, m := range slack.Messages("C0A4967KRBM") {
			if strings.Contains(string(m.Blocks), want) {
				if v := promptIDIn.FindStringSubmatch(string(m.Blocks)); v != nil {
					id = v[1]
					return true
				}
			}
		}
		return false
	})
	return id
}

// Two replicas on one PostgreSQL: replica A alone receives the mention and
// holds the agent's stream; replica B starts once the agent waits for its
// question's answer. The answer clicked at B reaches the agent, once, and
// a later click on the same question at A is refused. The approval is
// clicked twice at the same moment, at A and at B: one decision is
// written (the conditional decision on the shared row), the agent is told
// once, the other click is refused. The stream on A then ends with the
// result the agent built from what it was told.
func TestReplicas_TwoOnPostgresTheStreamOnOneTheClicksOnTheOther(t *testing.T) {
	const secret, admin = "replica-conversation-secret", "replica-conversation-admin"
	f := startPeerFakes(t, admin)
	slack := peerstest.NewDevSlack()
	slackSrv := httptest.NewServer(slack)
	t.Cleanup(slackSrv.Close)
	f.agent.SetScript(func(in peerstest.InvestigateBody) []peerstest.Step {
		told := func(r peerstest.Reply) string { b, _ := json.Marshal(r.Body); return r.Route + " " + string(b) }
		return []peerstest.Step{
			{Type: "thought", Data: map[string]any{"text": "Two clusters run checkout"}},
			{Type: "question", Data: map[string]any{"question": "Which cluster?", "options": []any{"prod-eu", "prod-us"}}},
			{Await: func(answer peerstest.Reply) []peerstest.Step {
				return []peerstest.Step{
					{Type: "approval", Data: map[string]any{"approval_id": "ap-r1", "action": "rollout restart", "expires_in": 600}},
					{Await: func(decision peerstest.Reply) []peerstest.Step {
						return []peerstest.Step{{Type: "result", Data: map[string]any{"text": "told: " + told(answer) + " then " + told(decision)}}}
					}},
				}
			}},
		}
	})
	env := append(f.env, "DATABASE_URL="+pgtest.Database(t), "SLACK_SIGNING_SECRET="+secret, "SLACK_API_URL="+slackSrv.URL,
		"SLACK_BOT_TOKEN="+peerstest.DevSlackToken, "ORCHESTRATOR_AGENT_PROTOCOL=investigate")
	a := startReplicas(t, 1, env)[0]
	defer func() { _ = a.cmd.Process.Signal(syscall.SIGTERM); _ = a.cmd.Wait() }()
	client := &http.Client{Timeout: 10 * time.Second}
	code, out, err := sendSigned(client, a.base, webhook.Slack, secret, "replica-conv", "replica-conv")
	if err != nil || code != 200 {
		t.Fatalf("mention = %d %v %v", code, out, err)
	}
	mention := out["event_id"].(string)
	question := promptOn(t, slack, "prompt_answer_1")
	b := startReplicas(t, 1, env)[0]
	defer func() { _ = b.cmd.Process.Signal(syscall.SIGTERM); _ = b.cmd.Wait() }()

	if why := clickOutcome(t, b.base, admin, sendClick(t, b.base, secret, peerstest.DevApprover, "rq-1", "prompt_answer_1", question+":1")); why != "" {
		t.Fatalf("the answer at B: %q", why)
	}
	why := clickOutcome(t, a.base, admin, sendClick(t, a.base, secret, peerstest.DevBystander, "rq-2", "prompt_answer_0", question+":0"))
	if !strings.Contains(why, "already answered") {
		t.Fatalf("the second answer at A: %q", why)
	}
	approval := promptOn(t, slack, "prompt_approve")
	ids := make([]string, 2)
	var wg sync.WaitGroup
	for i, rep := range []*replica{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i] = sendClick(t, rep.base, secret, peerstest.DevApprover, fmt.Sprintf("ra-%d", i), "prompt_approve", approval)
		}()
	}
	wg.Wait()
	outcomes := []string{clickOutcome(t, a.base, admin, ids[0]), clickOutcome(t, b.base, admin, ids[1])}
	slices.Sort(outcomes)
	if outcomes[0] != "" || !strings.Contains(outcomes[1], "already approved") {
		t.Fatalf("the two approvals: %q", outcomes)
	}
	var ev map[string]any
	waitUntil(t, time.Minute, "the mention delivered", func() bool {
		_, ev = apiCall(t, "GET", a.base+"/api/v1/admin/events/"+mention, admin, nil)
		return ev["status"] == "delivered" || ev["status"] == "failed"
	})
	if ev["status"] != "delivered" {
		t.Fatalf("the mention %v", ev)
	}
	answers, approves := f.agent.CallsTo(peerstest.RouteAnswer), f.agent.CallsTo(peerstest.RouteApprove)
	if len(answers) != 1 || len(approves) != 1 || len(f.agent.CallsTo(peerstest.RouteInvestigate)) != 1 {
		t.Fatalf("the agent got %d answers, %d decisions, %d investigate calls", len(answers), len(approves),
			len(f.agent.CallsTo(peerstest.RouteInvestigate)))
	}
	var result string
	for _, m := range slack.Messages("C0A4967KRBM") {
		if strings.Contains(string(m.Blocks), "told: ") {
			result = html.UnescapeString(strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&", `\"`, `"`).Replace(string(m.Blocks)))
		}
	}
	for _, want := range []string{`/answer {"thread_id":`, `"answers":{"Which cluster?":"prod-us"}`,
		`/approve {"thread_id":`, `"approval_id":"ap-r1","decision":"approve","by":"` + peerstest.DevApprover + `"`} {
		if !strings.Contains(result, want) {
			t.Fatalf("the answer lacks %s: %s", want, result)
		}
	}
}

package server_test

import (
	"context"
	"encoding/json"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// approvingTeam makes the dev team's agent stream, with the Slack users
// who may approve (team config approvals.approvers).
func approvingTeam(e *env, approvers ...any) {
	e.cs.AddTeam(peerstest.DevOrg, peerstest.DevTeam, map[string]any{"routing": peerstest.DevRouting,
		"agent": map[string]any{"protocol": "investigate"}, "approvals": map[string]any{"approvers": approvers}})
}

var promptValue = regexp.MustCompile(`"value":"([0-9a-f-]{36})`)

// promptMessage waits for the thread's message whose blocks hold want and
// returns it with the prompt id its buttons carry.
func promptMessage(t *testing.T, e *env, ts, want string) (peerstest.SlackMessage, string) {
	t.Helper()
	var msg peerstest.SlackMessage
	waitFor(t, "a message with "+want, func() bool {
		for _, m := range threadMessages(e, ts) {
			if strings.Contains(string(m.Blocks), want) {
				msg = m
				return true
			}
		}
		return false
	})
	id := promptValue.FindStringSubmatch(string(msg.Blocks))
	if id == nil {
		t.Fatalf("no prompt id in %s", msg.Blocks)
	}
	return msg, id[1]
}

// message is the thread's message of ts as it stands (its blocks' JSON
// with <, > and & as they read).
func message(e *env, ts, msgTS string) peerstest.SlackMessage {
	for _, m := range threadMessages(e, ts) {
		if m.TS == msgTS {
			m.Blocks = []byte(strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(string(m.Blocks)))
			return m
		}
	}
	return peerstest.SlackMessage{}
}

// click sends a signed click on a conversation's button and waits for its
// event to end; it returns the event.
func click(t *testing.T, e *env, user, trigger, actionID, value string) store.Event {
	t.Helper()
	body := clickBy(t, user, trigger, actionID, value, "C0A4967KRBM")
	r := e.sendTo("/webhooks/slack/interactions", body, slackSigned(t, slackSecret, body))
	if r.code != 200 || r.body["ok"] != true {
		t.Fatalf("click = %d %s", r.code, r.raw)
	}
	ev := e.waitStatus(r.body["event_id"].(string), store.EventIgnored, store.EventUnrouted, store.EventDelivered, store.EventFailed)
	if ev.EventType != webhook.ClickEventType || ev.Status != store.EventIgnored {
		t.Fatalf("click event %s %s %q", ev.EventType, ev.Status, ev.LastError)
	}
	return ev
}

// converse is the agent's calls on a route, decoded.
func converse(t *testing.T, e *env, route string) []peerstest.ConverseBody {
	t.Helper()
	var out []peerstest.ConverseBody
	for _, c := range e.agent.CallsTo(route) {
		var b peerstest.ConverseBody
		if err := json.Unmarshal(c.Body, &b); err != nil || c.Header.Get("X-IncidentFox-Team-Token") == "" {
			t.Fatalf("%s call %s %v", route, c.Body, err)
		}
		out = append(out, b)
	}
	return out
}

// TestConversation_APersonAnswersTheAgentsQuestion: a question event is
// posted in the thread with one button per option; a click from a person in
// that channel goes through the interactions door to the agent's POST
// /answer {thread_id, answers} with the team token, and the message says who
// answered what, without buttons; a second click is refused (the clicker is
// told, the agent is not called again); question_timeout expires a question
// nobody answered; the Stop button sends POST /interrupt.
func TestConversation_APersonAnswersTheAgentsQuestion(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, answers: true, publicURL: "https://orchestrator.example"})
	streamingTeam(e)
	answered, stopped := make(chan struct{}), make(chan struct{})
	e.agent.SetScript(func(in peerstest.InvestigateBody) []peerstest.Step {
		return []peerstest.Step{
			{Type: "thought", Data: map[string]any{"text": "Two clusters run checkout"}},
			{Type: "question", Data: map[string]any{"questions": []any{map[string]any{"question": "Which cluster?",
				"options": []any{"prod-eu", map[string]any{"label": "prod-us"}}}}}},
			{Until: answered},
			{Type: "question", Data: map[string]any{"question": "Restart it?", "options": []any{"yes", "no"}}},
			{Type: "question_timeout", Data: map[string]any{}},
			{Until: stopped},
			{Type: "result", Data: map[string]any{"text": "prod-us it was."}},
		}
	})
	id, ts := sendMention(t, e, "ask1")
	msg, promptID := promptMessage(t, e, ts, "Which cluster?")
	runID := ""
	if calls := e.agent.CallsTo(peerstest.RouteInvestigate); len(calls) == 1 {
		var b peerstest.InvestigateBody
		_ = json.Unmarshal(calls[0].Body, &b)
		runID = b.ThreadID
	}
	for _, want := range []string{`"action_id":"prompt_answer_0"`, `"value":"` + promptID + `:1"`, `"text":"prod-us"`} {
		if !strings.Contains(string(msg.Blocks), want) {
			t.Fatalf("the question lacks %s: %s", want, msg.Blocks)
		}
	}
	if ev := click(t, e, "U0ANA", "q-1", "prompt_answer_1", promptID+":1"); ev.LastError != "" || ev.OrgID != peerstest.DevOrg {
		t.Fatalf("the answer's event: %s %q", ev.OrgID, ev.LastError)
	}
	got := converse(t, e, peerstest.RouteAnswer)
	if len(got) != 1 || got[0].ThreadID != runID || got[0].Answers["Which cluster?"] != "prod-us" {
		t.Fatalf("answer calls %+v (run %s)", got, runID)
	}
	after := message(e, ts, msg.TS)
	if !strings.Contains(string(after.Blocks), "Answered *prod-us* by <@U0ANA>") || strings.Contains(string(after.Blocks), "prompt_answer") {
		t.Fatalf("the answered question: %s", after.Blocks)
	}
	// A second click, by someone else: refused, told, nothing sent.
	ev := click(t, e, "U0BOB", "q-2", "prompt_answer_0", promptID+":0")
	if !strings.Contains(ev.LastError, "already answered (a decision is final)") || len(converse(t, e, peerstest.RouteAnswer)) != 1 {
		t.Fatalf("second click: %q, %d answer calls", ev.LastError, len(converse(t, e, peerstest.RouteAnswer)))
	}
	if eph := e.slack.Ephemerals(); len(eph) != 1 || eph[0].User != "U0BOB" || !strings.Contains(eph[0].Text, "Already decided: answered by <@U0ANA>") {
		t.Fatalf("ephemerals %+v", eph)
	}
	close(answered)
	// The second question times out.
	restart, _ := promptMessage(t, e, ts, "Restart it?")
	waitFor(t, "the question to expire", func() bool {
		return strings.Contains(string(message(e, ts, restart.TS).Blocks), "No answer in time")
	})
	// Stop.
	progress, _ := promptMessage(t, e, ts, `"action_id":"run_stop"`)
	if !strings.Contains(string(progress.Blocks), `"value":"`+runID+`"`) {
		t.Fatalf("the Stop button names no run: %s", progress.Blocks)
	}
	if ev := click(t, e, "U0BOB", "s-1", "run_stop", runID); ev.LastError != "" {
		t.Fatalf("stop: %q", ev.LastError)
	}
	if got := converse(t, e, peerstest.RouteInterrupt); len(got) != 1 || got[0].ThreadID != runID {
		t.Fatalf("interrupt calls %+v", got)
	}
	close(stopped)
	e.waitStatus(id, store.EventDelivered)
	prompts, err := e.db.RunPrompts(context.Background(), runID)
	if err != nil || len(prompts) != 3 || prompts[0].State != store.PromptStopped || prompts[1].State != store.PromptAnswered ||
		prompts[1].DecidedBy != "U0ANA" || prompts[2].State != store.PromptExpired {
		t.Fatalf("the run's prompts %+v %v", prompts, err)
	}
}

// TestConversation_ApprovalsOnlyByApproversOnceExpiringToDeny: an approval
// posts Approve / Reject; a click by someone not in approvals.approvers is
// refused with an ephemeral message and nothing sent; an approver's click
// sends POST /approve {thread_id, approval_id, decision, by}; a second
// click is refused; a rejection sends deny; one nobody decides before its
// deadline (the injected clock, no sleeps) is denied by the expiry loop,
// once; each decision and the expiry are in the org's admin audit.
func TestConversation_ApprovalsOnlyByApproversOnceExpiringToDeny(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, answers: true, fakeClock: true})
	approvingTeam(e, "U0ANA", "<@U0CAROL>")
	release := make(chan struct{})
	e.agent.SetScript(func(in peerstest.InvestigateBody) []peerstest.Step {
		return []peerstest.Step{
			{Type: "approval", Data: map[string]any{"approval_id": "ap-1", "action": "rollout restart", "target": "deploy/checkout",
				"reason": "the pods run out of memory", "expires_in": 600}},
			{Type: "approval", Data: map[string]any{"approval_id": "ap-2", "action": "scale", "target": "deploy/checkout", "expires_in": 600}},
			{Type: "approval", Data: map[string]any{"approval_id": "ap-3", "action": "delete pod", "target": "pod/checkout-1", "expires_in": 60}},
			{Until: release},
			{Type: "result", Data: map[string]any{"text": "Restarted."}},
		}
	})
	id, ts := sendMention(t, e, "approve1")
	m1, ap1 := promptMessage(t, e, ts, "rollout restart")
	m2, ap2 := promptMessage(t, e, ts, "*The agent asks for approval:* scale")
	m3, _ := promptMessage(t, e, ts, "delete pod")
	for _, want := range []string{`"action_id":"prompt_approve"`, `"action_id":"prompt_reject"`, "the pods run out of memory", "deploy/checkout"} {
		if !strings.Contains(string(m1.Blocks), want) {
			t.Fatalf("the approval lacks %s: %s", want, m1.Blocks)
		}
	}
	// Not an approver.
	ev := click(t, e, "U0EVE", "a-1", "prompt_approve", ap1)
	if !strings.Contains(ev.LastError, "U0EVE is not one of the team's approvers") || len(converse(t, e, peerstest.RouteApprove)) != 0 {
		t.Fatalf("a stranger's approval: %q", ev.LastError)
	}
	if eph := e.slack.Ephemerals(); len(eph) != 1 || eph[0].User != "U0EVE" || !strings.Contains(eph[0].Text, "Only the team's approvers") {
		t.Fatalf("ephemerals %+v", eph)
	}
	if p, _ := e.db.GetPrompt(context.Background(), ap1); p.State != store.PromptOpen {
		t.Fatalf("a stranger's click decided: %+v", p)
	}
	// An approver approves; a second click (another approver's reject) is refused.
	if ev := click(t, e, "U0ANA", "a-2", "prompt_approve", ap1); ev.LastError != "" {
		t.Fatalf("approval: %q", ev.LastError)
	}
	if ev := click(t, e, "U0CAROL", "a-3", "prompt_reject", ap1); !strings.Contains(ev.LastError, "already approved") {
		t.Fatalf("second click: %q", ev.LastError)
	}
	// The other approver rejects the second.
	if ev := click(t, e, "U0CAROL", "a-4", "prompt_reject", ap2); ev.LastError != "" {
		t.Fatalf("rejection: %q", ev.LastError)
	}
	// The third's deadline passes.
	e.clock.Add(61 * time.Second)
	waitFor(t, "the expired approval's deny", func() bool { return len(e.agent.CallsTo(peerstest.RouteApprove)) == 3 })
	got := converse(t, e, peerstest.RouteApprove)
	runID := got[0].ThreadID
	want := []peerstest.ConverseBody{{ThreadID: runID, ApprovalID: "ap-1", Decision: "approve", By: "U0ANA"},
		{ThreadID: runID, ApprovalID: "ap-2", Decision: "deny", By: "U0CAROL"},
		{ThreadID: runID, ApprovalID: "ap-3", Decision: "deny", By: "expiry"}}
	for i := range want {
		if got[i].ThreadID != want[i].ThreadID || got[i].ApprovalID != want[i].ApprovalID || got[i].Decision != want[i].Decision || got[i].By != want[i].By {
			t.Fatalf("approve call %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	waitFor(t, "the expired approval's message", func() bool {
		return strings.Contains(string(message(e, ts, m3.TS).Blocks), "No decision in time: denied.")
	})
	for m, w := range map[string]string{m1.TS: "Approved by <@U0ANA>.", m2.TS: "Rejected by <@U0CAROL>."} {
		if b := string(message(e, ts, m).Blocks); !strings.Contains(b, w) || strings.Contains(b, "prompt_approve") {
			t.Fatalf("decided approval %s", b)
		}
	}
	audit, err := e.db.ListAudit(context.Background(), peerstest.DevOrg, 20)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, a := range audit {
		if strings.HasPrefix(a.Action, "approval.") {
			actions = append(actions, a.Action+" "+a.Actor+" "+a.Detail["ref"].(string))
		}
	}
	// The decisions came at one instant of the fake clock: their order is the ids'.
	sort.Strings(actions)
	if strings.Join(actions, "; ") != "approval.approved slack:U0ANA (u0ana) ap-1; approval.denied slack:U0CAROL (u0carol) ap-2; approval.expired expiry ap-3" {
		t.Fatalf("audit %v", actions)
	}
	// Later passes of the loop deny nothing again.
	e.clock.Add(time.Hour)
	close(release)
	e.waitStatus(id, store.EventDelivered)
	if n := len(e.agent.CallsTo(peerstest.RouteApprove)); n != 3 {
		t.Fatalf("%d approve calls", n)
	}
}

// TestConversation_AClickAfterARestartIsHonoured: the approval is a row,
// so a click that reaches a new server on the same database (the old one
// stopped mid-stream) is carried out there.
func TestConversation_AClickAfterARestartIsHonoured(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, envOptions{webhooks: true, answers: true, dataDir: dir})
	approvingTeam(e, "U0ANA")
	e.agent.SetScript(func(in peerstest.InvestigateBody) []peerstest.Step {
		return []peerstest.Step{
			{Type: "approval", Data: map[string]any{"approval_id": "ap-9", "action": "rollback", "expires_in": 600}},
			{Until: make(chan struct{})},
		}
	})
	_, ts := sendMention(t, e, "restart1")
	_, ap := promptMessage(t, e, ts, "rollback")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e.disp.Stop(ctx) // the stream is cut: the approval stays open
	if p, err := e.db.GetPrompt(context.Background(), ap); err != nil || p.State != store.PromptOpen {
		t.Fatalf("after the stop: %+v %v", p, err)
	}
	e.db.Close()

	e2 := newEnv(t, envOptions{webhooks: true, answers: true, dataDir: dir})
	approvingTeam(e2, "U0ANA")
	if ev := click(t, e2, "U0ANA", "r-1", "prompt_approve", ap); ev.LastError != "" {
		t.Fatalf("click after the restart: %q", ev.LastError)
	}
	if got := converse(t, e2, peerstest.RouteApprove); len(got) != 1 || got[0].ApprovalID != "ap-9" || got[0].Decision != "approve" {
		t.Fatalf("approve calls %+v", got)
	}
}

// TestConversation_TheRunPageListsItsQuestionsAndApprovals: the agent run
// page lists the run's questions and approvals with their state, who
// decided and when; another org's admin does not find the page.
func TestConversation_TheRunPageListsItsQuestionsAndApprovals(t *testing.T) {
	e, base := uiEnv(t, envOptions{answers: true})
	e.cs.AddAdmin("globex-admin", peers.Identity{Role: "admin", Permissions: []string{"admin:*"}, OrgID: "globex"})
	approvingTeam(e, "U0ANA")
	release := make(chan struct{})
	e.agent.SetScript(func(in peerstest.InvestigateBody) []peerstest.Step {
		return []peerstest.Step{
			{Type: "approval", Data: map[string]any{"approval_id": "ap-7", "action": "rollout restart", "target": "deploy/checkout", "expires_in": 600}},
			{Type: "question", Data: map[string]any{"question": "Which cluster?", "options": []any{"prod-eu"}}},
			{Until: release},
			{Type: "result", Data: map[string]any{"text": "Done."}},
		}
	})
	id, ts := sendMention(t, e, "page-conv")
	_, ap := promptMessage(t, e, ts, "rollout restart")
	promptMessage(t, e, ts, "Which cluster?")
	if ev := click(t, e, "U0ANA", "p-1", "prompt_approve", ap); ev.LastError != "" {
		t.Fatalf("approval: %q", ev.LastError)
	}
	close(release)
	ds := waitDelivery(t, e, id, store.AnswerPosted)
	runID := ds[0]["agent_run_id"].(string)
	c := login(t, base, orgToken)
	code, page := getPage(t, c, base+"/ui/agent-runs/"+runID)
	for _, want := range []string{`id="agentrun-prompts"`, "rollout restart deploy/checkout (ap-7)", `<span class="status delivered">approved</span>`,
		"u0ana (U0ANA)", "Which cluster?", `<span class="status dead">expired</span>`, "no one",
		`<td id="agentrun-summary">Tools: none · Question: expired · Approval: approved by U0ANA (ap-7) · Took `} {
		if code != 200 || !strings.Contains(page, want) {
			t.Fatalf("the run page lacks %s: %d %s", want, code, page)
		}
	}
	other := login(t, base, "globex-admin")
	if code, page := getPage(t, other, base+"/ui/agent-runs/"+runID); code != 404 || strings.Contains(page, "rollout restart") {
		t.Fatalf("another org's admin: %d", code)
	}
	// In Chromium: the list passes the accessibility audit.
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/login"), chromedp.SendKeys(chromedp.ID("token"), orgToken),
		chromedp.Click(chromedp.ID("login")), chromedp.WaitVisible(chromedp.ID("health-db")),
		chromedp.Navigate(base+"/ui/agent-runs/"+runID), chromedp.WaitVisible(chromedp.ID("agentrun-prompts"))); err != nil {
		t.Fatal(err)
	}
	audit(t, ctx, axeSource(t), "/ui/agent-runs/"+runID)
	screenshot(t, ctx, "", "agentrun-prompts.png")
}

// TestConversation_AQuestionAnsweredInWords: a question that allows free
// text (allow_free_text) gets an "Answer…" button besides its options; a
// click opens Slack's modal with views.open and the click's trigger (the
// strict fake takes a trigger it issued, once, and a view within Slack's
// limits); the modal's view_submission through the interactions door,
// signed as every Slack request, is answered with an empty 200 (what
// closes a modal) and sends the text to the agent's POST /answer; the
// message says who answered what. A second "Answer…" click is refused and
// opens nothing; a submission for a question already answered is refused
// and sends nothing; a submission signed with another secret is refused
// at the door.
func TestConversation_AQuestionAnsweredInWords(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, answers: true})
	streamingTeam(e)
	release := make(chan struct{})
	e.agent.SetScript(func(in peerstest.InvestigateBody) []peerstest.Step {
		return []peerstest.Step{
			{Type: "question", Data: map[string]any{"question": "Which namespace?", "options": []any{"checkout"}, "allow_free_text": true}},
			{Until: release},
			{Type: "result", Data: map[string]any{"text": "Looked there."}},
		}
	})
	id, ts := sendMention(t, e, "words1")
	msg, promptID := promptMessage(t, e, ts, "Which namespace?")
	for _, want := range []string{`"action_id":"prompt_answer_0"`, `"action_id":"prompt_text"`, `"text":"Answer…"`} {
		if !strings.Contains(string(msg.Blocks), want) {
			t.Fatalf("the question lacks %s: %s", want, msg.Blocks)
		}
	}
	if ev := click(t, e, "U0ANA", e.slack.Trigger("U0ANA"), "prompt_text", promptID); ev.LastError != "" {
		t.Fatalf("the Answer… click: %q", ev.LastError)
	}
	views := e.slack.Views()
	if len(views) != 1 || views[0].User != "U0ANA" || views[0].CallbackID != "prompt_text" || !strings.Contains(string(views[0].View), "Which namespace?") {
		t.Fatalf("views %+v", views)
	}
	if len(converse(t, e, peerstest.RouteAnswer)) != 0 {
		t.Fatal("opening the modal answered the question")
	}
	body, err := e.slack.ViewSubmission(views[0].ID, map[string]string{"answer": "  checkout-canary,\nsince 09:00 "})
	if err != nil {
		t.Fatal(err)
	}
	if r := e.sendTo("/webhooks/slack/interactions", body, slackSigned(t, "not-the-secret", body)); r.code != 401 {
		t.Fatalf("a submission signed with another secret = %d", r.code)
	}
	r := e.sendTo("/webhooks/slack/interactions", body, slackSigned(t, slackSecret, body))
	if err := peerstest.ViewSubmissionAck(r.code, []byte(r.raw)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the answer in words sent", func() bool { return len(e.agent.CallsTo(peerstest.RouteAnswer)) == 1 })
	got := converse(t, e, peerstest.RouteAnswer)
	if got[0].Answers["Which namespace?"] != "checkout-canary,\nsince 09:00" {
		t.Fatalf("answer calls %+v", got)
	}
	waitFor(t, "the answered question's message", func() bool {
		b := string(message(e, ts, msg.TS).Blocks)
		return strings.Contains(b, "Answered by <@U0ANA>: “checkout-canary, since 09:00”") && !strings.Contains(b, "prompt_text")
	})
	// Too late: another Answer… click opens nothing; another submission sends nothing.
	ev := click(t, e, "U0BOB", e.slack.Trigger("U0BOB"), "prompt_text", promptID)
	if !strings.Contains(ev.LastError, "already answered") || len(e.slack.Views()) != 1 {
		t.Fatalf("a second Answer… click: %q, %d views", ev.LastError, len(e.slack.Views()))
	}
	again, err := e.slack.ViewSubmission(views[0].ID, map[string]string{"answer": "default"})
	if err != nil {
		t.Fatal(err)
	}
	if r := e.sendTo("/webhooks/slack/interactions", again, slackSigned(t, slackSecret, again)); peerstest.ViewSubmissionAck(r.code, []byte(r.raw)) != nil {
		t.Fatalf("the second submission = %d %s", r.code, r.raw)
	}
	waitFor(t, "the refusal told", func() bool {
		for _, m := range e.slack.Ephemerals() {
			if m.User == "U0ANA" && strings.Contains(m.Text, "Already decided: answered by <@U0ANA>") {
				return true
			}
		}
		return false
	})
	if n := len(e.agent.CallsTo(peerstest.RouteAnswer)); n != 1 {
		t.Fatalf("%d answer calls", n)
	}
	close(release)
	e.waitStatus(id, store.EventDelivered)
}

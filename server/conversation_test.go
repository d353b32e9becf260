package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/store"
)

// streamingTeam makes the dev team's agent speak the streaming contract
// (team config agent.protocol: investigate).
func streamingTeam(e *env) {
	e.cs.AddTeam(peerstest.DevOrg, peerstest.DevTeam, map[string]any{"routing": peerstest.DevRouting,
		"agent": map[string]any{"protocol": "investigate"}})
}

// TestConversation_AStreamedInvestigationIsAnsweredInTheThread: a team
// whose config says agent.protocol: investigate is called on POST
// /investigate (never the run call) with the prompt, the run's id as
// thread id, its org and team, the context and the destinations; the
// result event's text is the answer, posted in the mention's thread
// through the outbox with the feedback buttons.
func TestConversation_AStreamedInvestigationIsAnsweredInTheThread(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, answers: true, publicURL: "https://orchestrator.example"})
	streamingTeam(e)
	id, ts := sendMention(t, e, "stream1")
	ds := waitDelivery(t, e, id, store.AnswerPosted)
	if n := len(e.agent.CallsTo(peerstest.RouteAgentRun)); n != 0 {
		t.Fatalf("%d run calls for a streaming team", n)
	}
	calls := e.agent.CallsTo(peerstest.RouteInvestigate)
	if len(calls) != 1 {
		t.Fatalf("%d investigate calls", len(calls))
	}
	var body peerstest.InvestigateBody
	if err := json.Unmarshal(calls[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	runID := ds[0]["agent_run_id"].(string)
	dests, _ := body.OutputDestinations.([]any)
	if body.ThreadID != runID || body.TenantID != peerstest.DevOrg || body.TeamID != peerstest.DevTeam ||
		!strings.Contains(body.Prompt, "why is checkout latency up?") || body.Context["feedback_ref"] == nil || len(dests) != 1 ||
		calls[0].Header.Get("Accept") != "text/event-stream" || calls[0].Header.Get("X-Correlation-Id") != id {
		t.Fatalf("investigate call %v %s", calls[0].Header, calls[0].Body)
	}
	msgs := e.slack.Messages("C0A4967KRBM")
	if len(msgs) != 1 || msgs[0].ThreadTS != ts {
		t.Fatalf("messages %+v", msgs)
	}
	for _, want := range []string{"Investigated: " + body.Prompt, `"action_id":"feedback_positive"`, "/ui/agent-runs/" + runID,
		`"block_id":"orchestrator_summary"`, `"text":"Tools: kubectl_get_pods · Took `} {
		if !strings.Contains(string(msgs[0].Blocks), want) {
			t.Errorf("the answer lacks %q: %s", want, msgs[0].Blocks)
		}
	}
	run, err := e.db.GetAgentRun(context.Background(), runID)
	if err != nil || run.Run.Status != "succeeded" || !strings.HasPrefix(run.Run.Summary, "Tools: kubectl_get_pods · Took ") {
		t.Fatalf("run %+v %v", run.Run, err)
	}
}

// ORCHESTRATOR_AGENT_PROTOCOL=investigate makes every team stream unless
// its config says run.
func TestConversation_TheDefaultProtocolAndATeamsOwn(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, agentProtocol: "investigate"})
	// Tokens of 30 s are never cached (a minute must be left): each call
	// reads the team's config afresh.
	e.cs.ImpersonationTTL = 30 * time.Second
	id, _ := sendMention(t, e, "default1")
	e.waitStatus(id, store.EventDelivered)
	e.cs.AddTeam(peerstest.DevOrg, peerstest.DevTeam, map[string]any{"routing": peerstest.DevRouting,
		"agent": map[string]any{"protocol": "run"}})
	id, _ = sendMention(t, e, "default2")
	e.waitStatus(id, store.EventDelivered)
	if s, r := len(e.agent.CallsTo(peerstest.RouteInvestigate)), len(e.agent.CallsTo(peerstest.RouteAgentRun)); s != 1 || r != 1 {
		t.Fatalf("%d investigate and %d run calls, want 1 and 1", s, r)
	}
}

// A stream that fails before any event is retried like a failed run call;
// one that fails after its first event is not retried: the event ends
// failed and the thread gets a clear failure message with the run's link.
func TestConversation_FailingBeforeTheFirstEventRetriesAfterItReports(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, answers: true, publicURL: "https://orchestrator.example"})
	streamingTeam(e)
	e.agent.Fail(peerstest.RouteInvestigate, peerstest.Fault{Close: true, Times: 1})
	id, _ := sendMention(t, e, "retry1")
	ev := e.waitStatus(id, store.EventDelivered)
	if ev.Attempts != 2 || len(e.agent.CallsTo(peerstest.RouteInvestigate)) != 2 {
		t.Fatalf("event %+v after %d calls, want delivered on the 2nd", ev, len(e.agent.CallsTo(peerstest.RouteInvestigate)))
	}

	e.agent.SetScript(func(peerstest.InvestigateBody) []peerstest.Step {
		return []peerstest.Step{{Type: "thought", Data: map[string]any{"text": "looking"}}, {Cut: true}}
	})
	id, ts := sendMention(t, e, "cut1")
	ev = e.waitStatus(id, store.EventFailed, store.EventDead)
	if ev.Status != store.EventFailed || ev.Attempts != 1 || !strings.Contains(ev.LastError, "the agent's stream broke after 1 events") {
		t.Fatalf("event %s attempts %d: %q", ev.Status, ev.Attempts, ev.LastError)
	}
	if n := len(e.agent.CallsTo(peerstest.RouteInvestigate)); n != 3 {
		t.Fatalf("%d investigate calls, want 3 (the cut stream not retried)", n)
	}
	ds := waitDelivery(t, e, id, store.AnswerPosted)
	var msg *peerstest.SlackMessage
	for _, m := range e.slack.Messages("C0A4967KRBM") {
		if m.ThreadTS == ts {
			msg = &m
		}
	}
	runID := ds[0]["agent_run_id"].(string)
	if msg == nil || !strings.Contains(string(msg.Blocks), "The investigation did not finish: the agent's stream broke after 1 events.") ||
		!strings.Contains(string(msg.Blocks), "/ui/agent-runs/"+runID) || strings.Contains(string(msg.Blocks), "feedback_positive") {
		t.Fatalf("the thread got %+v", msg)
	}
}

// threadMessages are the channel's messages in the mention's thread.
func threadMessages(e *env, ts string) []peerstest.SlackMessage {
	var out []peerstest.SlackMessage
	for _, m := range e.slack.Messages("C0A4967KRBM") {
		if m.ThreadTS == ts {
			out = append(out, m)
		}
	}
	return out
}

// TestConversation_ProgressInTheThreadIsReplacedByTheAnswer: while the
// agent streams, the thread holds one message showing the current thought
// and tools, updated once 2 s passed by the clock; the result replaces that
// message (chat.update, the run marker, the feedback buttons, the run's
// link), so the thread ends with one message: the answer.
func TestConversation_ProgressInTheThreadIsReplacedByTheAnswer(t *testing.T) {
	tick := make(chan time.Time)
	e := newEnv(t, envOptions{webhooks: true, answers: true, publicURL: "https://orchestrator.example", fakeClock: true,
		progressTick: func() (<-chan time.Time, func()) { return tick, func() {} }})
	streamingTeam(e)
	release := make(chan struct{})
	e.agent.SetScript(func(in peerstest.InvestigateBody) []peerstest.Step {
		return []peerstest.Step{
			{Type: "thought", Data: map[string]any{"text": "Reading the deploys"}},
			{Type: "tool_start", Data: map[string]any{"tool": "kubectl_get_pods", "id": "t1"}},
			{Until: release},
			{Type: "tool_end", Data: map[string]any{"tool": "kubectl_get_pods", "id": "t1"}},
			{Type: "result", Data: map[string]any{"text": "Checkout is slow: a bad deploy."}},
		}
	})
	id, ts := sendMention(t, e, "progress1")
	waitFor(t, "the progress message", func() bool { return len(threadMessages(e, ts)) == 1 })
	// The clock moves 3 s at a time, each step once the step before has
	// been shown: the update that follows the thought may come before the
	// stream's tool_start was read (a loaded machine), and the tool then
	// shows at the next step — never sooner than 2 s by the clock.
	steps := 0
	waitFor(t, "the progress update", func() bool {
		m := threadMessages(e, ts)[0]
		if strings.Contains(string(m.Blocks), "Running: kubectl_get_pods") {
			return true
		}
		if m.Updates == steps {
			e.clock.Add(3 * time.Second)
			steps++
		}
		select {
		case tick <- time.Time{}:
		default:
		}
		return false
	})
	progress := threadMessages(e, ts)[0]
	if progress.Updates != steps || !strings.Contains(string(progress.Blocks), "Reading the deploys") ||
		!strings.Contains(string(progress.Blocks), fmt.Sprintf("(%ds)", 3*steps)) {
		t.Fatalf("progress message after %d steps of 3 s, %d updates: %s", steps, progress.Updates, progress.Blocks)
	}
	close(release)
	ds := waitDelivery(t, e, id, store.AnswerPosted)
	msgs := threadMessages(e, ts)
	if len(msgs) != 1 || msgs[0].TS != progress.TS || ds[0]["message_id"] != progress.TS {
		t.Fatalf("the thread holds %d messages (%+v), delivery %v; want the progress message become the answer", len(msgs), msgs, ds[0])
	}
	runID := ds[0]["agent_run_id"].(string)
	for _, want := range []string{"Checkout is slow: a bad deploy.", `"action_id":"feedback_positive"`, "/ui/agent-runs/" + runID} {
		if !strings.Contains(string(msgs[0].Blocks), want) {
			t.Errorf("the answer lacks %q: %s", want, msgs[0].Blocks)
		}
	}
	if !strings.Contains(string(msgs[0].Metadata), runID) || strings.Contains(string(msgs[0].Blocks), "Investigating") {
		t.Fatalf("the answer's metadata %s, blocks %s", msgs[0].Metadata, msgs[0].Blocks)
	}
	if dest := ds[0]["destination"].(map[string]any); dest["progress_ts"] != progress.TS {
		t.Fatalf("destination = %v", dest)
	}
	// The agent was not told about the progress message.
	if strings.Contains(string(e.agent.CallsTo(peerstest.RouteInvestigate)[0].Body), "progress_ts") {
		t.Fatal("the agent was sent progress_ts")
	}
}

// The agent's error event, or a stream that ends without a result, turns
// the progress message into a clear failure message with the run's link.
func TestConversation_AnErrorOrAnEarlyEndReplacesTheProgressWithAFailure(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, answers: true, publicURL: "https://orchestrator.example"})
	streamingTeam(e)
	for i, tc := range []struct {
		name  string
		steps []peerstest.Step
		want  string
	}{
		{"error", []peerstest.Step{{Type: "thought", Data: map[string]any{"text": "x"}}, {Type: "error", Data: map[string]any{"message": "kubectl: forbidden"}}},
			"The investigation did not finish: the agent reported an error: kubectl: forbidden."},
		{"early end", []peerstest.Step{{Type: "thought", Data: map[string]any{"text": "x"}}},
			"The investigation did not finish: the agent's stream ended after 1 events without a result."},
	} {
		steps := tc.steps
		e.agent.SetScript(func(peerstest.InvestigateBody) []peerstest.Step { return steps })
		id, _ := sendMention(t, e, "fail-"+strings.ReplaceAll(tc.name, " ", "-"))
		ds := waitDelivery(t, e, id, store.AnswerPosted)
		// One message per run: its progress, become the failure.
		msgs := e.slack.Messages("C0A4967KRBM")
		if len(msgs) != i+1 || ds[0]["message_id"] != msgs[i].TS || !msgs[i].Edited {
			t.Fatalf("%s: the channel holds %d messages, the delivery %v", tc.name, len(msgs), ds[0])
		}
		msgs = msgs[i:]
		runID := ds[0]["agent_run_id"].(string)
		if b := string(msgs[0].Blocks); !strings.Contains(b, tc.want) || !strings.Contains(b, "/ui/agent-runs/"+runID) || strings.Contains(b, "feedback_positive") {
			t.Fatalf("%s: the message reads %s", tc.name, b)
		}
		if ev := e.waitStatus(id, store.EventFailed); ev.Attempts != 1 {
			t.Fatalf("%s: %d attempts", tc.name, ev.Attempts)
		}
	}
}

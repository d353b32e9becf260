package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/slack-go/slack"
)

// clickBy is a block_actions click of user on a button, as slack-go
// encodes it, form-encoded.
func clickBy(t *testing.T, user, trigger, actionID, value, channel string) []byte {
	t.Helper()
	cb := slack.InteractionCallback{Type: slack.InteractionTypeBlockActions, TriggerID: trigger,
		User:      slack.User{ID: user, Name: strings.ToLower(user)},
		Container: slack.Container{ChannelID: channel, MessageTs: "1700000000.000100"},
		ActionCallback: slack.ActionCallbacks{BlockActions: []*slack.BlockAction{
			{ActionID: actionID, Value: value, ActionTs: "1700000001.000200"}}}}
	cb.Channel.ID = channel
	payload, err := json.Marshal(cb)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(url.Values{"payload": {string(payload)}}.Encode())
}

// TestSlackFeedback_BoundToTheRunsTeamAndNeverSentToTheAgent (SPEC §6, §18
// round 4): the agent is sent an unguessable feedback reference with each
// run; a click on an answer's button carrying it, from a channel of the
// run's own team, is recorded on the run, once however often Slack sends
// it, and the agent is not called. One person's clicks on one run are one
// row, the last winning, through any app. The run's sequential correlation
// id names nothing; a channel of another org's team cannot give feedback on
// this team's run; a channel no team routes leaves the click unrouted.
// Another interaction goes to the agent as an event of its channel's team.
func TestSlackFeedback_BoundToTheRunsTeamAndNeverSentToTheAgent(t *testing.T) {
	e := twoOrgs(t, envOptions{webhooks: true, sourcesFile: acmeFile,
		sourceEnv: map[string]string{"ACME_DEPLOYS_SECRET": "s", "SREBOT_SIGNING_SECRET": sreBotSecret}})
	body := webhook.Sample(webhook.Slack, "fb", time.Now())
	mention := e.send(webhook.Slack, body, slackSigned(t, slackSecret, body)).body["event_id"].(string)
	e.waitStatus(mention, store.EventDelivered)
	runs, err := e.db.EventAgentRuns(context.Background(), mention)
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs = %v %v", runs, err)
	}
	run := runs[0]
	var sent struct {
		Context struct {
			FeedbackRef string `json:"feedback_ref"`
		} `json:"context"`
	}
	calls := e.agent.CallsTo(peerstest.RouteAgentRun)
	if err := json.Unmarshal(calls[0].Body, &sent); err != nil || sent.Context.FeedbackRef == "" || sent.Context.FeedbackRef != run.FeedbackRef ||
		sent.Context.FeedbackRef == run.CorrelationID || len(run.FeedbackRef) != 26 {
		t.Fatalf("the agent was sent feedback_ref %q, the run keeps %q (%v)", sent.Context.FeedbackRef, run.FeedbackRef, err)
	}
	ref := sent.Context.FeedbackRef

	// sendClick sends a click through an app's route and waits for its end.
	sendClick := func(path, secret string, click []byte, want string) store.Event {
		t.Helper()
		r := e.sendTo(path, click, slackSigned(t, secret, click))
		if r.code != 200 || r.body["ok"] != true {
			t.Fatalf("click = %d %s", r.code, r.raw)
		}
		ev := e.waitStatus(r.body["event_id"].(string), store.EventIgnored, store.EventUnrouted, store.EventDelivered)
		// A recorded click has no last error (want ""): nothing went wrong.
		if ev.EventType != webhook.FeedbackEventType || (want == "" && ev.LastError != "") || !strings.Contains(ev.LastError, want) {
			t.Fatalf("click event = %s %s %q, want %q", ev.EventType, ev.Status, ev.LastError, want)
		}
		return ev
	}
	// recorded: the click's event in the API names the feedback it recorded.
	recorded := func(ev store.Event, value string) {
		t.Helper()
		v := e.do("GET", "/api/v1/admin/events/"+ev.ID, orgToken, nil)
		if v.code != 200 || v.body["last_error"] != nil || fmt.Sprint(v.body["recorded_feedback"]) != fmt.Sprintf("[map[agent_run_id:%s value:%s]]", run.ID, value) {
			t.Fatalf("the click's event in the API: %d %s", v.code, v.raw)
		}
	}
	positive := clickBy(t, "U0ANA", "trig-1", "feedback_positive", ref, "C0A4967KRBM")
	ev := sendClick("/webhooks/slack/interactions", slackSecret, positive, "")
	if ev.Status != store.EventIgnored || ev.OrgID != "acme" || ev.TeamNodeID != "platform-sre" || len(ev.Decision) == 0 {
		t.Fatalf("recorded click = %s on %s/%s, decision %s", ev.Status, ev.OrgID, ev.TeamNodeID, ev.Decision)
	}
	recorded(ev, "positive")
	// The same click again: a duplicate, nothing recorded twice.
	if r := e.sendTo("/webhooks/slack/interactions", positive, slackSigned(t, slackSecret, positive)); r.body["duplicate"] != true {
		t.Fatalf("redelivered click = %s", r.raw)
	}
	// The same person changes their mind through the other app: one row,
	// the last click's.
	recorded(sendClick("/webhooks/slack/sre-bot/interactions", sreBotSecret, clickBy(t, "U0ANA", "trig-2", "feedback_negative", ref, "C0A4967KRBM"), ""),
		"negative")
	// Another person; an older button naming the run by its UUID.
	recorded(sendClick("/webhooks/slack/interactions", slackSecret, clickBy(t, "U0BOB", "trig-3", "feedback_positive", run.ID, "C0A4967KRBM"), ""),
		"positive")
	// The sequential correlation id (the mention's event id) names nothing.
	sendClick("/webhooks/slack/interactions", slackSecret, clickBy(t, "U0EVE", "trig-4", "feedback_negative", run.CorrelationID, "C0A4967KRBM"),
		"is not an agent run's feedback reference")
	// From org big's channel: the run is not its team's.
	theirs := sendClick("/webhooks/slack/interactions", slackSecret, clickBy(t, "U0EVE", "trig-5", "feedback_negative", ref, bigChannel),
		"not of the team this channel routes to")
	if theirs.OrgID != "big" || len(theirs.Decision) == 0 || strings.Contains(theirs.LastError, "platform-sre") {
		t.Fatalf("big's click = %s/%s %q", theirs.OrgID, theirs.TeamNodeID, theirs.LastError)
	}
	// From a channel no team routes: unrouted, nothing recorded.
	lost := sendClick("/webhooks/slack/interactions", slackSecret, clickBy(t, "U0EVE", "trig-6", "feedback_negative", ref, "C0NOBODY01"),
		"no team's routing matches")
	if lost.Status != store.EventUnrouted {
		t.Fatalf("a click from nowhere = %s", lost.Status)
	}
	// Unsigned: refused at the door.
	if r := e.sendTo("/webhooks/slack/interactions", positive, http.Header{"X-Slack-Request-Timestamp": {strconv.FormatInt(time.Now().Unix(), 10)}}); r.code != 401 {
		t.Fatalf("unsigned click = %d", r.code)
	}

	d := e.do("GET", "/api/v1/admin/events/"+mention, orgToken, nil)
	var detail struct {
		AgentRuns []struct {
			Feedback []struct {
				Value    string `json:"value"`
				UserID   string `json:"user_id"`
				SlackApp string `json:"slack_app"`
			} `json:"feedback"`
		} `json:"agent_runs"`
	}
	_ = json.Unmarshal([]byte(d.raw), &detail)
	if d.code != 200 || len(detail.AgentRuns) != 1 || len(detail.AgentRuns[0].Feedback) != 2 {
		t.Fatalf("event detail = %d %s", d.code, d.raw)
	}
	byUser := map[string]string{}
	for _, f := range detail.AgentRuns[0].Feedback {
		byUser[f.UserID] = f.Value + "/" + f.SlackApp
	}
	if byUser["U0ANA"] != "negative/sre-bot" || byUser["U0BOB"] != "positive/" {
		t.Fatalf("feedback = %v", byUser)
	}
	counts, err := e.db.FeedbackSince(context.Background(), "", time.Now().Add(-time.Hour))
	if err != nil || len(counts) != 1 || counts[0].Positive != 1 || counts[0].Negative != 1 || counts[0].TeamNodeID != peerstest.DevTeam {
		t.Fatalf("per team = %+v %v", counts, err)
	}
	if n := len(e.agent.CallsTo(peerstest.RouteAgentRun)); n != 1 {
		t.Fatalf("agent calls = %d: feedback reached the agent", n)
	}

	// Another interaction goes to the agent, for the channel's team.
	other := interaction(t, "trig-7", "rerun_investigation", "x", "C0A4967KRBM")
	r := e.sendTo("/webhooks/slack/interactions", other, slackSigned(t, slackSecret, other))
	ev = e.waitStatus(r.body["event_id"].(string), store.EventDelivered)
	calls = e.agent.CallsTo(peerstest.RouteAgentRun)
	if ev.EventType != "block_actions" || len(calls) != 2 || !strings.Contains(string(calls[1].Body), "Slack block_actions by ana: rerun_investigation=x") {
		t.Fatalf("other interaction = %s %s, %d calls", ev.EventType, ev.Status, len(calls))
	}
}

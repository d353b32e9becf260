package server_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

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

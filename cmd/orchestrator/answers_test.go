package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

// slackFake serves the fake Slack Web API (dev mode's: its bot token and
// the sample channel) for child processes, every post held after it lands
// (at its permalink) until hold is closed.
func slackFake(t *testing.T) (*peerstest.Slack, []string, chan struct{}) {
	t.Helper()
	slack := peerstest.NewDevSlack()
	hold := make(chan struct{})
	slack.Fail(peerstest.RouteSlackPermalink, peerstest.Fault{Until: hold})
	srv := httptest.NewServer(slack)
	t.Cleanup(srv.Close)
	return slack, []string{"SLACK_API_URL=" + srv.URL, "SLACK_BOT_TOKEN=" + peerstest.DevSlackToken}, hold
}

// answerMarkers counts the fake Slack's messages per run marker.
func answerMarkers(slack *peerstest.Slack) map[string]int {
	out := map[string]int{}
	for _, m := range slack.Messages("C0A4967KRBM") {
		var meta struct {
			EventPayload struct {
				RunID string `json:"run_id"`
			} `json:"event_payload"`
		}
		_ = json.Unmarshal(m.Metadata, &meta)
		out[meta.EventPayload.RunID]++
	}
	return out
}

// eventDeliveries reads each listed event's answer deliveries from the
// API of a process at base.
func eventDeliveries(t *testing.T, base, token string, ids []string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, id := range ids {
		code, body := apiCall(t, "GET", base+"/api/v1/admin/events/"+id, token, nil)
		if code != 200 {
			t.Fatalf("event %s = %d %v", id, code, body)
		}
		runs, _ := body["agent_runs"].([]any)
		for _, r := range runs {
			ds, _ := r.(map[string]any)["deliveries"].([]any)
			for _, d := range ds {
				out = append(out, d.(map[string]any))
			}
		}
	}
	return out
}

func allPosted(ds []map[string]any, want int) bool {
	if len(ds) != want {
		return false
	}
	for _, d := range ds {
		if d["status"] != "posted" {
			return false
		}
	}
	return true
}

// The real binary posts answers to Slack and is killed with SIGKILL after
// the posts landed but before it recorded them. After a restart each
// delivery, queued again, looks for its run's marker in the thread, finds
// the post, and records it: every answer is in the thread exactly once.
func TestAnswers_SIGKILLBetweenPostAndRecordPostsOnce(t *testing.T) {
	const secret, admin = "answer-crash-secret", "answer-crash-admin"
	f := startPeerFakes(t, admin)
	slack, slackEnv, hold := slackFake(t)
	env := append(append(f.env, slackEnv...), "SLACK_SIGNING_SECRET="+secret, "ORCHESTRATOR_DATA_DIR="+t.TempDir())
	first, logs, _ := child(t, env, "serve")
	base := "http://" + waitLine(t, logs, "listening")["addr"].(string)
	waitLine(t, logs, "started")
	go drain(logs)

	// As many answers as the outbox has workers (4): a fifth would wait
	// for a worker held on its permalink until that post's 30 s timeout
	// recorded it, link-less, before the kill, and never need a look.
	const n = 4
	client := &http.Client{Timeout: 10 * time.Second}
	var events []string
	for i := range n {
		id := fmt.Sprintf("answer-crash-%d", i)
		code, out, err := sendSigned(client, base, webhook.Slack, secret, id, id)
		if err != nil || code != 200 {
			t.Fatalf("send = %d %v %v", code, out, err)
		}
		events = append(events, out["event_id"].(string))
	}
	waitUntil(t, time.Minute, "every answer posted and held before its record", func() bool {
		return len(slack.CallsTo(peerstest.RouteSlackPostMessage)) == n && len(slack.CallsTo(peerstest.RouteSlackPermalink)) == n
	})
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	close(hold)

	second, logs2, _ := child(t, env, "serve")
	base = "http://" + waitLine(t, logs2, "listening")["addr"].(string)
	waitLine(t, logs2, "started")
	go drain(logs2)
	defer func() { _ = second.Process.Signal(syscall.SIGTERM); _ = second.Wait() }()
	var ds []map[string]any
	waitUntil(t, time.Minute, "every delivery recorded posted", func() bool {
		ds = eventDeliveries(t, base, admin, events)
		return allPosted(ds, n)
	})
	if posts := len(slack.CallsTo(peerstest.RouteSlackPostMessage)); posts != n {
		t.Fatalf("%d posts after the restart, want the %d made before the kill", posts, n)
	}
	if looks := len(slack.CallsTo(peerstest.RouteSlackReplies)); looks != n {
		t.Fatalf("%d looks for an earlier post, want %d", looks, n)
	}
	messages := map[string]bool{}
	for _, m := range slack.Messages("C0A4967KRBM") {
		messages[m.TS] = true
	}
	for _, d := range ds {
		if !messages[d["message_id"].(string)] {
			t.Fatalf("delivery %v names no message of the thread", d)
		}
	}
	for run, k := range answerMarkers(slack) {
		if k != 1 {
			t.Fatalf("run %s answered %d times", run, k)
		}
	}
	if calls := len(f.agent.CallsTo(peerstest.RouteAgentRun)); calls != n {
		t.Fatalf("the agent was called %d times, want %d", calls, n)
	}
	t.Logf("%d answers posted, the process killed before it recorded them, each found in its thread after the restart", n)
}

// Three replicas on PostgreSQL post the answers of mentions sent to each.
// One is SIGKILLed while its posts are in flight; once its claims' lease
// passes, the others take its deliveries — one of them each, by the
// claim's row locks — find the posts by their run marker, and record them.
// Every answer is posted once.
func TestReplicas_ThreeOnPostgresDeliverEachAnswerOnce(t *testing.T) {
	const secret, admin = "replica-answer-secret", "replica-answer-admin"
	f := startPeerFakes(t, admin)
	slack, slackEnv, hold := slackFake(t)
	dbURL := pgtest.Database(t)
	env := append(append(f.env, slackEnv...), "DATABASE_URL="+dbURL, "SLACK_SIGNING_SECRET="+secret,
		"ORCHESTRATOR_ANSWER_LEASE_SECONDS=20")
	reps := startReplicas(t, 3, env)
	defer func() {
		for i, r := range reps {
			if i != 1 {
				_ = r.cmd.Process.Signal(syscall.SIGTERM)
				_ = r.cmd.Wait()
			}
		}
	}()
	client := &http.Client{Timeout: 10 * time.Second}
	var events []string
	const perReplica = 8
	for ri, rep := range reps {
		for i := range perReplica {
			id := fmt.Sprintf("replica-answer-%d-%d", ri, i)
			code, out, err := sendSigned(client, rep.base, webhook.Slack, secret, id, id)
			if err != nil || code != 200 {
				t.Fatalf("send to replica %d = %d %v %v", ri, code, out, err)
			}
			events = append(events, out["event_id"].(string))
		}
	}
	all := len(reps) * perReplica
	waitUntil(t, 2*time.Minute, "every answer posted and held before its record", func() bool {
		return len(slack.CallsTo(peerstest.RouteSlackPostMessage)) == all
	})
	if err := reps[1].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = reps[1].cmd.Wait()
	close(hold)
	var ds []map[string]any
	waitUntil(t, 2*time.Minute, "every delivery recorded posted", func() bool {
		ds = eventDeliveries(t, reps[0].base, admin, events)
		return allPosted(ds, all)
	})
	if posts := len(slack.CallsTo(peerstest.RouteSlackPostMessage)); posts != all {
		t.Fatalf("%d posts for %d answers", posts, all)
	}
	markers := answerMarkers(slack)
	if len(markers) != all {
		t.Fatalf("%d runs answered in the thread, want %d", len(markers), all)
	}
	for run, n := range markers {
		if n != 1 {
			t.Fatalf("run %s answered %d times", run, n)
		}
	}
	looks := len(slack.CallsTo(peerstest.RouteSlackReplies))
	if looks < perReplica {
		t.Fatalf("%d looks for an earlier post: the killed replica's %d deliveries were recorded without one", looks, perReplica)
	}
	t.Logf("%d answers from 3 replicas, one killed with its posts in flight: each posted once (%d taken over and found by their marker)", all, looks)
}

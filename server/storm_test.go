package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/config"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// agentBody is what one agent call carried.
type agentBody struct {
	Message       string `json:"message"`
	TriggerSource string `json:"trigger_source"`
	Context       struct {
		Metadata struct {
			Events []map[string]any `json:"events"`
		} `json:"metadata"`
	} `json:"context"`
}

func agentBodies(t *testing.T, e *env) []agentBody {
	t.Helper()
	var out []agentBody
	for _, c := range e.agent.CallsTo(peerstest.RouteAgentRun) {
		var b agentBody
		if err := json.Unmarshal(c.Body, &b); err != nil {
			t.Fatalf("agent body %s: %v", c.Body, err)
		}
		out = append(out, b)
	}
	return out
}

// stormEnv is a webhook env with coalescing and the routing cache on, one
// worker (so the agent sees calls in the order they were claimed) and a
// still clock; dispatch is started by the test once the storm is stored.
func stormEnv(t *testing.T, perMinute int, databaseURL ...string) *env {
	o := envOptions{webhooks: true, noDispatch: true, fakeClock: true, teamPerMinute: perMinute,
		coalesce: config.DefaultCoalesceSources, routingTTL: 30 * time.Second, workers: 1, maxAttempts: 3, ui: true}
	if len(databaseURL) > 0 {
		o.databaseURL = databaseURL[0]
	}
	return newEnv(t, o)
}

func sendAlerts(t *testing.T, e *env, prefix string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		body, h := signed(webhook.PagerDuty, fmt.Sprintf("%s%04d", prefix, i), pagerdutySecret, wallclock.Now())
		r := e.send(webhook.PagerDuty, body, h)
		if r.code != 200 {
			t.Fatalf("alert %d = %d %s", i, r.code, r.raw)
		}
		ids = append(ids, r.body["event_id"].(string))
	}
	return ids
}

func (e *env) countStatus(ids []string, status string) int {
	n := 0
	for _, id := range ids {
		if ev, _ := e.db.GetEvent(context.Background(), id); ev.Status == status {
			n++
		}
	}
	return n
}

// waitRouted waits until no queued event is without its team, so that
// routing is done before the test moves the clock.
func (e *env) waitRouted() {
	e.t.Helper()
	waitFor(e.t.(*testing.T), "every event routed", func() bool {
		evs, err := e.db.EventsToRoute(context.Background(), wallclock.Now().Add(time.Hour), 1)
		return err == nil && len(evs) == 0
	})
}

// A storm of 1,000 PagerDuty alerts for one team, with 10 Slack mentions
// arriving after them, at a team limit of 6 calls a minute: the alerts fold
// into digests of 50, the mentions each go alone and before any alert, and
// the Config Service sees a small constant number of calls, not events ×
// polls. Waiting events are never touched. Nothing here depends on timing:
// the clock only moves when the test moves it.
func TestStorm_OneTeamFoldsIntoDigestsAndPeopleGoFirst(t *testing.T) {
	stormOneTeam(t, stormEnv(t, 6))
}

// The same storm on PostgreSQL (SPEC §13: the storm behaviour holds on both
// databases), with the team's budget in the database as replicas share it.
func TestStorm_OneTeamOnPostgreSQL(t *testing.T) {
	stormOneTeam(t, stormEnv(t, 6, pgtest.Database(t)))
}

func stormOneTeam(t *testing.T, e *env) {
	// Tokens outlive the test's fake hour: a token is minted, and config/me
	// read, once per token life.
	e.cs.ImpersonationTTL = 24 * time.Hour
	alerts := sendAlerts(t, e, "storm", 1000)
	var mentions []string
	for i := range 10 {
		body, h := signed(webhook.Slack, fmt.Sprintf("storm-mention-%d", i), slackSecret, wallclock.Now())
		mentions = append(mentions, e.send(webhook.Slack, body, h).body["event_id"].(string))
	}
	if err := e.disp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.disp.Stop(context.Background()) })
	e.waitRouted()
	// The burst of 6 is spent on mentions: people first, though the alerts
	// are older.
	waitFor(t, "the first six calls", func() bool { return len(e.agent.CallsTo(peerstest.RouteAgentRun)) == 6 })
	waitFor(t, "their outcomes", func() bool { return e.countStatus(mentions, store.EventDelivered) == 6 })
	held, _, err := e.db.ListEvents(context.Background(), store.EventFilter{Source: webhook.PagerDuty, Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range held {
		if ev.Status != store.EventQueued || ev.Attempts != 0 || ev.LastError != "" || ev.TeamNodeID != "platform-sre" {
			t.Fatalf("a held-back alert was touched: %+v", ev)
		}
	}
	// Time passes a minute at a step (six slots of the team's limit); one
	// count query per step, so the wait stays cheap however loaded the
	// machine is.
	waitFor(t, "the queue drained", func() bool {
		e.clock.Add(time.Minute)
		time.Sleep(2 * time.Millisecond)
		n, err := e.db.QueueDepth(context.Background(), "")
		return err == nil && n == 0
	})
	if got := e.countStatus(alerts, store.EventDelivered) + e.countStatus(mentions, store.EventDelivered); got != 1010 {
		t.Fatalf("%d of 1010 delivered", got)
	}

	calls := agentBodies(t, e)
	if len(calls) != 30 {
		t.Fatalf("agent calls = %d, want 10 mentions + 20 digests of 50", len(calls))
	}
	for i, c := range calls {
		switch {
		case i < 10:
			if c.TriggerSource != "slack" || len(c.Context.Metadata.Events) != 0 {
				t.Fatalf("call %d: %s with %d events, want a mention alone", i, c.TriggerSource, len(c.Context.Metadata.Events))
			}
		default:
			if c.TriggerSource != "digest" || len(c.Context.Metadata.Events) != 50 {
				t.Fatalf("call %d: %s with %d events, want a digest of 50", i, c.TriggerSource, len(c.Context.Metadata.Events))
			}
			lines := strings.Split(c.Message, "\n")
			if len(lines) != 51 || lines[0] != "50 alerts for acme/platform-sre: 50 pagerduty incident.triggered (PF9KMXH)" ||
				!strings.HasPrefix(lines[1], "- PagerDuty incident.triggered: ") {
				t.Fatalf("digest message: %q…", c.Message[:min(len(c.Message), 200)])
			}
		}
	}
	// The Config Service: two routing lookups (one per identifier set), one
	// impersonation token and one config read for the team.
	cs := len(e.cs.CallsTo(peerstest.RouteRoutingLookup)) + len(e.cs.CallsTo(peerstest.RouteImpersonate)) + len(e.cs.CallsTo(peerstest.RouteConfigMe))
	if cs > 2*len(calls)+20 || cs > 6 {
		t.Fatalf("Config Service calls = %d for %d agent calls", cs, len(calls))
	}
	t.Logf("1010 events: %d agent calls, %d Config Service calls", len(calls), cs)

	// Each folded event shows its digest; one agent-run row per call.
	folded := e.do("GET", "/api/v1/admin/events/"+alerts[0], adminToken, nil)
	digest, _ := folded.body["digest"].(map[string]any)
	if folded.code != 200 || digest["size"] != float64(50) || digest["agent_run_id"] == nil {
		t.Fatalf("folded event = %d %s", folded.code, folded.raw)
	}
	if lone := e.do("GET", "/api/v1/admin/events/"+mentions[0], adminToken, nil); lone.body["digest"] != nil {
		t.Fatalf("a lone delivery shows a digest: %s", lone.raw)
	}
	// The event page says so too.
	if err := e.srv.Open(); err != nil {
		t.Fatal(err)
	}
	defer e.srv.Shutdown(context.Background())
	base := "http://" + e.srv.Addr()
	if code, page := getPage(t, login(t, base, adminToken), base+"/ui/events/"+alerts[0]); code != 200 ||
		!strings.Contains(page, `id="event-digest"`) || !strings.Contains(page, "50 events") || !strings.Contains(page, "(digest of 50)") {
		t.Fatalf("event page of a folded event = %d %s", code, page)
	}
	runs, err := e.db.TeamAgentRuns(context.Background(), "acme", "platform-sre")
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, r := range runs {
		sum += r.EventCount
	}
	if len(runs) != 30 || sum != 1010 {
		t.Fatalf("agent runs = %d carrying %d events, want 30 carrying 1010", len(runs), sum)
	}
	if !e.metric(`orchestrator_dispatch_coalesced_total{source="pagerduty"} 1000`) {
		t.Fatal("the coalesced counter does not say 1000 pagerduty events")
	}
}

// A digest whose agent call fails retries as a whole: every folded event
// gets the same attempt, error and retry time, and the retry is one call
// again. A refusal (4xx) fails them all; attempts used up make them all dead.
func TestStorm_DigestFailureRetriesAsAWhole(t *testing.T) {
	e := stormEnv(t, 600)
	ids := sendAlerts(t, e, "retry", 5)
	e.agent.Fail(peerstest.RouteAgentRun, peerstest.Fault{Status: 503, Times: 1})
	if err := e.disp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.disp.Stop(context.Background()) })
	waitFor(t, "the failed digest recorded", func() bool {
		ev, _ := e.db.GetEvent(context.Background(), ids[4])
		return ev.Attempts == 1
	})
	first, _ := e.db.GetEvent(context.Background(), ids[0])
	for _, id := range ids {
		ev, _ := e.db.GetEvent(context.Background(), id)
		if ev.Status != store.EventQueued || ev.Attempts != 1 || !ev.NextAttemptAt.Equal(first.NextAttemptAt) || !strings.Contains(ev.LastError, "503") {
			t.Fatalf("after the failed digest: %+v (first %+v)", ev, first)
		}
	}
	waitFor(t, "the retry delivered", func() bool {
		e.clock.Add(time.Second)
		e.disp.Notify("", "")
		time.Sleep(time.Millisecond)
		return e.countStatus(ids, store.EventDelivered) == 5
	})
	if calls := agentBodies(t, e); len(calls) != 2 || len(calls[1].Context.Metadata.Events) != 5 {
		t.Fatalf("calls = %d, want the digest of 5 twice", len(calls))
	}

	// A refusal fails every folded event. (Dispatch stops while they are
	// stored: a lone event would go at once, alone.)
	e.disp.Stop(context.Background())
	refused := sendAlerts(t, e, "refused", 3)
	e.agent.Fail(peerstest.RouteAgentRun, peerstest.Fault{Status: 400, Times: 1})
	if err := e.disp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refused digest failed", func() bool { return e.countStatus(refused, store.EventFailed) == 3 })

	// Attempts used up (3): every folded event dead.
	e.disp.Stop(context.Background())
	doomed := sendAlerts(t, e, "doomed", 4)
	e.agent.Fail(peerstest.RouteAgentRun, peerstest.Fault{Status: 500})
	if err := e.disp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the digest dead", func() bool {
		e.clock.Add(10 * time.Second)
		e.disp.Notify("", "")
		time.Sleep(time.Millisecond)
		return e.countStatus(doomed, store.EventDead) == 4
	})
	if calls := agentBodies(t, e); len(calls) != 2+1+3 || len(calls[5].Context.Metadata.Events) != 4 {
		t.Fatalf("calls = %d, want 2 + 1 refused + 3 attempts of the doomed digest", len(calls))
	}
	e.agent.Clear()
}

// A folded event that is redriven goes alone, even with other alerts of its
// team due at the same time.
func TestStorm_RedriveOfAFoldedEventSendsItAlone(t *testing.T) {
	e := stormEnv(t, 600)
	ids := sendAlerts(t, e, "fold", 3)
	e.agent.Fail(peerstest.RouteAgentRun, peerstest.Fault{Status: 400, Times: 1})
	if err := e.disp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.disp.Stop(context.Background()) })
	waitFor(t, "the digest failed", func() bool { return e.countStatus(ids, store.EventFailed) == 3 })
	e.disp.Stop(context.Background())

	more := sendAlerts(t, e, "more", 2)
	if r := e.do("POST", "/api/v1/admin/events/"+ids[1]+"/redrive", adminToken, nil); r.code != 200 {
		t.Fatalf("redrive = %d %s", r.code, r.raw)
	}
	if err := e.disp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the redriven event and the new ones delivered", func() bool {
		return e.countStatus([]string{ids[1]}, store.EventDelivered) == 1 && e.countStatus(more, store.EventDelivered) == 2
	})
	calls := agentBodies(t, e)
	if len(calls) != 3 || calls[1].TriggerSource != "pagerduty" || len(calls[2].Context.Metadata.Events) != 2 {
		t.Fatalf("after the redrive: %d calls (%+v)", len(calls), calls)
	}
	ev := e.do("GET", "/api/v1/admin/events/"+ids[1], adminToken, nil)
	if ev.body["digest"] != nil {
		t.Fatalf("the redriven event shows a digest: %s", ev.raw)
	}
}

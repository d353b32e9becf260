package server_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// sendPRComment sends GitHub's issue_comment event for a comment
// mentioning the bot on pull request pr of acme/payments (the dev team's
// repository), signed as GitHub signs it.
func sendPRComment(t *testing.T, e *env, id string, pr int) string {
	t.Helper()
	body := fmt.Appendf(nil, `{"action":"created","issue":{"number":%[1]d,"title":"Retry the payments webhook on 502 (%[2]s)",`+
		`"html_url":"https://github.com/acme/payments/pull/%[1]d","pull_request":{"url":"https://api.github.com/repos/acme/payments/pulls/%[1]d",`+
		`"html_url":"https://github.com/acme/payments/pull/%[1]d"}},"comment":{"id":%[1]d0001,"body":"@incidentfox why is CI red on this PR?",`+
		`"user":{"login":"octocat"}},"repository":{"id":1296269,"full_name":"acme/payments","private":true},"sender":{"login":"octocat"}}`, pr, id)
	h := webhook.Sign(webhook.GitHub, githubSecret, body, time.Now(), "delivery-"+id)
	h.Set("X-GitHub-Event", "issue_comment")
	r := e.send(webhook.GitHub, body, h)
	if r.code != 200 {
		t.Fatalf("PR comment = %d %s", r.code, r.raw)
	}
	return r.body["event_id"].(string)
}

// callsOn are the calls whose path contains part (one issue's, one
// incident's).
func callsOn(calls []peerstest.Call, part string) []peerstest.Call {
	var out []peerstest.Call
	for _, c := range calls {
		if strings.Contains(c.Path, part) {
			out = append(out, c)
		}
	}
	return out
}

// retriedAfter checks that route's calls came at least wait apart: the
// retry honoured the API's Retry-After (the call log's own times).
func retriedAfter(t *testing.T, calls []peerstest.Call, wait time.Duration) {
	t.Helper()
	if len(calls) != 2 {
		t.Fatalf("%d posts, want the limited one and its retry", len(calls))
	}
	if gap := calls[1].At.Sub(calls[0].At); gap < wait {
		t.Fatalf("retried %v after a Retry-After of %v", gap, wait)
	}
}

// A reviewer's mention on a pull request is answered on that pull
// request: one comment with the run marker and the run's link, through
// the outbox, and the agent is told the appliance posts it.
func TestAnswers_APRCommentIsAnsweredOnThatPR(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, answers: true, publicURL: "https://orchestrator.example"})
	e.github.AddPull("acme/payments", 34)
	id := sendPRComment(t, e, "pr1", 34)
	ds := waitDelivery(t, e, id, store.AnswerPosted)
	comments := e.github.Comments("acme/payments", 34)
	if len(comments) != 1 || len(ds) != 1 {
		t.Fatalf("comments on the PR = %+v, deliveries %v", comments, ds)
	}
	d, c := ds[0], comments[0]
	runID := d["agent_run_id"].(string)
	cid := strconv.FormatInt(c.ID, 10)
	if d["type"] != "github_pr_comment" || d["message_id"] != cid || d["attempts"] != float64(0) ||
		d["link"] != "https://github.com/acme/payments/pull/34#issuecomment-"+cid {
		t.Fatalf("delivery = %v", d)
	}
	for _, want := range []string{"Investigated: ", "https://orchestrator.example/ui/agent-runs/" + runID, "<!-- orchestrator-edge:run=" + runID + " -->"} {
		if !strings.Contains(c.Body, want) {
			t.Errorf("the comment lacks %q: %s", want, c.Body)
		}
	}
	want := map[string]any{"type": "github_pr_comment", "repo": "acme/payments", "pr_number": float64(34), "posted_by": "orchestrator"}
	if got := agentDestinations(t, e); !reflect.DeepEqual(got, [][]map[string]any{{want}}) {
		t.Fatalf("the agent was told %v, want %v", got, want)
	}
	if call := e.github.CallsTo(peerstest.RouteGitHubCreateComment); len(call) != 1 || call[0].Auth != "Bearer "+githubAPIToken {
		t.Fatalf("%d comment calls", len(call))
	}
	if !e.metric(`orchestrator_answer_deliveries_total{outcome="posted",type="github_pr_comment"} 1`) {
		t.Error("the posted comment is not counted")
	}
}

// GitHub's secondary rate limit (403 with Retry-After) and its 429 are
// retried no sooner than asked, looking for the run marker first, and the
// answer is posted once; a pull request that is not there (404) and a
// refused credential (401) end the delivery failed at once, with GitHub's
// reason, never retried.
func TestAnswers_GitHubRateLimitsAreRetriedAndRefusalsFail(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, answers: true})
	for _, pr := range []int{41, 42, 44} {
		e.github.AddPull("acme/payments", pr)
	}
	for _, c := range []struct {
		pr    int
		fault peerstest.Fault
		says  string
	}{
		{41, peerstest.GitHubSecondaryRateLimit(time.Second), "GitHub rate limit (403): You have exceeded a secondary rate limit."},
		{42, peerstest.GitHubTooManyRequests(time.Second), "GitHub rate limit (429): Too Many Requests"},
	} {
		e.github.Clear()
		c.fault.Times = 1
		e.github.Fail(peerstest.RouteGitHubCreateComment, c.fault)
		pull := "/issues/" + strconv.Itoa(c.pr) + "/"
		id := sendPRComment(t, e, "limited"+strconv.Itoa(c.pr), c.pr)
		ds := waitDelivery(t, e, id, store.AnswerPosted)
		if n := len(e.github.Comments("acme/payments", c.pr)); n != 1 {
			t.Fatalf("PR #%d: %d comments after the rate limit, want 1", c.pr, n)
		}
		if ds[0]["attempts"] != float64(1) || !strings.HasPrefix(ds[0]["last_error"].(string), "comment on acme/payments#"+strconv.Itoa(c.pr)+": "+c.says) {
			t.Fatalf("PR #%d: delivery = %v", c.pr, ds[0])
		}
		retriedAfter(t, callsOn(e.github.CallsTo(peerstest.RouteGitHubCreateComment), pull), time.Second)
		if looks := len(callsOn(e.github.CallsTo(peerstest.RouteGitHubListComments), pull)); looks != 1 {
			t.Fatalf("PR #%d: %d looks for an earlier comment before the retry, want 1", c.pr, looks)
		}
	}

	for _, c := range []struct {
		pr    int
		fault *peerstest.Fault
		says  string
	}{
		{43, nil, "comment on acme/payments#43: not found on GitHub (404: no such repository, issue or pull request, or the credential cannot see it): Not Found"},
		{44, &peerstest.Fault{Status: 401, Body: map[string]string{"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}},
			"comment on acme/payments#44: GitHub refused the credential (401; check GITHUB_TOKEN or the GitHub App): Bad credentials"},
	} {
		e.github.Clear()
		if c.fault != nil {
			e.github.Fail(peerstest.RouteGitHubCreateComment, *c.fault)
		}
		id := sendPRComment(t, e, "refused"+strconv.Itoa(c.pr), c.pr)
		ds := waitDelivery(t, e, id, store.AnswerFailed)
		if ds[0]["attempts"] != float64(0) || ds[0]["last_error"] != c.says {
			t.Fatalf("PR #%d: delivery = %v", c.pr, ds[0])
		}
		if posts := len(callsOn(e.github.CallsTo(peerstest.RouteGitHubCreateComment), "/issues/"+strconv.Itoa(c.pr)+"/")); posts != 1 {
			t.Fatalf("PR #%d: %d posts, want 1 and no retry", c.pr, posts)
		}
	}
	if !e.metric(`orchestrator_answer_deliveries_total{outcome="retry",type="github_pr_comment"} 2`) ||
		!e.metric(`orchestrator_answer_deliveries_total{outcome="posted",type="github_pr_comment"} 2`) ||
		!e.metric(`orchestrator_answer_deliveries_total{outcome="failed",type="github_pr_comment"} 2`) {
		t.Error("the retries, posts and failures are not counted")
	}
}

// An on-call engineer's PagerDuty incident gets the answer as a note, in
// the name of the configured From user; PagerDuty's 429 is retried after
// its wait and the note posted once; an incident that is not there (404)
// and a refused API key (401) end the delivery failed, never retried.
func TestAnswers_APagerDutyIncidentGetsANote(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, answers: true, publicURL: "https://orchestrator.example"})
	send := func(id string) string {
		body, h := signed(webhook.PagerDuty, id, pagerdutySecret, time.Now())
		r := e.send(webhook.PagerDuty, body, h)
		if r.code != 200 {
			t.Fatalf("incident = %d %s", r.code, r.raw)
		}
		return r.body["event_id"].(string)
	}
	e.pagerduty.AddIncident("Q1note1")
	id := send("note1")
	ds := waitDelivery(t, e, id, store.AnswerPosted)
	notes := e.pagerduty.Notes("Q1note1")
	if len(notes) != 1 || len(ds) != 1 {
		t.Fatalf("notes %+v, deliveries %v", notes, ds)
	}
	runID := ds[0]["agent_run_id"].(string)
	if notes[0].From != pagerdutyFrom || ds[0]["type"] != "pagerduty_note" || ds[0]["message_id"] != notes[0].ID ||
		!strings.HasSuffix(notes[0].Content, "\nOrchestrator Edge run: https://orchestrator.example/ui/agent-runs/"+runID+"\norchestrator-edge:run="+runID) {
		t.Fatalf("note %+v, delivery %v", notes[0], ds[0])
	}
	call := e.pagerduty.CallsTo(peerstest.RoutePagerDutyCreateNote)[0]
	if call.Header.Get("From") != pagerdutyFrom || call.Auth != "Token token="+pagerdutyAPIToken {
		t.Fatalf("note call headers %v", call.Header)
	}
	want := map[string]any{"type": "pagerduty_note", "incident_id": "Q1note1", "posted_by": "orchestrator"}
	if got := agentDestinations(t, e); !reflect.DeepEqual(got, [][]map[string]any{{want}}) {
		t.Fatalf("the agent was told %v", got)
	}

	// Rate limited: retried after ratelimit-reset, posted once.
	e.pagerduty.AddIncident("Q1note2")
	limited := peerstest.PagerDutyRateLimited(time.Second)
	limited.Times = 1
	e.pagerduty.Fail(peerstest.RoutePagerDutyCreateNote, limited)
	ds = waitDelivery(t, e, send("note2"), store.AnswerPosted)
	if n := len(e.pagerduty.Notes("Q1note2")); n != 1 || ds[0]["attempts"] != float64(1) ||
		ds[0]["last_error"] != "note on PagerDuty incident Q1note2: PagerDuty rate limit (429): Rate Limit Exceeded (code 2020)" {
		t.Fatalf("%d notes after the rate limit, delivery %v", n, ds[0])
	}
	retriedAfter(t, callsOn(e.pagerduty.CallsTo(peerstest.RoutePagerDutyCreateNote), "/Q1note2/"), time.Second)
	if looks := len(callsOn(e.pagerduty.CallsTo(peerstest.RoutePagerDutyListNotes), "/Q1note2/")); looks != 1 {
		t.Fatalf("%d looks for an earlier note before the retry, want 1", looks)
	}

	for _, c := range []struct {
		id    string
		fault *peerstest.Fault
		says  string
	}{
		{"note3", nil, "note on PagerDuty incident Q1note3: no such incident on PagerDuty (404): Not Found (code 2100)"},
		{"note4", ptrFault(peerstest.PagerDutyError(401, "Unauthorized", 0)), "note on PagerDuty incident Q1note4: PagerDuty refused the API token (401; check PAGERDUTY_API_TOKEN): Unauthorized"},
	} {
		e.pagerduty.Clear()
		if c.fault != nil {
			e.pagerduty.AddIncident("Q1" + c.id)
			e.pagerduty.Fail(peerstest.RoutePagerDutyCreateNote, *c.fault)
		}
		ds := waitDelivery(t, e, send(c.id), store.AnswerFailed)
		if ds[0]["attempts"] != float64(0) || ds[0]["last_error"] != c.says {
			t.Fatalf("%s: delivery = %v", c.id, ds[0])
		}
		if posts := len(callsOn(e.pagerduty.CallsTo(peerstest.RoutePagerDutyCreateNote), "/Q1"+c.id+"/")); posts != 1 {
			t.Fatalf("%s: %d posts, want 1 and no retry", c.id, posts)
		}
	}
	if !e.metric(`orchestrator_answer_deliveries_total{outcome="posted",type="pagerduty_note"} 2`) ||
		!e.metric(`orchestrator_answer_deliveries_total{outcome="failed",type="pagerduty_note"} 2`) {
		t.Error("the posts and failures are not counted")
	}
}

func ptrFault(f peerstest.Fault) *peerstest.Fault { return &f }

// hookReceiver is an operator's webhook endpoint: it records each post and
// answers the statuses it is given, in turn (then 204).
type hookReceiver struct {
	mu       sync.Mutex
	headers  []http.Header
	bodies   [][]byte
	statuses []int
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.headers, h.bodies = append(h.headers, r.Header.Clone()), append(h.bodies, body)
	status := http.StatusNoContent
	if len(h.statuses) > 0 {
		status, h.statuses = h.statuses[0], h.statuses[1:]
	}
	h.mu.Unlock()
	if status != http.StatusNoContent {
		http.Error(w, http.StatusText(status), status)
		return
	}
	w.WriteHeader(status)
}

func (h *hookReceiver) answer(statuses ...int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.statuses = statuses
}

func (h *hookReceiver) posts() ([]http.Header, [][]byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]http.Header(nil), h.headers...), append([][]byte(nil), h.bodies...)
}

// An operator's webhook destination (the sources file's destinations:,
// named by team config) gets the answer as Standard Webhooks-signed JSON
// that the appliance's own verifier accepts; a 5xx is retried with the same
// webhook-id and posted; a 4xx ends the delivery failed, never retried.
func TestAnswers_AWebhookDestinationGetsSignedAnswers(t *testing.T) {
	const hookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	rc := &hookReceiver{}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	e := newEnv(t, envOptions{webhooks: true, answers: true,
		sourcesFile: "destinations: [{name: ops-feed, url: \"" + srv.URL + "/in\", secret_env: OPS_HOOK_SECRET}]",
		sourceEnv:   map[string]string{"OPS_HOOK_SECRET": hookSecret}})
	e.cs.AddTeam(peerstest.DevOrg, peerstest.DevTeam, map[string]any{"routing": peerstest.DevRouting, "output_config": map[string]any{
		"default_destinations": []any{map[string]any{"type": "webhook", "name": "ops-feed"}}}})
	receiver, err := webhook.NewConfigured(webhook.SourceSpec{Name: "edge-answers",
		Verify: webhook.VerifySpec{Kind: webhook.KindStandardWebhooks, SecretEnv: "S"}}, func(string) string { return hookSecret })
	if err != nil {
		t.Fatal(err)
	}
	send := func(id string) string {
		body, h := signed(webhook.Coralogix, id, coralogixToken, time.Now())
		return e.send(webhook.Coralogix, body, h).body["event_id"].(string)
	}

	rc.answer(http.StatusServiceUnavailable)
	id := send("hook1")
	ds := waitDelivery(t, e, id, store.AnswerPosted)
	headers, bodies := rc.posts()
	if len(bodies) != 2 || ds[0]["attempts"] != float64(1) || ds[0]["type"] != "webhook" ||
		!strings.HasPrefix(ds[0]["last_error"].(string), `webhook destination "ops-feed" answered 503`) {
		t.Fatalf("%d posts, delivery %v", len(bodies), ds[0])
	}
	runID := ds[0]["agent_run_id"].(string)
	for i := range bodies {
		if _, err := receiver.Routes[0].Verifier.Verify(bodies[i], headers[i], time.Now()); err != nil {
			t.Fatalf("post %d does not verify: %v", i, err)
		}
		if headers[i].Get("Webhook-Id") != ds[0]["message_id"] {
			t.Fatalf("post %d has webhook-id %q, the delivery %v", i, headers[i].Get("Webhook-Id"), ds[0]["message_id"])
		}
	}
	for _, want := range []string{`"event_id":"` + id + `"`, `"run_id":"` + runID + `"`, `"org_id":"` + peerstest.DevOrg + `"`,
		`"team_node_id":"` + peerstest.DevTeam + `"`, `"answer":"Investigated: `, `"success":true`} {
		if !strings.Contains(string(bodies[1]), want) {
			t.Errorf("the post lacks %s: %s", want, bodies[1])
		}
	}

	rc.answer(http.StatusGone)
	ds = waitDelivery(t, e, send("hook2"), store.AnswerFailed)
	if _, bodies := rc.posts(); len(bodies) != 3 || ds[0]["attempts"] != float64(0) ||
		ds[0]["last_error"] != `webhook destination "ops-feed" answered 410: Gone` {
		t.Fatalf("%d posts in all, delivery %v", len(bodies), ds[0])
	}
	if !e.metric(`orchestrator_answer_deliveries_total{outcome="retry",type="webhook"} 1`) ||
		!e.metric(`orchestrator_answer_deliveries_total{outcome="failed",type="webhook"} 1`) {
		t.Error("the retry and the failure are not counted")
	}
}

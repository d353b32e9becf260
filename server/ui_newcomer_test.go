package server_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/store"
)

// noFollow is the logged-in client that sees redirects instead of following.
func noFollow(c *http.Client) *http.Client {
	return &http.Client{Jar: c.Jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func formPost(t testing.TB, c *http.Client, base, path string, form url.Values) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// The newcomer's report: a form POST answered with the page, so a reload
// submitted the provisioning form (or an agent run) again. Every form that
// does something now answers 303 to a page that shows the outcome; a reload
// of that page repeats nothing. The new team token still appears once.
func TestUI_EveryFormRedirectsAfterPost(t *testing.T) {
	e, base := uiEnv(t, envOptions{backups: true})
	c := noFollow(login(t, base, adminToken))
	see := func(resp *http.Response, wantPrefix string) string {
		t.Helper()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, wantPrefix) {
			t.Fatalf("%s %s answered %d → %q, want 303 → %s…", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, loc, wantPrefix)
		}
		return loc
	}

	// Provisioning: 303 to the run; the token once, then never again.
	loc := see(formPost(t, c, base, "/ui/provision", url.Values{"org_id": {"acme"}, "team_node_id": {"prg"},
		"slack_channel_ids": {"C0PRG"}, "deployment_mode": {"shared"}}), "/ui/runs/")
	tokens := e.cs.Tokens("acme", "prg")
	if len(tokens) != 1 {
		t.Fatalf("tokens after one POST: %+v", tokens)
	}
	code, page := getPage(t, c, base+loc)
	if code != 200 || !strings.Contains(page, `id="team-token"`) || !strings.Contains(page, tokens[0].ID+".") {
		t.Fatalf("run page after provisioning = %d, token shown: %v", code, strings.Contains(page, tokens[0].ID+"."))
	}
	code, page = getPage(t, c, base+loc) // the reload
	if code != 200 || strings.Contains(page, tokens[0].ID+".") || len(e.cs.Tokens("acme", "prg")) != 1 {
		t.Fatalf("reload: %d, token shown again %v, tokens %d", code, strings.Contains(page, tokens[0].ID+"."), len(e.cs.Tokens("acme", "prg")))
	}
	runs, _, _ := e.db.ListRuns(context.Background(), store.RunFilter{TeamNodeID: "prg", Limit: 10})
	if len(runs) != 1 {
		t.Fatalf("%d runs after one POST and two GETs", len(runs))
	}
	// Bad input did nothing: the form comes back with the error (400).
	resp := formPost(t, c, base, "/ui/provision", url.Values{"org_id": {".."}, "team_node_id": {"x"}})
	if resp.StatusCode != 400 {
		t.Fatalf("bad provisioning form = %d", resp.StatusCode)
	}

	// An agent run: 303 to the form with the answer, once; one agent call.
	before := len(e.agent.CallsTo(peerstest.RouteAgentRun))
	loc = see(formPost(t, c, base, "/ui/agents", url.Values{"org_id": {"acme"}, "team_node_id": {"prg"}, "agent_name": {"planner"},
		"message": {"why?"}}), "/ui/agents?")
	code, page = getPage(t, c, base+loc)
	if code != 200 || !strings.Contains(page, `id="agent-result"`) || !strings.Contains(page, "Investigated: why?") {
		t.Fatalf("agent page after the run = %d", code)
	}
	if _, page = getPage(t, c, base+loc); strings.Contains(page, `id="agent-result"`) {
		t.Fatal("the reload shows the answer again")
	}
	if n := len(e.agent.CallsTo(peerstest.RouteAgentRun)) - before; n != 1 {
		t.Fatalf("%d agent calls", n)
	}

	// Deprovisioning: the plan and the confirm are redirects too.
	loc = see(formPost(t, c, base, "/ui/teams/acme/prg/deprovision", url.Values{"revoke_tokens": {"1"}}), "/ui/teams/acme/prg?")
	_, page = getPage(t, c, base+loc)
	digest := planDigestOf(t, page)
	see(formPost(t, c, base, "/ui/teams/acme/prg/deprovision", url.Values{"revoke_tokens": {"1"}, "confirm": {"1"}, "plan": {digest}}), "/ui/runs/")

	// The rest already were: backups, redrive, samples.
	see(formPost(t, c, base, "/ui/backups", nil), "/ui/backups")
	see(formPost(t, c, base, "/ui/dev/sample/slack", nil), "/ui/")
	var ev store.Event
	waitFor(t, "a sample event", func() bool {
		list, _, _ := e.db.ListEvents(context.Background(), store.EventFilter{Limit: 1})
		if len(list) == 1 {
			ev = list[0]
		}
		return len(list) == 1
	})
	e.waitStatus(ev.ID, store.EventDelivered, store.EventDead, store.EventFailed)
	see(formPost(t, c, base, "/ui/events/"+ev.ID+"/redrive", nil), "/ui/events/"+ev.ID)
}

// planDigestOf reads the confirm form's plan digest from a team page.
func planDigestOf(t *testing.T, page string) string {
	t.Helper()
	const marker = `name="plan" value="`
	i := strings.Index(page, marker)
	if i < 0 {
		t.Fatal("no plan on the page")
	}
	rest := page[i+len(marker):]
	return rest[:strings.IndexByte(rest, '"')]
}

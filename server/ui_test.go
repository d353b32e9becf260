package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// uiEnv is an orchestrator with the admin page on a real listener.
func uiEnv(t *testing.T, o envOptions) (*env, string) {
	t.Helper()
	o.ui, o.webhooks = true, true
	e := newEnv(t, o)
	if err := e.srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.srv.Shutdown(context.Background()) })
	return e, "http://" + e.srv.Addr()
}

// browser starts headless Chromium (Debian's /usr/bin/chromium).
func browser(t *testing.T) context.Context {
	t.Helper()
	path := "/usr/bin/chromium"
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("ORCHESTRATOR_TEST_REQUIRE_BROWSER") == "1" {
			t.Fatal("chromium required (apt-get install chromium)")
		}
		t.Skip("chromium not installed")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	return ctx
}

// doer runs browser steps in ctx, failing the test on the first error.
func doer(t *testing.T, ctx context.Context) func(...chromedp.Action[chromedp.Void]) {
	return func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatal(err)
		}
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// reloadUntil reloads the page until sel's text is want.
func reloadUntil(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	waitFor(t, sel+" = "+want, func() bool {
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(ctx, chromedp.Navigate(loc), chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
			t.Fatal(err)
		}
		return text(t, ctx, sel) == want
	})
}

func TestUI_InARealBrowser(t *testing.T) {
	e, base := uiEnv(t, envOptions{withCluster: true, maxAttempts: 2, backups: true})
	ctx := browser(t)
	do := doer(t, ctx)

	// A wrong token is refused with a message.
	do(chromedp.Navigate(base+"/ui/"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), "not-a-token"), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("error")))
	if msg := text(t, ctx, "#error"); !strings.Contains(msg, "Login refused") {
		t.Fatalf("wrong token: %q", msg)
	}
	// The admin token logs in.
	do(chromedp.SendKeys(chromedp.ID("token"), adminToken), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("health-db")))
	if got := text(t, ctx, "#health-db"); got != "ready" {
		t.Fatalf("overview db = %q", got)
	}
	if got := text(t, ctx, "#dev-banner"); !strings.Contains(got, "Dev mode") {
		t.Fatalf("no dev banner: %q", got)
	}

	// Provision through the form: seven steps on the run page, the token once.
	do(chromedp.Navigate(base+"/ui/provision"), chromedp.WaitVisible(chromedp.ID("org_id")),
		chromedp.SendKeys(chromedp.ID("org_id"), "acme"), chromedp.SendKeys(chromedp.ID("team_node_id"), "ui-team"),
		chromedp.SendKeys(chromedp.ID("slack_channel_ids"), "C0UITEAM"),
		chromedp.Click(chromedp.ID("provision")), chromedp.WaitVisible(chromedp.ID("run-status")))
	if got := text(t, ctx, "#run-status"); got != "succeeded" {
		t.Fatalf("run status %q: %s", got, text(t, ctx, "main"))
	}
	steps, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll("#steps tr.step")))
	if err != nil || len(steps) != 7 {
		t.Fatalf("%d steps on the page (%v)", len(steps), err)
	}
	token := text(t, ctx, "#team-token")
	if !strings.HasPrefix(token, e.cs.Tokens("acme", "ui-team")[0].ID+".") {
		t.Fatalf("token on the page %q", token)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if path := os.Getenv("UI_SCREENSHOT"); path != "" {
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The same run, opened again, no longer shows the token.
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	runID := text(t, ctx, "h1 code")
	do(chromedp.Navigate(base+"/ui/runs/"+runID), chromedp.WaitVisible(chromedp.ID("run-status")))
	if html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html"))); strings.Contains(html, token) {
		t.Fatalf("the token is shown again on %s", loc)
	}

	// A sample event reaches delivered.
	do(chromedp.Navigate(base+"/ui/overview"), chromedp.WaitVisible(chromedp.ID("sample-slack")),
		chromedp.Click(chromedp.ID("sample-slack")), chromedp.WaitVisible(chromedp.ID("event-status")))
	reloadUntil(t, ctx, "#event-status", "delivered")

	// A dead event is redriven and delivered.
	e.agent.Fail(peerstest.RouteAgentRun, peerstest.Fault{Status: 503})
	do(chromedp.Navigate(base+"/ui/overview"), chromedp.WaitVisible(chromedp.ID("sample-github")),
		chromedp.Click(chromedp.ID("sample-github")), chromedp.WaitVisible(chromedp.ID("event-status")))
	reloadUntil(t, ctx, "#event-status", "dead")
	e.agent.Clear()
	do(chromedp.Click(chromedp.ID("redrive")), chromedp.WaitVisible(chromedp.ID("notice")))
	if got := text(t, ctx, "#notice"); got != "Event queued again." {
		t.Fatalf("redrive notice %q", got)
	}
	reloadUntil(t, ctx, "#event-status", "delivered")

	// Back up now: the snapshot is listed with its size and a download link.
	do(chromedp.Navigate(base+"/ui/backups"), chromedp.WaitVisible(chromedp.ID("backup-now")),
		chromedp.Click(chromedp.ID("backup-now")), chromedp.WaitVisible(chromedp.ID("notice")))
	if got := text(t, ctx, "#notice"); !strings.HasPrefix(got, "Backup manual-") || !strings.HasSuffix(got, "written and verified.") {
		t.Fatalf("backup notice %q", got)
	}
	rows, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll("#backups tr.backup")))
	if err != nil || len(rows) != 1 || !strings.Contains(text(t, ctx, "#backups"), "KiB") {
		t.Fatalf("%d backups listed (%v): %s", len(rows), err, text(t, ctx, "#backups"))
	}

	// Log out, and the pages are refused.
	do(chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.Navigate(base+"/ui/events"), chromedp.WaitVisible(chromedp.ID("token")))
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); !strings.HasSuffix(loc, "/ui/login?next=%2Fui%2Fevents") {
		t.Fatalf("after logout /ui/events led to %s", loc)
	}
}

// login returns an HTTP client with a session, as a browser would have.
func login(t testing.TB, base, token string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp := formPost(t, c, base, "/ui/login", url.Values{"token": {token}})
	if resp.Request.URL.Path != "/ui/overview" {
		t.Fatalf("login ended at %s (%d)", resp.Request.URL.Path, resp.StatusCode)
	}
	return c
}

var (
	scriptTag   = regexp.MustCompile(`(?i)<script`)
	inlineEvent = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	styleAttr   = regexp.MustCompile(`(?i)\sstyle\s*=`)
	foreignURL  = regexp.MustCompile(`(?i)(href|src|action)\s*=\s*["']?\s*(https?:)?//|url\(\s*["']?(https?:)?//|@import`)
)

// Every page and asset: no script at all, no inline handlers or styles, no
// URL to another host; the security headers on every page.
func TestUI_PagesAreSelfContainedAndLockedDown(t *testing.T) {
	e, base := uiEnv(t, envOptions{backups: true})
	c := login(t, base, adminToken)
	if _, err := e.backups.Create(context.Background(), "manual"); err != nil {
		t.Fatal(err)
	}
	run := e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "acme", "team_node_id": "pages"})
	body, h := signed("slack", "pages", slackSecret, wallclock.Now())
	ev := e.send("slack", body, h)
	pages := []string{"/ui/login", "/ui/overview", "/ui/provision", "/ui/runs", "/ui/runs/" + run.body["provisioning_run_id"].(string),
		"/ui/events", "/ui/events?source=slack&status=queued", "/ui/events/" + ev.body["event_id"].(string), "/ui/schedules", "/ui/agents",
		"/ui/backups", "/ui/static/app.css"}
	for _, p := range pages {
		resp, err := c.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page := string(b)
		if resp.StatusCode != 200 {
			t.Errorf("%s = %d", p, resp.StatusCode)
		}
		for name, re := range map[string]*regexp.Regexp{"a script": scriptTag, "an inline handler": inlineEvent, "an inline style": styleAttr, "a URL to another host": foreignURL} {
			if m := re.FindString(page); m != "" {
				t.Errorf("%s has %s: %q", p, name, m)
			}
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s CSP = %q", p, csp)
		}
		if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s headers = %v", p, resp.Header)
		}
	}
}

func TestUI_SessionCookieOriginAndExpiry(t *testing.T) {
	now := wallclock.Now()
	clock := &clock{t: now}
	_, base := uiEnv(t, envOptions{uiClock: clock.Now})
	c := login(t, base, adminToken)
	u, _ := url.Parse(base + "/ui/")
	cookies := c.Jar.Cookies(u)
	if len(cookies) != 1 || strings.Contains(cookies[0].Value, adminToken) {
		t.Fatalf("cookies = %v", cookies)
	}
	// The cookie's attributes, from the raw header.
	req, _ := http.NewRequest("POST", base+"/ui/login", strings.NewReader("token="+adminToken))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	set := resp.Header.Get("Set-Cookie")
	if !strings.Contains(set, "HttpOnly") || !strings.Contains(set, "SameSite=Strict") || strings.Contains(set, adminToken) {
		t.Fatalf("Set-Cookie = %q", set)
	}
	// A cross-site POST is refused even with the session.
	req, _ = http.NewRequest("POST", base+"/ui/provision", strings.NewReader("org_id=acme&team_node_id=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	if resp, err := c.Do(req); err != nil || resp.StatusCode != 403 {
		t.Fatalf("cross-site POST = %v %v", resp.StatusCode, err)
	}
	// Idle for longer than 30 minutes: logged out.
	clock.Add(31 * time.Minute)
	resp, err = c.Get(base + "/ui/overview")
	if err != nil || resp.Request.URL.Path != "/ui/login" {
		t.Fatalf("after idling: %v %v", resp.Request.URL.Path, err)
	}
}

// The provision form has every routing field of SPEC §4, and what is typed
// in each reaches the team's config; the event page shows the message the
// agent was given and the body as indented JSON.
func TestUI_ProvisionFormRoutesEveryFieldAndEventPageShowsTheMessage(t *testing.T) {
	e, base := uiEnv(t, envOptions{})
	c := login(t, base, adminToken)
	form := url.Values{"org_id": {"acme"}, "team_node_id": {"all-fields"}, "deployment_mode": {"shared"},
		"slack_channel_ids": {"C1, C2"}, "github_repos": {"acme/api"}, "pagerduty_service_ids": {"PABC"},
		"incidentio_alert_source_ids": {"01INC"}, "coralogix_team_names": {"acme-prod"}, "services": {"payments-api"}}
	_, page := getPage(t, c, base+"/ui/provision")
	for key := range form {
		if key != "org_id" && key != "team_node_id" && key != "deployment_mode" && !strings.Contains(page, `name="`+key+`"`) {
			t.Errorf("the provision form has no %s field", key)
		}
	}
	req, _ := http.NewRequest("POST", base+"/ui/provision", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cfg, ok := e.cs.NodeConfig("acme", "all-fields")
	routing, _ := cfg["routing"].(map[string]any)
	if !ok || fmt.Sprint(routing["slack_channel_ids"]) != "[C1 C2]" || fmt.Sprint(routing["incidentio_alert_source_ids"]) != "[01INC]" ||
		fmt.Sprint(routing["coralogix_team_names"]) != "[acme-prod]" || fmt.Sprint(routing["services"]) != "[payments-api]" {
		t.Fatalf("routing in the team's config = %v", routing)
	}

	body, h := signed("pagerduty", "page-msg", pagerdutySecret, wallclock.Now())
	id := e.send("pagerduty", body, h).body["event_id"].(string)
	code, page := getPage(t, c, base+"/ui/events/"+id)
	if code != 200 || !strings.Contains(page, `id="event-message"`) || !strings.Contains(page, "PagerDuty incident.triggered: Checkout error rate above 5%") {
		t.Fatalf("event page without the agent's message: %d", code)
	}
	if !strings.Contains(page, "{\n  &#34;event&#34;: {\n    &#34;id&#34;") {
		t.Fatalf("the body is not indented: %s", page[strings.Index(page, `id="event-body"`):][:200])
	}
}

// Finding things on the events page: an event id opens the event, a
// delivery id finds it across sources, team and time filters apply, and
// paging keeps the filters both ways (Older, then back to Newest).
func TestUI_EventsSearchFiltersAndPaging(t *testing.T) {
	e, base := uiEnv(t, envOptions{})
	c := login(t, base, adminToken)
	var ids []string
	for i := range 55 {
		body, h := signed("pagerduty", fmt.Sprintf("find%02d", i), pagerdutySecret, wallclock.Now())
		ids = append(ids, e.send("pagerduty", body, h).body["event_id"].(string))
	}
	gh, gh2 := []byte(`{"action":"opened","repository":{"full_name":"acme/payments"}}`), []byte(`{"action":"closed","repository":{"full_name":"nobody/else"}}`)
	routed := e.send("github", gh, webhook.Sign("github", githubSecret, gh, wallclock.Now(), "gh-delivery-routed")).body["event_id"].(string)
	lost := e.send("github", gh2, webhook.Sign("github", githubSecret, gh2, wallclock.Now(), "gh-delivery-unrouted")).body["event_id"].(string)
	e.waitStatus(routed, "delivered")
	e.waitStatus(lost, "unrouted")
	for _, id := range ids {
		e.waitStatus(id, "delivered")
	}

	resp, err := c.Get(base + "/ui/events?q=" + routed)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/ui/events/"+routed {
		t.Fatalf("searching an event id led to %s", resp.Request.URL.Path)
	}
	_, page := getPage(t, c, base+"/ui/events?q=gh-delivery-unrouted")
	if strings.Count(page, `class="event"`) != 1 || !strings.Contains(page, lost) {
		t.Fatalf("searching a delivery id: %d rows", strings.Count(page, `class="event"`))
	}
	_, page = getPage(t, c, base+"/ui/events?team_node_id=platform-sre&source=github")
	if strings.Count(page, `class="event"`) != 1 || !strings.Contains(page, routed) {
		t.Fatalf("team filter: %d rows", strings.Count(page, `class="event"`))
	}
	future := wallclock.Now().UTC().Add(time.Hour).Format("2006-01-02T15:04")
	if _, page = getPage(t, c, base+"/ui/events?since="+future); strings.Contains(page, `class="event"`) {
		t.Fatal("events from the future")
	}
	if code, _ := getPage(t, c, base+"/ui/events?team_node_id=a%20b"); code != 400 {
		t.Fatalf("a bad team id = %d", code)
	}
	// Paging with a filter: 55 pagerduty events are 50 + 5.
	_, first := getPage(t, c, base+"/ui/events?source=pagerduty")
	older := regexp.MustCompile(`href="(/ui/events\?[^"]*)" id="page-older"`).FindStringSubmatch(first)
	if strings.Count(first, `class="event"`) != 50 || older == nil || strings.Contains(first, `id="page-newest"`) {
		t.Fatalf("first page: %d rows, older link %v", strings.Count(first, `class="event"`), older)
	}
	_, second := getPage(t, c, base+strings.ReplaceAll(older[1], "&amp;", "&"))
	newest := regexp.MustCompile(`href="(/ui/events\?[^"]*)" id="page-newest"`).FindStringSubmatch(second)
	if strings.Count(second, `class="event"`) != 5 || strings.Contains(second, `id="page-older"`) || newest == nil || strings.Contains(second, routed) {
		t.Fatalf("second page: %d rows, newest link %v", strings.Count(second, `class="event"`), newest)
	}
	if _, back := getPage(t, c, base+strings.ReplaceAll(newest[1], "&amp;", "&")); strings.Count(back, `class="event"`) != 50 {
		t.Fatal("Newest does not lead back to the first page")
	}
	// Newer goes back one page: the same 50 rows as the first page, with
	// Older again and no Newer beyond the newest.
	newer := regexp.MustCompile(`href="(/ui/events\?[^"]*)" id="page-newer"`).FindStringSubmatch(second)
	if newer == nil {
		t.Fatal("the second page has no Newer link")
	}
	_, back := getPage(t, c, base+strings.ReplaceAll(newer[1], "&amp;", "&"))
	rowsOf := regexp.MustCompile(`href="/ui/events/([0-9]+)"`)
	if a, b := rowsOf.FindAllString(back, -1), rowsOf.FindAllString(first, -1); len(a) != 50 || fmt.Sprint(a) != fmt.Sprint(b) ||
		strings.Contains(back, `id="page-newer"`) || !strings.Contains(back, `id="page-older"`) {
		t.Fatalf("Newer from the second page: %d rows, same as the first: %v", len(a), fmt.Sprint(a) == fmt.Sprint(b))
	}
}

// A purged event's page says its headers went with its body, instead of an
// empty box.
func TestUI_PurgedEventSaysItsHeadersWentWithTheBody(t *testing.T) {
	e, base := uiEnv(t, envOptions{})
	body, h := signed(webhook.PagerDuty, "purged-page", pagerdutySecret, wallclock.Now())
	id := e.send(webhook.PagerDuty, body, h).body["event_id"].(string)
	e.waitStatus(id, store.EventDelivered)
	c := login(t, base, adminToken)
	if _, page := getPage(t, c, base+"/ui/events/"+id); !strings.Contains(page, "content-type: application/json") {
		t.Fatalf("the event page before the purge lacks its headers:\n%s", page)
	}
	if _, err := e.db.PurgeBodies(context.Background(), wallclock.Now().Add(time.Minute), wallclock.Now(), 100); err != nil {
		t.Fatal(err)
	}
	_, page := getPage(t, c, base+"/ui/events/"+id)
	if !strings.Contains(page, `id="event-headers-purged"`) || strings.Contains(page, "content-type: application/json") {
		t.Fatalf("the purged event's page:\n%s", page)
	}
}

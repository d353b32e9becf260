package server_test

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/kube"
	"github.com/incidentfox/orchestrator-edge/server/tracing"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// The admin page's round 2 in a real browser: the teams pages and
// deprovisioning with its plan, the charts, an accessibility audit of
// every page, and a keyboard-only way from login to a provisioned team.

// axeViolation is one failed axe-core rule.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// axeSource is axe-core's browser build, a test asset only (never embedded
// in the binary): testdata/axe-core holds the npm package's axe.min.js.
func axeSource(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "axe-core", "axe.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// noSideScroll fails when the page is wider than the 1280 px window (it
// would scroll sideways).
func noSideScroll(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	wide, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`[document.documentElement.scrollWidth, window.innerWidth]`))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if wide[0] > wide[1] {
		t.Errorf("%s is %d px wide in a %d px window: it scrolls sideways", name, wide[0], wide[1])
	}
}

// chartShape is one chart as the browser draws it.
type chartShape struct {
	ID       string  `json:"id"`
	Drawn    float64 `json:"drawn"`    // its width on the page, CSS px
	Declared float64 `json:"declared"` // its width attribute
	Overlap  string  `json:"overlap"`  // a label that runs into the bars
}

// chartsAtTheirSize fails unless every chart on the page is drawn at the
// size it declares (not stretched: the feedback chart's 480 units used to
// fill 1180 px, its text 2.4 times the page's) and no row label runs into
// the bars beside it.
func chartsAtTheirSize(t *testing.T, ctx context.Context, want int) {
	t.Helper()
	shapes, err := chromedp.Run(ctx, chromedp.Evaluate[[]chartShape](`Array.from(document.querySelectorAll('svg.chart')).map(svg => {
		const bars = Array.from(svg.querySelectorAll('rect.bar')).map(r => r.x.baseVal.value);
		const start = bars.length ? Math.min(...bars) : Infinity;
		const over = Array.from(svg.querySelectorAll('text.label')).find(l => { const b = l.getBBox(); return b.x + b.width > start - 2; });
		return {id: svg.id, drawn: svg.getBoundingClientRect().width, declared: svg.width.baseVal.value, overlap: over ? over.textContent : ''};
	})`))
	if err != nil {
		t.Fatal(err)
	}
	if len(shapes) != want {
		t.Fatalf("%d charts on the page, want %d", len(shapes), want)
	}
	for _, c := range shapes {
		if math.Abs(c.Drawn-c.Declared) > 0.5 {
			t.Errorf("chart %s is drawn %.1f px wide, declared %.0f: stretched or squeezed", c.ID, c.Drawn, c.Declared)
		}
		if c.Overlap != "" {
			t.Errorf("chart %s: label %q runs into its bars", c.ID, c.Overlap)
		}
	}
}

// audit runs axe-core on the page the browser shows and fails on a serious
// or critical violation; lesser ones are logged. The page must not scroll
// sideways at 1280 px either.
func audit(t *testing.T, ctx context.Context, axe, name string) {
	t.Helper()
	noSideScroll(t, ctx, name)
	// DevTools evaluation is not subject to the page's CSP (no script).
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](axe+"\n;true")); err != nil {
		t.Fatalf("%s: injecting axe-core: %v", name, err)
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]axeViolation](`axe.run(document, {resultTypes: ['violations']}).then(r =>
		r.violations.map(v => ({id: v.id, impact: v.impact || '', help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))})))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: axe.run: %v", name, err)
	}
	for _, v := range got {
		if v.Impact == "serious" || v.Impact == "critical" {
			t.Errorf("%s: %s violation %s (%s) at %v", name, v.Impact, v.ID, v.Help, v.Nodes)
		} else {
			t.Logf("%s: %s finding %s (%s) at %v", name, v.Impact, v.ID, v.Help, v.Nodes)
		}
	}
}

// screenshot writes the page (or one element) into $UI_SCREENSHOTS_DIR when
// set (make screenshots points it at docs/).
func screenshot(t *testing.T, ctx context.Context, sel, file string) {
	t.Helper()
	dir := os.Getenv("UI_SCREENSHOTS_DIR")
	if dir == "" {
		return
	}
	var shot []byte
	var err error
	if sel == "" {
		shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG (below it, JPEG)
	} else {
		shot, err = chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(sel)))
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, file), shot, 0o644); err != nil {
		t.Fatal(err)
	}
}

// seedTeams provisions two teams on the real API server — one with a
// dedicated agent and a schedule, one shared whose schedule is suspended —
// and sends events that reach each.
func seedTeams(t *testing.T, e *env) {
	t.Helper()
	for _, team := range []struct {
		name, channel, mode string
	}{{"checkout", "C0CHECKOUT", "dedicated"}, {"search", "C0SEARCH", "shared"}} {
		r := e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "acme", "team_node_id": team.name,
			"routing": map[string]any{"slack_channel_ids": []string{team.channel}}, "create_pipeline_schedule": true,
			"pipeline_schedule": "0 3 * * *", "deployment_mode": team.mode})
		if r.code != 200 {
			t.Fatalf("provision %s = %d %s", team.name, r.code, r.raw)
		}
	}
	list := e.do("GET", "/api/v1/admin/schedules?org_id=acme&team_node_id=search", adminToken, nil)
	rows, _ := list.body["schedules"].([]any)
	if len(rows) != 1 {
		t.Fatalf("search's schedules = %s", list.raw)
	}
	id := rows[0].(map[string]any)["id"].(string)
	if r := e.do("PATCH", "/api/v1/admin/schedules/"+id, adminToken, map[string]any{"enabled": false}); r.code != 200 {
		t.Fatalf("suspend = %d %s", r.code, r.raw)
	}
	var ids []string
	for i := range 6 {
		channel := "C0SEARCH" // the dedicated agent's Service has no pod behind it here
		now := wallclock.Now()
		body := fmt.Appendf(nil, `{"type":"event_callback","event_id":"EvTeams%d","team_id":"T1","event_time":%d,"event":{"type":"app_mention","channel":%q,"user":"U1","text":"<@U0> help","ts":"%d.00010%d"}}`,
			i, now.Unix(), channel, now.Unix(), i)
		ids = append(ids, e.send("slack", body, webhook.Sign(webhook.Slack, slackSecret, body, now, "")).body["event_id"].(string))
	}
	for _, id := range ids {
		e.waitStatus(id, store.EventDelivered)
	}
}

func TestUI_TeamsPageAndDeprovisionPlanThenConfirm(t *testing.T) {
	e, base := uiEnv(t, envOptions{withCluster: true})
	seedTeams(t, e)
	ctx := browser(t)
	do := doer(t, ctx)
	do(chromedp.Navigate(base+"/ui/login"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), adminToken), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("health-db")),
		chromedp.Navigate(base+"/ui/teams"), chromedp.WaitVisible(chromedp.ID("teams")))
	rows, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll("#teams tr.team")))
	if err != nil {
		t.Fatal(err)
	}
	table := text(t, ctx, "#teams")
	for _, want := range []string{"acme / checkout", "acme / search", "provision", "0 3 * * *", "suspended", "active",
		"0/1 ready", "shared agent", "delivered 6"} {
		if !strings.Contains(table, want) {
			t.Errorf("teams page lacks %q:\n%s", want, table)
		}
	}
	if len(rows) != 2 {
		t.Fatalf("%d teams listed, want the 2 provisioned", len(rows))
	}
	screenshot(t, ctx, "", "teams-page.png")

	// The team page, then a plan: nothing changes until confirmed.
	do(chromedp.Click(chromedp.CSS(`#teams a[href="/ui/teams/acme/checkout"]`)), chromedp.WaitVisible(chromedp.ID("plan-deprovision")))
	if got := text(t, ctx, "#team-agent"); !strings.Contains(got, "agent-dedicated-") || !strings.Contains(got, "svc.cluster.local") {
		t.Fatalf("team agent = %q", got)
	}
	do(chromedp.Click(chromedp.ID("revoke_tokens")), chromedp.Click(chromedp.ID("plan-deprovision")),
		chromedp.WaitVisible(chromedp.ID("confirm-deprovision")))
	plan := text(t, ctx, "#plan")
	for _, want := range []string{"delete", "CronJob", "Deployment", "Service", "revoke_token", "remove_schedule"} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan lacks %q:\n%s", want, plan)
		}
	}
	team := kube.Team{OrgID: "acme", TeamNodeID: "checkout"}
	if d, err := e.kube.GetDeployment(context.Background(), team, kube.DedicatedAgentName("acme", "checkout")); err != nil || d == nil {
		t.Fatalf("the plan removed the Deployment already: %v %v", d, err)
	}
	do(chromedp.Click(chromedp.ID("confirm-deprovision")), chromedp.WaitVisible(chromedp.ID("run-status")))
	if got := text(t, ctx, "#run-status"); got != "succeeded" {
		t.Fatalf("deprovision run %q: %s", got, text(t, ctx, "main"))
	}
	if got := text(t, ctx, "#notice"); !strings.HasPrefix(got, "Deprovisioned acme/checkout:") {
		t.Fatalf("notice %q", got)
	}
	if d, err := e.kube.GetDeployment(context.Background(), team, kube.DedicatedAgentName("acme", "checkout")); err != nil || (d != nil && d.DeletionTimestamp == nil) {
		t.Fatalf("the Deployment is still there: %v %v", d, err)
	}
	if toks := e.cs.Tokens("acme", "checkout"); len(toks) == 0 || !toks[0].Revoked {
		t.Fatalf("tokens after deprovisioning: %+v", toks)
	}
	do(chromedp.Navigate(base+"/ui/teams/acme/checkout"), chromedp.WaitVisible(chromedp.ID("team-last-run")))
	if got := text(t, ctx, "#team-last-run"); !strings.HasPrefix(got, "deprovision ") || strings.Contains(got, "dry run") {
		t.Fatalf("last run after confirming = %q", got)
	}
}

// A confirm carries out the plan that was shown or nothing: when the team
// changed in between, the new plan is shown again (409) and nothing is
// deleted.
func TestUI_DeprovisionConfirmRefusesAChangedPlan(t *testing.T) {
	e, base := uiEnv(t, envOptions{withCluster: true})
	if r := e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "acme", "team_node_id": "moving",
		"create_pipeline_schedule": true}); r.code != 200 {
		t.Fatalf("provision = %d %s", r.code, r.raw)
	}
	c := login(t, base, adminToken)
	// Every answer is a redirect after POST (303) to the team page showing
	// the plan; the client follows it.
	post := func(form url.Values) (int, string) {
		req, _ := http.NewRequest("POST", base+"/ui/teams/acme/moving/deprovision", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", base)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.Request.Method != "GET" || resp.Request.URL.Path != "/ui/teams/acme/moving" || resp.Request.URL.Query().Get("plan") == "" {
			t.Fatalf("the plan answered %s %s, not a redirect to the team page's plan", resp.Request.Method, resp.Request.URL)
		}
		return resp.StatusCode, string(b)
	}
	code, page := post(url.Values{"delete_k8s_resources": {"1"}})
	digest := regexp.MustCompile(`name="plan" value="([0-9a-f]+)"`).FindStringSubmatch(page)
	if code != 200 || digest == nil || strings.Contains(page, "Deployment") {
		t.Fatalf("plan = %d %v", code, digest)
	}
	// The team gains a dedicated agent after the plan was shown.
	if r := e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "acme", "team_node_id": "moving", "deployment_mode": "dedicated"}); r.code != 200 {
		t.Fatalf("provision dedicated = %d %s", r.code, r.raw)
	}
	code, page = post(url.Values{"delete_k8s_resources": {"1"}, "confirm": {"1"}, "plan": {digest[1]}})
	if code != 200 || !strings.Contains(page, "The plan changed since it was shown") || !strings.Contains(page, "Deployment") {
		t.Fatalf("confirm of a stale plan = %d", code)
	}
	team := kube.Team{OrgID: "acme", TeamNodeID: "moving"}
	if d, err := e.kube.GetDeployment(context.Background(), team, kube.DedicatedAgentName("acme", "moving")); err != nil || d == nil || d.DeletionTimestamp != nil {
		t.Fatalf("a stale confirm deleted the Deployment: %v %v", d, err)
	}
	// Confirming the plan now shown carries it out.
	digest = regexp.MustCompile(`name="plan" value="([0-9a-f]+)"`).FindStringSubmatch(page)
	req, _ := http.NewRequest("POST", base+"/ui/teams/acme/moving/deprovision",
		strings.NewReader(url.Values{"delete_k8s_resources": {"1"}, "confirm": {"1"}, "plan": {digest[1]}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.HasPrefix(resp.Request.URL.Path, "/ui/runs/") {
		t.Fatalf("confirm led to %s", resp.Request.URL.Path)
	}
	if d, _ := e.kube.GetDeployment(context.Background(), team, kube.DedicatedAgentName("acme", "moving")); d != nil && d.DeletionTimestamp == nil {
		t.Fatal("the confirmed plan left the Deployment")
	}
}

// The charts: well-formed SVG with a title and description, the figures
// of the tables beside them equal to what was sent, and latency
// percentiles from the stored acks and agent calls.
func TestUI_ChartsDrawTheLastDayFromStoredFigures(t *testing.T) {
	e, base := uiEnv(t, envOptions{})
	sent := map[string]int{"slack": 3, "github": 2, "pagerduty": 4}
	var ids []string
	for source, n := range sent {
		for i := range n {
			body, h := signed(source, fmt.Sprintf("chart-%s-%d", source, i), secrets[source], wallclock.Now())
			ids = append(ids, e.send(source, body, h).body["event_id"].(string))
		}
	}
	for _, id := range ids {
		e.waitStatus(id, store.EventDelivered)
	}
	if err := e.srv.FlushAckStats(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := login(t, base, adminToken)
	_, page := getPage(t, c, base+"/ui/overview")
	for _, id := range []string{"chart-per-source", "chart-outcomes", "chart-latency"} {
		m := regexp.MustCompile(`(?s)<svg class="chart" id="` + id + `".*?</svg>`).FindString(page)
		if m == "" {
			t.Fatalf("no %s chart", id)
		}
		var doc struct {
			Role  string `xml:"role,attr"`
			Title string `xml:"title"`
			Desc  string `xml:"desc"`
		}
		if err := xml.Unmarshal([]byte(m), &doc); err != nil || doc.Role != "img" || doc.Title == "" || doc.Desc == "" {
			t.Fatalf("%s: %v %+v", id, err, doc)
		}
	}
	for source, n := range sent {
		row := regexp.MustCompile(`<tr><th scope="row">` + source + `</th>(?:<td>\d+</td>)+</tr>`).FindString(page)
		cells := regexp.MustCompile(`<td>(\d+)</td>`).FindAllStringSubmatch(row, -1)
		if len(cells) != 25 || cells[24][1] != fmt.Sprint(n) {
			t.Errorf("%s row = %q, want a total of %d", source, row, n)
		}
	}
	if !strings.Contains(page, `<tr><th scope="row">delivered</th><td>9</td></tr>`) {
		t.Error("outcomes: not 9 delivered")
	}
	for _, what := range []string{"Ack", "Ack→agent"} {
		row := regexp.MustCompile(`<tr><th scope="row">` + what + `</th><td>(\d+)</td><td>([^<]+)</td>`).FindStringSubmatch(page)
		if row == nil || row[1] != "9" || !strings.HasPrefix(row[2], "&lt; ") {
			t.Errorf("%s latency row = %v", what, row)
		}
	}
}

// Every page passes axe-core with no serious or critical violation.
func TestUI_AccessibilityAuditOfEveryPage(t *testing.T) {
	e, base := uiEnv(t, envOptions{withCluster: true, backups: true, tracing: tracing.Off(), traceURL: "http://jaeger.example:16686/trace/{trace_id}"})
	seedTeams(t, e)
	if _, err := e.backups.Create(context.Background(), "manual"); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.FlushAckStats(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A day of history, so that the charts have something to draw: delivered
	// events of every source over the last 24 hours, busier by day.
	now := wallclock.Now().UTC()
	for i := range 480 {
		at := now.Add(-time.Duration(i) * 3 * time.Minute)
		if (at.Hour()+i)%3 != 0 && at.Hour() >= 7 && at.Hour() <= 19 || i%4 == 0 {
			src := []string{"slack", "github", "pagerduty", "incidentio", "coralogix", "pagerduty"}[i%6]
			if _, err := e.db.InsertEvent(context.Background(), store.Event{Source: src, DeliveryID: fmt.Sprintf("history-%d", i),
				EventType: "x", Status: store.EventDelivered, OrgID: "acme", TeamNodeID: "search", ReceivedAt: at}); err != nil {
				t.Fatal(err)
			}
		}
	}
	run := e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "acme", "team_node_id": "audit"})
	body, h := signed("pagerduty", "audit", pagerdutySecret, wallclock.Now())
	ev := e.send("pagerduty", body, h).body["event_id"].(string)
	e.waitStatus(ev, store.EventDelivered)
	// An event that came with its sender's trace, which it keeps (with
	// tracing off too), so that its page shows the trace row and its link
	// (SPEC §22).
	tbody, th := signed("pagerduty", "traced", pagerdutySecret, wallclock.Now())
	th.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	traced := e.send("pagerduty", tbody, th).body["event_id"].(string)
	e.waitStatus(traced, store.EventDelivered)
	// A plain silence and a recurring one (SPEC §21), so that the
	// Silences tab shows when the next window opens.
	e.setRoutes(sundayMaintenance)
	for _, s := range []map[string]any{
		{"org_id": "acme", "team_node_id": "checkout", "ends_at": now.Add(2 * time.Hour).Format(time.RFC3339), "comment": "payments DB failover"},
		{"org_id": "acme", "sources": []string{"alertmanager"}, "match": map[string]any{"service": "payments-db"},
			"mute_time_intervals": []string{"sunday-maintenance"}, "comment": "weekly DB maintenance"},
	} {
		if r := e.do("POST", "/api/v1/admin/silences", adminToken, s); r.code != 201 {
			t.Fatalf("silence = %d %s", r.code, r.raw)
		}
	}

	ctx := browser(t)
	axe := axeSource(t)
	visit := func(path, waitID string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(base+path), chromedp.WaitVisible(chromedp.ID(waitID))); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		audit(t, ctx, axe, path)
	}
	visit("/ui/login", "token")
	// A refused login shows its error.
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("token"), "wrong"), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("error"))); err != nil {
		t.Fatal(err)
	}
	audit(t, ctx, axe, "/ui/login (refused)")
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("token"), adminToken), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("health-db"))); err != nil {
		t.Fatal(err)
	}
	audit(t, ctx, axe, "/ui/overview")
	chartsAtTheirSize(t, ctx, 3)
	// The events chart's sources: a fill each, no two alike.
	fills, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#chart-per-source rect.swatch')).map(r =>
		getComputedStyle(r).fill)`))
	if err != nil || len(fills) < 5 || len(slices.Compact(slices.Sorted(slices.Values(fills)))) != len(fills) {
		t.Errorf("the events chart's sources are filled %v (%v): want a distinct pattern each", fills, err)
	}
	screenshot(t, ctx, "#chart-per-source", "chart-events-per-source.png")
	visit("/ui/teams", "teams")
	visit("/ui/teams/acme/checkout", "plan-deprovision")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("plan-deprovision")), chromedp.WaitVisible(chromedp.ID("confirm-deprovision"))); err != nil {
		t.Fatal(err)
	}
	audit(t, ctx, axe, "deprovision plan")
	visit("/ui/provision", "org_id")
	visit("/ui/runs", "runs")
	visit("/ui/runs/"+run.body["provisioning_run_id"].(string), "run-status")
	visit("/ui/events", "events")
	visit("/ui/events?source=pagerduty&status=delivered", "events")
	visit("/ui/events/"+ev, "event-status")
	visit("/ui/events/"+traced, "event-trace-link")
	screenshot(t, ctx, "", "event-trace.png")
	visit("/ui/sources", "sources")
	visit("/ui/silences", "silence-comment")
	screenshot(t, ctx, "", "silences-recurring.png")
	visit("/ui/events?suppressed_reason=repeat", "filter-reason")
	visit("/ui/schedules", "schedules")
	visit("/ui/agents", "agent_name")
	visit("/ui/backups", "backups")
	visit("/ui/runs/00000000-0000-0000-0000-000000000000", "error")
}

// focusedIs is a script that says whether the focused element matches sel.
func focusedIs(sel string) string {
	return fmt.Sprintf(`document.activeElement !== null && document.activeElement.matches(%q)`, sel)
}

// tabTo presses Tab until the element matching sel has the focus: it is
// reachable from the keyboard, in the page's order.
func tabTo(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	for range 80 {
		on, err := chromedp.Run(ctx, chromedp.Evaluate[bool](focusedIs(sel)))
		if err != nil {
			t.Fatal(err)
		}
		if on {
			return
		}
		if err := chromedp.Do(ctx, chromedp.KeyEvent(kb.Tab)); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatalf("Tab never reaches %s", sel)
}

// Keyboard only: Tab, type and Enter from the login page to a provisioned
// team, no click anywhere.
func TestUI_KeyboardOnlyLoginToProvision(t *testing.T) {
	e, base := uiEnv(t, envOptions{withCluster: true})
	ctx := browser(t)
	keys := func(s string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.KeyEvent(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/login"), chromedp.WaitVisible(chromedp.ID("token"))); err != nil {
		t.Fatal(err)
	}
	tabTo(t, ctx, "#token")
	keys(adminToken)
	keys(kb.Enter)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("health-db"))); err != nil {
		t.Fatal(err)
	}
	tabTo(t, ctx, `nav a[href="/ui/provision"]`)
	keys(kb.Enter)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("org_id"))); err != nil {
		t.Fatal(err)
	}
	tabTo(t, ctx, "#org_id")
	keys("acme")
	keys(kb.Tab)
	if on, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](focusedIs("#team_node_id"))); !on {
		t.Fatal("Tab from the org field does not lead to the team field")
	}
	keys("keyboard-team")
	tabTo(t, ctx, "#slack_channel_ids")
	keys("C0KEYBOARD")
	tabTo(t, ctx, "#deployment_mode")
	keys(kb.ArrowDown) // shared → dedicated
	tabTo(t, ctx, "#provision")
	keys(kb.Enter)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("run-status"))); err != nil {
		t.Fatal(err)
	}
	if got := text(t, ctx, "#run-status"); got != "succeeded" {
		t.Fatalf("run %q: %s", got, text(t, ctx, "main"))
	}
	cfg, _ := e.cs.NodeConfig("acme", "keyboard-team")
	if routing, _ := cfg["routing"].(map[string]any); fmt.Sprint(routing["slack_channel_ids"]) != "[C0KEYBOARD]" {
		t.Fatalf("routing = %v", cfg["routing"])
	}
	if d, err := e.kube.GetDeployment(context.Background(), kube.Team{OrgID: "acme", TeamNodeID: "keyboard-team"},
		kube.DedicatedAgentName("acme", "keyboard-team")); err != nil || d == nil {
		t.Fatalf("the select's arrow key did not pick dedicated: %v %v", d, err)
	}
}

// The page's figures are reused for StatsMaxAge; older ones are still
// served at once while one computation renews them in the background.
func TestUI_ChartFiguresAreReusedThenRenewedInTheBackground(t *testing.T) {
	e, base := uiEnv(t, envOptions{fakeClock: true, statsMaxAge: time.Minute})
	var c *http.Client
	slackTotal := func() string {
		_, page := getPage(t, c, base+"/ui/overview")
		cells := regexp.MustCompile(`<td>(\d+)</td>`).FindAllStringSubmatch(
			regexp.MustCompile(`<tr><th scope="row">slack</th>(?:<td>\d+</td>)+</tr>`).FindString(page), -1)
		if len(cells) != 25 {
			t.Fatalf("no slack row in the per-source table")
		}
		return cells[24][1]
	}
	send := func(from, n int) {
		for i := from; i < from+n; i++ {
			body, h := signed("slack", fmt.Sprintf("reuse-%d", i), slackSecret, e.clock.Now())
			if r := e.send("slack", body, h); r.code != 200 {
				t.Fatalf("send = %d %s", r.code, r.raw)
			}
		}
	}
	send(0, 2)
	c = login(t, base, adminToken) // lands on the overview: the first figures
	if got := slackTotal(); got != "2" {
		t.Fatalf("first figures: %s slack events, want 2", got)
	}
	send(2, 3)
	if got := slackTotal(); got != "2" {
		t.Fatalf("within the max age the figures were recomputed: %s", got)
	}
	e.clock.Add(2 * time.Minute)
	if got := slackTotal(); got != "2" {
		t.Fatalf("stale figures were not served at once: %s", got)
	}
	waitFor(t, "the renewed figures", func() bool { return slackTotal() == "5" })
}

// latencyBar is one bar of the latency chart: its drawn width and the
// duration its text names.
type latencyBar struct {
	Width float64 `json:"w"`
	Text  string  `json:"t"`
}

// parseBound reads a latency text such as "< 5ms" or "≥ 1m".
func parseBound(t *testing.T, s string) time.Duration {
	t.Helper()
	_, v, _ := strings.Cut(s, ": ")
	v = strings.TrimSpace(strings.TrimLeft(v, "<≥ "))
	d, err := time.ParseDuration(strings.Replace(v, "µs", "us", 1))
	if err != nil {
		t.Fatalf("latency text %q: %v", s, err)
	}
	return d
}

// The newcomer's report, in Chromium at 1280×900: an ack→agent bar of
// "< 100 ms" was drawn shorter than an ack bar of "< 5 ms" (each group had
// its own scale), the half-width charts' labels were about 8 px, the
// events filter row was wider than the window, timestamps wrapped onto three
// lines, long errors filled the list and repeated on the event page, the
// seeded team that received every sample was not on the teams page, and a
// delivered event's "attempts: 0" read as "never tried".
func TestUI_ReadableAt1280(t *testing.T) {
	e, base := uiEnv(t, envOptions{})
	ctx0 := context.Background()
	now := wallclock.Now().UTC()
	// A sample reaches the seeded team (not provisioned here).
	body, h := signed("pagerduty", "readable", pagerdutySecret, now)
	e.waitStatus(e.send("pagerduty", body, h).body["event_id"].(string), store.EventDelivered)
	if err := e.srv.FlushAckStats(ctx0); err != nil {
		t.Fatal(err)
	}
	// Agent calls that started 90 ms after their events arrived (acks take
	// far less): the two groups of bars differ by more than tenfold.
	var outs []store.Outcome
	var runs []store.AgentRun
	for i := range 5 {
		// Held a day: the running dispatcher must not claim the seeded
		// events before their outcomes below are recorded (it did under
		// load, and the page then read an event still being delivered).
		ev := store.Event{Source: "github", DeliveryID: fmt.Sprintf("slow-%d", i), EventType: "issues.opened",
			Status: store.EventQueued, OrgID: "acme", TeamNodeID: "platform-sre", ReceivedAt: now.Add(-time.Hour), HoldUntil: now.Add(24 * time.Hour)}
		r, err := e.db.InsertEvent(ctx0, ev)
		if err != nil {
			t.Fatal(err)
		}
		ev.ID = r.ID
		run := store.AgentRun{ID: uuid.NewString(), TriggerSource: "github", WebhookEventID: ev.ID, OrgID: "acme", TeamNodeID: "platform-sre",
			AgentName: "planner", Status: "succeeded", StartedAt: ev.ReceivedAt.Add(90 * time.Millisecond), Duration: time.Second, EventCount: 1}
		runs = append(runs, run)
		outs = append(outs, store.Outcome{ID: ev.ID, Status: store.EventDelivered, At: run.StartedAt, From: store.EventQueued, Attempts: 1})
	}
	// An event that went dead after three calls failed the same long way.
	longErr := "agent call: agent POST /agents/planner/run: HTTP 503: upstream connect error or disconnect/reset before headers. " +
		"reset reason: connection termination; retried with backoff\nsecond line of the error that the list must not show"
	dead := store.Event{Source: "pagerduty", DeliveryID: "dead-long", EventType: "incident.triggered",
		Status: store.EventQueued, OrgID: "acme", TeamNodeID: "platform-sre", ReceivedAt: now.Add(-time.Minute), HoldUntil: now.Add(24 * time.Hour)}
	if r, err := e.db.InsertEvent(ctx0, dead); err != nil {
		t.Fatal(err)
	} else {
		dead.ID = r.ID
	}
	for i := range 3 {
		runs = append(runs, store.AgentRun{ID: uuid.NewString(), TriggerSource: "pagerduty", WebhookEventID: dead.ID, OrgID: "acme",
			TeamNodeID: "platform-sre", AgentName: "planner", Status: "failed", UpstreamStatus: 503, Error: longErr,
			StartedAt: dead.ReceivedAt.Add(time.Duration(i+1) * time.Second)})
	}
	outs = append(outs, store.Outcome{ID: dead.ID, Status: store.EventDead, At: now, From: store.EventQueued, Attempts: 3, LastError: longErr})
	if err := e.db.RecordOutcomes(ctx0, outs, runs, nil); err != nil {
		t.Fatal(err)
	}

	ctx := browser(t)
	do := doer(t, ctx)
	do(chromedp.Navigate(base+"/ui/login"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), adminToken), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("chart-latency")))
	noSideScroll(t, ctx, "overview")
	chartsAtTheirSize(t, ctx, 3)

	// One scale for every latency bar: a longer time is a longer bar.
	bars, err := chromedp.Run(ctx, chromedp.Evaluate[[]latencyBar](`Array.from(document.querySelectorAll('#chart-latency rect.bar')).map(r =>
		({w: parseFloat(r.getAttribute('width')), t: r.querySelector('title').textContent}))`))
	if err != nil || len(bars) != 6 {
		t.Fatalf("latency bars %v %v", bars, err)
	}
	for _, a := range bars {
		for _, b := range bars {
			if da, db := parseBound(t, a.Text), parseBound(t, b.Text); da < db && a.Width >= b.Width {
				t.Errorf("%q is drawn %.1f wide, %q %.1f: bars not in the order of their values", a.Text, a.Width, b.Text, b.Width)
			}
		}
	}
	// Every chart has a visible title and an axis; its text is readable.
	info, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`[
		document.querySelectorAll('svg.chart text.title').length,
		document.querySelectorAll('#chart-latency text.tick').length,
		document.querySelectorAll('#chart-outcomes text.tick').length,
		Math.min(...Array.from(document.querySelectorAll('svg.chart text')).map(t => t.getBoundingClientRect().height))]`))
	if err != nil || info[0] != 3 || info[1] < 2 || info[2] < 2 {
		t.Fatalf("titles %v, latency ticks %v, outcome ticks %v (%v)", info[0], info[1], info[2], err)
	}
	if info[3] < 12 {
		t.Errorf("the smallest chart text is %.1f px high: not readable", info[3])
	}
	screenshot(t, ctx, ".grid2", "charts-outcomes-latency.png")

	// The events list: the filter row fits, a timestamp is one line, an
	// error shows its first line only, "failed attempts" says what it counts.
	do(chromedp.Navigate(base+"/ui/events"), chromedp.WaitVisible(chromedp.ID("events")))
	noSideScroll(t, ctx, "events")
	checks, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`[
		document.getElementById('filter').getBoundingClientRect().right,
		Math.max(...Array.from(document.querySelectorAll('#events td.nowrap a')).map(a => a.getClientRects().length))]`))
	if err != nil || checks[0] > 1280 || checks[1] != 1 {
		t.Fatalf("filter button's right edge %v, lines per timestamp %v (%v)", checks[0], checks[1], err)
	}
	table := text(t, ctx, "#events")
	if !strings.Contains(table, "Agent calls") || strings.Contains(table, "second line of the error") ||
		!strings.Contains(table, "upstream connect error") {
		t.Errorf("events list:\n%s", table)
	}
	// The event page: the whole error once, and a repeat said as such.
	do(chromedp.Navigate(base+"/ui/events/"+dead.ID), chromedp.WaitVisible(chromedp.ID("agent-runs")))
	noSideScroll(t, ctx, "event")
	if calls := text(t, ctx, "#agent-runs"); strings.Count(calls, "upstream connect error") != 1 || strings.Count(calls, "the same error as above") != 2 {
		t.Errorf("agent calls of the dead event:\n%s", calls)
	}
	if got := text(t, ctx, "#event-error"); !strings.Contains(got, "second line of the error") {
		t.Errorf("the event page does not show the whole error: %q", got)
	}
	do(chromedp.Navigate(base+"/ui/events/"+outs[0].ID), chromedp.WaitVisible(chromedp.ID("event-attempts")))
	if got := text(t, ctx, "#event-attempts"); got != "1 (delivered at the first try)" {
		t.Errorf("a delivered event's attempts read %q", got)
	}

	// The teams page lists the seeded team that received the events.
	do(chromedp.Navigate(base+"/ui/teams"), chromedp.WaitVisible(chromedp.ID("teams")))
	noSideScroll(t, ctx, "teams")
	if got := text(t, ctx, "#teams"); !strings.Contains(got, "acme / platform-sre") || !strings.Contains(got, "not provisioned here") ||
		!strings.Contains(got, "no run here") {
		t.Errorf("teams page:\n%s", got)
	}
	do(chromedp.Navigate(base+"/ui/teams/acme/platform-sre"), chromedp.WaitVisible(chromedp.ID("team-provisioned")))
	if got := text(t, ctx, "#team-provisioned"); !strings.HasPrefix(got, "no") {
		t.Errorf("team page says provisioned here: %q", got)
	}
	// The sources and silences pages fit too (schemes and routes are long).
	do(chromedp.Navigate(base+"/ui/sources"), chromedp.WaitVisible(chromedp.ID("sources")))
	noSideScroll(t, ctx, "sources")
	screenshot(t, ctx, "main", "sources-page.png")
	do(chromedp.Navigate(base+"/ui/silences"), chromedp.WaitVisible(chromedp.ID("silence-comment")))
	noSideScroll(t, ctx, "silences")
	screenshot(t, ctx, "main", "silences-page.png")
}

// A fresh orchestrator's teams page says what to do instead of an empty table.
func TestUI_TeamsPageEmptyStateSaysWhatToDo(t *testing.T) {
	_, base := uiEnv(t, envOptions{})
	c := login(t, base, adminToken)
	code, page := getPage(t, c, base+"/ui/teams")
	if code != 200 || !strings.Contains(page, `id="teams-empty"`) || !strings.Contains(page, `href="/ui/provision"`) {
		t.Fatalf("empty teams page = %d:\n%s", code, page)
	}
}

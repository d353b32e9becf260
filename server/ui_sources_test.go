package server_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// TestUI_SourcesAndFeedbackInARealBrowser: in Chromium, the Sources tab
// lists every route and how it is verified (never a secret); an answer's
// feedback, given by two people through two Slack apps, shows on its event page and in
// the overview's per-team chart; an admin of another org sees neither.
func TestUI_SourcesAndFeedbackInARealBrowser(t *testing.T) {
	e, base := uiEnv(t, envOptions{sourcesFile: acmeFile,
		sourceEnv: map[string]string{"ACME_DEPLOYS_SECRET": "acme-secret-value", "SREBOT_SIGNING_SECRET": sreBotSecret}})
	const otherOrg = "other-org-admin-token"
	e.cs.AddAdmin(otherOrg, peers.Identity{Role: "admin", Permissions: []string{"admin:*"}, OrgID: "big"})
	body := webhook.Sample(webhook.Slack, "browser-fb", wallclock.Now())
	mention := e.send(webhook.Slack, body, slackSigned(t, slackSecret, body)).body["event_id"].(string)
	e.waitStatus(mention, store.EventDelivered)
	runs, _ := e.db.EventAgentRuns(context.Background(), mention)
	// Two people's feedback, through two apps, each recorded by the router.
	up := interaction(t, "b-1", "feedback_positive", runs[0].FeedbackRef, "C0A4967KRBM")
	r := e.sendTo("/webhooks/slack/sre-bot/interactions", up, slackSigned(t, sreBotSecret, up))
	if r.code != 200 {
		t.Fatalf("feedback = %d %s", r.code, r.raw)
	}
	e.waitStatus(r.body["event_id"].(string), store.EventIgnored)
	down := clickBy(t, "U0BOB", "b-2", "feedback_negative", runs[0].FeedbackRef, "C0A4967KRBM")
	if r = e.sendTo("/webhooks/slack/interactions", down, slackSigned(t, slackSecret, down)); r.code != 200 {
		t.Fatalf("feedback = %d %s", r.code, r.raw)
	}
	e.waitStatus(r.body["event_id"].(string), store.EventIgnored)

	ctx := browser(t)
	do := doer(t, ctx)
	do(chromedp.Navigate(base+"/ui/login"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), adminToken), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("health-db")), chromedp.WaitVisible(chromedp.ID("chart-feedback")))
	// The table sits in a closed <details>: read its text content.
	fb, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#feedback-table").textContent`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fb, "acme/platform-sre") || !strings.Contains(fb, "1") {
		t.Errorf("overview feedback table = %q", fb)
	}
	// The feedback chart sits alone on its row: drawn at its own size,
	// not stretched across it.
	chartsAtTheirSize(t, ctx, 4)
	screenshot(t, ctx, "#feedback + figure", "chart-feedback.png")
	do(chromedp.Navigate(base+"/ui/sources"), chromedp.WaitVisible(chromedp.ID("sources")))
	page := text(t, ctx, "#sources")
	for _, want := range []string{"acme-deploys", "configured", "POST /webhooks/acme-deploys", "HMAC-SHA512 (base64) of {id}.{timestamp}.{body} in X-Acme-Signature",
		"alertmanager", "POST /webhooks/alertmanager", "POST /webhooks/slack/sre-bot/interactions", "POST /webhooks/slack/interactions", "service"} {
		if !strings.Contains(page, want) {
			t.Errorf("the sources page lacks %q:\n%s", want, page)
		}
	}
	html := pageHTML(t, ctx)
	for _, secret := range []string{"acme-secret-value", sreBotSecret, slackSecret, alertmanagerTok} {
		if strings.Contains(html, secret) {
			t.Errorf("the sources page shows a secret")
		}
	}
	do(chromedp.Navigate(base+"/ui/events/"+mention), chromedp.WaitVisible(chromedp.ID("agent-runs")))
	calls := text(t, ctx, "#agent-runs")
	for _, want := range []string{"helpful", "unhelpful", "ana (sre-bot)", "run " + runs[0].ID} {
		if !strings.Contains(calls, want) {
			t.Errorf("the event page's agent calls lack %q:\n%s", want, calls)
		}
	}
	screenshot(t, ctx, "#agent-runs", "event-feedback.png")

	// Another org's admin: no feedback of acme's, and acme's event is not found.
	other := browser(t)
	doOther := doer(t, other)
	doOther(chromedp.Navigate(base+"/ui/login"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), otherOrg), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("health-db")))
	overview := pageHTML(t, other)
	if strings.Contains(overview, "chart-feedback") || strings.Contains(overview, "platform-sre") {
		t.Error("another org's admin sees acme's feedback on the overview")
	}
	doOther(chromedp.Navigate(base+"/ui/events/"+mention), chromedp.WaitVisible(chromedp.ID("error")))
	eventPage := pageHTML(t, other)
	if strings.Contains(eventPage, "unhelpful") || strings.Contains(eventPage, runs[0].ID) {
		t.Error("another org's admin sees acme's event and its feedback")
	}
}

// pageHTML is the whole page as the browser has it.
func pageHTML(t *testing.T, ctx context.Context) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.documentElement.outerHTML"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

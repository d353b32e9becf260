package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/incidentfox/orchestrator-edge/store"
)

// TestUI_NoiseControlInARealBrowser: in Chromium, an admin sees what noise
// control kept back (the overview's calls saved, the teams page's calls
// today against the budget, an event's reason and cause), silences alerts
// like one from its event page, and redrives what a filter names after
// seeing the count. The clock stands still, so the daily budget cannot roll
// over at midnight UTC between the first call and the one it keeps back.
func TestUI_NoiseControlInARealBrowser(t *testing.T) {
	e, base := uiEnv(t, envOptions{callsPerDay: 1, alertRepeat: 4 * time.Hour, fakeClock: true})
	first := e.sendPD(t, "ui-1", "INC-1", "incident.triggered")
	e.waitStatus(first, store.EventDelivered)
	repeat := e.waitStatus(e.sendPD(t, "ui-2", "INC-1", "incident.triggered"), store.EventSuppressed)
	over := e.waitStatus(e.sendPD(t, "ui-3", "INC-2", "incident.triggered"), store.EventSuppressed)
	if repeat.SuppressedReason != "repeat" || over.SuppressedReason != "budget" {
		t.Fatalf("kept back: %s, %s", repeat.SuppressedReason, over.SuppressedReason)
	}

	ctx := browser(t)
	do := doer(t, ctx)
	do(chromedp.Navigate(base+"/ui/login"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), adminToken), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("saved-total")))
	if saved := text(t, ctx, "#saved-total"); !strings.Contains(saved, "2 alert events kept from the agent") ||
		!strings.Contains(saved, "1 repeat") || !strings.Contains(saved, "1 budget") {
		t.Errorf("overview says %q", saved)
	}
	do(chromedp.Navigate(base+"/ui/teams"), chromedp.WaitVisible(chromedp.ID("teams")))
	if calls := text(t, ctx, "#teams .calls-today"); !strings.Contains(calls, "1 of 1") || !strings.Contains(calls, "spent") {
		t.Errorf("teams page calls today = %q", calls)
	}
	do(chromedp.Navigate(base+"/ui/events/"+repeat.ID), chromedp.WaitVisible(chromedp.ID("event-suppressed")))
	if cause := text(t, ctx, "#event-suppressed"); !strings.Contains(cause, "a repeat with nothing new") || !strings.Contains(cause, first) {
		t.Errorf("repeat's cause = %q", cause)
	}
	do(chromedp.Click(chromedp.ID("event-cause")), chromedp.WaitVisible(chromedp.ID("event-status")))
	if status := text(t, ctx, "#event-status"); status != "delivered" {
		t.Errorf("the cause link leads to a %s event", status)
	}

	// Silence alerts like the budget's one, from its event page.
	do(chromedp.Navigate(base+"/ui/events/"+over.ID), chromedp.WaitVisible(chromedp.ID("silence-like-this")),
		chromedp.Click(chromedp.ID("silence-like-this")), chromedp.WaitVisible(chromedp.ID("silence-comment")))
	for id, want := range map[string]string{"silence-org": "acme", "silence-team": "platform-sre", "silence-alert-key": "INC-2",
		"silence-event-type": "incident.triggered", "silence-service": "PF9KMXH"} {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("`+id+`").value`))
		if err != nil || v != want {
			t.Errorf("%s prefilled %q, want %q (%v)", id, v, want, err)
		}
	}
	do(chromedp.SendKeys(chromedp.ID("silence-comment"), "payments DB failover"), chromedp.Click(chromedp.ID("silence-create")),
		chromedp.WaitVisible(chromedp.CSS("#silences tr.silence")))
	if list := text(t, ctx, "#silences"); !strings.Contains(list, "payments DB failover") || !strings.Contains(list, "INC-2") {
		t.Errorf("silences = %q", list)
	}
	silenced := e.waitStatus(e.sendPD(t, "ui-4", "INC-2", "incident.triggered"), store.EventSuppressed)
	if silenced.SuppressedReason != "silence" {
		t.Fatalf("after the silence: %s", silenced.SuppressedReason)
	}

	// Redrive what the budget kept back: count first, then confirm.
	do(chromedp.Navigate(base+"/ui/events?suppressed_reason=budget"), chromedp.WaitVisible(chromedp.ID("redrive-count-button")),
		chromedp.Click(chromedp.ID("redrive-count-button")), chromedp.WaitVisible(chromedp.ID("redrive-count")))
	if count := text(t, ctx, "#redrive-count"); !strings.HasPrefix(count, "1 unrouted, failed, dead or suppressed events match") {
		t.Errorf("count = %q", count)
	}
	if ev := e.event(t, over.ID); ev.Status != store.EventSuppressed {
		t.Fatal("counting redrove")
	}
	do(chromedp.Click(chromedp.ID("redrive-confirm")), chromedp.WaitVisible(chromedp.ID("notice")))
	if notice := text(t, ctx, "#notice"); !strings.Contains(notice, "1 events queued again") {
		t.Errorf("notice = %q", notice)
	}
	e.waitStatus(over.ID, store.EventDelivered)

	// Expire the silence from its page.
	do(chromedp.Navigate(base+"/ui/silences"), chromedp.WaitVisible(chromedp.CSS("#silences tr.silence button")),
		chromedp.Click(chromedp.CSS("#silences tr.silence button")), chromedp.WaitVisible(chromedp.ID("silences-empty")))
	if ended := text(t, ctx, "#silences-ended"); !strings.Contains(ended, "payments DB failover") {
		t.Errorf("ended = %q", ended)
	}
}

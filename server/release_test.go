package server_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/store"
)

// TestRelease_ASilenceEndingDeliversWhatStillFiresOnce (SPEC §21): alerts a
// silence kept back are delivered once when it ends — at its end, or when
// an admin expires it early — if they still fire, marked released and
// linked to the silence; one that resolved meanwhile, and the older event
// of an alert that fired again, stay suppressed and never reach the agent.
func TestRelease_ASilenceEndingDeliversWhatStillFiresOnce(t *testing.T) {
	e, base := uiEnv(t, envOptions{fakeClock: true})
	silence := func(key string, ends time.Duration) string {
		t.Helper()
		r := e.do("POST", "/api/v1/admin/silences", adminToken, map[string]any{"org_id": "acme", "sources": []string{"pagerduty"},
			"match": map[string]any{"alert_key": key}, "comment": "database failover",
			"ends_at": e.clock.Now().Add(ends).Format(time.RFC3339)})
		if r.code != 201 {
			t.Fatalf("silence = %d %s", r.code, r.raw)
		}
		return r.body["id"].(string)
	}
	held := func(id, by string) {
		t.Helper()
		if ev := e.waitStatus(id, store.EventSuppressed, store.EventDelivered); ev.Status != store.EventSuppressed || ev.SuppressedBy != by {
			t.Fatalf("event %s = %s %s by %s, want silenced by %s", id, ev.Status, ev.SuppressedReason, ev.SuppressedBy, by)
		}
	}
	s1 := silence("INC-S*", time.Hour)
	older := e.sendPD(t, "s-1", "INC-S1", "incident.triggered")
	held(older, s1)
	firing := e.sendPD(t, "s-2", "INC-S1", "incident.escalated") // the same alert again: the newest is this one
	held(firing, s1)
	gone := e.sendPD(t, "s-3", "INC-S2", "incident.triggered")
	held(gone, s1)
	e.waitStatus(e.sendPD(t, "s-4", "INC-S2", "incident.resolved"), store.EventSuppressed, store.EventDelivered)
	if n := e.disp.ReleaseHolds(); n != 0 {
		t.Fatalf("released %d while the silence is in force", n)
	}

	e.clock.Add(time.Hour + time.Second)
	// The dispatcher's own pass may run first (every 10 s): either way the
	// firing alert is released once (the metric below counts 1).
	if n := e.disp.ReleaseHolds(); n > 1 {
		t.Fatalf("released %d, want the newest firing event only", n)
	}
	if n := e.disp.ReleaseHolds(); n != 0 {
		t.Fatalf("released %d more the second time", n)
	}
	ev := e.waitStatus(firing, store.EventDelivered)
	if ev.ReleasedBy != store.ReleasedSilenceEnded || ev.SuppressedBy != s1 {
		t.Fatalf("released = %s by %q, held by %q", ev.Status, ev.ReleasedBy, ev.SuppressedBy)
	}
	for _, id := range []string{older, gone} {
		if ev := e.event(t, id); ev.Status != store.EventSuppressed {
			t.Fatalf("event %s = %s, want it kept suppressed", id, ev.Status)
		}
	}
	msgs := strings.Join(e.agentMessages(), "\n")
	if strings.Count(msgs, "INC-S1") != 1 || strings.Contains(msgs, "INC-S2") {
		t.Fatalf("the agent heard %q", msgs)
	}
	resp, err := login(t, base, adminToken).Get(base + "/ui/events/" + firing)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `then released <a href="/ui/silences#silence-`+s1+`" id="event-released">when silence `+s1+` ended</a>`) {
		t.Fatalf("the event page does not say it was released:\n%s", page)
	}
	if r := e.do("GET", "/api/v1/admin/events/"+firing, adminToken, nil); r.body["released_by"] != store.ReleasedSilenceEnded {
		t.Fatalf("event API = %s", r.raw)
	}

	// Expired early by an admin: released the same way.
	s2 := silence("INC-X*", 24*time.Hour)
	x := e.sendPD(t, "x-1", "INC-X1", "incident.triggered")
	held(x, s2)
	if r := e.do("DELETE", "/api/v1/admin/silences/"+s2, adminToken, nil); r.code != 200 {
		t.Fatalf("expire = %d %s", r.code, r.raw)
	}
	e.disp.ReleaseHolds()
	if ev := e.waitStatus(x, store.EventDelivered); ev.ReleasedBy != store.ReleasedSilenceExpired {
		t.Fatalf("expired early: released by %q", ev.ReleasedBy)
	}
	if !e.metric(`orchestrator_released_total{reason="silence"} 2`) {
		t.Error("the releases are not counted")
	}
}

// businessHours routes PagerDuty's alerts to the dev team only on weekdays
// 09:00–17:00 in Berlin.
const businessHours = `time_intervals:
  - name: business-hours
    time_intervals:
      - times: [{start_time: "09:00", end_time: "17:00"}]
        weekdays: ["monday:friday"]
        location: Europe/Berlin
routes:
  - name: pages-in-hours
    when: always
    match: ['source="pagerduty"']
    route_to: {org_id: ` + peerstest.DevOrg + `, team_node_id: ` + peerstest.DevTeam + `}
    active_time_intervals: [business-hours]
`

// TestRelease_ARouteHoldsAlertsOutsideItsHoursAndDeliversThemWhenTheyOpen
// (SPEC §21): a route's alert events outside its active_time_intervals are
// held (suppressed held, saying when the interval next opens), not
// dropped; when it opens, those still firing are delivered once, marked
// with the interval; one that resolved meanwhile never reaches the agent;
// inside the hours an alert goes straight through.
func TestRelease_ARouteHoldsAlertsOutsideItsHoursAndDeliversThemWhenTheyOpen(t *testing.T) {
	e, base := uiEnv(t, envOptions{fakeClock: true})
	e.setRoutes(businessHours)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	// Saturday 11:00 in Berlin, after the clock's start.
	now := e.clock.Now().In(berlin)
	saturday := time.Date(now.Year(), now.Month(), now.Day()+1, 11, 0, 0, 0, berlin)
	for saturday.Weekday() != time.Saturday {
		saturday = saturday.AddDate(0, 0, 1)
	}
	monday := time.Date(saturday.Year(), saturday.Month(), saturday.Day()+2, 9, 0, 0, 0, berlin)
	e.clock.Add(saturday.Sub(e.clock.Now()))

	waiting := e.sendPD(t, "h-1", "INC-H1", "incident.triggered")
	ev := e.waitStatus(waiting, store.EventSuppressed, store.EventDelivered)
	if ev.Status != store.EventSuppressed || ev.SuppressedReason != store.SuppressedHeld || ev.SuppressedBy != "business-hours" ||
		!strings.Contains(ev.LastError, "outside the active_time_intervals of route pages-in-hours") ||
		!strings.Contains(ev.LastError, "when one opens, at "+monday.UTC().Format(time.RFC3339)) {
		t.Fatalf("outside the hours = %s %s by %q: %q", ev.Status, ev.SuppressedReason, ev.SuppressedBy, ev.LastError)
	}
	gone := e.sendPD(t, "h-2", "INC-H2", "incident.triggered")
	e.waitStatus(gone, store.EventSuppressed, store.EventDelivered)
	e.waitStatus(e.sendPD(t, "h-3", "INC-H2", "incident.resolved"), store.EventSuppressed, store.EventDelivered)

	// Sunday night: still closed.
	e.clock.Add(monday.Add(-time.Minute).Sub(e.clock.Now()))
	if n := e.disp.ReleaseHolds(); n != 0 {
		t.Fatalf("released %d before the hours open", n)
	}
	e.clock.Add(2 * time.Minute)
	if n := e.disp.ReleaseHolds(); n > 1 {
		t.Fatalf("released %d, want the one still firing", n)
	}
	ev = e.waitStatus(waiting, store.EventDelivered)
	if ev.ReleasedBy != store.ReleasedIntervalOpened+":business-hours" {
		t.Fatalf("released by %q", ev.ReleasedBy)
	}
	if g := e.event(t, gone); g.Status != store.EventSuppressed {
		t.Fatalf("the alert that resolved meanwhile = %s", g.Status)
	}
	resp, err := login(t, base, adminToken).Get(base + "/ui/events/" + waiting)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `held outside its route&#39;s or team&#39;s active_time_intervals (business-hours)`) ||
		!strings.Contains(string(page), `then released <span id="event-released">when the time interval business-hours opened</span>`) {
		t.Fatalf("the event page does not say what held it and what released it:\n%s", page)
	}
	// In the hours, straight through.
	e.waitStatus(e.sendPD(t, "h-4", "INC-H4", "incident.triggered"), store.EventDelivered)
	msgs := strings.Join(e.agentMessages(), "\n")
	if strings.Count(msgs, "INC-H1") != 1 || strings.Contains(msgs, "INC-H2") || !strings.Contains(msgs, "INC-H4") {
		t.Fatalf("the agent heard %q", msgs)
	}
	if !e.metric(`orchestrator_released_total{reason="held"} 1`) || !e.metric(`orchestrator_suppressed_total{reason="held",source="pagerduty"} 2`) {
		t.Error("the hold and the release are not counted")
	}
}

// TestRelease_ATeamsHoursHoldItsAlerts (SPEC §21): team config
// active_time_intervals holds the team's alerts outside them as a route's
// do (a name the file does not define, however long, is left out), and the
// release delivers them when the hours open.
func TestRelease_ATeamsHoursHoldItsAlerts(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, fakeClock: true})
	e.setRoutes(businessHours[:strings.Index(businessHours, "routes:")])
	e.cs.AddTeam(peerstest.DevOrg, peerstest.DevTeam, map[string]any{"routing": peerstest.DevRouting, "entrance_agent": "planner",
		"active_time_intervals": []any{"business-hours", strings.Repeat("unknown-", 10)}})
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now().In(berlin)
	sunday := time.Date(now.Year(), now.Month(), now.Day()+1, 20, 0, 0, 0, berlin)
	for sunday.Weekday() != time.Sunday {
		sunday = sunday.AddDate(0, 0, 1)
	}
	e.clock.Add(sunday.Sub(e.clock.Now()))
	id := e.sendPD(t, "t-1", "INC-T1", "incident.triggered")
	ev := e.waitStatus(id, store.EventSuppressed, store.EventDelivered)
	if ev.Status != store.EventSuppressed || ev.SuppressedReason != store.SuppressedHeld || ev.TeamNodeID != peerstest.DevTeam ||
		!strings.Contains(ev.LastError, "of team "+peerstest.DevTeam+" (business-hours);") || ev.SuppressedBy != "business-hours" {
		t.Fatalf("outside the team's hours = %s %s %q", ev.Status, ev.SuppressedReason, ev.LastError)
	}
	e.clock.Add(13*time.Hour + time.Minute) // Monday 09:01
	e.disp.ReleaseHolds()
	if ev := e.waitStatus(id, store.EventDelivered); ev.ReleasedBy != store.ReleasedIntervalOpened+":business-hours" {
		t.Fatalf("released by %q", ev.ReleasedBy)
	}
}

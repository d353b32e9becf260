package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/store"
)

// sundayMaintenance is a sources file whose time interval is Sunday
// 02:00–04:00 in Berlin.
const sundayMaintenance = `time_intervals:
  - name: sunday-maintenance
    time_intervals:
      - times: [{start_time: "02:00", end_time: "04:00"}]
        weekdays: [sunday]
        location: Europe/Berlin
`

// A recurring silence (SPEC §21) mutes only while one of its time
// intervals is open, says when its next window opens, refuses names the
// sources file does not define and an end more than a year ahead, and mutes
// nothing once its interval is gone from the file.
func TestSilences_RecurringMutesOnlyInsideItsTimeInterval(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, fakeClock: true})
	e.cs.AddAdmin(bigToken, peers.Identity{Role: "admin", Permissions: []string{"admin:*"}, OrgID: "big"})
	e.setRoutes(sundayMaintenance)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	// Monday noon in Berlin, after the clock's start: outside the window.
	now := e.clock.Now().In(berlin)
	monday := time.Date(now.Year(), now.Month(), now.Day()+1, 12, 0, 0, 0, berlin)
	for monday.Weekday() != time.Monday {
		monday = monday.AddDate(0, 0, 1)
	}
	e.clock.Add(monday.Sub(e.clock.Now()))
	sunday := time.Date(monday.Year(), monday.Month(), monday.Day()+6, 2, 0, 0, 0, berlin)

	valid := map[string]any{"org_id": "acme", "sources": []string{"pagerduty"}, "comment": "weekly DB maintenance",
		"mute_time_intervals": []string{"sunday-maintenance"}}
	for name, c := range map[string]struct {
		body map[string]any
		want string
	}{
		"unknown interval": {map[string]any{"org_id": "acme", "comment": "x", "mute_time_intervals": []string{"nope"}},
			`mute_time_intervals: \"nope\" is not a time interval (defined: sunday-maintenance)`},
		"more than a year": {map[string]any{"org_id": "acme", "comment": "x", "mute_time_intervals": []string{"sunday-maintenance"},
			"ends_at": e.clock.Now().Add(400 * 24 * time.Hour).Format(time.RFC3339)}, "ends_at: at most a year (a recurring silence) ahead"},
		"plain without end": {map[string]any{"org_id": "acme", "comment": "x"}, "ends_at: required"},
		"too many intervals": {map[string]any{"org_id": "acme", "comment": "x", "mute_time_intervals": func() []string {
			var l []string
			for i := range 21 {
				l = append(l, fmt.Sprintf("i%d", i))
			}
			return l
		}()}, "at most 20 time intervals"},
	} {
		if r := e.do("POST", "/api/v1/admin/silences", adminToken, c.body); r.code != 400 || !strings.Contains(r.raw, c.want) {
			t.Errorf("%s = %d %s", name, r.code, r.raw)
		}
	}
	if r := e.do("POST", "/api/v1/admin/silences", bigToken, valid); r.code != 403 {
		t.Fatalf("another org's admin setting acme's silence = %d %s", r.code, r.raw)
	}

	r := e.do("POST", "/api/v1/admin/silences", adminToken, valid)
	if r.code != 201 || r.body["state"] != "active" || r.body["muting"] != false {
		t.Fatalf("create = %d %s", r.code, r.raw)
	}
	id := r.body["id"].(string)
	// No end given: a year from now.
	if ends, _ := time.Parse(time.RFC3339, r.body["ends_at"].(string)); !ends.Equal(e.clock.Now().Add(365 * 24 * time.Hour)) {
		t.Fatalf("ends_at = %v, want a year from %v", ends, e.clock.Now())
	}
	next := r.body["next_window"].(map[string]any)
	if next["interval"] != "sunday-maintenance" || next["starts_at"] != sunday.UTC().Format(time.RFC3339) ||
		next["ends_at"] != sunday.Add(2*time.Hour).UTC().Format(time.RFC3339) {
		t.Fatalf("next window = %v, want Sunday %v", next, sunday)
	}
	if l := e.do("GET", "/api/v1/admin/silences", bigToken, nil); len(l.body["silences"].([]any)) != 0 {
		t.Fatalf("another org's admin sees %s", l.raw)
	}

	// Monday: outside the window, the alert reaches the agent.
	e.waitStatus(e.sendPD(t, "rec-1", "INC-R1", "incident.triggered"), store.EventDelivered)
	// Sunday 02:30: inside, muted, and the event says by what.
	e.clock.Add(sunday.Add(30 * time.Minute).Sub(e.clock.Now()))
	ev := e.waitStatus(e.sendPD(t, "rec-2", "INC-R2", "incident.triggered"), store.EventSuppressed, store.EventDelivered)
	if ev.Status != store.EventSuppressed || ev.SuppressedReason != "silence" || ev.SuppressedBy != id ||
		!strings.Contains(ev.LastError, "during time interval sunday-maintenance until "+sunday.Add(2*time.Hour).UTC().Format(time.RFC3339)) {
		t.Fatalf("inside the window = %s %s %s %q", ev.Status, ev.SuppressedReason, ev.SuppressedBy, ev.LastError)
	}
	if g := e.do("GET", "/api/v1/admin/silences/"+id, adminToken, nil); g.body["muting"] != true {
		t.Fatalf("during the window = %s", g.raw)
	}
	// 04:00 the window closes: the next alert goes through again.
	e.clock.Add(sunday.Add(2 * time.Hour).Sub(e.clock.Now()))
	e.waitStatus(e.sendPD(t, "rec-3", "INC-R3", "incident.triggered"), store.EventDelivered)
	// And the alert it muted, still firing, is delivered once: released
	// when the window closed.
	e.disp.ReleaseHolds()
	if rel := e.waitStatus(ev.ID, store.EventDelivered); rel.ReleasedBy != store.ReleasedWindowClosed {
		t.Fatalf("muted in the window, then released by %q", rel.ReleasedBy)
	}
	if n := e.disp.ReleaseHolds(); n != 0 {
		t.Fatalf("released %d more", n)
	}

	// The interval gone from the file: the silence mutes nothing, and says
	// so, rather than muting for a year.
	e.setRoutes("time_intervals: []\n")
	e.clock.Add(sunday.AddDate(0, 0, 7).Add(30 * time.Minute).Sub(e.clock.Now()))
	e.waitStatus(e.sendPD(t, "rec-4", "INC-R4", "incident.triggered"), store.EventDelivered)
	g := e.do("GET", "/api/v1/admin/silences/"+id, adminToken, nil)
	if g.body["muting"] != false || fmt.Sprint(g.body["unknown_intervals"]) != "[sunday-maintenance]" || g.body["next_window"] != nil {
		t.Fatalf("interval removed = %s", g.raw)
	}
}

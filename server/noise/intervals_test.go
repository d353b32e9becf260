package noise

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

func parseYAML(t *testing.T, text string) (*Intervals, error) {
	t.Helper()
	sections, err := webhook.SplitSourcesFile([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return ParseIntervals(sections["time_intervals"])
}

func mustIntervals(t *testing.T, text string) *Intervals {
	t.Helper()
	is, err := parseYAML(t, text)
	if err != nil {
		t.Fatal(err)
	}
	return is
}

// openings walks the clock a minute at a time over [from, to) and counts
// how often the interval opened and for how many minutes it was open.
func openings(iv *Interval, from, to time.Time) (opened, minutes int, first time.Time) {
	was := iv.Active(from.Add(-time.Minute))
	for t := from; t.Before(to); t = t.Add(time.Minute) {
		now := iv.Active(t)
		if now {
			minutes++
		}
		if now && !was {
			opened++
			if first.IsZero() {
				first = t
			}
		}
		was = now
	}
	return opened, minutes, first
}

const dstFile = `
time_intervals:
  - name: sunday-night-berlin
    time_intervals:
      - times: [{start_time: "02:00", end_time: "04:00"}]
        weekdays: [sunday]
        location: Europe/Berlin
  - name: in-the-skipped-hour
    time_intervals:
      - times: [{start_time: "02:15", end_time: "02:45"}]
        weekdays: [sunday]
        location: Europe/Berlin
  - name: new-york-night
    time_intervals:
      - times: [{start_time: "01:30", end_time: "02:30"}]
        weekdays: [sunday]
        location: America/New_York
`

// Daylight saving neither skips nor doubles a window (SPEC §21): on the
// days the clocks change, each Sunday window opens exactly once, for the
// time the wall clock says it lasts that day.
func TestInterval_DaylightSavingNeitherSkipsNorDoublesAWindow(t *testing.T) {
	is := mustIntervals(t, dstFile)
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		name, interval, day string
		opened, minutes     int
		first               string
	}{
		// Berlin springs forward at 02:00 CET (01:00 UTC) to 03:00 CEST:
		// 02:00–04:00 is 03:00–04:00 CEST that day, an hour.
		{"berlin spring", "sunday-night-berlin", "2026-03-29", 1, 60, "2026-03-29T01:00:00Z"},
		// A window wholly in the skipped hour opens at the jump, for its length.
		{"berlin spring, skipped hour", "in-the-skipped-hour", "2026-03-29", 1, 30, "2026-03-29T01:00:00Z"},
		// Berlin falls back at 03:00 CEST (01:00 UTC) to 02:00 CET: 02:00
		// CEST to 04:00 CET is three hours, one window.
		{"berlin autumn", "sunday-night-berlin", "2026-10-25", 1, 180, "2026-10-25T00:00:00Z"},
		// In the repeated hour, the first 02:15–02:45 only.
		{"berlin autumn, repeated hour", "in-the-skipped-hour", "2026-10-25", 1, 30, "2026-10-25T00:15:00Z"},
		// An ordinary Sunday: two hours of CET.
		{"berlin winter", "sunday-night-berlin", "2026-03-22", 1, 120, "2026-03-22T01:00:00Z"},
		// New York springs forward at 02:00 EST (07:00 UTC): 01:30 EST to the jump.
		{"new york spring", "new-york-night", "2026-03-08", 1, 30, "2026-03-08T06:30:00Z"},
		// New York falls back at 02:00 EDT (06:00 UTC) to 01:00 EST: 01:30
		// EDT to 02:30 EST is two hours, one window.
		{"new york autumn", "new-york-night", "2026-11-01", 1, 120, "2026-11-01T05:30:00Z"},
	} {
		t.Run(c.name, func(t *testing.T) {
			day := utc(c.day + "T00:00:00Z")
			opened, minutes, first := openings(is.Get(c.interval), day.Add(-12*time.Hour), day.Add(36*time.Hour))
			if opened != c.opened || minutes != c.minutes || !first.Equal(utc(c.first)) {
				t.Fatalf("opened %d times for %d minutes, first at %s; want %d, %d, %s", opened, minutes, first, c.opened, c.minutes, c.first)
			}
			w, ok := is.Get(c.interval).Next(day.Add(-12 * time.Hour))
			if !ok || !w.Start.Equal(utc(c.first)) || w.End.Sub(w.Start) != time.Duration(c.minutes)*time.Minute {
				t.Fatalf("next window from the day before: %v %v", w, ok)
			}
		})
	}
}

// Business hours: open Monday to Friday 09:00–17:00 in the interval's
// zone; Next says when it opens from a weekend, and while it is open the
// window it is in.
func TestInterval_BusinessHoursAndNext(t *testing.T) {
	is := mustIntervals(t, `
time_intervals:
  - name: business-hours
    time_intervals:
      - times: [{start_time: "09:00", end_time: "17:00"}]
        weekdays: ["monday:friday"]
        location: Europe/Berlin
  - name: month-end
    time_intervals:
      - days_of_month: ["-1"]
        months: [february]
        years: ["2027"]
`)
	bh := is.Get("business-hours")
	sat := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC) // a Saturday
	if bh.Active(sat) {
		t.Fatal("open on a Saturday")
	}
	w, ok := bh.Next(sat)
	want := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC) // Monday 09:00 CET
	if !ok || !w.Start.Equal(want) || !w.End.Equal(want.Add(8*time.Hour)) {
		t.Fatalf("next from Saturday: %v %v", w, ok)
	}
	if !bh.Active(want) || bh.Active(want.Add(-time.Minute)) || bh.Active(want.Add(8*time.Hour)) {
		t.Fatal("the window's edges are wrong")
	}
	if w2, _ := bh.Next(want.Add(time.Hour)); !w2.Start.Equal(want) {
		t.Fatalf("while open, Next is the window it is in: %v", w2)
	}
	me := is.Get("month-end")
	w, ok = me.Next(sat)
	if !ok || !w.Start.Equal(time.Date(2027, 2, 28, 0, 0, 0, 0, time.UTC)) || !w.End.Equal(time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("month-end: %v %v", w, ok)
	}
	if _, ok := me.Next(time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)); ok {
		t.Fatal("an interval of 2027 opens again after it")
	}
}

// A file with a broken interval is refused with a line naming the entry
// and the field.
func TestParseIntervals_BadInputNamesTheEntry(t *testing.T) {
	for _, c := range []struct{ entry, want string }{
		{`{name: a, time_intervals: [{location: Mars/Olympus_Mons}]}`, `time_intervals: "a": time_intervals[0].location: unknown time zone Mars/Olympus_Mons`},
		{`{name: b, time_intervals: [{times: [{start_time: "09:00", end_time: "25:00"}]}]}`, `time_intervals: "b": time_intervals[0].times[0].end_time: "25:00" is not a time of day`},
		{`{name: b2, time_intervals: [{times: [{start_time: "17:00", end_time: "09:00"}]}]}`, `time_intervals: "b2": time_intervals[0].times: start time cannot be equal or greater than end time`},
		{`{name: c, time_intervals: [{weekdays: [funday]}]}`, `time_intervals: "c": time_intervals[0].weekdays: funday is not a valid weekday`},
		{`{name: d, time_intervals: [{weekday: [monday]}]}`, `time_intervals: "d": time_intervals[0].weekday: unknown field`},
		{`{time_intervals: []}`, `time_intervals: entry #1: name: must match`},
		{`{name: "x y"}`, `time_intervals: "x y": name: must match`},
		{`{name: e, time_intervals: [{months: [smarch]}]}`, `time_intervals: "e": time_intervals[0].months: smarch is not a valid month`},
	} {
		_, err := parseYAML(t, "time_intervals:\n  - "+c.entry+"\n")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.entry, err, c.want)
		}
	}
	_, err := parseYAML(t, "time_intervals:\n  - {name: a}\n  - {name: a}\n")
	if err == nil || !strings.Contains(err.Error(), `"a": name: listed twice`) {
		t.Fatalf("a duplicate: %v", err)
	}
	if is, err := ParseIntervals(json.RawMessage("null")); err != nil || len(is.List()) != 0 {
		t.Fatalf("no section: %v", err)
	}
	is := mustIntervals(t, "time_intervals:\n  - {name: a}\n")
	if err := is.Check("routes[0].active_time_intervals", []string{"a", "b"}); err == nil || !strings.Contains(err.Error(), `"b" is not a time interval (defined: a)`) {
		t.Fatalf("check: %v", err)
	}
}

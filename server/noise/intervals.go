package noise

// Time intervals (SPEC §21): the sources file's time_intervals:, in
// Alertmanager's shape —
//
//	time_intervals:
//	  - name: business-hours
//	    time_intervals:
//	      - times: [{start_time: "09:00", end_time: "17:00"}]
//	        weekdays: ["monday:friday"]
//	        location: Europe/Berlin
//
// Each entry's fields (times, weekdays, days_of_month, months, years,
// location) are read by Alertmanager's own timeinterval types, so a file
// that Alertmanager takes reads the same here. Whether a moment is inside
// is decided here, not by Alertmanager's ContainsTime: that one compares
// the wall clock, so on a daylight-saving day a window in the skipped hour
// never opens and one in the repeated hour opens twice. Here each day's
// window is turned into the instants it begins and ends: a wall time the
// clocks skip is the moment they jump, a wall time they repeat is its first
// occurrence; a window wholly in the skipped hour opens at the jump for its
// length. A window is never skipped nor doubled.

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	// The time-zone database, in the binary: air-gapped clusters' images
	// often have none, and an interval's location must still load.
	_ "time/tzdata"

	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/prometheus/alertmanager/timeinterval"
)

// MaxIntervals bounds the time intervals of one file.
const MaxIntervals = 1000

var intervalName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.:-]{0,63}$`)

// Interval is one named entry of time_intervals: the moments inside any of
// its specs.
type Interval struct {
	Name  string
	Specs []timeinterval.TimeInterval
}

// Intervals are the time_intervals: of one reading of the sources file.
type Intervals struct {
	list   []*Interval
	byName map[string]*Interval
}

// Get returns the interval of that name, nil if there is none.
func (is *Intervals) Get(name string) *Interval {
	if is == nil {
		return nil
	}
	return is.byName[name]
}

// Len is how many intervals there are.
func (is *Intervals) Len() int {
	if is == nil {
		return 0
	}
	return len(is.list)
}

// List returns the intervals in file order.
func (is *Intervals) List() []*Interval {
	if is == nil {
		return nil
	}
	return slices.Clone(is.list)
}

// Names are the intervals' names in file order.
func (is *Intervals) Names() []string {
	var out []string
	for _, iv := range is.List() {
		out = append(out, iv.Name)
	}
	return out
}

// Check reports an error naming the first of names that is not an
// interval (where names were given by field, e.g. a route's
// active_time_intervals).
func (is *Intervals) Check(field string, names []string) error {
	for _, n := range names {
		if is.Get(n) == nil {
			known := "none is defined"
			if l := is.Names(); len(l) > 0 {
				known = "defined: " + strings.Join(l, ", ")
			}
			return fmt.Errorf("%s: %q is not a time interval (%s)", field, n, known)
		}
	}
	return nil
}

// intervalSpec is one time_intervals: entry as the file writes it.
type intervalSpec struct {
	Name          string            `json:"name"`
	TimeIntervals []json.RawMessage `json:"time_intervals"`
}

// specFields is one entry of an interval's time_intervals, each field kept
// raw so that an error names the field it is in.
type specFields struct {
	Times       json.RawMessage `json:"times"`
	Weekdays    json.RawMessage `json:"weekdays"`
	DaysOfMonth json.RawMessage `json:"days_of_month"`
	Months      json.RawMessage `json:"months"`
	Years       json.RawMessage `json:"years"`
	Location    json.RawMessage `json:"location"`
}

var validTime = regexp.MustCompile(`^([01][0-9]|2[0-4]):[0-5][0-9]$`)

// ParseIntervals reads the time_intervals: section (JSON, as the file's
// YAML became). An error is one line naming the entry and the field.
func ParseIntervals(raw json.RawMessage) (*Intervals, error) {
	is := &Intervals{byName: map[string]*Interval{}}
	if len(raw) == 0 || string(raw) == "null" {
		return is, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("time_intervals: must be a list of {name, time_intervals}")
	}
	if len(items) > MaxIntervals {
		return nil, fmt.Errorf("time_intervals: %d entries, at most %d", len(items), MaxIntervals)
	}
	for i, item := range items {
		var s intervalSpec
		if err := webhook.DecodeSection(item, &s); err != nil {
			var named struct {
				Name string `json:"name"`
			}
			_ = json.Unmarshal(item, &named)
			return nil, fmt.Errorf("%s: %v (an entry has name and time_intervals)", intervalRef(named.Name, i), err)
		}
		ref := intervalRef(s.Name, i)
		if !intervalName.MatchString(s.Name) {
			return nil, fmt.Errorf("%s: name: must match [a-zA-Z0-9][a-zA-Z0-9_.:-]{0,63}", ref)
		}
		if is.byName[s.Name] != nil {
			return nil, fmt.Errorf("%s: name: listed twice", ref)
		}
		iv := &Interval{Name: s.Name}
		for j, rawSpec := range s.TimeIntervals {
			spec, err := parseSpec(rawSpec)
			if err != nil {
				return nil, fmt.Errorf("%s: time_intervals[%d].%v", ref, j, err)
			}
			iv.Specs = append(iv.Specs, spec)
		}
		is.list = append(is.list, iv)
		is.byName[iv.Name] = iv
	}
	return is, nil
}

func intervalRef(name string, i int) string {
	if name == "" {
		return fmt.Sprintf("time_intervals: entry #%d", i+1)
	}
	return fmt.Sprintf("time_intervals: %q", name)
}

// parseSpec reads one entry of an interval's time_intervals with
// Alertmanager's types; an error starts with the field's name.
func parseSpec(raw json.RawMessage) (timeinterval.TimeInterval, error) {
	var f specFields
	var ti timeinterval.TimeInterval
	if err := webhook.DecodeSection(raw, &f); err != nil {
		return ti, fmt.Errorf("%v (an entry has times, weekdays, days_of_month, months, years, location)", err)
	}
	if len(f.Times) > 0 && string(f.Times) != "null" {
		// Alertmanager takes 24:30 and 23:60; a day has 1440 minutes.
		var times []struct {
			StartTime string `json:"start_time"`
			EndTime   string `json:"end_time"`
		}
		if err := json.Unmarshal(f.Times, &times); err != nil {
			return ti, fmt.Errorf("times: must be a list of {start_time: \"HH:MM\", end_time: \"HH:MM\"}")
		}
		for k, t := range times {
			for _, v := range []struct{ field, value string }{{"start_time", t.StartTime}, {"end_time", t.EndTime}} {
				if !validTime.MatchString(v.value) || strings.HasPrefix(v.value, "24:") && v.value != "24:00" {
					return ti, fmt.Errorf("times[%d].%s: %q is not a time of day (HH:MM, 00:00 to 24:00)", k, v.field, v.value)
				}
			}
		}
	}
	for _, part := range []struct {
		name string
		raw  json.RawMessage
		into any
		hint string
	}{
		{"times", f.Times, &ti.Times, "start before end"},
		{"weekdays", f.Weekdays, &ti.Weekdays, "monday to sunday, or a range such as monday:friday"},
		{"days_of_month", f.DaysOfMonth, &ti.DaysOfMonth, "1 to 31 or -31 to -1 (from the month's end), or a range such as 1:7"},
		{"months", f.Months, &ti.Months, "january to december or 1 to 12, or a range such as march:may"},
		{"years", f.Years, &ti.Years, "a year or a range such as 2026:2027"},
		{"location", f.Location, &ti.Location, "a time zone of the IANA database, such as Europe/Berlin"},
	} {
		if len(part.raw) == 0 || string(part.raw) == "null" {
			continue
		}
		if err := json.Unmarshal(part.raw, part.into); err != nil {
			return ti, fmt.Errorf("%s: %s (%s)", part.name, amError(err), part.hint)
		}
	}
	return ti, nil
}

// amError is Alertmanager's message without the JSON decoder's wrapping.
func amError(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); strings.HasPrefix(msg, "json: ") && i > 0 {
		msg = msg[i+2:]
	}
	return strings.TrimPrefix(msg, "yaml: ")
}

// Window is one stretch of time an interval is open: [Start, End).
type Window struct {
	Start, End time.Time
}

// Active reports whether the interval is open at t.
func (iv *Interval) Active(t time.Time) bool {
	_, ok := iv.windowAt(t)
	return ok
}

// windowAt is a window of the interval that holds t.
func (iv *Interval) windowAt(t time.Time) (Window, bool) {
	for i := range iv.Specs {
		spec := &iv.Specs[i]
		loc := specLocation(spec)
		y, m, d := t.In(loc).Date()
		for off := -1; off <= 1; off++ {
			for _, w := range dayWindows(spec, loc, y, m, d+off) {
				if !t.Before(w.Start) && t.Before(w.End) {
					return w, true
				}
			}
		}
	}
	return Window{}, false
}

// horizon is how far ahead Next looks for an interval's next opening.
const horizon = 2 * 366

// Next is the window the interval is open at t, or else the next one to
// open after t (within two years); ok is false when it never opens again
// in that time. Windows that touch (17:00–24:00, then 00:00–08:00) are
// one.
func (iv *Interval) Next(t time.Time) (Window, bool) {
	w, ok := iv.windowAt(t)
	if !ok {
		var best Window
		for i := range iv.Specs {
			spec := &iv.Specs[i]
			loc := specLocation(spec)
			y, m, d := t.In(loc).Date()
			// A day's windows may spill into the next (the skipped hour):
			// having found one, one more day is read, then no more.
			found := -1
			for off := -1; off <= horizon && (found < 0 || off <= found+1); off++ {
				for _, w := range dayWindows(spec, loc, y, m, d+off) {
					if !w.Start.After(t) {
						continue
					}
					if found < 0 {
						found = off
					}
					if best.Start.IsZero() || w.Start.Before(best.Start) {
						best = w
					}
				}
			}
		}
		if best.Start.IsZero() {
			return Window{}, false
		}
		w = best
	}
	return iv.joined(w), true
}

// Open is the window the interval is open at t (as Next gives it), or
// false when it is closed at t — without looking ahead for the next.
func (iv *Interval) Open(t time.Time) (Window, bool) {
	w, ok := iv.windowAt(t)
	if !ok {
		return Window{}, false
	}
	return iv.joined(w), true
}

// joined is w with the windows that begin where it ends (bounded: a week
// of joined days is plenty to say when it closes).
func (iv *Interval) joined(w Window) Window {
	for range 8 * 24 {
		next, ok := iv.windowAt(w.End)
		if !ok || !next.End.After(w.End) {
			break
		}
		w.End = next.End
	}
	return w
}

func specLocation(spec *timeinterval.TimeInterval) *time.Location {
	if spec.Location != nil && spec.Location.Location != nil {
		return spec.Location.Location
	}
	return time.UTC
}

// dayWindows are the spec's windows on the local day y-m-d (normalized),
// as instants.
func dayWindows(spec *timeinterval.TimeInterval, loc *time.Location, y int, m time.Month, d int) []Window {
	date := time.Date(y, m, d, 12, 0, 0, 0, time.UTC)
	y, m, d = date.Date()
	if !dayMatches(spec, date) {
		return nil
	}
	ranges := spec.Times
	if len(ranges) == 0 {
		ranges = []timeinterval.TimeRange{{StartMinute: 0, EndMinute: 24 * 60}}
	}
	out := make([]Window, 0, len(ranges))
	for _, r := range ranges {
		s, e := wallInstant(loc, y, m, d, r.StartMinute), wallInstant(loc, y, m, d, r.EndMinute)
		if !e.After(s) {
			// Wholly in the hour the clocks skip: it opens when they jump,
			// for its length.
			e = s.Add(time.Duration(r.EndMinute-r.StartMinute) * time.Minute)
		}
		out = append(out, Window{Start: s, End: e})
	}
	return out
}

// wallInstant is the instant the wall clock of loc reads minute of day
// y-m-d (minute 1440 is the next day's midnight): the first of two when
// the clocks go back, the moment of the jump when they skip it.
func wallInstant(loc *time.Location, y int, m time.Month, d, minute int) time.Time {
	naive := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Add(time.Duration(minute) * time.Minute)
	var best time.Time
	for _, probe := range []time.Duration{-36 * time.Hour, 0, 36 * time.Hour} {
		_, off := naive.Add(probe).In(loc).Zone()
		inst := naive.Add(-time.Duration(off) * time.Second)
		if wall(inst.In(loc)).Equal(naive) && (best.IsZero() || inst.Before(best)) {
			best = inst
		}
	}
	if !best.IsZero() {
		return best
	}
	// Skipped: the clocks jumped over it. With the offset before the jump,
	// the instant falls after it, in the zone the jump began.
	_, before := naive.Add(-36 * time.Hour).In(loc).Zone()
	start, _ := naive.Add(-time.Duration(before) * time.Second).In(loc).ZoneBounds()
	return start
}

// wall is t's wall clock as if it were UTC.
func wall(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// dayMatches reports whether the day (its date at noon UTC) is one of the
// spec's: Alertmanager's rules for weekdays, days of the month (negative
// from the month's end, clamped to it), months and years.
func dayMatches(spec *timeinterval.TimeInterval, date time.Time) bool {
	if spec.DaysOfMonth != nil {
		days := time.Date(date.Year(), date.Month()+1, 0, 12, 0, 0, 0, time.UTC).Day()
		in := false
		for _, r := range spec.DaysOfMonth {
			begin, end := r.Begin, r.End
			if begin < 0 {
				begin = days + begin + 1
			}
			if end < 0 {
				end = days + end + 1
			}
			if begin > days {
				continue
			}
			end = min(end, days)
			if date.Day() >= begin && date.Day() <= end {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	if spec.Months != nil && !slices.ContainsFunc(spec.Months, func(r timeinterval.MonthRange) bool {
		return int(date.Month()) >= r.Begin && int(date.Month()) <= r.End
	}) {
		return false
	}
	if spec.Weekdays != nil && !slices.ContainsFunc(spec.Weekdays, func(r timeinterval.WeekdayRange) bool {
		wd := int(date.Weekday())
		if r.Begin <= r.End {
			return wd >= r.Begin && wd <= r.End
		}
		return wd >= r.Begin || wd <= r.End
	}) {
		return false
	}
	if spec.Years != nil && !slices.ContainsFunc(spec.Years, func(r timeinterval.YearRange) bool {
		return date.Year() >= r.Begin && date.Year() <= r.End
	}) {
		return false
	}
	return true
}

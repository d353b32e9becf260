package dispatch

// Noise control at the moment of delivery (SPEC §6 Noise): a team's claimed
// alert events pass the silences, the repeat rule and the team's daily budget
// before they reach the agent; those kept back end suppressed, with their
// reason and cause, and count. People (Slack mentions, interactions,
// internal triggers) and redriven events always pass. An alert is its
// team's: the repeat rule reads the history of the claiming team's events
// only. A resolve's settling of its waiting firing events happens earlier,
// as soon as the resolve has a team: at ingest when its route is cached,
// else when the router writes its route (store.RecordRoutes).

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/noise"
	"github.com/incidentfox/orchestrator-edge/server/routing"
	"github.com/incidentfox/orchestrator-edge/store"
)

// passes reports whether noise control leaves the event alone: a person's
// event, or one an operator redrove.
func (d *Dispatcher) passes(e store.Event) bool {
	if e.Solo {
		return true
	}
	src := d.o.Sources.Get(e.Source)
	return src != nil && src.People
}

// silenceCache holds the active silences, read at most once a second.
type silenceCache struct {
	mu   sync.Mutex
	at   time.Time
	list []store.Silence
}

func (d *Dispatcher) activeSilences(now time.Time) []store.Silence {
	c := &d.silenced
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.list != nil && now.Sub(c.at) < time.Second && !now.Before(c.at) {
		return c.list
	}
	list, err := d.o.Store.ActiveSilences(d.work, now)
	if err != nil {
		d.log.Error("reading silences failed; none applied this round", "error", err)
		return nil
	}
	c.list, c.at = list, now
	return list
}

// ForgetSilences drops the cached silences (a silence was set or expired).
func (d *Dispatcher) ForgetSilences() {
	d.silenced.mu.Lock()
	d.silenced.list = nil
	d.silenced.mu.Unlock()
}

// muting reports whether a recurring silence mutes at now: one of its
// time intervals is open (the first such, and its window). An interval the
// sources file no longer defines mutes nothing: the event goes on, and the
// silence's page says the name is unknown.
func (d *Dispatcher) muting(s store.Silence, now time.Time) (string, noise.Window, bool) {
	if d.o.Intervals == nil {
		return "", noise.Window{}, false
	}
	is := d.o.Intervals()
	for _, name := range s.MuteTimeIntervals {
		if iv := is.Get(name); iv != nil {
			if w, open := iv.Open(now); open {
				return name, w, true
			}
		}
	}
	return "", noise.Window{}, false
}

// held says whether a firing alert event is outside all the
// active_time_intervals (SPEC §21) of the route that took it, or else of
// its team (team config active_time_intervals): the names (comma-separated,
// what the release pass reads back) and why. A name the file no longer
// defines never holds (an interval removed is no reason to keep alerts
// back), nor does a rule no longer in the file.
func (d *Dispatcher) held(t store.TeamKey, e store.Event, now time.Time) (string, string, bool) {
	if d.o.Intervals == nil || e.AlertState != store.AlertStateFiring || e.AlertKey == "" {
		return "", "", false
	}
	is := d.o.Intervals()
	if is.Len() == 0 {
		return "", "", false
	}
	var names []string
	whose := ""
	if name, ok := strings.CutPrefix(e.MatchedBy, "rule:"); ok && d.o.Rules != nil {
		if r := d.o.Rules().Rule(name); r != nil && len(r.ActiveTimeIntervals) > 0 {
			names, whose = r.ActiveTimeIntervals, "route "+r.Name
		}
	}
	if len(names) == 0 {
		names, whose = d.teamIntervals(t), "team "+t.TeamNodeID
	}
	if len(names) == 0 {
		return "", "", false
	}
	// Only the names the file defines hold, as many as suppressed_by keeps
	// (64 characters, comma-separated; a route's are checked to fit when
	// the file is read, a team's are cut).
	var kept []string
	var next noise.Window
	for _, n := range names {
		iv := is.Get(n)
		if iv == nil {
			continue
		}
		if _, open := iv.Open(now); open {
			return "", "", false
		}
		if len(strings.Join(append(kept, n), ",")) > routing.MaxActiveIntervalsText {
			continue
		}
		kept = append(kept, n)
		if w, ok := iv.Next(now); ok && (next.Start.IsZero() || w.Start.Before(next.Start)) {
			next = w
		}
	}
	// None defined, or none that will open again: nothing to wait for.
	if len(kept) == 0 || next.Start.IsZero() {
		return "", "", false
	}
	why := "held: outside the active_time_intervals of " + whose + " (" + strings.Join(kept, ", ") + "); delivered when one opens, at " +
		next.Start.UTC().Format(time.RFC3339) + ", if still firing"
	return strings.Join(kept, ","), why, true
}

// teamIntervals reads team config active_time_intervals (names of the
// sources file's time intervals), from the team's cached config (read from
// the Config Service when not cached, as the call would). A config that
// cannot be read holds nothing: the call that follows reports it.
func (d *Dispatcher) teamIntervals(t store.TeamKey) []string {
	tc, err := d.context(d.work, t.OrgID, t.TeamNodeID)
	if err != nil {
		return nil
	}
	list, _ := tc.cfg["active_time_intervals"].([]any)
	var names []string
	for _, v := range list {
		if s, ok := v.(string); ok && s != "" && !strings.Contains(s, ",") && !slices.Contains(names, s) && len(names) < routing.MaxActiveIntervals {
			names = append(names, s)
		}
	}
	return names
}

// stillHeld says whether the hold a held event's suppressed_by names
// (comma-separated interval names) still holds at now: none of the names it
// knows is open. When it no longer holds, what released it: the interval
// that opened, or that its intervals are gone from the file.
func (d *Dispatcher) stillHeld(by string, now time.Time) (bool, string) {
	if d.o.Intervals == nil {
		return false, store.ReleasedIntervalsGone
	}
	is := d.o.Intervals()
	known := false
	for _, n := range strings.Split(by, ",") {
		iv := is.Get(n)
		if iv == nil {
			continue
		}
		known = true
		if _, open := iv.Open(now); open {
			by := store.ReleasedIntervalOpened + ":" + n
			if len(by) > store.MaxReleasedBy {
				by = store.ReleasedIntervalOpened
			}
			return false, by
		}
	}
	if !known {
		return false, store.ReleasedIntervalsGone
	}
	return true, ""
}

// Matches reports whether the silence covers the team's event.
func Matches(s store.Silence, t store.TeamKey, e store.Event) bool {
	if s.OrgID != t.OrgID || s.TeamNodeID != "" && s.TeamNodeID != t.TeamNodeID {
		return false
	}
	if len(s.Sources) > 0 && !slices.Contains(s.Sources, e.Source) {
		return false
	}
	return glob(s.EventType, e.EventType) && glob(s.Service, e.Service()) && glob(s.AlertKey, e.AlertKey)
}

// glob matches value against pattern: "" matches anything, * any run of
// characters, everything else itself.
func glob(pattern, value string) bool {
	if pattern == "" || pattern == "*" {
		return true
	}
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == value
	}
	if !strings.HasPrefix(value, parts[0]) {
		return false
	}
	value = value[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(value, p)
		if i < 0 {
			return false
		}
		value = value[i+len(p):]
	}
	return strings.HasSuffix(value, parts[len(parts)-1])
}

// screen keeps the events of one claim that may reach the agent and
// records the others suppressed: silenced, or a repeat of a firing
// delivered within the repeat window.
func (d *Dispatcher) screen(t store.TeamKey, events []store.Event, now time.Time) []store.Event {
	var keep []store.Event
	var outs []store.Outcome
	var silences []store.Silence
	for _, e := range events {
		if d.passes(e) {
			keep = append(keep, e)
			continue
		}
		if silences == nil {
			silences = d.activeSilences(now)
		}
		reason, by, why := "", "", ""
		for _, s := range silences {
			if !Matches(s, t, e) {
				continue
			}
			if len(s.MuteTimeIntervals) == 0 {
				reason, by, why = store.SuppressedSilence, s.ID, "silenced by "+s.ID+" ("+oneLine(s.Comment)+") until "+s.EndsAt.UTC().Format(time.RFC3339)
				break
			}
			if name, w, ok := d.muting(s, now); ok {
				reason, by = store.SuppressedSilence, s.ID
				why = "silenced by " + s.ID + " (" + oneLine(s.Comment) + ") during time interval " + name + " until " + w.End.UTC().Format(time.RFC3339)
				break
			}
		}
		if reason == "" {
			if names, text, ok := d.held(t, e, now); ok {
				reason, by, why = store.SuppressedHeld, names, text
			}
		}
		if reason == "" {
			if src, text, ok := d.inhibited(t, e, now); ok {
				reason, by, why = store.SuppressedInhibited, src, text
			}
		}
		if reason == "" && e.AlertState == store.AlertStateFiring && e.AlertKey != "" && d.o.AlertRepeat > 0 {
			h, err := d.o.Store.AlertHistoryOf(d.work, store.AlertRef{OrgID: t.OrgID, TeamNodeID: t.TeamNodeID, Source: e.Source, Key: e.AlertKey}, e.Key)
			if err != nil {
				d.log.Error("reading an alert's history failed; the event goes on", "event_id", e.ID, "error", err)
			} else if h.RepeatOf(e.AlertSig, now, d.o.AlertRepeat) {
				reason, by = store.SuppressedRepeat, h.Delivered
				why = fmt.Sprintf("a repeat of event %s, delivered %s ago, with nothing new", h.Delivered, now.Sub(h.DeliveredAt).Round(time.Second))
			}
		}
		if reason == "" {
			keep = append(keep, e)
			continue
		}
		outs = append(outs, d.suppressed(t, e, reason, by, why, now))
	}
	if len(outs) > 0 {
		d.done.Add(completion{outs: outs})
	}
	return keep
}

// suppressed is the outcome of an event kept from the agent, counted.
func (d *Dispatcher) suppressed(t store.TeamKey, e store.Event, reason, by, why string, now time.Time) store.Outcome {
	d.metrics.total.WithLabelValues(e.Source, "suppressed").Inc()
	d.metrics.suppressed.WithLabelValues(e.Source, reason).Inc()
	d.log.Info("dispatch", "events", 1, "first_event_id", e.ID, "outcome", "suppressed", "reason", reason, "by", by,
		"org_id", t.OrgID, "team_node_id", t.TeamNodeID)
	return store.Outcome{ID: e.ID, Status: store.EventSuppressed, Attempts: e.Attempts, At: now, OrgID: t.OrgID,
		TeamNodeID: t.TeamNodeID, SuppressedReason: reason, SuppressedBy: by, LastError: "suppressed: " + why,
		Decision: withStep(e, routing.Step{Kind: routing.KindNoise, Reason: reason, By: by, Detail: why})}
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 80 {
		s = s[:77] + "…"
	}
	return s
}

// dayBudget is a team's alert-triggered agent calls on one UTC day.
type dayBudget struct {
	day    string
	used   int
	synced time.Time
}

// budgetSync is how often a team's count is read back from the agent calls
// (other replicas' calls count too).
const budgetSync = 5 * time.Second

// synced returns the team's budget for now's UTC day, its count read back
// from the agent calls when it is older than budgetSync. Call with d.mu
// unlocked.
func (d *Dispatcher) synced(t store.TeamKey, now time.Time) *dayBudget {
	day := now.UTC().Format(time.DateOnly)
	d.mu.Lock()
	b := d.budgets[idOf(t)]
	if b == nil || b.day != day {
		b = &dayBudget{day: day}
		d.budgets[idOf(t)] = b
	}
	stale := b.synced.IsZero() || now.Sub(b.synced) >= budgetSync
	d.mu.Unlock()
	if stale {
		start, _ := time.Parse(time.DateOnly, day)
		n, err := d.o.Store.CountAlertCalls(d.work, t.OrgID, t.TeamNodeID, start)
		d.mu.Lock()
		if err == nil {
			b.used, b.synced = max(b.used, n), now
		}
		d.mu.Unlock()
	}
	return b
}

// spend takes one alert-triggered call from the team's daily budget; false
// when it is spent (ORCHESTRATOR_TEAM_AGENT_CALLS_PER_DAY; 0 = no budget).
func (d *Dispatcher) spend(t store.TeamKey, now time.Time) bool {
	if d.o.CallsPerDay <= 0 {
		return true
	}
	b := d.synced(t, now)
	d.mu.Lock()
	defer d.mu.Unlock()
	if b.used >= d.o.CallsPerDay {
		return false
	}
	b.used++
	return true
}

// CallsToday is a team's alert-triggered agent calls today (UTC) and its
// daily budget (0: no budget, and the count is not kept).
func (d *Dispatcher) CallsToday(org, team string, now time.Time) (int, int) {
	if d.o.CallsPerDay <= 0 {
		return 0, 0
	}
	b := d.synced(store.TeamKey{OrgID: org, TeamNodeID: team}, now)
	d.mu.Lock()
	defer d.mu.Unlock()
	return b.used, d.o.CallsPerDay
}

// overBudget records a call's events suppressed: the team's budget of
// alert-triggered calls for the day is spent.
func (d *Dispatcher) overBudget(t store.TeamKey, events []store.Event, now time.Time) {
	day := now.UTC().Format(time.DateOnly)
	outs := make([]store.Outcome, 0, len(events))
	for _, e := range events {
		outs = append(outs, d.suppressed(t, e, store.SuppressedBudget, day,
			fmt.Sprintf("the team's %d alert-triggered agent calls of %s (UTC) are spent", d.o.CallsPerDay, day), now))
		d.metrics.budget.Inc()
	}
	d.done.Add(completion{outs: outs})
}

// CountSettled counts events a resolve suppressed as it was stored (the
// door calls it: the resolve settled them in its own transaction) or
// routed (the router).
func (d *Dispatcher) CountSettled(source string, n int) {
	d.metrics.total.WithLabelValues(source, "suppressed").Add(float64(n))
	d.metrics.suppressed.WithLabelValues(source, store.SuppressedResolved).Add(float64(n))
}

// Rescan makes the dispatcher read the queue again at once: many events
// came back to it (a bulk redrive), teams it did not know of among them.
func (d *Dispatcher) Rescan() {
	d.rescan.Store(true)
	select {
	case d.wake <- struct{}{}:
	default:
	}
	d.kickLoop()
}

package dispatch

// The team loop: which teams have due work, how many calls each may make
// now, and the claims that fill the free workers (SPEC §6 Storms).

import (
	"slices"
	"time"

	"github.com/incidentfox/orchestrator-edge/store"
)

// requeueExpired returns events of expired leases to the queue.
func (d *Dispatcher) requeueExpired() {
	n, err := d.o.Store.RequeueExpired(d.work, d.now())
	if err != nil {
		d.log.Error("taking back expired claims failed", "error", err)
		return
	}
	if n > 0 {
		d.log.Warn("events whose claim expired are queued again", "count", n, "lease", d.o.Lease.String())
		d.stale = true
	}
}

// rescanEvery bounds how often new work triggers a scan of the due teams.
const rescanEvery = 20 * time.Millisecond

// loop is the team gate: it hands teams that can take a call their due
// events, people first, alerts folded, while workers are free.
func (d *Dispatcher) loop() {
	defer close(d.loopDone)
	var lastDepth, lastLease, lastRelease time.Time
	for {
		wait := d.o.Poll
		if free := d.slots.Free(); free > 0 {
			calls, next, err := d.plan(free)
			if err != nil {
				d.log.Error("claiming events failed", "error", err)
			}
			for _, c := range calls {
				d.slots.Go(func() { d.deliver(c) })
			}
			if next > 0 {
				wait = min(wait, next)
			}
		}
		if now := time.Now(); now.Sub(lastDepth) >= time.Second {
			lastDepth = now
			if depth, err := d.o.Store.QueueDepth(d.work, ""); err == nil {
				d.metrics.depth.Set(float64(depth))
			}
		}
		// On a database of its own every claim is this process's, and those
		// a crash left are queued again at start; expired leases matter only
		// when replicas share the queue.
		if now := time.Now(); d.o.Store.Shared() && now.Sub(lastLease) >= leaseCheckEvery {
			lastLease = now
			d.requeueExpired()
		}
		if now := time.Now(); now.Sub(lastRelease) >= releaseEvery {
			lastRelease = now
			d.Release()
		}
		if d.stale {
			wait = min(wait, max(time.Millisecond, rescanEvery-time.Since(d.dueAt)))
		}
		t := time.NewTimer(wait)
		select {
		case <-d.stop:
			t.Stop()
			return
		case <-d.kick:
			d.takeArrived()
		case <-d.slots.Freed():
		case <-t.C:
		}
		t.Stop()
	}
}

// takeArrived adds the teams Notify named to the due list (a scan would find
// nothing else new), or marks the list stale when the router asked for it.
func (d *Dispatcher) takeArrived() {
	if d.rescan.Swap(false) {
		d.stale = true
	}
	d.mu.Lock()
	arrived := d.arrived
	d.arrived = map[teamID]store.TeamKey{}
	d.mu.Unlock()
	if d.due == nil {
		d.stale = true
		return
	}
	for id, t := range arrived {
		if !slices.ContainsFunc(d.due, func(k store.TeamKey) bool { return idOf(k) == id }) {
			d.due = append(d.due, t)
		}
	}
}

// dueTeams returns the teams with due events, scanning the queue again when
// the list is old or new work came in (at most every rescanEvery).
func (d *Dispatcher) dueTeams(now time.Time) ([]store.TeamKey, error) {
	since := time.Since(d.dueAt)
	if d.due != nil && since < d.o.Poll && (!d.stale || since < rescanEvery) {
		return d.due, nil
	}
	teams, err := d.o.Store.TeamsDue(d.work, now.UTC())
	if err != nil {
		return nil, err
	}
	d.due, d.dueAt, d.stale = teams, time.Now(), false
	return teams, nil
}

// plan claims the calls of this round for at most free workers. next is
// how soon a team now held back gets its next slot (0: none is waiting).
func (d *Dispatcher) plan(free int) ([]call, time.Duration, error) {
	now := d.o.Now()
	teams, err := d.dueTeams(now)
	if err != nil {
		return nil, 0, err
	}
	var calls []call
	var next time.Duration
	remaining := make([]store.TeamKey, 0, len(teams))
	for i, t := range teams {
		if free == 0 {
			remaining = append(remaining, teams[i:]...)
			break
		}
		tokens, wait, err := d.take(t, free, now)
		if err != nil {
			d.stale = true
			return calls, next, err
		}
		if tokens < 1 {
			// Held back: not claimed, not looked up, not written.
			if next == 0 || wait < next {
				next = max(wait, time.Millisecond)
			}
			remaining = append(remaining, t)
			continue
		}
		got, exhausted, err := d.claimTeam(t, tokens, now)
		free -= len(got)
		calls = append(calls, got...)
		if unused := tokens - len(got); unused > 0 {
			if gerr := d.give(t, unused, now); gerr != nil && err == nil {
				err = gerr
			}
		}
		if err != nil {
			d.stale = true
			return calls, next, err
		}
		if !exhausted {
			remaining = append(remaining, t)
		}
	}
	d.due = remaining
	return calls, next, nil
}

// claimTeam claims up to n calls' worth of one team's due events: its
// mentions and redriven events first, each alone; then its coalesced alerts,
// up to CoalesceMax a call (what noise control keeps back of a claim is
// replaced by the team's next due alerts); then its other events, each
// alone. Alert events pass noise control on the way (screen, then the
// daily budget per call);
// those it keeps back are recorded suppressed and the team is looked at
// again at once. exhausted says every kind was asked for and none is left due.
func (d *Dispatcher) claimTeam(t store.TeamKey, n int, now time.Time) (calls []call, exhausted bool, err error) {
	at := now.UTC()
	// Each call remembers when the claim that took its events ran: its
	// trace's dispatch span starts there.
	from := time.Now()
	people, err := d.o.Store.ClaimTeamEvents(d.work, at, at.Add(d.o.Lease), t, store.Kind{People: true}, n)
	to := time.Now()
	for _, e := range people {
		calls = append(calls, call{team: t, events: []store.Event{e}, claimed: from, claimedEnd: to})
	}
	if err != nil || len(calls) == n {
		return calls, false, err
	}
	kept := false
	screen := func(events []store.Event) []store.Event {
		pass := d.screen(t, events, now)
		if len(pass) < len(events) {
			kept = true
		}
		return pass
	}
	// alertCall makes one call of screened alert events.
	alertCall := func(pass []store.Event) {
		if len(pass) == 0 {
			return
		}
		// A resolve that reaches here closes an investigation the agent
		// has open (its firing was delivered): it is no new call's worth,
		// so a call of resolves alone does not take from the daily budget,
		// and when the budget is spent the resolves still go, alone.
		closing, opening := splitResolves(pass)
		if len(opening) > 0 && !d.spend(t, now) {
			d.overBudget(t, opening, now)
			kept = true
			pass = closing
		}
		if len(pass) > 0 {
			calls = append(calls, call{team: t, events: pass, claimed: from, claimedEnd: to})
		}
	}
	defer func() {
		if kept {
			exhausted = false
			d.kickLoop()
		}
	}()
	for len(d.o.CoalesceSources) > 0 {
		if len(calls) == n {
			return calls, false, nil
		}
		from = time.Now()
		alerts, err := d.o.Store.ClaimTeamEvents(d.work, at, at.Add(d.o.Lease), t, store.Kind{Sources: d.o.CoalesceSources}, d.o.CoalesceMax)
		to = time.Now()
		if err != nil {
			return calls, false, err
		}
		more := len(alerts) == d.o.CoalesceMax
		pass := screen(alerts)
		// What noise control kept back leaves room in the digest: the
		// team's next due alerts fill it (a cascade's inhibited half left
		// every digest of the storm half full, BenchmarkStormWithHalfInhibited).
		for more && len(pass) < d.o.CoalesceMax {
			ask := d.o.CoalesceMax - len(pass)
			next, err := d.o.Store.ClaimTeamEvents(d.work, at, at.Add(d.o.Lease), t, store.Kind{Sources: d.o.CoalesceSources}, ask)
			to = time.Now()
			if err != nil {
				alertCall(pass)
				return calls, false, err
			}
			more = len(next) == ask
			pass = append(pass, screen(next)...)
		}
		alertCall(pass)
		if !more {
			break
		}
	}
	if len(calls) == n {
		return calls, false, nil
	}
	ask := n - len(calls)
	from = time.Now()
	others, err := d.o.Store.ClaimTeamEvents(d.work, at, at.Add(d.o.Lease), t, store.Kind{Sources: d.o.CoalesceSources, Exclude: true}, ask)
	to = time.Now()
	for _, e := range others {
		alertCall(screen([]store.Event{e}))
	}
	return calls, err == nil && len(others) < ask, err
}

// splitResolves parts a call's alert events into resolves and the rest.
func splitResolves(events []store.Event) (resolves, rest []store.Event) {
	for _, e := range events {
		if e.AlertState == store.AlertStateResolved {
			resolves = append(resolves, e)
		} else {
			rest = append(rest, e)
		}
	}
	return resolves, rest
}

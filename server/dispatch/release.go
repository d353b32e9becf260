package dispatch

// Release at the end (SPEC §21): an alert kept back by a silence, a mute
// interval, a route's active_time_intervals or an inhibition that is still
// firing when that ends is queued again once (and passes noise control
// again: another holder may keep it), marked released_by what ended the
// hold; one that resolved meanwhile stays suppressed. Every replica runs
// the pass every releaseEvery; the store's guarded updates release each
// event once.

import (
	"errors"
	"time"

	"github.com/incidentfox/orchestrator-edge/store"
)

// Release runs one release pass: inhibited events whose inhibitor
// resolved, then silenced and held events whose hold ended. It returns how
// many events were queued again.
func (d *Dispatcher) Release() int {
	n := d.ReleaseInhibited()
	return n + d.ReleaseHolds()
}

// ReleaseHolds queues again the silenced and held events still firing
// whose silence ended (or was expired), whose mute window closed, or whose
// route's active interval opened.
func (d *Dispatcher) ReleaseHolds() int {
	now := d.now()
	holds, err := d.o.Store.Holds(d.work)
	if err != nil {
		d.log.Error("reading what holds events back failed; none released this round", "error", err)
		return 0
	}
	n := 0
	for _, h := range holds {
		still, by := d.holds(h, now)
		if still {
			continue
		}
		released, err := d.o.Store.ReleaseHold(d.work, h, by, now)
		d.released(h.Reason, released)
		n += len(released)
		if err != nil {
			d.log.Error("releasing held events failed", "reason", h.Reason, "held_by", h.By, "error", err)
		}
	}
	return n
}

// released counts and logs events queued again for reason, and wakes
// their teams.
func (d *Dispatcher) released(reason string, released []store.Release) {
	for _, r := range released {
		d.metrics.released.WithLabelValues(reason).Inc()
		d.log.Info("dispatch", "event_id", r.ID, "outcome", "released", "reason", reason, "held_by", r.HeldBy,
			"released_by", r.ResolvedBy, "org_id", r.OrgID, "team_node_id", r.TeamNodeID)
		d.Notify(r.OrgID, r.TeamNodeID)
	}
}

// holds says whether h still keeps its events back at now, and when not,
// what ended it.
func (d *Dispatcher) holds(h store.Hold, now time.Time) (bool, string) {
	switch h.Reason {
	case store.SuppressedHeld:
		return d.stillHeld(h.By, now)
	case store.SuppressedSilence:
		s, err := d.o.Store.GetSilence(d.work, h.By)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return false, store.ReleasedSilenceEnded
		case err != nil:
			d.log.Error("reading a silence failed; its events are not released this round", "silence_id", h.By, "error", err)
			return true, ""
		}
		switch s.State(now) {
		case store.SilenceExpired:
			if s.ExpiredAt != nil && s.ExpiredAt.Before(s.EndsAt) {
				return false, store.ReleasedSilenceExpired
			}
			return false, store.ReleasedSilenceEnded
		case store.SilencePending:
			return true, ""
		}
		if len(s.MuteTimeIntervals) == 0 {
			return true, ""
		}
		if _, _, muting := d.muting(s, now); muting {
			return true, ""
		}
		return false, store.ReleasedWindowClosed
	}
	return true, ""
}

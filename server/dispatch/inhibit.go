package dispatch

// Inhibition at the moment of delivery (SPEC §21): a team's firing alert
// event matching an inhibit rule's target is suppressed `inhibited` while a
// firing alert of the same org matches the rule's source, equal on its
// labels; the org's firing alerts are read from the store (so replicas and
// a restart agree): whole at most once a second per org, and the org's
// alert events stored since the reading as soon as a newer event is
// checked. When the inhibiting alert
// resolves, the releaser queues the held events still firing again, once.

import (
	"cmp"
	"encoding/json"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/noise"
	"github.com/incidentfox/orchestrator-edge/store"
)

// inhibitCache holds each org's inhibitor, built from its firing alerts.
type inhibitCache struct {
	mu   sync.Mutex
	orgs map[string]*orgInhibitor
}

type orgInhibitor struct {
	rules  *noise.InhibitRules
	at     time.Time
	maxID  int64
	alerts map[store.AlertRef]store.FiringAlert
	in     *noise.Inhibitor
}

// inhibitorOf returns the org's inhibitor under rules. The org's firing
// alerts are read whole when the reading held is a second old (so that
// what the few events it cannot see — stored or routed out of id order —
// change shows within a second); when the event checked (key) is newer
// than the reading, only the org's alert events stored since are read and
// applied (a storm does not read 10,000 alerts per claim).
func (d *Dispatcher) inhibitorOf(org string, rules *noise.InhibitRules, key int64, now time.Time) *noise.Inhibitor {
	c := &d.inhibits
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.orgs == nil {
		c.orgs = map[string]*orgInhibitor{}
	}
	o := c.orgs[org]
	if o == nil || now.Sub(o.at) >= time.Second || now.Before(o.at) {
		firing, maxID, err := d.o.Store.FiringAlerts(d.work, org)
		if err != nil {
			d.log.Error("reading the org's firing alerts failed; no inhibition this round", "org_id", org, "error", err)
			return nil
		}
		o = &orgInhibitor{at: now, maxID: maxID, alerts: make(map[store.AlertRef]store.FiringAlert, len(firing))}
		for _, a := range firing {
			o.alerts[a.Ref] = a
		}
		c.orgs[org] = o
	} else if key > o.maxID {
		changes, maxID, err := d.o.Store.AlertChangesSince(d.work, org, o.maxID)
		if err != nil {
			d.log.Error("reading the org's new alert events failed; no inhibition this round", "org_id", org, "error", err)
			return nil
		}
		for _, ch := range changes {
			if ch.Firing {
				o.alerts[ch.Ref] = ch.FiringAlert
			} else {
				delete(o.alerts, ch.Ref)
			}
		}
		if len(changes) > 0 {
			o.in = nil
		}
		o.maxID = maxID
	}
	if o.in == nil || o.rules != rules {
		list := make([]store.FiringAlert, 0, len(o.alerts))
		for _, a := range o.alerts {
			list = append(list, a)
		}
		// Oldest first, as a whole reading lists them: a rule's index keeps
		// the first two sources of each label set.
		slices.SortFunc(list, func(a, b store.FiringAlert) int {
			return cmp.Or(cmp.Compare(len(a.ID), len(b.ID)), cmp.Compare(a.ID, b.ID))
		})
		o.in, o.rules = noise.NewInhibitor(rules, list), rules
	}
	return o.in
}

// inhibited says whether an inhibit rule holds the team's firing alert
// event: the inhibiting event's id and why.
func (d *Dispatcher) inhibited(t store.TeamKey, e store.Event, now time.Time) (string, string, bool) {
	if d.o.Inhibits == nil || e.AlertState != store.AlertStateFiring || e.AlertLabels == "" || e.AlertKey == "" {
		return "", "", false
	}
	rules := d.o.Inhibits()
	if rules.Len() == 0 {
		return "", "", false
	}
	var labels map[string]string
	if json.Unmarshal([]byte(e.AlertLabels), &labels) != nil || !rules.Targets(labels) {
		return "", "", false
	}
	// A released event is checked against a reading that has seen the
	// resolve that released it.
	key := e.Key
	if rb, err := strconv.ParseInt(e.ReleasedBy, 10, 64); err == nil && rb > key {
		key = rb
	}
	in := d.inhibitorOf(t.OrgID, rules, key, now)
	src, rule, ok := in.Inhibits(store.AlertRef{OrgID: t.OrgID, TeamNodeID: t.TeamNodeID, Source: e.Source, Key: e.AlertKey}, labels)
	if !ok {
		return "", "", false
	}
	return src.ID, "inhibited by event " + src.ID + " (" + labelText(src.Labels) + ") under " + rule.Name() + " while it fires", true
}

// labelText is labels as one line: a="x", b="y" (at most 8).
func labelText(labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for n := range labels {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) > 8 {
		names = names[:8]
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + `"` + oneLine(labels[n]) + `"`
	}
	return strings.Join(parts, ", ")
}

// releaseEvery is how often the releaser looks for inhibited events whose
// inhibitor resolved (SPEC §21: delivered within a minute of the end).
const releaseEvery = 10 * time.Second

// ReleaseInhibited queues again, once, the inhibited events whose
// inhibiting alert resolved and that still fire; they pass noise control
// again (another inhibitor or a silence may hold them). Every replica runs
// it; the store's guarded update releases each event once.
func (d *Dispatcher) ReleaseInhibited() int {
	released, err := d.o.Store.ReleaseInhibited(d.work, d.now())
	d.released(store.SuppressedInhibited, released)
	if err != nil {
		d.log.Error("releasing inhibited events failed", "error", err)
	}
	return len(released)
}

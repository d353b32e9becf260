package routing

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

// Found is the Config Service's answer to a routing lookup.
type Found struct {
	Found      bool
	OrgID      string
	TeamNodeID string
	MatchedBy  string
}

// Finder asks the Config Service (through dispatch's cache): the routing
// lookup, and whether a rule's target team exists. Both are read-only.
type Finder interface {
	Lookup(ctx context.Context, identifiers map[string]string) (Found, error)
	TeamExists(ctx context.Context, orgID, teamNodeID string) (bool, error)
}

// Input is one event as routing reads it.
type Input struct {
	Source      string
	EventType   string
	Identifiers map[string]string
	// Load gives the event's labels and parsed body; called at most once,
	// and only when a rule reads a label or a field (the body is not read
	// for events the identifiers route).
	Load func() (labels map[string]string, body map[string]any)
}

// Routing outcomes.
const (
	Routed   = "routed"
	Ignored  = "ignored"
	Unrouted = "unrouted"
)

// Result is where an event goes.
type Result struct {
	// Status is Routed, Ignored or Unrouted.
	Status     string
	OrgID      string
	TeamNodeID string
	// MatchedBy is what routed it: the lookup's matched_by, or
	// "rule:<name>" when a rule did (the events list filters by it).
	MatchedBy string
	// Rule names the rule that decided, if one did.
	Rule string
	// Reason says, for Ignored and Unrouted, why in one line.
	Reason   string
	Decision Decision
}

// RuleMatchedBy is the matched_by of an event a rule routed or ignored.
func RuleMatchedBy(rule string) string { return "rule:" + rule }

// facts reads an event's fields, loading labels and body once if needed.
type facts struct {
	in     Input
	loaded bool
	labels map[string]string
	body   map[string]any
}

func (f *facts) get(fl *Field) (string, bool) {
	switch fl.kind {
	case fieldSource:
		return f.in.Source, true
	case fieldEventType:
		return f.in.EventType, true
	case fieldIdentifier:
		v, ok := f.in.Identifiers[fl.arg]
		return v, ok
	}
	if !f.loaded {
		f.loaded = true
		if f.in.Load != nil {
			f.labels, f.body = f.in.Load()
		}
	}
	if fl.kind == fieldLabel {
		v, ok := f.labels[fl.arg]
		return v, ok
	}
	return webhook.PointerText(f.body, fl.arg)
}

// matches reports whether every matcher of the rule holds (a missing
// field reads as "", as in Alertmanager).
func (r *Rule) matches(f *facts) bool {
	for _, m := range r.Match {
		v, _ := f.get(&m.Field)
		if !m.m.Matches(v) {
			return false
		}
	}
	return true
}

// Matchers are the rule's matchers as written.
func (r *Rule) Matchers() []string {
	out := make([]string, len(r.Match))
	for i, m := range r.Match {
		out[i] = m.String()
	}
	return out
}

// Route decides where one event goes: the rules read before the lookup
// (when: always), the identifier lookup, then the rules read when it found
// no team (when: unrouted, the fallback last). Every step is written into
// the result's decision. An error is a lookup that failed (the Config
// Service is down): the event is tried again later.
func Route(ctx context.Context, rs *Rules, in Input, find Finder) (Result, error) {
	var res Result
	f := &facts{in: in}
	var problems []string
	if rs != nil {
		done, err := rs.phase(ctx, rs.always, f, find, &res, &problems)
		if err != nil || done {
			return res, err
		}
	}
	if len(in.Identifiers) > 0 {
		found, err := find.Lookup(ctx, in.Identifiers)
		if err != nil {
			return res, err
		}
		res.Decision.Add(lookupStep(in.Identifiers, found, ""))
		if found.Found {
			res.Status, res.OrgID, res.TeamNodeID, res.MatchedBy = Routed, found.OrgID, found.TeamNodeID, found.MatchedBy
			return res, nil
		}
	}
	if rs != nil {
		done, err := rs.phase(ctx, rs.unrouted, f, find, &res, &problems)
		if err != nil || done {
			return res, err
		}
	}
	res.Status = Unrouted
	if len(in.Identifiers) == 0 {
		res.Reason = "the event carries no routing identifier"
	} else {
		res.Reason = "no team's routing matches " + DescribeIdentifiers(in.Identifiers)
	}
	if rs.Len() > 0 {
		res.Reason += ", and no routing rule took it"
	}
	if len(problems) > 0 {
		res.Reason += ": " + strings.Join(problems, "; ")
	}
	res.Decision.Add(Step{Kind: KindUnrouted, Reason: res.Reason})
	return res, nil
}

// phase reads one phase's rules in order; done reports that a rule decided.
func (rs *Rules) phase(ctx context.Context, rules []*Rule, f *facts, find Finder, res *Result, problems *[]string) (bool, error) {
	taken := false
	for _, r := range rules {
		if !r.matches(f) {
			continue
		}
		st := Step{Kind: KindRule, Rule: r.Name, Matchers: r.Matchers(), Action: r.Action, When: r.When}
		switch r.Action {
		case ActionIgnore:
			res.Decision.Add(st)
			res.Status, res.Rule, res.MatchedBy = Ignored, r.Name, RuleMatchedBy(r.Name)
			res.OrgID, res.TeamNodeID = "", ""
			res.Reason = "ignored by routing rule " + r.Name
			return true, nil
		case ActionRouteTo:
			ok, err := find.TeamExists(ctx, r.RouteTo.OrgID, r.RouteTo.TeamNodeID)
			if err != nil {
				return false, err
			}
			st.OrgID, st.TeamNodeID = r.RouteTo.OrgID, r.RouteTo.TeamNodeID
			if !ok {
				st.Detail = fmt.Sprintf("team %s/%s does not exist in the Config Service", r.RouteTo.OrgID, r.RouteTo.TeamNodeID)
				*problems = append(*problems, fmt.Sprintf("rule %s routes to %s/%s, which does not exist", r.Name, r.RouteTo.OrgID, r.RouteTo.TeamNodeID))
				res.Decision.Add(st)
				continue
			}
			res.Status, res.OrgID, res.TeamNodeID, res.Rule, res.MatchedBy = Routed, r.RouteTo.OrgID, r.RouteTo.TeamNodeID, r.Name, RuleMatchedBy(r.Name)
		case ActionIdentifiers:
			ids := map[string]string{}
			var missing string
			for _, typ := range slices.Sorted(maps.Keys(r.Identifiers)) {
				v, err := r.Identifiers[typ].render(f)
				if err != nil {
					missing = fmt.Sprintf("identifiers.%s: %v", typ, err)
					break
				}
				ids[typ] = v
			}
			if missing != "" {
				st.Detail = missing
				*problems = append(*problems, fmt.Sprintf("rule %s: %s", r.Name, missing))
				res.Decision.Add(st)
				continue
			}
			found, err := find.Lookup(ctx, ids)
			if err != nil {
				return false, err
			}
			st.Identifiers, st.Found = ids, &found.Found
			if !found.Found {
				st.Detail = "no team's routing matches " + DescribeIdentifiers(ids)
				*problems = append(*problems, fmt.Sprintf("rule %s looked up %s: no team", r.Name, DescribeIdentifiers(ids)))
				res.Decision.Add(st)
				continue
			}
			st.OrgID, st.TeamNodeID, st.MatchedBy = found.OrgID, found.TeamNodeID, found.MatchedBy
			res.Status, res.OrgID, res.TeamNodeID, res.Rule, res.MatchedBy = Routed, found.OrgID, found.TeamNodeID, r.Name, RuleMatchedBy(r.Name)
		}
		res.Decision.Add(st)
		taken = true
		if !r.Continue {
			return true, nil
		}
	}
	return taken, nil
}

// HasAlways reports whether some rule is read before the identifier
// lookup: then no event may take its team from a cached lookup without
// being routed.
func (rs *Rules) HasAlways() bool { return rs != nil && len(rs.always) > 0 }

// NeedsBody reports whether some rule reads labels or fields.
func (rs *Rules) NeedsBody() bool { return rs != nil && rs.body }

// DescribeIdentifiers writes identifiers as type=value, sorted.
func DescribeIdentifiers(ids map[string]string) string {
	parts := make([]string, 0, len(ids))
	for _, k := range slices.Sorted(maps.Keys(ids)) {
		parts = append(parts, k+"="+ids[k])
	}
	return strings.Join(parts, ", ")
}

func lookupStep(ids map[string]string, f Found, detail string) Step {
	found := f.Found
	return Step{Kind: KindLookup, Identifiers: maps.Clone(ids), Found: &found, OrgID: f.OrgID, TeamNodeID: f.TeamNodeID,
		MatchedBy: f.MatchedBy, Detail: detail}
}

// Package routing holds the operator's routing rules (the sources file's
// routes:), the matchers they are made of, and the decision stored with each
// event that says where it went and why. Dispatch asks it, never the other
// way round: it does no I/O of its own, the Config Service's lookups come in
// through a Finder.
//
// Rules add what the Config Service's identifiers cannot say — an alert's
// namespace, severity or cluster — and a fallback instead of unrouted. They
// are read in order; each has matchers in Alertmanager's syntax and one
// action (route_to, identifiers, ignore).
package routing

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// When a rule is read.
const (
	// WhenUnrouted rules are read after the identifier lookup found no team
	// (the default).
	WhenUnrouted = "unrouted"
	// WhenAlways rules are read before the identifier lookup.
	WhenAlways = "always"
)

// Actions a rule takes.
const (
	ActionRouteTo     = "route_to"
	ActionIdentifiers = "identifiers"
	ActionIgnore      = "ignore"
)

// MaxRules bounds the rules of one file.
const MaxRules = 5000

// Target is a team a rule routes to.
type Target struct {
	OrgID      string `json:"org_id"`
	TeamNodeID string `json:"team_node_id"`
}

// Rule is one entry of routes:, compiled.
type Rule struct {
	Name  string
	Match []*Matcher
	// When is WhenUnrouted or WhenAlways.
	When string
	// Action is one of ActionRouteTo, ActionIdentifiers, ActionIgnore.
	Action      string
	RouteTo     Target
	Identifiers map[string]*Template
	// Continue: after this rule's action, later rules are still read and a
	// later matching rule's action takes over (ignore always ends).
	Continue bool
	// Fallback: the last rule, without match: it takes every event no
	// earlier rule took.
	Fallback bool
	// ActiveTimeIntervals (SPEC §21): the alert events this rule routes
	// are delivered only while one of these time intervals of the file is
	// open; outside them they are held and delivered when one opens, if
	// still firing. Empty: always active.
	ActiveTimeIntervals []string
}

// MaxActiveIntervals bounds the time intervals one rule names.
const MaxActiveIntervals = 20

// MaxActiveIntervalsText bounds a rule's active_time_intervals joined with
// commas: a held event keeps them in suppressed_by (64 characters).
const MaxActiveIntervalsText = 64

// Rules are the routes: of one reading of the sources file, in order.
type Rules struct {
	list []*Rule
	// always and unrouted are the rules of each phase, in file order.
	always, unrouted []*Rule
	// body: some rule reads labels or fields (the event's body is needed).
	body bool
	// named: each rule by its name.
	named map[string]*Rule
}

// Rule returns the rule of that name, nil if none.
func (rs *Rules) Rule(name string) *Rule {
	if rs == nil {
		return nil
	}
	return rs.named[name]
}

// Len is how many rules there are.
func (rs *Rules) Len() int {
	if rs == nil {
		return 0
	}
	return len(rs.list)
}

// List returns the rules in order.
func (rs *Rules) List() []*Rule {
	if rs == nil {
		return nil
	}
	return slices.Clone(rs.list)
}

// Has reports whether a rule of that name exists.
func (rs *Rules) Has(name string) bool { return rs.Rule(name) != nil }

// ValidRuleName reports whether name can be a rule's name.
func ValidRuleName(name string) bool { return ruleName.MatchString(name) }

// spec is one rule as the file writes it.
type spec struct {
	Name        string            `json:"name"`
	Match       []string          `json:"match"`
	When        string            `json:"when"`
	RouteTo     *Target           `json:"route_to"`
	Identifiers map[string]string `json:"identifiers"`
	Ignore      bool              `json:"ignore"`
	Continue    bool              `json:"continue"`
	// ActiveTimeIntervals names time intervals of the file's
	// time_intervals: (policy checks that each exists).
	ActiveTimeIntervals []string `json:"active_time_intervals"`
}

var (
	ruleName   = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.:-]{0,63}$`)
	identName  = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	idPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
	maxMatch   = 32
	maxPattern = 1024
)

// Parse reads the routes: section (JSON, as the file's YAML became). known
// are the routing identifier types a matcher may name besides source,
// event_type, label.<name> and field./pointer. An error is one line naming
// the rule and the field.
func Parse(raw json.RawMessage, known []string) (*Rules, error) {
	rs := &Rules{}
	if len(raw) == 0 || string(raw) == "null" {
		return rs, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("routes: must be a list of rules")
	}
	if len(items) > MaxRules {
		return nil, fmt.Errorf("routes: %d rules, at most %d", len(items), MaxRules)
	}
	names := map[string]bool{}
	for i, item := range items {
		var s spec
		dec := json.NewDecoder(strings.NewReader(string(item)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			var named struct {
				Name string `json:"name"`
			}
			_ = json.Unmarshal(item, &named)
			return nil, fmt.Errorf("%s: %s", ruleRef(named.Name, i), jsonError(err))
		}
		r, err := compile(s, known)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", ruleRef(s.Name, i), err)
		}
		if names[r.Name] {
			return nil, fmt.Errorf("%s: name: listed twice", ruleRef(s.Name, i))
		}
		names[r.Name] = true
		if rs.named == nil {
			rs.named = map[string]*Rule{}
		}
		rs.named[r.Name] = r
		if len(s.Match) == 0 {
			if i != len(items)-1 {
				return nil, fmt.Errorf("%s: match: missing; only the last rule may go without (the fallback), or it would take every event before the rules after it", ruleRef(s.Name, i))
			}
			if r.When == WhenAlways {
				return nil, fmt.Errorf("%s: when: always on the fallback (a rule without match) would take every event before the identifier lookup; the fallback is read when nothing else routed the event", ruleRef(s.Name, i))
			}
			r.Fallback = true
		}
		rs.list = append(rs.list, r)
		if r.When == WhenAlways {
			rs.always = append(rs.always, r)
		} else {
			rs.unrouted = append(rs.unrouted, r)
		}
		for _, m := range r.Match {
			rs.body = rs.body || m.kind == fieldLabel || m.kind == fieldBody
		}
		for _, t := range r.Identifiers {
			rs.body = rs.body || t.body
		}
	}
	return rs, nil
}

func ruleRef(name string, i int) string {
	if name == "" {
		return fmt.Sprintf("routes: rule #%d", i+1)
	}
	return fmt.Sprintf("routes: rule %q", name)
}

// jsonError says what a strict decode refused in the file's words.
func jsonError(err error) string {
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return strings.Trim(f, `"`) + ": unknown field (a rule has name, match, when, route_to, identifiers, ignore, continue, active_time_intervals)"
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s: must be %s", te.Field, kindOf(te.Type.Kind().String()))
	}
	return msg
}

func kindOf(k string) string {
	switch k {
	case "slice":
		return "a list"
	case "map", "struct", "ptr":
		return "a mapping"
	case "bool":
		return "true or false"
	}
	return "a " + k
}

// compile checks and compiles one rule.
func compile(s spec, known []string) (*Rule, error) {
	if !ruleName.MatchString(s.Name) {
		return nil, fmt.Errorf("name: must match [a-zA-Z0-9][a-zA-Z0-9_.:-]{0,63}")
	}
	r := &Rule{Name: s.Name, When: s.When, Continue: s.Continue}
	switch s.When {
	case "":
		r.When = WhenUnrouted
	case WhenUnrouted, WhenAlways:
	default:
		return nil, fmt.Errorf("when: %q, must be unrouted or always", s.When)
	}
	if len(s.Match) > maxMatch {
		return nil, fmt.Errorf("match: %d matchers, at most %d", len(s.Match), maxMatch)
	}
	for _, text := range s.Match {
		m, err := ParseMatcher(text, known)
		if err != nil {
			return nil, fmt.Errorf("match %q: %v", text, err)
		}
		r.Match = append(r.Match, m)
	}
	actions := 0
	if s.RouteTo != nil {
		actions++
		r.Action, r.RouteTo = ActionRouteTo, *s.RouteTo
		if !idPattern.MatchString(s.RouteTo.OrgID) {
			return nil, fmt.Errorf("route_to.org_id: %q is not an org id", s.RouteTo.OrgID)
		}
		if !idPattern.MatchString(s.RouteTo.TeamNodeID) {
			return nil, fmt.Errorf("route_to.team_node_id: %q is not a team id", s.RouteTo.TeamNodeID)
		}
	}
	if s.Identifiers != nil {
		actions++
		r.Action = ActionIdentifiers
		if len(s.Identifiers) == 0 {
			return nil, fmt.Errorf("identifiers: empty: name at least one identifier type and its template")
		}
		r.Identifiers = map[string]*Template{}
		for typ, text := range s.Identifiers {
			if !identName.MatchString(typ) {
				return nil, fmt.Errorf("identifiers.%s: an identifier type must match [a-z][a-z0-9_]{0,63}", typ)
			}
			t, err := ParseTemplate(text, known)
			if err != nil {
				return nil, fmt.Errorf("identifiers.%s: %v", typ, err)
			}
			r.Identifiers[typ] = t
		}
	}
	if s.Ignore {
		actions++
		r.Action = ActionIgnore
	}
	if actions != 1 {
		return nil, fmt.Errorf("a rule takes exactly one action: route_to, identifiers or ignore: true (it has %d)", actions)
	}
	if len(s.ActiveTimeIntervals) > 0 {
		if r.Action != ActionRouteTo {
			return nil, fmt.Errorf("active_time_intervals: only a rule that routes (route_to) holds the events it routes outside its time intervals")
		}
		if len(s.ActiveTimeIntervals) > MaxActiveIntervals {
			return nil, fmt.Errorf("active_time_intervals: %d names, at most %d", len(s.ActiveTimeIntervals), MaxActiveIntervals)
		}
		for _, n := range s.ActiveTimeIntervals {
			if !slices.Contains(r.ActiveTimeIntervals, n) {
				r.ActiveTimeIntervals = append(r.ActiveTimeIntervals, n)
			}
		}
		if joined := strings.Join(r.ActiveTimeIntervals, ","); len(joined) > MaxActiveIntervalsText {
			return nil, fmt.Errorf("active_time_intervals: the names are %d characters together (with commas), at most %d: each held event keeps them", len(joined), MaxActiveIntervalsText)
		}
	}
	return r, nil
}

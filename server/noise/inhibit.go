package noise

// Inhibition (SPEC §21): the sources file's inhibit_rules:, with
// Alertmanager's semantics —
//
//	inhibit_rules:
//	  - source_matchers: [alertname="NodeDown"]
//	    target_matchers: [alertname=~"Pod.*"]
//	    equal: [node]
//
// A firing alert matching a rule's target_matchers is inhibited while a
// firing alert of the same org matches its source_matchers and carries the
// same values of the equal labels. Matchers read an alert's labels, named
// as Alertmanager names them (alertname) or as routes do (label.alertname),
// in Alertmanager's syntax (routing's matchers: parse once, match many).

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/incidentfox/orchestrator-edge/server/routing"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// MaxInhibitRules bounds the inhibit rules of one file.
const MaxInhibitRules = 1000

// InhibitRule is one entry of inhibit_rules, compiled.
type InhibitRule struct {
	// Index is the rule's place in the file (from 0), as errors and the
	// event page name it: inhibit_rules[2].
	Index  int
	Source []*routing.Matcher
	Target []*routing.Matcher
	Equal  []string
}

// Name is how the rule is named: inhibit_rules[i].
func (r *InhibitRule) Name() string { return fmt.Sprintf("inhibit_rules[%d]", r.Index) }

// InhibitRules are the inhibit_rules: of one reading of the sources file.
type InhibitRules struct {
	list []*InhibitRule
}

// Len is how many rules there are.
func (rs *InhibitRules) Len() int {
	if rs == nil {
		return 0
	}
	return len(rs.list)
}

// List returns the rules in file order.
func (rs *InhibitRules) List() []*InhibitRule {
	if rs == nil {
		return nil
	}
	return slices.Clone(rs.list)
}

// inhibitSpec is one inhibit_rules: entry as the file writes it.
type inhibitSpec struct {
	SourceMatchers []string `json:"source_matchers"`
	TargetMatchers []string `json:"target_matchers"`
	Equal          []string `json:"equal"`
}

// ParseInhibitRules reads the inhibit_rules: section (JSON, as the file's
// YAML became). An error is one line naming the entry and the field.
func ParseInhibitRules(raw json.RawMessage) (*InhibitRules, error) {
	rs := &InhibitRules{}
	if len(raw) == 0 || string(raw) == "null" {
		return rs, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("inhibit_rules: must be a list of {source_matchers, target_matchers, equal}")
	}
	if len(items) > MaxInhibitRules {
		return nil, fmt.Errorf("inhibit_rules: %d entries, at most %d", len(items), MaxInhibitRules)
	}
	for i, item := range items {
		ref := fmt.Sprintf("inhibit_rules[%d]", i)
		var s inhibitSpec
		if err := webhook.DecodeSection(item, &s); err != nil {
			return nil, fmt.Errorf("%s: %v (a rule has source_matchers, target_matchers and equal)", ref, err)
		}
		r := &InhibitRule{Index: i}
		var err error
		if r.Source, err = labelMatchers(s.SourceMatchers); err != nil {
			return nil, fmt.Errorf("%s: source_matchers%v", ref, err)
		}
		if r.Target, err = labelMatchers(s.TargetMatchers); err != nil {
			return nil, fmt.Errorf("%s: target_matchers%v", ref, err)
		}
		for j, l := range s.Equal {
			name := strings.TrimPrefix(l, "label.")
			if !webhook.LabelName(name) {
				return nil, fmt.Errorf("%s: equal[%d]: %q is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)", ref, j, l)
			}
			if !slices.Contains(r.Equal, name) {
				r.Equal = append(r.Equal, name)
			}
		}
		rs.list = append(rs.list, r)
	}
	return rs, nil
}

// labelMatchers compiles a rule's matchers; an error starts with the
// matcher's place (": required …" or "[1]: …").
func labelMatchers(texts []string) ([]*routing.Matcher, error) {
	if len(texts) == 0 {
		return nil, fmt.Errorf(": required, at least one matcher such as alertname=\"NodeDown\" (a rule without one would match every alert)")
	}
	if len(texts) > 32 {
		return nil, fmt.Errorf(": %d matchers, at most 32", len(texts))
	}
	out := make([]*routing.Matcher, 0, len(texts))
	for j, text := range texts {
		m, err := routing.ParseLabelMatcher(text)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %q: %v", j, text, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// Targets reports whether an alert with these labels matches some rule's
// target matchers (only those are checked against the firing alerts).
func (rs *InhibitRules) Targets(labels map[string]string) bool {
	for _, r := range rs.List() {
		if all(r.Target, labels) {
			return true
		}
	}
	return false
}

func all(ms []*routing.Matcher, labels map[string]string) bool {
	for _, m := range ms {
		if !m.MatchesLabels(labels) {
			return false
		}
	}
	return true
}

// Inhibitor answers, for one org's firing alerts, whether one of them
// inhibits an alert: Alertmanager's inhibitor, the sources of each rule
// indexed by their equal labels' values.
type Inhibitor struct {
	rules []*InhibitRule
	// bySig[i] maps rule i's equal-label values to the first two firing
	// alerts matching its source (two: an alert never inhibits itself, so
	// one matching both sides needs another).
	bySig []map[string][]store.FiringAlert
}

// NewInhibitor indexes an org's firing alerts under the rules.
func NewInhibitor(rs *InhibitRules, firing []store.FiringAlert) *Inhibitor {
	in := &Inhibitor{rules: rs.List()}
	in.bySig = make([]map[string][]store.FiringAlert, len(in.rules))
	for i, r := range in.rules {
		idx := map[string][]store.FiringAlert{}
		for _, a := range firing {
			if !all(r.Source, a.Labels) {
				continue
			}
			sig, ok := equalSig(r.Equal, a.Labels)
			if ok && len(idx[sig]) < 2 {
				idx[sig] = append(idx[sig], a)
			}
		}
		in.bySig[i] = idx
	}
	return in
}

// Inhibits returns a firing alert other than self that inhibits an alert
// with these labels, and the rule under which it does.
func (in *Inhibitor) Inhibits(self store.AlertRef, labels map[string]string) (store.FiringAlert, *InhibitRule, bool) {
	if in == nil {
		return store.FiringAlert{}, nil, false
	}
	for i, r := range in.rules {
		if len(in.bySig[i]) == 0 || !all(r.Target, labels) {
			continue
		}
		sig, ok := equalSig(r.Equal, labels)
		if !ok {
			continue
		}
		for _, a := range in.bySig[i][sig] {
			if a.Ref != self {
				return a, r, true
			}
		}
	}
	return store.FiringAlert{}, nil, false
}

// equalSig is the values of the equal labels, joined; false when one is
// missing or empty. An event's labels are those its alerts share, so a
// missing label is one its alerts differ on, never a match.
func equalSig(equal []string, labels map[string]string) (string, bool) {
	var b strings.Builder
	for _, l := range equal {
		v := labels[l]
		if v == "" {
			return "", false
		}
		b.WriteString(v)
		b.WriteByte(0xff)
	}
	return b.String(), true
}

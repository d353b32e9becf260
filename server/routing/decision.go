package routing

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Kinds of decision step.
const (
	// KindLookup: the Config Service's routing lookup, what was asked and
	// what it answered.
	KindLookup = "lookup"
	// KindRule: a routing rule matched (its matchers and action).
	KindRule = "rule"
	// KindUnrouted: nothing routed the event, and why.
	KindUnrouted = "unrouted"
	// KindNoise: a noise rule kept the event back (Reason: resolved,
	// repeat, silence, inhibited, budget, …; By: what caused it).
	KindNoise = "noise"
	// KindAgent: the agent the event was handed to.
	KindAgent = "agent"
	// KindDestination: where the agent's answer goes.
	KindDestination = "destination"
)

// MaxDecisionBytes bounds a stored decision. Past it, long texts are cut
// first, then steps from the middle (the first — how it was routed — and
// the last — how it ended — are kept), with a step saying how many went.
const MaxDecisionBytes = 4096

// maxText bounds one text of a step (a matcher, an identifier, a detail).
const maxText = 200

// Step is one thing that happened to an event on its way, in order.
type Step struct {
	Kind        string            `json:"kind"`
	Rule        string            `json:"rule,omitempty"`
	When        string            `json:"when,omitempty"`
	Matchers    []string          `json:"matchers,omitempty"`
	Action      string            `json:"action,omitempty"`
	Identifiers map[string]string `json:"identifiers,omitempty"`
	Found       *bool             `json:"found,omitempty"`
	OrgID       string            `json:"org_id,omitempty"`
	TeamNodeID  string            `json:"team_node_id,omitempty"`
	MatchedBy   string            `json:"matched_by,omitempty"`
	Reason      string            `json:"reason,omitempty"`
	By          string            `json:"by,omitempty"`
	Agent       string            `json:"agent,omitempty"`
	Destination string            `json:"destination,omitempty"`
	Detail      string            `json:"detail,omitempty"`
}

// Decision is the record of where an event went and why: the identifiers
// tried and the lookup's answers, the rules that matched, the noise rules
// that applied, the agent and destinations chosen. Rooms append their own
// steps with Add.
type Decision struct {
	Steps []Step
}

// Add appends a step.
func (d *Decision) Add(s Step) { d.Steps = append(d.Steps, s) }

// MarshalJSON writes the steps as a list.
func (d Decision) MarshalJSON() ([]byte, error) {
	if d.Steps == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(d.Steps)
}

// UnmarshalJSON reads a list of steps.
func (d *Decision) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &d.Steps) }

// Encode gives the decision as stored: JSON of at most MaxDecisionBytes.
// nil for an empty decision.
func (d Decision) Encode() []byte {
	if len(d.Steps) == 0 {
		return nil
	}
	b, _ := json.Marshal(d.Steps)
	if len(b) <= MaxDecisionBytes {
		return b
	}
	steps := make([]Step, len(d.Steps))
	for i, s := range d.Steps {
		steps[i] = s.cut()
	}
	dropped := 0
	for {
		out := steps
		if dropped > 0 {
			mid := (len(d.Steps) - dropped) / 2
			out = append(append(append([]Step{}, steps[:mid]...),
				Step{Kind: "cut", Detail: fmt.Sprintf("%d steps left out (the decision is kept under %d bytes)", dropped, MaxDecisionBytes)}),
				steps[mid+dropped:]...)
		}
		b, _ = json.Marshal(out)
		if len(b) <= MaxDecisionBytes || dropped >= len(steps)-1 {
			return b
		}
		dropped++
	}
}

// cut shortens a step's texts.
func (s Step) cut() Step {
	s.Detail, s.Reason, s.By = short(s.Detail), short(s.Reason), short(s.By)
	if len(s.Matchers) > 0 {
		m := make([]string, len(s.Matchers))
		for i, x := range s.Matchers {
			m[i] = short(x)
		}
		s.Matchers = m
	}
	if len(s.Identifiers) > 0 {
		ids := make(map[string]string, len(s.Identifiers))
		for k, v := range s.Identifiers {
			ids[short(k)] = short(v)
		}
		s.Identifiers = ids
	}
	return s
}

func short(s string) string {
	if len(s) <= maxText {
		return s
	}
	cut := maxText
	for cut > 0 && s[cut]&0xC0 == 0x80 { // never inside a UTF-8 sequence
		cut--
	}
	return s[:cut] + "…"
}

// DecodeDecision reads a stored decision; an empty or unreadable one is an
// empty decision (an event stored before decisions were).
func DecodeDecision(b []byte) Decision {
	var d Decision
	if len(b) > 0 {
		_ = json.Unmarshal(b, &d.Steps)
	}
	return d
}

// Sentence says in words how the event was routed, e.g. `routed to
// acme/payments by rule k8s-namespace: label.namespace="payments"`; ""
// when the decision says nothing of routing.
func (d Decision) Sentence() string {
	for i := len(d.Steps) - 1; i >= 0; i-- {
		s := d.Steps[i]
		switch {
		case s.Kind == KindRule && s.Action == ActionIgnore:
			return fmt.Sprintf("ignored by rule %s: %s", s.Rule, strings.Join(s.Matchers, ", "))
		case s.Kind == KindRule && s.Detail == "" && s.OrgID != "":
			by := ""
			if len(s.Matchers) > 0 {
				by = ": " + strings.Join(s.Matchers, ", ")
			} else {
				by = " (the fallback)"
			}
			via := ""
			if s.Action == ActionIdentifiers {
				via = " looking up " + DescribeIdentifiers(s.Identifiers)
			}
			return fmt.Sprintf("routed to %s/%s by rule %s%s%s", s.OrgID, s.TeamNodeID, s.Rule, via, by)
		case s.Kind == KindLookup && s.Found != nil && *s.Found:
			return fmt.Sprintf("routed to %s/%s by its identifiers (%s matched by %s)", s.OrgID, s.TeamNodeID,
				DescribeIdentifiers(s.Identifiers), s.MatchedBy)
		case s.Kind == KindUnrouted:
			return "unrouted: " + s.Reason
		}
	}
	return ""
}

// Words says each step in one line, for the event page.
func (s Step) Words() string {
	switch s.Kind {
	case KindLookup:
		if s.Found != nil && *s.Found {
			return fmt.Sprintf("looked up %s: team %s/%s (matched by %s)", DescribeIdentifiers(s.Identifiers), s.OrgID, s.TeamNodeID, s.MatchedBy)
		}
		return fmt.Sprintf("looked up %s: no team", DescribeIdentifiers(s.Identifiers))
	case KindRule:
		w := fmt.Sprintf("rule %s matched", s.Rule)
		if len(s.Matchers) > 0 {
			w += " (" + strings.Join(s.Matchers, ", ") + ")"
		} else {
			w += " (the fallback)"
		}
		switch s.Action {
		case ActionIgnore:
			w += ": ignore"
		case ActionRouteTo:
			w += fmt.Sprintf(": route to %s/%s", s.OrgID, s.TeamNodeID)
		case ActionIdentifiers:
			if len(s.Identifiers) > 0 {
				w += ": look up " + DescribeIdentifiers(s.Identifiers)
				if s.Found != nil && *s.Found {
					w += fmt.Sprintf(" → team %s/%s", s.OrgID, s.TeamNodeID)
				}
			}
		}
		if s.Detail != "" {
			w += " — not taken: " + s.Detail
		}
		return w
	case KindUnrouted:
		return "unrouted: " + s.Reason
	case KindNoise:
		w := "kept from the agent: " + s.Reason
		if s.By != "" {
			w += " (by " + s.By + ")"
		}
		if s.Detail != "" {
			w += ": " + s.Detail
		}
		return w
	case KindAgent:
		w := "handed to the agent " + s.Agent
		if s.Detail != "" {
			w += ": " + s.Detail
		}
		return w
	case KindDestination:
		return "answer to " + s.Destination + " " + s.Detail
	}
	return strings.TrimSpace(s.Kind + " " + s.Detail)
}

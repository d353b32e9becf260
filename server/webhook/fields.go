package webhook

import (
	"maps"
	"slices"
)

// BuiltinIdentifiers are the routing identifier types the built-in sources
// can carry (an Alertmanager label mapping and configured sources may add
// more).
var BuiltinIdentifiers = []string{"slack_channel_id", "github_repo", "pagerduty_service_id",
	"incidentio_alert_source_id", "coralogix_team_name", "service"}

// CheckPointer checks an RFC 6901 JSON pointer (not the empty one): routing
// rules read the body with the same pointers configured sources do.
func CheckPointer(p string) error { return checkPointer(p) }

// ParseBody reads a stored body as JSON (numbers kept as written); nil when
// it is not a JSON object.
func ParseBody(body []byte) map[string]any {
	m, err := parseJSON(body)
	if err != nil {
		return nil
	}
	return m
}

// PointerText resolves an RFC 6901 pointer in a parsed body and gives its
// value as text (strings as they are, numbers and booleans as JSON writes
// them, objects and arrays as compact JSON); ok is false when it resolves
// to nothing.
func PointerText(doc map[string]any, ptr string) (string, bool) {
	if doc == nil {
		return "", false
	}
	return pointerText(doc, ptr)
}

// Labels are what routing rules read as label.<name> of one of the
// source's stored events: for Alertmanager the group's common labels, then
// its group labels (true of every alert in the notification); for a
// configured source the fields it extracts (its routing identifiers); none
// for the other built-in sources (rules read their body with field./pointer).
func (s *Source) Labels(body []byte, identifiers map[string]string) map[string]string {
	switch {
	case s == nil:
		return nil
	case s.Name == Alertmanager:
		m, err := parseAM(body)
		if err != nil {
			return nil
		}
		out := maps.Clone(m.GroupLabels)
		if out == nil {
			out = map[string]string{}
		}
		maps.Copy(out, m.CommonLabels)
		return out
	case s.Kind == "configured":
		return maps.Clone(identifiers)
	}
	return nil
}

// IdentifierTypes lists the routing identifier types every source in the
// registry can carry, sorted.
func (r *Registry) IdentifierTypes() []string {
	set := map[string]bool{}
	for _, id := range BuiltinIdentifiers {
		set[id] = true
	}
	for _, s := range r.list {
		for _, id := range s.Routing {
			set[id] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

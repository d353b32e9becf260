package routing

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/incidentfox/orchestrator-edge/server/webhook"
	amlabels "github.com/prometheus/alertmanager/pkg/labels"
)

// The kinds of field a matcher or a template reads.
type fieldKind int

const (
	fieldSource fieldKind = iota
	fieldEventType
	fieldIdentifier
	fieldLabel // label.<name>
	fieldBody  // field./json/pointer
)

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]{0,127}$`)

// Field is one thing about an event a rule reads: source, event_type, an
// identifier, label.<name> or field./json/pointer.
type Field struct {
	// Name is the field as written (label.namespace, field./data/env, service).
	Name string
	kind fieldKind
	arg  string // the label name, the pointer or the identifier type
}

// parseField reads a field name. Alertmanager's matcher parser cannot be
// used for it: its label-name rule refuses the dot of label.namespace and
// the slash of field./x, so the name is ours and only the value's matching
// is Alertmanager's.
func parseField(name string, known []string) (Field, error) {
	f := Field{Name: name}
	switch {
	case name == "source":
		f.kind = fieldSource
	case name == "event_type":
		f.kind = fieldEventType
	case strings.HasPrefix(name, "label."):
		f.kind, f.arg = fieldLabel, name[len("label."):]
		if !labelName.MatchString(f.arg) {
			return f, fmt.Errorf("%s: a label name must match [a-zA-Z_][a-zA-Z0-9_]*", name)
		}
	case strings.HasPrefix(name, "field."):
		f.kind, f.arg = fieldBody, name[len("field."):]
		if err := webhook.CheckPointer(f.arg); err != nil {
			return f, fmt.Errorf("%s: %v", name, err)
		}
	case slices.Contains(known, name):
		f.kind, f.arg = fieldIdentifier, name
	default:
		hint := ""
		if labelName.MatchString(name) && !strings.Contains(name, ".") {
			hint = fmt.Sprintf("; an alert's label is label.%s", name)
		}
		return f, fmt.Errorf("unknown field %s (a rule reads source, event_type, label.<name>, field./json/pointer or a routing identifier: %s)%s",
			name, strings.Join(known, ", "), hint)
	}
	return f, nil
}

// Matcher is one matcher of a rule: a field, an operator (=, !=, =~, !~)
// and a value. Matching is Alertmanager's (its pkg/labels): regexes are
// anchored at both ends and compiled once, at load; a field the event does
// not have reads as "".
type Matcher struct {
	Field
	m *amlabels.Matcher
}

// String is the matcher as a rule writes it: label.namespace="payments".
func (m *Matcher) String() string {
	return m.Name + m.m.Type.String() + strconv.Quote(m.m.Value)
}

// ParseMatcher reads one matcher in Alertmanager's syntax: name="v",
// name!="v", name=~"re", name!~"re" (the value quoted, or bare). known are
// the routing identifier types a matcher may name.
func ParseMatcher(text string, known []string) (*Matcher, error) {
	name, t, value, err := splitMatcher(text)
	if err != nil {
		return nil, err
	}
	f, err := parseField(name, known)
	if err != nil {
		return nil, err
	}
	return newMatcher(f, t, value)
}

// ParseLabelMatcher reads one matcher over an alert's labels, as an
// Alertmanager inhibit rule writes it: the name is a label's, plain
// (alertname="NodeDown") or as routes write it (label.alertname=…).
func ParseLabelMatcher(text string) (*Matcher, error) {
	name, t, value, err := splitMatcher(text)
	if err != nil {
		return nil, err
	}
	f := Field{Name: name, kind: fieldLabel, arg: strings.TrimPrefix(name, "label.")}
	if !labelName.MatchString(f.arg) {
		return nil, fmt.Errorf("%s: a label name must match [a-zA-Z_][a-zA-Z0-9_]*", name)
	}
	return newMatcher(f, t, value)
}

// MatchesLabels reports whether a label matcher holds for the labels (a
// missing label reads as "", as in Alertmanager).
func (m *Matcher) MatchesLabels(labels map[string]string) bool {
	return m.m.Matches(labels[m.arg])
}

// Label is the label a label matcher reads.
func (m *Matcher) Label() string { return m.arg }

func newMatcher(f Field, t amlabels.MatchType, value string) (*Matcher, error) {
	m, err := amlabels.NewMatcher(t, f.Name, value)
	if err != nil {
		return nil, fmt.Errorf("invalid regex %q: %v", value, err)
	}
	return &Matcher{Field: f, m: m}, nil
}

// splitMatcher reads a matcher's name, operator and value.
func splitMatcher(text string) (string, amlabels.MatchType, string, error) {
	s := strings.TrimSpace(text)
	var name string
	if strings.HasPrefix(s, `"`) { // a quoted name, as Alertmanager's UTF-8 matchers allow
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			return "", 0, "", fmt.Errorf("unterminated quoted name")
		}
		name, _ = strconv.Unquote(q)
		s = strings.TrimSpace(s[len(q):])
	} else {
		i := strings.IndexAny(s, "=!")
		if i < 0 {
			return "", 0, "", fmt.Errorf("no operator: a matcher is name=\"value\" (or !=, =~, !~)")
		}
		name, s = strings.TrimSpace(s[:i]), s[i:]
	}
	var t amlabels.MatchType
	switch {
	case strings.HasPrefix(s, "=~"):
		t, s = amlabels.MatchRegexp, s[2:]
	case strings.HasPrefix(s, "!~"):
		t, s = amlabels.MatchNotRegexp, s[2:]
	case strings.HasPrefix(s, "!="):
		t, s = amlabels.MatchNotEqual, s[2:]
	case strings.HasPrefix(s, "="):
		t, s = amlabels.MatchEqual, s[1:]
	default:
		return "", 0, "", fmt.Errorf("no operator after %s: one of =, !=, =~, !~", name)
	}
	value, err := matcherValue(strings.TrimSpace(s))
	if err != nil {
		return "", 0, "", err
	}
	if len(value) > maxPattern {
		return "", 0, "", fmt.Errorf("value longer than %d bytes", maxPattern)
	}
	return name, t, value, nil
}

// matcherValue reads a quoted (Go escapes) or bare value.
func matcherValue(s string) (string, error) {
	if !strings.HasPrefix(s, `"`) {
		if strings.ContainsAny(s, "\"") {
			return "", fmt.Errorf("a bare value cannot hold a quote: quote the whole value")
		}
		return s, nil
	}
	v, err := strconv.Unquote(s)
	if err != nil {
		return "", fmt.Errorf("the value %s is not one quoted string", s)
	}
	return v, nil
}

// Template is an identifier's value built from an event's fields:
// "{label.app}", "svc-{field./service/name}", literal text.
type Template struct {
	Text  string
	parts []tplPart
	body  bool
}

type tplPart struct {
	lit   string
	field *Field
}

var placeholder = regexp.MustCompile(`\{[^{}]*\}`)

// ParseTemplate reads an identifier template.
func ParseTemplate(text string, known []string) (*Template, error) {
	t := &Template{Text: text}
	last := 0
	for _, loc := range placeholder.FindAllStringIndex(text, -1) {
		if loc[0] > last {
			t.parts = append(t.parts, tplPart{lit: text[last:loc[0]]})
		}
		f, err := parseField(text[loc[0]+1:loc[1]-1], known)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", text, err)
		}
		t.parts = append(t.parts, tplPart{field: &f})
		t.body = t.body || f.kind == fieldLabel || f.kind == fieldBody
		last = loc[1]
	}
	if last < len(text) {
		t.parts = append(t.parts, tplPart{lit: text[last:]})
	}
	for _, p := range t.parts {
		if p.field == nil && strings.ContainsAny(p.lit, "{}") {
			return nil, fmt.Errorf("%q: unbalanced brace", text)
		}
	}
	if strings.TrimSpace(text) == "" {
		return nil, fmt.Errorf("empty template")
	}
	return t, nil
}

// render fills the template from the event; a field the event lacks is an
// error naming it.
func (t *Template) render(f *facts) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.field == nil {
			b.WriteString(p.lit)
			continue
		}
		v, ok := f.get(p.field)
		if !ok || v == "" {
			return "", fmt.Errorf("%s is missing", p.field.Name)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

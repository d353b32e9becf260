package webhook

import (
	"cmp"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"hash"
	"net/http"
	"regexp"
	"slices"
	"strings"
)

// A configured source is one an operator adds in the sources file, without
// a release (SPEC §6). Its spec is checked once at start-up; a mistake stops
// start-up with one line naming the source and the field.

// SourceSpec is one entry of the sources file, word for word.
type SourceSpec struct {
	Name       string            `json:"name"`
	Verify     VerifySpec        `json:"verify"`
	DeliveryID *FieldSpec        `json:"delivery_id,omitempty"`
	EventType  *FieldSpec        `json:"event_type,omitempty"`
	Routing    map[string]string `json:"routing,omitempty"`
	Alert      *AlertSpec        `json:"alert,omitempty"`
	Coalesce   *bool             `json:"coalesce,omitempty"`
	Describe   string            `json:"describe,omitempty"`
	// Orgs bind the source to orgs: its events route only to their teams.
	Orgs []string `json:"orgs,omitempty"`
}

// VerifySpec says how a configured source's deliveries are authenticated.
type VerifySpec struct {
	Kind            string `json:"kind"`
	Header          string `json:"header,omitempty"`
	Algorithm       string `json:"algorithm,omitempty"`
	Encoding        string `json:"encoding,omitempty"`
	Prefix          string `json:"prefix,omitempty"`
	Signed          string `json:"signed,omitempty"`
	TimestampHeader string `json:"timestamp_header,omitempty"`
	IDHeader        string `json:"id_header,omitempty"`
	SecretEnv       string `json:"secret_env"`
}

// FieldSpec takes a value from a header, a JSON pointer, or a literal.
type FieldSpec struct {
	Header  string `json:"header,omitempty"`
	Pointer string `json:"pointer,omitempty"`
	Value   string `json:"value,omitempty"`
}

// AlertSpec gives a configured source's events an alert identity.
type AlertSpec struct {
	Key      string   `json:"key"`
	State    string   `json:"state"`
	Firing   []string `json:"firing"`
	Resolved []string `json:"resolved"`
}

// Verify kinds.
const (
	KindHMAC             = "hmac"
	KindStandardWebhooks = "standard-webhooks"
	KindToken            = "token"
	KindBasic            = "basic"
)

var (
	identifierType = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	headerName     = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
	placeholder    = regexp.MustCompile(`\{[^{}]*\}`)
	envName        = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

// fieldError is a mistake in one field of one source.
type fieldError struct{ source, field, msg string }

func (e *fieldError) Error() string {
	return fmt.Sprintf("source %q: %s: %s", e.source, e.field, e.msg)
}

// configured is a checked SourceSpec with its secrets.
type configured struct {
	spec    SourceSpec
	secrets []string
	hash    func() hash.Hash
	signed  []string // the signed template cut into literals and placeholders
	tmpl    []string // the describe template, likewise
	firing  map[string]bool
	resolve map[string]bool
}

// NewConfigured checks a spec, reads its secrets through getenv, and
// returns the source.
func NewConfigured(spec SourceSpec, getenv func(string) string) (*Source, error) {
	c := &configured{spec: spec}
	fail := func(field, format string, args ...any) error {
		return &fieldError{source: spec.Name, field: field, msg: fmt.Sprintf(format, args...)}
	}
	if !slugPattern.MatchString(spec.Name) {
		return nil, fail("name", "must match [a-z][a-z0-9-]{0,31}")
	}
	if slices.Contains(Builtin[:], spec.Name) || spec.Name == "internal" || spec.Name == "digest" {
		return nil, fail("name", "%q is a built-in source's name", spec.Name)
	}
	v := spec.Verify
	if !envName.MatchString(v.SecretEnv) {
		return nil, fail("verify.secret_env", "must name an environment variable (secrets are never written in the file)")
	}
	for _, s := range strings.Split(getenv(v.SecretEnv), ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.secrets = append(c.secrets, s)
		}
	}
	if len(c.secrets) == 0 {
		return nil, fail("verify.secret_env", "%s is unset or empty", v.SecretEnv)
	}
	for _, h := range []struct{ field, name string }{{"verify.header", v.Header}, {"verify.timestamp_header", v.TimestampHeader},
		{"verify.id_header", v.IDHeader}} {
		if h.name != "" && !headerName.MatchString(h.name) {
			return nil, fail(h.field, "%q is not a header name", h.name)
		}
	}
	scheme := ""
	switch v.Kind {
	case KindHMAC:
		if v.Header == "" {
			return nil, fail("verify.header", "required for kind hmac")
		}
		switch v.Algorithm {
		case "sha1":
			c.hash = sha1.New
		case "sha256", "":
			c.hash, v.Algorithm = sha256.New, "sha256"
		case "sha512":
			c.hash = sha512.New
		default:
			return nil, fail("verify.algorithm", "%q is not sha1, sha256 or sha512", v.Algorithm)
		}
		switch v.Encoding {
		case "":
			v.Encoding = "hex"
		case "hex", "base64":
		default:
			return nil, fail("verify.encoding", "%q is not hex or base64", v.Encoding)
		}
		if v.Signed == "" {
			v.Signed = "{body}"
		}
		parts, err := cutTemplate(v.Signed, func(p string) bool { return p == "{body}" || p == "{timestamp}" || p == "{id}" })
		if err != nil {
			return nil, fail("verify.signed", "%v", err)
		}
		if !slices.Contains(parts, "{body}") {
			return nil, fail("verify.signed", "must include {body}")
		}
		// Two placeholders side by side would let text move from one into
		// the other under the same signature ({body}{id}: one signed
		// delivery, any number of delivery ids).
		for i := 1; i < len(parts); i++ {
			if isPlaceholder(parts[i-1]) && isPlaceholder(parts[i]) {
				return nil, fail("verify.signed", "%s%s: placeholders must be separated by literal text (e.g. %s.%s)",
					parts[i-1], parts[i], parts[i-1], parts[i])
			}
		}
		if slices.Contains(parts, "{timestamp}") && v.TimestampHeader == "" {
			return nil, fail("verify.timestamp_header", "required when verify.signed uses {timestamp}")
		}
		if slices.Contains(parts, "{id}") && v.IDHeader == "" {
			return nil, fail("verify.id_header", "required when verify.signed uses {id}")
		}
		// What is read from a header but not signed could be replaced by
		// whoever captured one delivery: a fresh timestamp, a new id.
		if v.TimestampHeader != "" && !slices.Contains(parts, "{timestamp}") {
			return nil, fail("verify.timestamp_header", "requires {timestamp} in verify.signed (an unsigned timestamp proves nothing)")
		}
		if v.IDHeader != "" && !slices.Contains(parts, "{id}") {
			return nil, fail("verify.id_header", "requires {id} in verify.signed (an unsigned id proves nothing)")
		}
		c.signed = parts
		scheme = fmt.Sprintf("HMAC-%s (%s) of %s in %s", strings.ToUpper(v.Algorithm), v.Encoding, v.Signed, v.Header)
		if v.TimestampHeader != "" {
			scheme += ", ±5 min"
		}
	case KindStandardWebhooks:
		for i, s := range c.secrets {
			key, ok := strings.CutPrefix(s, "whsec_")
			if _, err := base64.StdEncoding.DecodeString(key); !ok || key == "" || err != nil {
				return nil, fail("verify.secret_env", "%s: entry %d is not of the form whsec_<base64 key>", v.SecretEnv, i+1)
			}
		}
		scheme = "Standard Webhooks (webhook-signature v1, ±5 min)"
	case KindToken:
		scheme = "shared token in Authorization: Bearer"
		if v.Header != "" {
			scheme = "shared token in " + v.Header
		}
	case KindBasic:
		for i, s := range c.secrets {
			if u, _, ok := strings.Cut(s, ":"); !ok || u == "" {
				return nil, fail("verify.secret_env", "%s: entry %d is not user:password", v.SecretEnv, i+1)
			}
		}
		scheme = "HTTP basic auth"
	case "":
		return nil, fail("verify.kind", "required: hmac, standard-webhooks, token or basic")
	default:
		return nil, fail("verify.kind", "%q is not hmac, standard-webhooks, token or basic", v.Kind)
	}
	if v.Kind != KindHMAC {
		for _, f := range []struct{ field, val string }{{"verify.algorithm", v.Algorithm}, {"verify.encoding", v.Encoding},
			{"verify.prefix", v.Prefix}, {"verify.signed", v.Signed}, {"verify.timestamp_header", v.TimestampHeader},
			{"verify.id_header", v.IDHeader}} {
			if f.val != "" {
				return nil, fail(f.field, "only kind hmac takes it")
			}
		}
		if v.Header != "" && v.Kind != KindToken {
			return nil, fail("verify.header", "only kinds hmac and token take it")
		}
	}
	c.spec.Verify = v
	if err := checkField(spec.DeliveryID, false); err != nil {
		return nil, fail("delivery_id", "%v", err)
	}
	if err := signedDeliveryID(spec.DeliveryID, v); err != nil {
		return nil, fail("delivery_id.header", "%v", err)
	}
	if err := checkField(spec.EventType, true); err != nil {
		return nil, fail("event_type", "%v", err)
	}
	var routing []string
	for typ, ptr := range spec.Routing {
		if !identifierType.MatchString(typ) {
			return nil, fail("routing."+typ, "an identifier type must match [a-z][a-z0-9_]{0,63}")
		}
		if err := checkPointer(ptr); err != nil {
			return nil, fail("routing."+typ, "%v", err)
		}
		routing = append(routing, typ)
	}
	slices.Sort(routing)
	if a := spec.Alert; a != nil {
		if err := checkPointer(a.Key); err != nil {
			return nil, fail("alert.key", "%v", err)
		}
		if err := checkPointer(a.State); err != nil {
			return nil, fail("alert.state", "%v", err)
		}
		if len(a.Firing) == 0 || len(a.Resolved) == 0 {
			return nil, fail("alert", "firing and resolved each list at least one value of alert.state")
		}
		c.firing, c.resolve = map[string]bool{}, map[string]bool{}
		for _, f := range a.Firing {
			c.firing[f] = true
		}
		for _, r := range a.Resolved {
			if c.firing[r] {
				return nil, fail("alert.resolved", "%q is also listed as firing", r)
			}
			c.resolve[r] = true
		}
	}
	if spec.Describe == "" {
		spec.Describe = spec.Name + " {event_type}"
		c.spec.Describe = spec.Describe
	}
	parts, err := cutTemplate(spec.Describe, func(p string) bool { return p == "{event_type}" || checkPointer(p[1:len(p)-1]) == nil })
	if err != nil {
		return nil, fail("describe", "%v (placeholders are {event_type} and {/json/pointer})", err)
	}
	c.tmpl = parts
	if spec.Orgs != nil {
		if err := CheckOrgs(spec.Orgs); err != nil {
			return nil, fail("orgs", "%v", err)
		}
	}
	coalesce := spec.Coalesce != nil && *spec.Coalesce
	return &Source{Name: spec.Name, Kind: "configured", Scheme: scheme, Routing: routing, Alerts: spec.Alert != nil, Orgs: spec.Orgs,
		Coalesce: coalesce, Description: "configured in the sources file: " + spec.Describe, describe: c.describe,
		VerifyHeaders: verifyHeaders(v),
		Routes: []Route{{Path: "/webhooks/" + spec.Name, Summary: spec.Name + " webhooks (configured source)",
			Verifier: verifierFunc{source: spec.Name, verify: c.verify,
				read: func(body []byte, h http.Header) (Event, error) { return c.read(body, h, h.Get("webhook-id")) }}}}}, nil
}

// signedDeliveryID checks that a delivery id read from a header is one the
// signature covers: otherwise one captured delivery, sent again with a new
// id, is a new event each time. Token and basic sources sign nothing (the
// credential is the whole proof, and whoever holds it can send any
// delivery), so their id may come from any header.
func signedDeliveryID(f *FieldSpec, v VerifySpec) error {
	if f == nil || f.Header == "" {
		return nil
	}
	switch v.Kind {
	case KindHMAC:
		if !strings.EqualFold(f.Header, v.IDHeader) {
			return fmt.Errorf("%s is not signed: name it in verify.id_header and put {id} in verify.signed", f.Header)
		}
	case KindStandardWebhooks:
		if !strings.EqualFold(f.Header, "webhook-id") {
			return fmt.Errorf("%s is not signed: Standard Webhooks signs webhook-id (the default delivery id)", f.Header)
		}
	}
	return nil
}

func isPlaceholder(p string) bool { return strings.HasPrefix(p, "{") }

// verifyHeaders are the headers a checked verify block reads, in lower
// case: they are never stored, whatever their names.
func verifyHeaders(v VerifySpec) []string {
	var out []string
	switch v.Kind {
	case KindHMAC:
		out = []string{v.Header, v.TimestampHeader, v.IDHeader}
	case KindStandardWebhooks:
		out = standardWebhooksHeaders()
	case KindToken:
		out = []string{cmp.Or(v.Header, "Authorization")}
	case KindBasic:
		out = []string{"Authorization"}
	}
	out = slices.DeleteFunc(out, func(h string) bool { return h == "" })
	for i, h := range out {
		out[i] = strings.ToLower(h)
	}
	return out
}

func checkField(f *FieldSpec, literal bool) error {
	if f == nil {
		return nil
	}
	n := 0
	for _, s := range []string{f.Header, f.Pointer, f.Value} {
		if s != "" {
			n++
		}
	}
	switch {
	case n != 1 && literal:
		return fmt.Errorf("give exactly one of header, pointer or value")
	case n != 1 || f.Value != "" && !literal:
		return fmt.Errorf("give exactly one of header or pointer")
	case f.Header != "" && !headerName.MatchString(f.Header):
		return fmt.Errorf("%q is not a header name", f.Header)
	case f.Pointer != "":
		return checkPointer(f.Pointer)
	}
	return nil
}

// checkPointer checks an RFC 6901 JSON pointer (not the empty one).
func checkPointer(p string) error {
	if !strings.HasPrefix(p, "/") || len(p) > 256 {
		return fmt.Errorf("%q is not a JSON pointer (like /incident/id)", p)
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '~' && (i+1 == len(p) || p[i+1] != '0' && p[i+1] != '1') {
			return fmt.Errorf("%q: ~ must be followed by 0 or 1", p)
		}
	}
	return nil
}

// cutTemplate cuts a template into literal text and placeholders, each
// placeholder checked by ok.
func cutTemplate(t string, ok func(string) bool) ([]string, error) {
	var parts []string
	last := 0
	for _, loc := range placeholder.FindAllStringIndex(t, -1) {
		if loc[0] > last {
			parts = append(parts, t[last:loc[0]])
		}
		p := t[loc[0]:loc[1]]
		if !ok(p) {
			return nil, fmt.Errorf("unknown placeholder %s", p)
		}
		parts = append(parts, p)
		last = loc[1]
	}
	if last < len(t) {
		parts = append(parts, t[last:])
	}
	for _, p := range parts {
		if !strings.HasPrefix(p, "{") && strings.ContainsAny(p, "{}") {
			return nil, fmt.Errorf("unbalanced brace in %q", t)
		}
	}
	return parts, nil
}

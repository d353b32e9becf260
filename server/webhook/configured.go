package webhook

import (
	"bytes"
	"cmp"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
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
		if slices.Contains(parts, "{timestamp}") && v.TimestampHeader == "" {
			return nil, fail("verify.timestamp_header", "required when verify.signed uses {timestamp}")
		}
		if slices.Contains(parts, "{id}") && v.IDHeader == "" {
			return nil, fail("verify.id_header", "required when verify.signed uses {id}")
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
	coalesce := spec.Coalesce != nil && *spec.Coalesce
	return &Source{Name: spec.Name, Kind: "configured", Scheme: scheme, Routing: routing, Alerts: spec.Alert != nil,
		Coalesce: coalesce, Description: "configured in the sources file: " + spec.Describe, describe: c.describe,
		VerifyHeaders: verifyHeaders(v),
		Routes: []Route{{Path: "/webhooks/" + spec.Name, Summary: spec.Name + " webhooks (configured source)",
			Verifier: verifierFunc{source: spec.Name, verify: c.verify}}}}, nil
}

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

// verify authenticates a delivery and reads its event.
func (c *configured) verify(body []byte, h http.Header, now time.Time) (Event, error) {
	v := c.spec.Verify
	var swID string
	switch v.Kind {
	case KindHMAC:
		if err := c.verifyHMAC(body, h, now); err != nil {
			return Event{}, err
		}
	case KindStandardWebhooks:
		id, err := verifyStandardWebhooks(c.secrets, body, h, now)
		if err != nil {
			return Event{}, err
		}
		swID = id
	case KindToken:
		if !tokenMatches(c.secrets, credential(h, v.Header)) {
			return Event{}, fmt.Errorf("%w: missing or wrong token", ErrSignature)
		}
	case KindBasic:
		if !tokenMatches(c.secrets, basicPair(h)) {
			return Event{}, fmt.Errorf("%w: missing or wrong basic auth", ErrSignature)
		}
	}
	return c.read(body, h, swID)
}

func basicPair(h http.Header) string {
	b, ok := strings.CutPrefix(h.Get("Authorization"), "Basic ")
	if !ok {
		return ""
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b))
	if err != nil {
		return ""
	}
	return string(raw)
}

func (c *configured) verifyHMAC(body []byte, h http.Header, now time.Time) error {
	v := c.spec.Verify
	var ts, id string
	if v.TimestampHeader != "" {
		if ts = h.Get(v.TimestampHeader); ts == "" {
			return missingHeader(v.TimestampHeader)
		}
		if err := checkTimestamp(ts, now); err != nil {
			return err
		}
	}
	if v.IDHeader != "" {
		if id = h.Get(v.IDHeader); id == "" {
			return missingHeader(v.IDHeader)
		}
	}
	var sigs [][]byte
	for _, part := range strings.FieldsFunc(h.Get(v.Header), func(r rune) bool { return r == ',' || r == ' ' }) {
		s, ok := strings.CutPrefix(part, v.Prefix)
		if !ok || len(sigs) >= 16 {
			continue
		}
		var b []byte
		var err error
		if v.Encoding == "base64" {
			b, err = base64.StdEncoding.DecodeString(s)
		} else {
			b, err = hex.DecodeString(s)
		}
		if err == nil {
			sigs = append(sigs, b)
		}
	}
	matched := false
	for _, secret := range c.secrets {
		m := hmac.New(c.hash, []byte(secret))
		for _, p := range c.signed {
			switch p {
			case "{body}":
				m.Write(body)
			case "{timestamp}":
				m.Write([]byte(ts))
			case "{id}":
				m.Write([]byte(id))
			default:
				m.Write([]byte(p))
			}
		}
		want := m.Sum(nil)
		for _, s := range sigs {
			if hmac.Equal(s, want) {
				matched = true
			}
		}
	}
	if !matched {
		return fmt.Errorf("%w: %s does not match", ErrSignature, v.Header)
	}
	return nil
}

// read takes the delivery id, event type, routing identifiers and alert
// identity from a verified delivery.
func (c *configured) read(body []byte, h http.Header, swID string) (Event, error) {
	s := c.spec
	var doc any
	var docErr error
	parsed := false
	json1 := func() (any, error) {
		if !parsed {
			parsed = true
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.UseNumber()
			if docErr = dec.Decode(&doc); docErr != nil {
				docErr = fmt.Errorf("%w: the body is not JSON", ErrPayload)
			}
		}
		return doc, docErr
	}
	field := func(f *FieldSpec, what string) (string, error) {
		switch {
		case f.Value != "":
			return f.Value, nil
		case f.Header != "":
			if v := h.Get(f.Header); v != "" {
				return v, nil
			}
			return "", fmt.Errorf("%w: %s header %s is missing", ErrPayload, what, f.Header)
		}
		d, err := json1()
		if err != nil {
			return "", err
		}
		if v, ok := pointerText(d, f.Pointer); ok && v != "" {
			return v, nil
		}
		return "", fmt.Errorf("%w: %s %s is not in the body", ErrPayload, what, f.Pointer)
	}
	ev := Event{Source: s.Name, EventType: "event", Identifiers: map[string]string{}}
	switch {
	case s.DeliveryID != nil:
		id, err := field(s.DeliveryID, "delivery id")
		if err != nil {
			return Event{}, err
		}
		ev.DeliveryID = clean(id, 255)
	case swID != "":
		ev.DeliveryID = swID
	default:
		sum := sha256.Sum256(body)
		ev.DeliveryID = "sha256:" + hex.EncodeToString(sum[:])
	}
	if s.EventType != nil {
		t, err := field(s.EventType, "event type")
		if err != nil {
			return Event{}, err
		}
		ev.EventType = clean(t, 128)
	}
	for typ, ptr := range s.Routing {
		d, err := json1()
		if err != nil {
			return Event{}, err
		}
		if v, ok := pointerText(d, ptr); ok && v != "" {
			ev.Identifiers[typ] = clean(v, 128)
		}
	}
	if a := s.Alert; a != nil {
		if d, err := json1(); err == nil {
			key, _ := pointerText(d, a.Key)
			st, _ := pointerText(d, a.State)
			state := AlertOther
			switch {
			case c.firing[st]:
				state = AlertFiring
			case c.resolve[st]:
				state = AlertResolved
			}
			ev.Alert = newAlert(key, state, nil)
		}
	}
	return ev, nil
}

// describe fills the describe template from the stored body.
func (c *configured) describe(eventType string, body []byte, _ map[string]string) (string, map[string]any) {
	meta := map[string]any{"event_type": eventType}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if dec.Decode(&doc) == nil && len(body) <= 16<<10 {
		meta["payload"] = doc
	}
	var b strings.Builder
	for _, p := range c.tmpl {
		switch {
		case p == "{event_type}":
			b.WriteString(eventType)
		case strings.HasPrefix(p, "{/"):
			v, _ := pointerText(doc, p[1:len(p)-1])
			b.WriteString(v)
		default:
			b.WriteString(p)
		}
	}
	msg := strings.Join(strings.Fields(b.String()), " ")
	if len(msg) > 1000 {
		msg = clean(msg, 1000)
	}
	if msg == "" {
		msg = c.spec.Name + " " + eventType
	}
	return msg, meta
}

// pointerText resolves an RFC 6901 pointer and gives its value as text:
// strings as they are, numbers and booleans as JSON writes them, objects
// and arrays as compact JSON. ok is false when the pointer resolves to
// nothing.
func pointerText(doc any, ptr string) (string, bool) {
	cur := doc
	for _, tok := range strings.Split(ptr, "/")[1:] {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch n := cur.(type) {
		case map[string]any:
			v, ok := n[tok]
			if !ok {
				return "", false
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(n) || strconv.Itoa(i) != tok {
				return "", false
			}
			cur = n[i]
		default:
			return "", false
		}
	}
	switch v := cur.(type) {
	case nil:
		return "", false
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case bool:
		return strconv.FormatBool(v), true
	default:
		b, err := json.Marshal(v)
		return string(b), err == nil
	}
}

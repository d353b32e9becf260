package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// What a configured source does with each delivery, once its spec is
// checked (configured.go): verify, read the event, describe it.

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
		// HTTP trims a header's surrounding white space; a value that still
		// has some did not come through HTTP, and white space at its edge
		// could pass for the literal text beside {id}.
		if strings.TrimSpace(id) != id {
			return fmt.Errorf("%w: %s has white space at its edge", ErrPayload, v.IDHeader)
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
	// The body is exactly one JSON object or array: the signature then
	// fixes where the body ends, so no text can move between it and the
	// delivery id or timestamp signed beside it (a bare number could:
	// "a.0"+"."+"1" and "a"+"."+"0.1" sign the same bytes).
	var doc any
	if err := decodeOne(body, &doc); err != nil {
		return Event{}, fmt.Errorf("%w: the body is not one JSON object or array (%v)", ErrPayload, err)
	}
	switch doc.(type) {
	case map[string]any, []any:
	default:
		return Event{}, fmt.Errorf("%w: the body is not one JSON object or array", ErrPayload)
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
		if v, ok := pointerText(doc, f.Pointer); ok && v != "" {
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
		if v, ok := pointerText(doc, ptr); ok && v != "" {
			ev.Identifiers[typ] = clean(v, 128)
		}
	}
	if a := s.Alert; a != nil {
		key, _ := pointerText(doc, a.Key)
		st, _ := pointerText(doc, a.State)
		state := AlertOther
		switch {
		case c.firing[st]:
			state = AlertFiring
		case c.resolve[st]:
			state = AlertResolved
		}
		ev.Alert = newAlert(key, state, nil)
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

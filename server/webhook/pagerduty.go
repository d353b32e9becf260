package webhook

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// PagerDutyVerifier verifies PagerDuty v3 webhooks: X-PagerDuty-Signature is
// a comma-separated list of "v1=" + hex HMAC-SHA256(secret, body); any match
// passes (PagerDuty signs with every active secret during a rotation). The
// older v2 body ({"messages":[…]}) is read too.
type PagerDutyVerifier struct{ Secrets []string }

// Source is "pagerduty".
func (v *PagerDutyVerifier) Source() string { return PagerDuty }

// Verify implements Verifier.
func (v *PagerDutyVerifier) Verify(body []byte, h http.Header, _ time.Time) (Event, error) {
	if len(v.Secrets) == 0 {
		return Event{}, ErrNoSecret
	}
	var sigs []string
	for _, part := range strings.Split(h.Get("X-PagerDuty-Signature"), ",") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(part), "v1="); ok {
			sigs = append(sigs, s)
		}
	}
	if len(sigs) == 0 || len(sigs) > 16 || !anyHexMatch(v.Secrets, sigs, body) {
		return Event{}, fmt.Errorf("%w: X-PagerDuty-Signature does not match", ErrSignature)
	}
	return ParsePagerDuty(body)
}

// Read implements Reader: the event as Verify reads it, without checking
// a signature.
func (v *PagerDutyVerifier) Read(body []byte, _ http.Header) (Event, error) {
	return ParsePagerDuty(body)
}

// ParsePagerDuty reads a verified PagerDuty body, v3 or v2.
func ParsePagerDuty(body []byte) (Event, error) {
	m, err := parseJSON(body)
	if err != nil {
		return Event{}, err
	}
	ev := Event{Source: PagerDuty, Identifiers: map[string]string{}}
	if e := obj(m, "event"); e != nil {
		ev.DeliveryID, ev.EventType = str(e, "id"), str(e, "event_type")
		if svc := str(obj(obj(e, "data"), "service"), "id"); svc != "" {
			ev.Identifiers["pagerduty_service_id"] = clean(svc, 128)
		}
	} else if msgs, ok := m["messages"].([]any); ok && len(msgs) > 0 {
		msg := msgs[0]
		ev.DeliveryID, ev.EventType = str(msg, "id"), str(msg, "event")
		inc := obj(msg, "incident")
		if inc == nil {
			inc = obj(obj(msg, "log_entries"), "incident")
		}
		if svc := str(obj(inc, "service"), "id"); svc != "" {
			ev.Identifiers["pagerduty_service_id"] = clean(svc, 128)
		}
	}
	if ev.DeliveryID == "" {
		return Event{}, fmt.Errorf("%w: PagerDuty body without event.id", ErrPayload)
	}
	ev.DeliveryID, ev.EventType = clean(ev.DeliveryID, 255), clean(ev.EventType, 128)
	ev.Alert = pagerDutyAlert(m, ev.EventType)
	return ev, nil
}

package webhook

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// CoralogixVerifier checks Coralogix webhooks. Coralogix does not sign
// webhooks, so a shared token is the credential: "Authorization: Bearer
// <token>" or "X-Webhook-Token: <token>".
type CoralogixVerifier struct{ Tokens []string }

// Source is "coralogix".
func (v *CoralogixVerifier) Source() string { return Coralogix }

// Verify implements Verifier.
func (v *CoralogixVerifier) Verify(body []byte, h http.Header, _ time.Time) (Event, error) {
	if len(v.Tokens) == 0 {
		return Event{}, ErrNoSecret
	}
	got, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
	if !ok {
		got = h.Get("X-Webhook-Token")
	}
	// Compare digests so that the comparison time does not depend on length.
	gotSum := sha256.Sum256([]byte(got))
	matched := 0
	for _, t := range v.Tokens {
		want := sha256.Sum256([]byte(t))
		matched |= subtle.ConstantTimeCompare(gotSum[:], want[:])
	}
	if got == "" || matched != 1 {
		return Event{}, fmt.Errorf("%w: missing or wrong Coralogix token", ErrSignature)
	}
	return ParseCoralogix(body)
}

// Read implements Reader: the event as Verify reads it, without checking
// a token.
func (v *CoralogixVerifier) Read(body []byte, _ http.Header) (Event, error) {
	return ParseCoralogix(body)
}

// ParseCoralogix reads a Coralogix alert body. Its shape is the user's
// webhook template, so the common field names are tried in turn.
func ParseCoralogix(body []byte) (Event, error) {
	m, err := parseJSON(body)
	if err != nil {
		return Event{}, err
	}
	ev := Event{Source: Coralogix, EventType: "alert", Identifiers: map[string]string{}}
	if a := obj(m, "alert"); a != nil {
		for k, val := range a {
			if _, exists := m[k]; !exists {
				m[k] = val
			}
		}
	}
	id := first(m, "alert_unique_identifier", "alertUniqueIdentifier", "alert_id", "alertId", "uuid", "id")
	ts := first(m, "timestamp", "alert_timestamp", "time")
	if id != "" {
		ev.DeliveryID = clean(id+"|"+ts, 255)
	} else {
		ev.DeliveryID = bodyHash(body)
	}
	action := first(m, "alert_action", "alertAction", "action")
	if action != "" {
		ev.EventType = clean("alert."+action, 128)
	}
	ev.Alert = coralogixAlert(id, action)
	if team := first(m, "team_name", "teamName", "team"); team != "" {
		ev.Identifiers["coralogix_team_name"] = clean(team, 128)
	}
	if svc := first(m, "service", "application", "applicationName", "subsystem"); svc != "" {
		ev.Identifiers["service"] = clean(svc, 128)
	}
	return ev, nil
}

func first(m map[string]any, keys ...string) string {
	for _, k := range keys {
		if s := str(m, k); s != "" {
			return s
		}
	}
	return ""
}

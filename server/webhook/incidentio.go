package webhook

import (
	"crypto/hmac"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// IncidentIOVerifier verifies incident.io webhooks, which follow Standard
// Webhooks: webhook-signature is a space-separated list of
// "v1," + base64 HMAC-SHA256(key, webhook-id + "." + webhook-timestamp + "." + body),
// where the secret is "whsec_" + base64(key); the timestamp is within ±5 min.
type IncidentIOVerifier struct{ Secrets []string }

// Source is "incidentio".
func (v *IncidentIOVerifier) Source() string { return IncidentIO }

// Verify implements Verifier.
func (v *IncidentIOVerifier) Verify(body []byte, h http.Header, now time.Time) (Event, error) {
	if len(v.Secrets) == 0 {
		return Event{}, ErrNoSecret
	}
	id, err := verifyStandardWebhooks(v.Secrets, body, h, now)
	if err != nil {
		return Event{}, err
	}
	return readIncidentIO(body, id)
}

// Read implements Reader: the event as Verify reads it, without checking
// a signature.
func (v *IncidentIOVerifier) Read(body []byte, h http.Header) (Event, error) {
	return readIncidentIO(body, h.Get("webhook-id"))
}

func readIncidentIO(body []byte, id string) (Event, error) {
	m, err := parseJSON(body)
	if err != nil {
		return Event{}, err
	}
	ev := Event{Source: IncidentIO, DeliveryID: id, EventType: clean(str(m, "event_type"), 128), Identifiers: map[string]string{}}
	// The payload sits under a key named after the event type.
	payload := obj(m, str(m, "event_type"))
	findIdentifiers(payload, ev.Identifiers, 0)
	ev.Alert = incidentIOAlert(payload)
	return ev, nil
}

// incidentIOKeys maps payload fields to routing identifier types.
var incidentIOKeys = map[string]string{
	"alert_source_id":  "incidentio_alert_source_id",
	"slack_channel_id": "slack_channel_id",
}

// findIdentifiers looks a few levels deep for the fields routing can use.
func findIdentifiers(v any, out map[string]string, depth int) {
	m, ok := v.(map[string]any)
	if !ok || depth > 4 {
		return
	}
	for k, val := range m {
		if typ, ok := incidentIOKeys[k]; ok {
			if s, _ := val.(string); s != "" && out[typ] == "" {
				out[typ] = clean(s, 128)
			}
			continue
		}
		findIdentifiers(val, out, depth+1)
	}
}

// verifyStandardWebhooks checks a Standard Webhooks delivery against the
// whsec_ secrets and returns its webhook-id.
func verifyStandardWebhooks(secrets []string, body []byte, h http.Header, now time.Time) (string, error) {
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	switch {
	case id == "":
		return "", missingHeader("webhook-id")
	case ts == "":
		return "", missingHeader("webhook-timestamp")
	case len(id) > 255:
		return "", fmt.Errorf("%w: webhook-id longer than 255 characters", ErrSignature)
	case !cleanText(id):
		return "", fmt.Errorf("%w: webhook-id is not valid UTF-8 text without NUL", ErrPayload)
	}
	if err := checkTimestamp(ts, now); err != nil {
		return "", err
	}
	var sigs [][]byte
	for _, part := range strings.Fields(h.Get("webhook-signature")) {
		if s, ok := strings.CutPrefix(part, "v1,"); ok {
			if b, err := base64.StdEncoding.DecodeString(s); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	matched := false
	for _, secret := range secrets {
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
		if err != nil {
			continue
		}
		want := hmacSHA256(key, []byte(id+"."+ts+"."), body)
		for _, s := range sigs {
			if hmac.Equal(s, want) {
				matched = true
			}
		}
	}
	if !matched || len(sigs) > 16 {
		return "", fmt.Errorf("%w: webhook-signature does not match", ErrSignature)
	}
	return id, nil
}

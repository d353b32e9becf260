package webhook

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// SlackVerifier verifies Slack Events API requests: X-Slack-Signature is
// "v0=" + hex HMAC-SHA256(secret, "v0:" + X-Slack-Request-Timestamp + ":" + body),
// with the timestamp within ±5 minutes. One verifier serves one Slack app's
// events or its interactions.
type SlackVerifier struct {
	Secrets []string
	// App is the app's slug ("" for the default app).
	App string
	// Interactions: the route takes interactivity payloads (form-encoded
	// payload=…), not Events API bodies.
	Interactions bool
}

// Source is "slack".
func (v *SlackVerifier) Source() string { return Slack }

// Verify implements Verifier.
func (v *SlackVerifier) Verify(body []byte, h http.Header, now time.Time) (Event, error) {
	if len(v.Secrets) == 0 {
		return Event{}, ErrNoSecret
	}
	ts := h.Get("X-Slack-Request-Timestamp")
	if ts == "" {
		return Event{}, missingHeader("X-Slack-Request-Timestamp")
	}
	if err := checkTimestamp(ts, now); err != nil {
		return Event{}, err
	}
	sig, ok := strings.CutPrefix(h.Get("X-Slack-Signature"), "v0=")
	if !ok || !anyHexMatch(v.Secrets, []string{sig}, []byte("v0:"+ts+":"), body) {
		return Event{}, fmt.Errorf("%w: X-Slack-Signature does not match", ErrSignature)
	}
	return v.Read(body, h)
}

// Read implements Reader: the event as Verify reads it, without checking
// a signature.
func (v *SlackVerifier) Read(body []byte, _ http.Header) (Event, error) {
	var ev Event
	var err error
	if v.Interactions {
		ev, err = ParseSlackInteraction(body)
	} else {
		ev, err = ParseSlack(body)
	}
	ev.App = v.App
	return ev, err
}

// ParseSlack reads a verified Slack body.
func ParseSlack(body []byte) (Event, error) {
	m, err := parseJSON(body)
	if err != nil {
		return Event{}, err
	}
	ev := Event{Source: Slack, EventType: str(m, "type"), Identifiers: map[string]string{}}
	switch ev.EventType {
	case "url_verification":
		ev.Challenge = str(m, "challenge")
		if ev.Challenge == "" {
			return Event{}, fmt.Errorf("%w: url_verification without challenge", ErrPayload)
		}
		return ev, nil
	case "event_callback":
	default:
		return Event{}, fmt.Errorf("%w: Slack payload type %q", ErrPayload, ev.EventType)
	}
	ev.DeliveryID = clean(str(m, "event_id"), 255)
	if ev.DeliveryID == "" {
		return Event{}, fmt.Errorf("%w: event_callback without event_id", ErrPayload)
	}
	// Slack's legacy verification token is a credential: never stored.
	ev.StoredBody = blankParsedString(body, m, "token")
	inner := obj(m, "event")
	ev.EventType = clean(str(inner, "type"), 128)
	if ch := str(inner, "channel"); ch != "" {
		ev.Identifiers["slack_channel_id"] = clean(ch, 128)
	}
	switch {
	case str(inner, "bot_id") != "" || str(inner, "subtype") == "bot_message":
		ev.Ignore = "message from a bot"
	case ev.EventType != "app_mention":
		ev.Ignore = "Slack event type " + ev.EventType + " is not acted on"
	}
	return ev, nil
}

// Package webhook verifies and reads the webhooks of each source: raw bytes
// and headers in, a verdict and an Event out. Verifiers do no I/O, which is
// what makes them fast and fuzzable. Signatures are checked on the raw body
// with constant-time comparison against every configured secret (several
// during a rotation).
package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Sources.
const (
	Slack        = "slack"
	GitHub       = "github"
	PagerDuty    = "pagerduty"
	IncidentIO   = "incidentio"
	Coralogix    = "coralogix"
	Alertmanager = "alertmanager"
)

// Builtin lists the built-in sources in their documented order.
var Builtin = [...]string{Slack, GitHub, PagerDuty, IncidentIO, Coralogix, Alertmanager}

// Tolerance is how far a signed timestamp may be from now, either way.
const Tolerance = 5 * time.Minute

// Errors a verifier returns.
var (
	// ErrNoSecret: the source has no secret configured, so nothing verifies.
	ErrNoSecret = errors.New("no secret configured for this source")
	// ErrSignature: the signature (or token) is missing or wrong, or the
	// signed timestamp is outside the tolerance.
	ErrSignature = errors.New("signature verification failed")
	// ErrPayload: the request is authentic but not a payload we can read.
	ErrPayload = errors.New("unreadable payload")
	// ErrMissingHeader: a header the vendor sends with every delivery is
	// absent, so the request is not that vendor's delivery at all.
	ErrMissingHeader = errors.New("missing vendor header")
)

// Event is what a verified webhook tells the orchestrator.
type Event struct {
	Source     string
	DeliveryID string // the dedupe key
	EventType  string
	// Identifiers are the routing identifiers (slack_channel_id, github_repo, …).
	Identifiers map[string]string
	// Ignore, when set, says why the event is stored but not dispatched
	// (a bot's message, a ping, an event type we do not act on).
	Ignore string
	// Challenge is set for Slack's url_verification: answer it, store nothing.
	Challenge string
	// StoredBody, when set, is the body to keep instead of the raw one
	// (Slack's legacy verification token blanked, SPEC §18).
	StoredBody []byte
	// Alert is an alert source's identity of the event (nil otherwise).
	Alert *Alert
	// App is the slug of the Slack app a Slack delivery came through
	// ("" for the default app).
	App string
	// Feedback, when set, is a click on an answer's feedback button: once
	// its channel has a team, the router records it on the agent run it
	// names (a run of that team only); it is never sent to the agent.
	Feedback *Feedback
	// Click, when set, is a click on one of the conversation's buttons
	// (an option of the agent's question, Approve / Reject, Stop): once its
	// channel has a team, the router carries it out for a run of that team
	// only; it is never sent to the agent as an event.
	Click *Click
	// AckEmpty: the door acknowledges with an empty 200 (Slack's
	// view_submission, whose answer body would be read as a
	// response_action).
	AckEmpty bool
}

// Verifier checks one source's webhooks.
type Verifier interface {
	Source() string
	// Verify authenticates body and headers at time now and reads the event.
	Verify(body []byte, h http.Header, now time.Time) (Event, error)
}

func hmacSHA256(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// anyHexMatch reports whether one of the hex signatures equals the HMAC of
// the message under one of the secrets, in constant time per comparison.
func anyHexMatch(secrets []string, sigs []string, msg ...[]byte) bool {
	ok := false
	for _, secret := range secrets {
		want := hmacSHA256([]byte(secret), msg...)
		for _, s := range sigs {
			got, err := hex.DecodeString(s)
			if err == nil && hmac.Equal(got, want) {
				ok = true
			}
		}
	}
	return ok
}

// missingHeader is the error for a header the vendor sends with every
// delivery: without it the request is not that vendor's delivery at all, a
// 400 rather than a signature failure (SPEC §3).
func missingHeader(name string) error {
	return fmt.Errorf("%w: %s", ErrMissingHeader, name)
}

// checkTimestamp parses unix seconds and checks them against now.
func checkTimestamp(ts string, now time.Time) error {
	if ts == "" || len(ts) > 20 {
		return fmt.Errorf("%w: missing or malformed timestamp", ErrSignature)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: malformed timestamp", ErrSignature)
	}
	d := now.Sub(time.Unix(sec, 0))
	if d > Tolerance || d < -Tolerance {
		return fmt.Errorf("%w: timestamp outside ±%s", ErrSignature, Tolerance)
	}
	return nil
}

// obj and str read loosely typed JSON without panicking.
func obj(v any, key string) map[string]any {
	m, _ := v.(map[string]any)
	o, _ := m[key].(map[string]any)
	return o
}

func str(v any, key string) string {
	m, _ := v.(map[string]any)
	switch s := m[key].(type) {
	case string:
		return s
	case json.Number:
		return s.String()
	case float64:
		return strconv.FormatFloat(s, 'f', -1, 64)
	}
	return ""
}

func parseJSON(body []byte) (map[string]any, error) {
	var m map[string]any
	if err := decodeOne(body, &m); err != nil || m == nil {
		return nil, fmt.Errorf("%w: the body is not one JSON object", ErrPayload)
	}
	return m, nil
}

// decodeOne decodes a body that must be exactly one JSON value (numbers
// kept as json.Number), with nothing but white space after it: bytes after
// the value would be signed and stored, yet read by nobody — and for a
// configured source they could move between the body and the delivery id
// under one signature.
func decodeOne(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("bytes after the JSON value")
	}
	return nil
}

func bodyHash(body []byte) string {
	sum := sha256.Sum256(body)
	return "sha256:" + hex.EncodeToString(sum[:16])
}

package webhook

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// GitHubVerifier verifies GitHub webhooks: X-Hub-Signature-256 is
// "sha256=" + hex HMAC-SHA256(secret, body); X-GitHub-Delivery is the dedupe key.
type GitHubVerifier struct{ Secrets []string }

// Source is "github".
func (v *GitHubVerifier) Source() string { return GitHub }

// Verify implements Verifier.
func (v *GitHubVerifier) Verify(body []byte, h http.Header, _ time.Time) (Event, error) {
	if len(v.Secrets) == 0 {
		return Event{}, ErrNoSecret
	}
	event, delivery := h.Get("X-GitHub-Event"), h.Get("X-GitHub-Delivery")
	switch {
	case event == "":
		return Event{}, missingHeader("X-GitHub-Event")
	case delivery == "":
		return Event{}, missingHeader("X-GitHub-Delivery")
	case !githubEvent.MatchString(event):
		return Event{}, fmt.Errorf("%w: X-GitHub-Event is not an event name ([a-z0-9_]{1,64})", ErrPayload)
	case !cleanText(delivery):
		return Event{}, fmt.Errorf("%w: X-GitHub-Delivery is not valid UTF-8 text without NUL", ErrPayload)
	}
	sig, ok := strings.CutPrefix(h.Get("X-Hub-Signature-256"), "sha256=")
	if !ok || !anyHexMatch(v.Secrets, []string{sig}, body) {
		return Event{}, fmt.Errorf("%w: X-Hub-Signature-256 does not match", ErrSignature)
	}
	if len(delivery) > 255 {
		return Event{}, fmt.Errorf("%w: X-GitHub-Delivery longer than 255 characters", ErrPayload)
	}
	return readGitHub(body, event, delivery)
}

// Read implements Reader: the event as Verify reads it, without checking
// a signature (X-GitHub-Event defaults to issues).
func (v *GitHubVerifier) Read(body []byte, h http.Header) (Event, error) {
	event := h.Get("X-GitHub-Event")
	if event == "" {
		event = "issues"
	}
	if !githubEvent.MatchString(event) {
		return Event{}, fmt.Errorf("%w: X-GitHub-Event is not an event name ([a-z0-9_]{1,64})", ErrPayload)
	}
	return readGitHub(body, event, h.Get("X-GitHub-Delivery"))
}

func readGitHub(body []byte, event, delivery string) (Event, error) {
	m, err := parseJSON(body)
	if err != nil {
		return Event{}, err
	}
	ev := Event{Source: GitHub, DeliveryID: delivery, EventType: event, Identifiers: map[string]string{}}
	if action := str(m, "action"); action != "" {
		ev.EventType = clean(ev.EventType+"."+action, 128)
	}
	if repo := str(obj(m, "repository"), "full_name"); repo != "" {
		ev.Identifiers["github_repo"] = clean(repo, 256)
	}
	if event == "ping" {
		ev.Ignore = "GitHub ping"
	}
	return ev, nil
}

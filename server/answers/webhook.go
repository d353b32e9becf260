package answers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

// WebhookDestination is a webhook an operator declared in the sources
// file's destinations section. Team config names it (type: webhook, name:
// …); only the sources file holds its URL, so a team cannot point the
// appliance at a host of its choosing.
type WebhookDestination struct {
	Name string
	URL  string
	// SecretEnv names the variable that holds the signing secret; Secret
	// is its value ("whsec_" + base64 key), never printed.
	SecretEnv string
	Secret    SigningSecret
}

// SigningSecret is a webhook destination's secret: it prints, logs and
// marshals as "[redacted]".
type SigningSecret string

// String redacts the secret.
func (SigningSecret) String() string { return "[redacted]" }

// GoString redacts the secret in %#v.
func (SigningSecret) GoString() string { return `"[redacted]"` }

// MarshalText redacts the secret in JSON and slog output.
func (SigningSecret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

var (
	destinationName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	envVarName      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

// webhookSpec is one entry of the destinations section.
type webhookSpec struct {
	Name      string `json:"name"`
	URL       string `json:"url"`
	SecretEnv string `json:"secret_env"`
}

// ParseWebhookDestinations reads the sources file's destinations section
// ([{name, url, secret_env}]), the secrets through getenv. A mistake is
// one line naming the destination and the field.
func ParseWebhookDestinations(raw json.RawMessage, getenv func(string) string) ([]WebhookDestination, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, errors.New("destinations: must be a list of {name, url, secret_env}")
	}
	var out []WebhookDestination
	for i, e := range entries {
		var spec webhookSpec
		if err := webhook.DecodeSection(e, &spec); err != nil {
			var named struct {
				Name string `json:"name"`
			}
			_ = json.Unmarshal(e, &named)
			return nil, fmt.Errorf("destination %s: %v", destinationLabel(named.Name, i), err)
		}
		fail := func(field, format string, args ...any) error {
			return fmt.Errorf("destination %s: %s: %s", destinationLabel(spec.Name, i), field, fmt.Sprintf(format, args...))
		}
		if !destinationName.MatchString(spec.Name) {
			return nil, fail("name", "must match [a-z][a-z0-9-]{0,31}")
		}
		for _, d := range out {
			if d.Name == spec.Name {
				return nil, fail("name", "listed twice")
			}
		}
		u, err := url.Parse(spec.URL)
		switch {
		case spec.URL == "":
			return nil, fail("url", "required")
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			return nil, fail("url", "must be an absolute http(s) URL")
		case u.User != nil:
			return nil, fail("url", "credentials are never written in the file; the post is signed with the secret named by secret_env")
		}
		if !envVarName.MatchString(spec.SecretEnv) {
			return nil, fail("secret_env", "must name an environment variable (secrets are never written in the file)")
		}
		secret := strings.TrimSpace(getenv(spec.SecretEnv))
		key, ok := strings.CutPrefix(secret, "whsec_")
		switch _, err := base64.StdEncoding.DecodeString(key); {
		case secret == "":
			return nil, fail("secret_env", "%s is unset or empty", spec.SecretEnv)
		case !ok || key == "" || err != nil:
			return nil, fail("secret_env", "%s is not of the form whsec_<base64 key>", spec.SecretEnv)
		}
		out = append(out, WebhookDestination{Name: spec.Name, URL: spec.URL, SecretEnv: spec.SecretEnv, Secret: SigningSecret(secret)})
	}
	return out, nil
}

func destinationLabel(name string, i int) string {
	if name == "" {
		return fmt.Sprintf("#%d", i+1)
	}
	return fmt.Sprintf("%q", name)
}

// WebhookOptions configure the webhook notifier.
type WebhookOptions struct {
	// Destinations returns the destinations in force: the sources file's,
	// read again when it changes (policy.Holder.Current().Destinations).
	Destinations func() []WebhookDestination
	// HTTPClient makes the posts (default: a 10 s timeout). Redirects are
	// never followed.
	HTTPClient *http.Client
	// Now stamps webhook-timestamp (default time.Now).
	Now func() time.Time
}

// Webhook posts answers to operator-declared webhooks as Standard
// Webhooks-signed JSON. There is no way to ask a receiver whether it has a
// post already, so delivery is at least once; webhook-id is the same for
// every attempt of a delivery, for the receiver to drop repeats.
type Webhook struct {
	o      WebhookOptions
	client *http.Client
}

// NewWebhook returns the webhook notifier.
func NewWebhook(o WebhookOptions) *Webhook {
	if o.Destinations == nil {
		o.Destinations = func() []WebhookDestination { return nil }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	client := &http.Client{Timeout: 10 * time.Second}
	if o.HTTPClient != nil {
		c := *o.HTTPClient
		client = &c
	}
	// The URL is the operator's; where it redirects is not.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Webhook{o: o, client: client}
}

// lookup finds the declared destination d names.
func (w *Webhook) lookup(d Destination) (WebhookDestination, error) {
	if d.Type != TypeWebhook {
		return WebhookDestination{}, fmt.Errorf("the webhook notifier does not post %q destinations", d.Type)
	}
	if d.Name == "" {
		return WebhookDestination{}, errors.New("webhook: name is required: team config names a destination declared in the sources file (destinations:), never a URL")
	}
	for _, dest := range w.o.Destinations() {
		if dest.Name == d.Name {
			return dest, nil
		}
	}
	return WebhookDestination{}, fmt.Errorf("webhook destination %q is not declared in the sources file (destinations:)", d.Name)
}

// Check says, without a call, why d cannot be posted: an undeclared name.
func (w *Webhook) Check(d Destination) error {
	_, err := w.lookup(d)
	return err
}

// webhookAnswer is the JSON a webhook destination receives.
type webhookAnswer struct {
	EventID    *string `json:"event_id"` // null for a digest
	RunID      string  `json:"run_id"`
	OrgID      string  `json:"org_id"`
	TeamNodeID string  `json:"team_node_id"`
	Answer     string  `json:"answer"`
	Success    bool    `json:"success"`
}

// WebhookID is the webhook-id of the delivery of run's answer to the
// destination named name: the same for every attempt.
func WebhookID(runID, name string) string {
	sum := sha256.Sum256([]byte(runID + "\x00" + name))
	return "msg_" + hex.EncodeToString(sum[:16])
}

// Post sends the answer, signed, to the declared destination. 2xx is
// posted; 408, 429 and 5xx are retried (after Retry-After when given);
// other answers are Permanent.
func (w *Webhook) Post(ctx context.Context, d Destination, a Answer) (Posted, error) {
	dest, err := w.lookup(d)
	if err != nil {
		return Posted{}, Permanent(err)
	}
	msg := webhookAnswer{RunID: a.RunID, OrgID: a.OrgID, TeamNodeID: a.TeamNodeID, Answer: a.Text, Success: a.Success}
	if a.EventID != "" {
		msg.EventID = &a.EventID
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return Posted{}, Permanent(err)
	}
	id := WebhookID(a.RunID, dest.Name)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dest.URL, bytes.NewReader(body))
	if err != nil {
		return Posted{}, Permanent(fmt.Errorf("webhook destination %q: %w", dest.Name, err))
	}
	now := w.o.Now()
	for k, v := range webhook.StandardWebhooksHeaders(string(dest.Secret), id, body, now) {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "orchestrator-edge")
	resp, err := w.client.Do(req)
	if err != nil {
		return Posted{}, fmt.Errorf("webhook destination %q: %w", dest.Name, err)
	}
	answer := readBody(resp, 1<<10)
	status := resp.StatusCode
	say := func(format string, args ...any) error {
		s := fmt.Sprintf("webhook destination %q answered ", dest.Name) + fmt.Sprintf(format, args...)
		if snippet := oneLine(string(answer), 200); snippet != "" {
			s += ": " + snippet
		}
		return errors.New(s)
	}
	switch {
	case status/100 == 2:
		return Posted{MessageID: id}, nil
	case status == http.StatusTooManyRequests || status == http.StatusRequestTimeout || status >= 500:
		if wait, ok := retryAfterHeader(resp.Header, now); ok {
			return Posted{}, RetryAfter(say("%d", status), wait)
		}
		return Posted{}, say("%d", status)
	case status/100 == 3:
		return Posted{}, Permanent(say("%d, a redirect (not followed: fix the url in the sources file)", status))
	default:
		return Posted{}, Permanent(say("%d", status))
	}
}

// Find cannot look: a receiver offers no way to ask what it got. The
// delivery is at least once; the receiver drops a repeat by webhook-id.
func (w *Webhook) Find(context.Context, Destination, Answer) (Posted, bool, error) {
	return Posted{}, false, nil
}

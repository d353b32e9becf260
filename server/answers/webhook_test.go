package answers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/answers"
	"github.com/incidentfox/orchestrator-edge/server/policy"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

const hookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// section reads the destinations section of a sources file as the policy
// does.
func section(t *testing.T, yaml string) json.RawMessage {
	t.Helper()
	sections, err := webhook.SplitSourcesFile([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return sections["destinations"]
}

func TestParseWebhookDestinations_TakesAGoodListAndNamesEachMistake(t *testing.T) {
	getenv := env(map[string]string{"OPS_HOOK_SECRET": hookSecret, "PLAIN": "hunter2", "EMPTY": ""})
	got, err := answers.ParseWebhookDestinations(section(t, `
destinations:
  - name: ops-feed
    url: https://hooks.acme.example/orchestrator
    secret_env: OPS_HOOK_SECRET
  - {name: audit, url: "http://audit.internal:8080/in", secret_env: OPS_HOOK_SECRET}
`), getenv)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "ops-feed" || got[0].URL != "https://hooks.acme.example/orchestrator" ||
		got[1].Name != "audit" || string(got[1].Secret) != hookSecret {
		t.Fatalf("parsed %+v", got)
	}
	// The secret never prints.
	js, _ := json.Marshal(got[0])
	for _, s := range []string{fmt.Sprint(got[0]), fmt.Sprintf("%+v", got[0]), fmt.Sprintf("%#v", got[0]), string(js)} {
		if strings.Contains(s, "MfKQ9r8G") || !strings.Contains(s, "[redacted]") {
			t.Fatalf("the secret shows: %s", s)
		}
	}
	if d, err := answers.ParseWebhookDestinations(nil, getenv); err != nil || d != nil {
		t.Fatalf("no section = %v, %v", d, err)
	}

	for _, tc := range []struct{ yaml, want string }{
		{`destinations: {name: x}`, "destinations: must be a list of {name, url, secret_env}"},
		{`destinations: [{url: "https://a.example", secret_env: OPS_HOOK_SECRET}]`, `destination #1: name: must match [a-z][a-z0-9-]{0,31}`},
		{`destinations: [{name: Ops, url: "https://a.example", secret_env: OPS_HOOK_SECRET}]`, `destination "Ops": name: must match`},
		{`destinations: [{name: ops, secret_env: OPS_HOOK_SECRET}]`, `destination "ops": url: required`},
		{`destinations: [{name: ops, url: "ftp://a.example/x", secret_env: OPS_HOOK_SECRET}]`, `destination "ops": url: must be an absolute http(s) URL`},
		{`destinations: [{name: ops, url: "/relative", secret_env: OPS_HOOK_SECRET}]`, `destination "ops": url: must be an absolute http(s) URL`},
		{`destinations: [{name: ops, url: "https://u:p@a.example/", secret_env: OPS_HOOK_SECRET}]`, `destination "ops": url: credentials are never written in the file`},
		{`destinations: [{name: ops, url: 42, secret_env: OPS_HOOK_SECRET}]`, `destination "ops": url: must be a string`},
		{`destinations: [{name: ops, url: "https://a.example", secret: whsec_abc}]`, `destination "ops": secret: secrets are never written in the file; name an environment variable in secret_env`},
		{`destinations: [{name: ops, url: "https://a.example", secret_env: OPS_HOOK_SECRET, method: PUT}]`, `destination "ops": method: unknown field`},
		{`destinations: [{name: ops, url: "https://a.example"}]`, `destination "ops": secret_env: must name an environment variable`},
		{`destinations: [{name: ops, url: "https://a.example", secret_env: MISSING}]`, `destination "ops": secret_env: MISSING is unset or empty`},
		{`destinations: [{name: ops, url: "https://a.example", secret_env: EMPTY}]`, `destination "ops": secret_env: EMPTY is unset or empty`},
		{`destinations: [{name: ops, url: "https://a.example", secret_env: PLAIN}]`, `destination "ops": secret_env: PLAIN is not of the form whsec_<base64 key>`},
		{"destinations:\n- {name: ops, url: \"https://a.example\", secret_env: OPS_HOOK_SECRET}\n- {name: ops, url: \"https://b.example\", secret_env: OPS_HOOK_SECRET}",
			`destination "ops": name: listed twice`},
	} {
		_, err := answers.ParseWebhookDestinations(section(t, tc.yaml), getenv)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s\n  error %v\n  want  %s", tc.yaml, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the error shows a secret: %v", err)
		}
	}
}

// receiver records what a webhook destination receives.
type receiver struct {
	mu     sync.Mutex
	got    []*http.Request
	bodies [][]byte
	answer func(w http.ResponseWriter, r *http.Request)
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.got = append(rc.got, r)
	rc.bodies = append(rc.bodies, body)
	answer := rc.answer
	rc.mu.Unlock()
	if answer != nil {
		answer(w, r)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.got)
}

func newReceiver(t testing.TB) (*receiver, *httptest.Server) {
	t.Helper()
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return rc, srv
}

func declared(name, url string) func() []answers.WebhookDestination {
	return func() []answers.WebhookDestination {
		return []answers.WebhookDestination{{Name: name, URL: url, SecretEnv: "OPS_HOOK_SECRET", Secret: answers.SigningSecret(hookSecret)}}
	}
}

var opsFeed = answers.Destination{Type: answers.TypeWebhook, Name: "ops-feed"}

func TestWebhook_PostIsStandardWebhooksSignedWithAStableID(t *testing.T) {
	rc, srv := newReceiver(t)
	clk := newClock()
	w := answers.NewWebhook(answers.WebhookOptions{Destinations: declared("ops-feed", srv.URL+"/in"), Now: clk.Now})
	// A receiver that verifies Standard Webhooks: a configured source of
	// that kind, the appliance's own verifier.
	src, err := webhook.NewConfigured(webhook.SourceSpec{Name: "edge-answers",
		Verify: webhook.VerifySpec{Kind: webhook.KindStandardWebhooks, SecretEnv: "S"}}, env(map[string]string{"S": hookSecret}))
	if err != nil {
		t.Fatal(err)
	}
	verify := src.Routes[0].Verifier

	a := answer("run-42", "Checkout is healthy again.")
	p, err := w.Post(context.Background(), opsFeed, a)
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(3 * time.Minute) // a retry, later
	if _, err := w.Post(context.Background(), opsFeed, a); err != nil {
		t.Fatal(err)
	}
	if rc.count() != 2 {
		t.Fatalf("%d posts", rc.count())
	}
	wantID := answers.WebhookID("run-42", "ops-feed")
	if p.MessageID != wantID || !strings.HasPrefix(wantID, "msg_") {
		t.Fatalf("posted %+v, want id %s", p, wantID)
	}
	for i, r := range rc.got {
		ev, err := verify.Verify(rc.bodies[i], r.Header, clk.Now())
		if err != nil {
			t.Fatalf("post %d does not verify: %v", i, err)
		}
		if ev.DeliveryID != wantID || r.Header.Get("Content-Type") != "application/json" || r.URL.Path != "/in" {
			t.Fatalf("post %d: id %q, headers %v", i, ev.DeliveryID, r.Header)
		}
		var body map[string]any
		if err := json.Unmarshal(rc.bodies[i], &body); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"event_id": "ev-1", "run_id": "run-42", "org_id": "acme", "team_node_id": "platform-sre",
			"answer": "Checkout is healthy again.", "success": true}
		if fmt.Sprint(body) != fmt.Sprint(want) {
			t.Fatalf("body %v, want %v", body, want)
		}
	}
	if rc.got[0].Header.Get("webhook-timestamp") == rc.got[1].Header.Get("webhook-timestamp") {
		t.Fatal("a retry reused the first attempt's timestamp")
	}
	// A tampered body does not verify: the signature covers it.
	if _, err := verify.Verify([]byte(strings.Replace(string(rc.bodies[0]), "healthy", "broken", 1)), rc.got[0].Header, clk.Now()); err == nil {
		t.Fatal("a changed body verified")
	}
	// A digest has no event: event_id is null.
	if _, err := w.Post(context.Background(), opsFeed, answers.Answer{RunID: "run-43", OrgID: "acme", Text: "3 alerts"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rc.bodies[2]), `"event_id":null`) {
		t.Fatalf("digest body %s", rc.bodies[2])
	}
	if _, ok, err := w.Find(context.Background(), opsFeed, a); ok || err != nil {
		t.Fatal("Find claims to know what a receiver got")
	}
}

func TestWebhook_TeamConfigNamesADestinationNeverAURL(t *testing.T) {
	rc, srv := newReceiver(t)
	w := answers.NewWebhook(answers.WebhookOptions{Destinations: declared("ops-feed", srv.URL)})
	for d, says := range map[answers.Destination]string{
		{Type: answers.TypeWebhook, Name: "billing"}:                          `webhook destination "billing" is not declared in the sources file`,
		{Type: answers.TypeWebhook, Name: srv.URL}:                            "is not declared in the sources file",
		{Type: answers.TypeWebhook}:                                           "never a URL",
		{Type: answers.TypeWebhook, Name: "ops-feed", ChannelID: "C1"}:        "",
		{Type: answers.TypePagerDutyNote, IncidentID: "P1", Name: "ops-feed"}: "does not post",
	} {
		err := w.Check(d)
		if (says == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), says)) {
			t.Errorf("Check(%+v) = %v; want %q", d, err, says)
		}
		if says == "" {
			continue
		}
		if _, err := w.Post(context.Background(), d, answer("run-1", "x")); !answers.IsPermanent(err) || !strings.Contains(err.Error(), says) {
			t.Errorf("Post(%+v) = %v; want a permanent %q", d, err, says)
		}
	}
	if rc.count() != 0 {
		t.Fatalf("%d requests for undeclared destinations", rc.count())
	}
}

func TestWebhook_ReceiverAnswersAreReadAsRetriesOrFailures(t *testing.T) {
	rc, srv := newReceiver(t)
	elsewhere, other := newReceiver(t)
	clk := newClock()
	w := answers.NewWebhook(answers.WebhookOptions{Destinations: declared("ops-feed", srv.URL),
		HTTPClient: &http.Client{Timeout: 300 * time.Millisecond}, Now: clk.Now})
	type want struct {
		posted, permanent bool
		delay             time.Duration
		says              string
	}
	for _, tc := range []struct {
		name   string
		answer func(http.ResponseWriter, *http.Request)
		want   want
	}{
		{"200", status(200, nil), want{posted: true}},
		{"202", status(202, nil), want{posted: true}},
		{"429 with Retry-After", status(429, http.Header{"Retry-After": {"12"}}), want{delay: 12 * time.Second, says: "answered 429"}},
		{"503 with a date", status(503, http.Header{"Retry-After": {clk.Now().Add(time.Minute).Format(http.TimeFormat)}}), want{delay: time.Minute, says: "503"}},
		{"502", status(502, nil), want{says: "502"}},
		{"408", status(408, nil), want{says: "408"}},
		{"400", status(400, nil), want{permanent: true, says: "answered 400: no"}},
		{"410", status(410, nil), want{permanent: true, says: "410"}},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL, http.StatusFound)
		}, want{permanent: true, says: "a redirect (not followed"}},
		{"too slow", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}, want{says: "Timeout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc.mu.Lock()
			rc.answer = tc.answer
			rc.mu.Unlock()
			p, err := w.Post(context.Background(), opsFeed, answer("run-1", "x"))
			if tc.want.posted {
				if err != nil || p.MessageID == "" {
					t.Fatalf("not posted: %v", err)
				}
				return
			}
			delay, hasDelay := answers.RetryDelay(err)
			if err == nil || answers.IsPermanent(err) != tc.want.permanent || delay != tc.want.delay || hasDelay != (tc.want.delay != 0) ||
				!strings.Contains(err.Error(), tc.want.says) {
				t.Fatalf("err %v: permanent=%v delay=%v; want %+v", err, answers.IsPermanent(err), delay, tc.want)
			}
		})
	}
	if elsewhere.count() != 0 {
		t.Fatal("a redirect was followed")
	}
	srv.Close()
	if _, err := w.Post(context.Background(), opsFeed, answer("run-1", "x")); err == nil || answers.IsPermanent(err) {
		t.Fatalf("a receiver that is down = %v; want a retried failure", err)
	}
}

func status(code int, h http.Header) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range h {
			w.Header()[k] = v
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte("no\n"))
	}
}

// The destinations come from the sources file and follow it when it is
// reloaded; a broken file keeps the ones in force.
func TestWebhook_DestinationsFollowTheReloadedSourcesFile(t *testing.T) {
	first, srv1 := newReceiver(t)
	second, srv2 := newReceiver(t)
	path := filepath.Join(t.TempDir(), "sources.yaml")
	writeFile := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	file := func(url string) string {
		return "destinations:\n  - {name: ops-feed, url: \"" + url + "\", secret_env: OPS_HOOK_SECRET}\n"
	}
	writeFile(file(srv1.URL))
	h, err := policy.New(policy.Options{Path: path, Getenv: env(map[string]string{"OPS_HOOK_SECRET": hookSecret})})
	if err != nil {
		t.Fatal(err)
	}
	w := answers.NewWebhook(answers.WebhookOptions{Destinations: func() []answers.WebhookDestination { return h.Current().Destinations }})
	post := func() {
		t.Helper()
		if _, err := w.Post(context.Background(), opsFeed, answer("run-1", "x")); err != nil {
			t.Fatal(err)
		}
	}
	post()
	writeFile(file(srv2.URL))
	if err := h.Reload(); err != nil {
		t.Fatal(err)
	}
	post()
	writeFile(file("ftp://nowhere"))
	if err := h.Reload(); err == nil || !strings.Contains(err.Error(), `destination "ops-feed": url`) {
		t.Fatalf("a broken destination was taken: %v", err)
	}
	post()
	if first.count() != 1 || second.count() != 2 {
		t.Fatalf("posts: first %d, second %d; want 1, 2", first.count(), second.count())
	}
	writeFile("destinations: []\n")
	if err := h.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := w.Check(opsFeed); err == nil {
		t.Fatal("a removed destination is still posted")
	}
}

// The destinations example in docs/answers.md is one the appliance takes,
// and its signed example request matches what a post looks like.
func TestDocs_TheWebhookDestinationExampleParses(t *testing.T) {
	doc, err := os.ReadFile("../../docs/answers.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\ndestinations:")
	block, _, _ := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("docs/answers.md has no destinations example")
	}
	p, err := policy.Parse([]byte("destinations:"+block), env(map[string]string{"OPS_FEED_SECRET": hookSecret}))
	if err != nil || len(p.Destinations) != 1 || p.Destinations[0].Name != "ops-feed" {
		t.Fatalf("the example does not parse: %v %+v", err, p)
	}
	for _, header := range []string{"webhook-id: msg_", "webhook-timestamp: ", "webhook-signature: v1,", `{"event_id":`} {
		if !strings.Contains(string(doc), header) {
			t.Errorf("the example request lacks %q", header)
		}
	}
}

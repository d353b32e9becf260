package webhook

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var now = time.Unix(1764000000, 0)

const (
	secret    = "8f742231b10e8888abcd99yyyzzz85a5"
	secret2   = "second-secret-during-rotation"
	whsec     = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	whsecNext = "whsec_c2Vjb25kIGtleSBmb3Igcm90YXRpb24="
)

func secretFor(source string) (string, string) {
	if source == IncidentIO {
		return whsec, whsecNext
	}
	return secret, secret2
}

func verifierFor(source string, secrets ...string) Verifier {
	all, err := Builtins(BuiltinOptions{Secrets: map[string][]string{source: secrets}})
	if err != nil {
		panic(err)
	}
	for _, s := range all {
		if s.Name == source {
			return s.Routes[0].Verifier
		}
	}
	return nil
}

func TestVerify_EverySource(t *testing.T) {
	for _, src := range Builtin {
		t.Run(src, func(t *testing.T) {
			s1, s2 := secretFor(src)
			body := Sample(src, "abc123", now)
			v := verifierFor(src, s1)

			ev, err := v.Verify(body, Sign(src, s1, body, now, "del-1"), now)
			if err != nil {
				t.Fatalf("valid: %v", err)
			}
			if ev.DeliveryID == "" || ev.Source != src || len(ev.Identifiers) == 0 || ev.Ignore != "" {
				t.Fatalf("event = %+v", ev)
			}

			// Tampered body.
			tampered := append([]byte{}, body...)
			tampered[len(tampered)-2] ^= 1
			if src != Coralogix && src != Alertmanager { // tokens, not signatures
				if _, err := v.Verify(tampered, Sign(src, s1, body, now, "del-1"), now); !errors.Is(err, ErrSignature) {
					t.Errorf("tampered body: %v", err)
				}
			}
			// Wrong secret.
			if _, err := v.Verify(body, Sign(src, s2, body, now, "del-1"), now); !errors.Is(err, ErrSignature) {
				t.Errorf("wrong secret: %v", err)
			}
			// Missing headers: the vendor headers besides the signature
			// first (400: not this vendor's delivery), else the signature.
			want := ErrSignature
			if src == Slack || src == GitHub || src == IncidentIO {
				want = ErrMissingHeader
			}
			if _, err := v.Verify(body, http.Header{}, now); !errors.Is(err, want) {
				t.Errorf("no headers: %v, want %v", err, want)
			}
			// Rotation: the second configured secret verifies.
			rot := verifierFor(src, s2, s1)
			if _, err := rot.Verify(body, Sign(src, s1, body, now, "del-1"), now); err != nil {
				t.Errorf("second secret of a rotation list: %v", err)
			}
			// No secret configured: nothing verifies.
			if _, err := verifierFor(src).Verify(body, Sign(src, s1, body, now, "del-1"), now); !errors.Is(err, ErrNoSecret) {
				t.Errorf("no secret: %v", err)
			}
		})
	}
}

func TestVerify_TimestampWindow(t *testing.T) {
	for _, src := range []string{Slack, IncidentIO} {
		s1, _ := secretFor(src)
		v := verifierFor(src, s1)
		body := Sample(src, "ts", now)
		for _, skew := range []time.Duration{-6 * time.Minute, 6 * time.Minute} {
			h := Sign(src, s1, body, now.Add(skew), "del-1")
			if _, err := v.Verify(body, h, now); !errors.Is(err, ErrSignature) {
				t.Errorf("%s signed %v away: %v", src, skew, err)
			}
		}
		for _, skew := range []time.Duration{-4 * time.Minute, 4 * time.Minute} {
			if _, err := v.Verify(body, Sign(src, s1, body, now.Add(skew), "del-1"), now); err != nil {
				t.Errorf("%s signed %v away (inside the window): %v", src, skew, err)
			}
		}
	}
}

func TestSlack_URLVerificationBotsAndOtherEvents(t *testing.T) {
	v := verifierFor(Slack, secret)
	check := func(body string) (Event, error) {
		return v.Verify([]byte(body), Sign(Slack, secret, []byte(body), now, ""), now)
	}
	ev, err := check(`{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`)
	if err != nil || ev.Challenge != "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" {
		t.Fatalf("url_verification = %+v %v", ev, err)
	}
	ev, err = check(`{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention","bot_id":"B1","channel":"C1","text":"hi"}}`)
	if err != nil || ev.Ignore == "" {
		t.Fatalf("bot mention = %+v %v", ev, err)
	}
	ev, err = check(`{"type":"event_callback","event_id":"Ev2","event":{"type":"message","channel":"C1","text":"hi"}}`)
	if err != nil || ev.Ignore == "" || ev.EventType != "message" {
		t.Fatalf("plain message = %+v %v", ev, err)
	}
	if _, err := check(`{"type":"event_callback","event":{"type":"app_mention"}}`); !errors.Is(err, ErrPayload) {
		t.Fatalf("no event_id: %v", err)
	}
}

func TestGitHub_PingIsIgnored(t *testing.T) {
	v := verifierFor(GitHub, secret)
	body := []byte(`{"zen":"Design for failure.","hook_id":1,"repository":{"full_name":"acme/payments"}}`)
	h := Sign(GitHub, secret, body, now, "d-1")
	h.Set("X-GitHub-Event", "ping")
	ev, err := v.Verify(body, h, now)
	if err != nil || ev.Ignore == "" || ev.DeliveryID != "d-1" {
		t.Fatalf("ping = %+v %v", ev, err)
	}
}

func TestPagerDuty_MultipleSignaturesAndV2Body(t *testing.T) {
	v := verifierFor(PagerDuty, secret)
	body := Sample(PagerDuty, "x", now)
	good := Sign(PagerDuty, secret, body, now, "").Get("X-PagerDuty-Signature")
	other := Sign(PagerDuty, secret2, body, now, "").Get("X-PagerDuty-Signature")
	h := http.Header{"X-Pagerduty-Signature": {other + "," + good}}
	if _, err := v.Verify(body, h, now); err != nil {
		t.Fatalf("signature list with one match: %v", err)
	}
	v2 := []byte(`{"messages":[{"id":"bb8b8fe0-e8d5-11e2-9c1e-22000afd16cf","event":"incident.trigger","created_on":"2013-07-09T20:25:44Z","incident":{"id":"PIJ90N7","service":{"id":"PF9KMXH","name":"payments"},"title":"disk full"}}]}`)
	ev, err := v.Verify(v2, Sign(PagerDuty, secret, v2, now, ""), now)
	if err != nil || ev.DeliveryID != "bb8b8fe0-e8d5-11e2-9c1e-22000afd16cf" || ev.Identifiers["pagerduty_service_id"] != "PF9KMXH" {
		t.Fatalf("v2 body = %+v %v", ev, err)
	}
}

func TestCoralogix_TokenHeadersAndDeliveryID(t *testing.T) {
	v := verifierFor(Coralogix, secret)
	body := Sample(Coralogix, "u-1", now)
	ev, err := v.Verify(body, http.Header{"X-Webhook-Token": {secret}}, now)
	if err != nil || ev.Identifiers["coralogix_team_name"] != "acme" {
		t.Fatalf("X-Webhook-Token = %+v %v", ev, err)
	}
	// The same alert at the same time is one delivery; without an id, the body hash.
	ev2, _ := v.Verify(body, http.Header{"Authorization": {"Bearer " + secret}}, now)
	if ev2.DeliveryID != ev.DeliveryID {
		t.Fatal("same alert, different delivery ids")
	}
	anon, err := v.Verify([]byte(`{"alert_name":"x"}`), http.Header{"X-Webhook-Token": {secret}}, now)
	if err != nil || len(anon.DeliveryID) < 10 {
		t.Fatalf("no id = %+v %v", anon, err)
	}
}

func TestDescribe_GivesAMessagePerSource(t *testing.T) {
	want := map[string]string{
		Slack:      "why is checkout latency up?",
		GitHub:     "GitHub issues.opened on acme/payments: Checkout returns 500 for EU cards (m)",
		PagerDuty:  "PagerDuty incident.triggered: Checkout error rate above 5%",
		IncidentIO: "incident.io public_alert.alert_created_v1: Payments degraded",
		Coralogix:  "Coralogix alert: payments 5xx rate",
	}
	types := map[string]string{Slack: "app_mention", GitHub: "issues.opened", PagerDuty: "incident.triggered", IncidentIO: "public_alert.alert_created_v1", Coralogix: "alert.trigger"}
	for src, w := range want {
		msg, meta := Describe(src, types[src], Sample(src, "m", now))
		if msg != w || meta["event_type"] != types[src] {
			t.Errorf("%s: %q %v, want %q", src, msg, meta, w)
		}
	}
	if msg, _ := Describe(Slack, "x", []byte("not json")); msg == "" {
		t.Error("no message for an odd body")
	}
}

// The metadata names where an answer goes back: the issue or pull request
// of a GitHub event (a comment on an issue that is a PR is the PR's), the
// incident of a PagerDuty event.
func TestDescribe_NamesWhereTheAnswerGoes(t *testing.T) {
	cases := []struct {
		source, eventType, body string
		key                     string
		want                    any
	}{
		{GitHub, "issues.opened", `{"issue":{"number":42},"repository":{"full_name":"acme/payments"}}`, "issue_number", 42},
		{GitHub, "issue_comment.created", `{"issue":{"number":43,"pull_request":{"url":"x"}},"comment":{"id":1},"repository":{"full_name":"acme/payments"}}`, "pr_number", 43},
		{GitHub, "pull_request.opened", `{"number":44,"pull_request":{"number":44},"repository":{"full_name":"acme/payments"}}`, "pr_number", 44},
		{GitHub, "pull_request_review_comment.created", `{"pull_request":{"number":45},"comment":{"id":9},"repository":{"full_name":"acme/payments"}}`, "pr_number", 45},
		{PagerDuty, "incident.triggered", `{"event":{"data":{"id":"Q1ABC","type":"incident"}}}`, "incident_id", "Q1ABC"},
		{PagerDuty, "incident.annotated", `{"event":{"data":{"id":"N1","type":"incident_note","incident":{"id":"Q2DEF"}}}}`, "incident_id", "Q2DEF"},
		{PagerDuty, "incident.trigger", `{"messages":[{"incident":{"id":"Q3GHI","title":"t"}}]}`, "incident_id", "Q3GHI"},
	}
	for _, c := range cases {
		_, meta := Describe(c.source, c.eventType, []byte(c.body))
		if meta[c.key] != c.want {
			t.Errorf("%s %s: %s = %v, want %v (%v)", c.source, c.eventType, c.key, meta[c.key], c.want, meta)
		}
	}
	if _, meta := Describe(GitHub, "push", []byte(`{"repository":{"full_name":"acme/payments"}}`)); meta["pr_number"] != nil || meta["issue_number"] != nil {
		t.Errorf("a push names a number: %v", meta)
	}
}

// fuzzVerify checks that a verifier never panics, never accepts a body
// signed with another secret, and always accepts what was signed correctly
// (or reports an unreadable payload).
func fuzzVerify(f *testing.F, src string) {
	s1, s2 := secretFor(src)
	f.Add(Sample(src, "seed", now), int64(0), "d-1")
	f.Add([]byte(`{}`), int64(30), "")
	f.Add([]byte(`{"type":"event_callback","event_id":"E","event":{"type":"app_mention","channel":"C"}}`), int64(-30), "x")
	f.Add([]byte(`{"messages":[{"id":"1","incident":{"service":{"id":"P"}}}]}`), int64(1), "y")
	f.Add([]byte("\xff\x00garbage"), int64(400), "z")
	v := verifierFor(src, s1)
	f.Fuzz(func(t *testing.T, body []byte, skew int64, delivery string) {
		at := now.Add(time.Duration(skew%600) * time.Second)
		if delivery == "" {
			delivery = "d"
		}
		ev, err := v.Verify(body, Sign(src, s1, body, at, delivery), now)
		inWindow := skew%600 <= 300 && skew%600 >= -300
		timed := src == Slack || src == IncidentIO
		badID := src == IncidentIO && len(delivery) > 255
		if err != nil && !errors.Is(err, ErrPayload) && !(errors.Is(err, ErrSignature) && ((timed && !inWindow) || badID)) {
			t.Fatalf("correctly signed body refused: %v", err)
		}
		if err == nil && ev.Challenge == "" && ev.DeliveryID == "" {
			t.Fatal("accepted event without a delivery id")
		}
		// What the door will store is clean text within its columns'
		// bounds, whatever the body held (SPEC §18; the store's
		// FuzzInsertEvent holds the other half).
		if err == nil && ev.Challenge == "" {
			checkClean(t, "delivery id", ev.DeliveryID, 255)
			checkClean(t, "event type", ev.EventType, 128)
			for k, v := range ev.Identifiers {
				checkClean(t, "identifier "+k, v, 256)
			}
		}
		if src != Coralogix {
			if _, err := v.Verify(body, Sign(src, s2, body, at, delivery), now); err == nil {
				t.Fatal("accepted a body signed with another secret")
			}
		}
		// Arbitrary headers never panic.
		_, _ = v.Verify(body, http.Header{"X-Slack-Signature": {string(body)}, "X-Slack-Request-Timestamp": {strconv.FormatInt(skew, 10)},
			"Webhook-Signature": {"v1," + string(body)}, "X-Pagerduty-Signature": {string(body)}, "Authorization": {string(body)}}, now)
	})
}

func FuzzSlack(f *testing.F)      { fuzzVerify(f, Slack) }
func FuzzGitHub(f *testing.F)     { fuzzVerify(f, GitHub) }
func FuzzPagerDuty(f *testing.F)  { fuzzVerify(f, PagerDuty) }
func FuzzIncidentIO(f *testing.F) { fuzzVerify(f, IncidentIO) }
func FuzzCoralogix(f *testing.F)  { fuzzVerify(f, Coralogix) }

// FuzzAlertmanager: Alertmanager's verifier and payload parser.
func FuzzAlertmanager(f *testing.F) {
	f.Add([]byte(`{"version":"4","groupKey":"k","status":"resolved","alerts":[{"status":"resolved","fingerprint":"f","labels":{"service":"\u0000x"}}]}`), int64(0), "")
	fuzzVerify(f, Alertmanager)
}

// FuzzSlackInteraction: any form body gives an event or ErrPayload, never a
// panic, and what it gives is clean text within its columns.
func FuzzSlackInteraction(f *testing.F) {
	f.Add([]byte(`payload={"type":"block_actions","trigger_id":"1","user":{"id":"U"},"channel":{"id":"C"},"actions":[{"action_id":"feedback_positive","value":"r"}]}`))
	f.Add([]byte("payload=%7B%22type%22%3A%22view_submission%22%7D"))
	f.Add([]byte(`payload={"type":"block_actions","user":{"id":"U"},"channel":{"id":"C"},"actions":[{"action_id":"prompt_answer_1","value":"6f1c1e1a-4b8e-4d7a-9a55-3b0e2f6d9c01:1"}]}`))
	f.Add([]byte(`payload={"type":"block_actions","user":{"id":"U"},"channel":{"id":"C"},"actions":[{"action_id":"prompt_answer_0","value":"x:-1"},{"action_id":"run_stop","value":"r"}]}`))
	f.Add([]byte("payload=\xff"))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := ParseSlackInteraction(body)
		if err != nil {
			if !errors.Is(err, ErrPayload) {
				t.Fatalf("error is not ErrPayload: %v", err)
			}
			return
		}
		checkClean(t, "delivery id", ev.DeliveryID, 255)
		checkClean(t, "event type", ev.EventType, 128)
		for k, v := range ev.Identifiers {
			checkClean(t, "identifier "+k, v, 256)
		}
		if ev.Feedback != nil {
			checkClean(t, "feedback run", ev.Feedback.Run, 128)
			checkClean(t, "feedback user", ev.Feedback.UserName, 128)
		}
		if c := ev.Click; c != nil {
			if ev.EventType != ClickEventType || ev.Feedback != nil || c.Option < 0 || c.Option > 100 {
				t.Fatalf("click %+v as %s", c, ev.EventType)
			}
			for _, v := range []string{c.Prompt, c.Run, c.User, c.MessageTS, c.ThreadTS} {
				checkClean(t, "click field", v, 64)
			}
			checkClean(t, "click user name", c.UserName, 128)
			checkClean(t, "click channel", c.Channel, 128)
		}
		if msg, _ := Describe(Slack, ev.EventType, body); msg == "" {
			t.Fatal("empty message")
		}
	})
}

func FuzzDescribe(f *testing.F) {
	for _, src := range Builtin {
		f.Add(src, Sample(src, "seed", now))
	}
	f.Add(Slack, []byte(`payload={"type":"block_actions","user":{"name":"ana"},"actions":[{"action_id":"x"}]}`))
	f.Add(Alertmanager, []byte(`{"version":"4","groupKey":"g","status":"firing","commonLabels":{"service":"a\n- 2 alerts\u001b\u2028"}}`))
	f.Fuzz(func(t *testing.T, src string, body []byte) {
		msg, _ := Describe(src, "t", body)
		if msg == "" {
			t.Fatal("empty message")
		}
		// One line whatever the sender wrote (a Slack mention keeps its
		// own line breaks).
		if i := strings.IndexFunc(msg, func(r rune) bool { return escaped(r, src == Slack) }); i >= 0 {
			t.Fatalf("%s message holds %q unescaped: %q", src, msg[i:], msg)
		}
	})
}

func checkClean(t *testing.T, what, s string, n int) {
	t.Helper()
	if !utf8.ValidString(s) || strings.ContainsRune(s, 0) || len(s) > n {
		t.Fatalf("%s %q is not clean text of at most %d bytes", what, s, n)
	}
}

// githubEvents is every X-GitHub-Event name GitHub's "Webhook events and
// payloads" page documents (docs.github.com/en/webhooks/webhook-events-and-payloads),
// plus the delegated-bypass events GitHub Enterprise Cloud sends. Seven of
// 329 real deliveries (projects_v2_item) were refused while the rule allowed
// no digits.
var githubEvents = []string{
	"branch_protection_configuration", "branch_protection_rule", "check_run", "check_suite",
	"code_scanning_alert", "commit_comment", "create", "custom_property", "custom_property_values",
	"delete", "dependabot_alert", "deploy_key", "deployment", "deployment_protection_rule",
	"deployment_review", "deployment_status", "discussion", "discussion_comment",
	"exemption_request_push_ruleset", "exemption_request_secret_scanning", "fork",
	"github_app_authorization", "gollum", "installation", "installation_repositories",
	"installation_target", "issue_comment", "issue_dependencies", "issues", "label",
	"marketplace_purchase", "member", "membership", "merge_group", "meta", "milestone",
	"org_block", "organization", "package", "page_build", "personal_access_token_request", "ping",
	"project", "project_card", "project_column", "projects_v2", "projects_v2_item",
	"projects_v2_status_update", "public", "pull_request", "pull_request_review",
	"pull_request_review_comment", "pull_request_review_thread", "push", "registry_package",
	"release", "repository", "repository_advisory", "repository_dispatch", "repository_import",
	"repository_ruleset", "repository_vulnerability_alert", "secret_scanning_alert",
	"secret_scanning_alert_location", "secret_scanning_scan", "security_advisory",
	"security_and_analysis", "sponsorship", "star", "status", "sub_issues", "team", "team_add",
	"watch", "workflow_dispatch", "workflow_job", "workflow_run",
}

func TestGitHub_EveryDocumentedEventNameIsAccepted(t *testing.T) {
	v := verifierFor(GitHub, secret)
	body := []byte(`{"action":"edited","repository":{"full_name":"acme/payments"}}`)
	for _, name := range githubEvents {
		h := Sign(GitHub, secret, body, now, "d-"+name)
		h.Set("X-GitHub-Event", name)
		ev, err := v.Verify(body, h, now)
		if err != nil {
			t.Errorf("X-GitHub-Event %s: %v", name, err)
			continue
		}
		if ev.EventType != name+".edited" {
			t.Errorf("X-GitHub-Event %s: event type %q", name, ev.EventType)
		}
	}
	for _, bad := range []string{"Issues", "issues!", "projects-v2", strings.Repeat("a", 65), "issues\x00"} {
		h := Sign(GitHub, secret, body, now, "d-bad")
		h.Set("X-GitHub-Event", bad)
		if _, err := v.Verify(body, h, now); !errors.Is(err, ErrPayload) {
			t.Errorf("X-GitHub-Event %q: %v, want a payload error", bad, err)
		}
	}
}

// TestSignedSample_EachBuiltInSourcesVerifierTakesItsSample: a built-in
// source's signed sample is signed with its own first secret (here a
// rotated one before the old), so its verifier takes it; a source without
// a secret, an unknown one and a configured one have none.
func TestSignedSample_EachBuiltInSourcesVerifierTakesItsSample(t *testing.T) {
	list := map[string][]string{}
	for _, src := range Builtin {
		list[src] = []string{"new-" + src + "-secret", "old-" + src + "-secret"}
	}
	list[IncidentIO] = []string{"whsec_bmV3LWluY2lkZW50aW8tc2VjcmV0", "whsec_b2xkLWluY2lkZW50aW8="}
	all, err := Builtins(BuiltinOptions{Secrets: list})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, s := range all {
		body, h, err := s.SignedSample("abc123", now)
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		if _, err := s.Routes[0].Verifier.Verify(body, h, now); err != nil {
			t.Errorf("%s: its verifier refused its signed sample: %v", s.Name, err)
		}
		// Signed with the first secret: a verifier with only the old one refuses it.
		old, _ := Builtins(BuiltinOptions{Secrets: map[string][]string{s.Name: list[s.Name][1:]}})
		for _, o := range old {
			if o.Name == s.Name {
				if _, err := o.Routes[0].Verifier.Verify(body, h, now); err == nil {
					t.Errorf("%s: signed with the old secret, not the first", s.Name)
				}
			}
		}
	}
	none, _ := Builtins(BuiltinOptions{})
	if _, _, err := none[1].SignedSample("x", now); !errors.Is(err, ErrNoSample) || !strings.Contains(err.Error(), "no "+none[1].Name+" secret") {
		t.Errorf("without a secret: %v", err)
	}
	var unknown *Source
	if _, _, err := unknown.SignedSample("x", now); !errors.Is(err, ErrNoSample) {
		t.Errorf("no source: %v", err)
	}
	if _, _, err := (&Source{Name: "acme-deploys", Kind: "configured", Routes: []Route{{Path: "/webhooks/acme-deploys"}}}).SignedSample("x", now); !errors.Is(err, ErrNoSample) {
		t.Errorf("a configured source: %v", err)
	}
}

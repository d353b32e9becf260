package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/incidentfox/orchestrator-edge/internal/pyhmac"
)

func python(t *testing.T, algorithm, encoding, secret string, msg []byte) string {
	t.Helper()
	return pyhmac.Sign(t, algorithm, encoding, secret, msg)
}

func parseOne(t testing.TB, yaml string, env map[string]string) *Source {
	t.Helper()
	f, err := ParseSourcesFile([]byte(yaml), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Sources) != 1 {
		t.Fatalf("%d sources", len(f.Sources))
	}
	return f.Sources[0]
}

// The sources file of SPEC §6, word for word.
const specFile = `sources:
  - name: acme-deploys
    verify:
      kind: hmac                 # hmac | standard-webhooks | token | basic
      header: X-Acme-Signature
      algorithm: sha512          # sha1 | sha256 | sha512
      encoding: base64           # hex | base64
      prefix: "v1="
      signed: "{id}.{timestamp}.{body}"
      timestamp_header: X-Acme-Timestamp
      secret_env: ACME_DEPLOYS_SECRET   # comma-separated values = rotation
      id_header: X-Acme-Delivery         # a delivery id read from a header must be signed ({id})
    delivery_id: {header: X-Acme-Delivery}   # or {pointer: /id}; absent = SHA-256 of the body
    event_type: {pointer: /kind}             # or {header: …} or {value: "deploy"}
    routing: {service: /service}             # identifier type → JSON pointer
    alert: {key: /incident/id, state: /status, firing: [triggered], resolved: [resolved]}
    coalesce: true
    describe: "{event_type} of {/app} {/version} to {/environment}"
  - name: deploy-bot
    verify: {kind: token, header: X-Token, secret_env: DEPLOY_BOT_TOKEN}
slack_apps:
  - slug: sre-bot
    signing_secret_env: SREBOT_SIGNING_SECRET
`

func TestConfigured_TheSpecsFileSignedByPython(t *testing.T) {
	env := map[string]string{"ACME_DEPLOYS_SECRET": "old-secret,new-secret", "DEPLOY_BOT_TOKEN": "bot-token",
		"SREBOT_SIGNING_SECRET": "sre-bot-signing"}
	f, err := ParseSourcesFile([]byte(specFile), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Sources) != 2 || len(f.SlackApps) != 1 || f.SlackApps[0].Slug != "sre-bot" || f.SlackApps[0].Secrets[0] != "sre-bot-signing" {
		t.Fatalf("file = %+v", f)
	}
	acme := f.Sources[0]
	if acme.Routes[0].Path != "/webhooks/acme-deploys" || !acme.Coalesce || !acme.Alerts || acme.Routing[0] != "service" {
		t.Fatalf("acme = %+v", acme)
	}
	body := []byte(`{"kind":"deploy.finished","app":"checkout","version":"1.4.2","environment":"prod","service":"checkout",
		"incident":{"id":"INC-7"},"status":"triggered"}`)
	ts := strconv.FormatInt(now.Unix(), 10)
	sign := func(secret string, at string) http.Header {
		return http.Header{"X-Acme-Signature": {"v1=" + python(t, "sha512", "base64", secret, []byte("dlv-1."+at+"."+string(body)))},
			"X-Acme-Timestamp": {at}, "X-Acme-Delivery": {"dlv-1"}}
	}
	v := acme.Routes[0].Verifier
	for _, secret := range []string{"old-secret", "new-secret"} {
		ev, err := v.Verify(body, sign(secret, ts), now)
		if err != nil {
			t.Fatalf("signed with %s: %v", secret, err)
		}
		if ev.Source != "acme-deploys" || ev.DeliveryID != "dlv-1" || ev.EventType != "deploy.finished" ||
			ev.Identifiers["service"] != "checkout" || ev.Alert == nil || ev.Alert.Key != "INC-7" || ev.Alert.State != AlertFiring {
			t.Fatalf("event = %+v alert %+v", ev, ev.Alert)
		}
	}
	msg, _ := acme.Describe("deploy.finished", body, nil)
	if msg != "deploy.finished of checkout 1.4.2 to prod" {
		t.Fatalf("describe = %q", msg)
	}
	refused := map[string]http.Header{
		"a retired secret":  sign("retired", ts),
		"a stale timestamp": sign("new-secret", strconv.FormatInt(now.Add(-6*time.Minute).Unix(), 10)),
		"no prefix": func() http.Header {
			h := sign("new-secret", ts)
			h.Set("X-Acme-Signature", strings.TrimPrefix(h.Get("X-Acme-Signature"), "v1="))
			return h
		}(),
	}
	for what, h := range refused {
		if _, err := v.Verify(body, h, now); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: %v, want a signature failure", what, err)
		}
	}
	tampered := []byte(strings.Replace(string(body), "1.4.2", "6.6.6", 1))
	if _, err := v.Verify(tampered, sign("new-secret", ts), now); !errors.Is(err, ErrSignature) {
		t.Errorf("tampered body: %v", err)
	}
	h := sign("new-secret", ts)
	h.Del("X-Acme-Timestamp")
	if _, err := v.Verify(body, h, now); !errors.Is(err, ErrMissingHeader) {
		t.Errorf("no timestamp: %v", err)
	}
	h = sign("new-secret", ts)
	h.Del("X-Acme-Delivery")
	if _, err := v.Verify(body, h, now); !errors.Is(err, ErrMissingHeader) {
		t.Errorf("no delivery header: %v", err)
	}
	// A captured delivery sent again under a new id no longer verifies:
	// the id is signed.
	h = sign("new-secret", ts)
	h.Set("X-Acme-Delivery", "dlv-2")
	if _, err := v.Verify(body, h, now); !errors.Is(err, ErrSignature) {
		t.Errorf("a new delivery id on a captured delivery: %v", err)
	}

	bot := f.Sources[1].Routes[0].Verifier
	if _, err := bot.Verify([]byte(`{"text":"deployed"}`), http.Header{"X-Token": {"bot-token"}}, now); err != nil {
		t.Fatalf("token: %v", err)
	}
	if _, err := bot.Verify([]byte(`plain text`), http.Header{"X-Token": {"bot-token"}}, now); !errors.Is(err, ErrPayload) {
		t.Fatalf("a body that is not JSON: %v", err)
	}
	for _, h := range []http.Header{{"X-Token": {"bot-tokem"}}, {"Authorization": {"Bearer bot-token"}}, {}} {
		if _, err := bot.Verify([]byte(`x`), h, now); !errors.Is(err, ErrSignature) {
			t.Errorf("token %v: %v", h, err)
		}
	}
}

func TestConfigured_EveryAlgorithmAndEncodingAgainstPython(t *testing.T) {
	for _, alg := range []string{"sha1", "sha256", "sha512"} {
		for _, enc := range []string{"hex", "base64"} {
			t.Run(alg+"/"+enc, func(t *testing.T) {
				src := parseOne(t, `sources:
  - name: generic
    verify: {kind: hmac, header: X-Sig, algorithm: `+alg+`, encoding: `+enc+`, signed: "{id}:{body}", id_header: X-Id, secret_env: S}
    delivery_id: {pointer: /id}
`, map[string]string{"S": "k3y"})
				body := []byte(`{"id":42,"msg":"hi"}`)
				sig := python(t, alg, enc, "k3y", []byte("m-1:"+string(body)))
				ev, err := src.Routes[0].Verifier.Verify(body, http.Header{"X-Sig": {sig}, "X-Id": {"m-1"}}, now)
				if err != nil || ev.DeliveryID != "42" || ev.EventType != "event" {
					t.Fatalf("%+v %v", ev, err)
				}
				if _, err := src.Routes[0].Verifier.Verify(body, http.Header{"X-Sig": {sig}, "X-Id": {"m-2"}}, now); !errors.Is(err, ErrSignature) {
					t.Fatalf("another id: %v", err)
				}
			})
		}
	}
}

func TestConfigured_StandardWebhooksAndBasic(t *testing.T) {
	key := "whsec_" + base64.StdEncoding.EncodeToString([]byte("standard key"))
	sw := parseOne(t, "sources:\n  - name: sw\n    verify: {kind: standard-webhooks, secret_env: K}\n", map[string]string{"K": key})
	body := []byte(`{"a":1}`)
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := python(t, "sha256", "base64", "standard key", []byte("msg_1."+ts+"."+string(body)))
	ev, err := sw.Routes[0].Verifier.Verify(body, http.Header{"Webhook-Id": {"msg_1"}, "Webhook-Timestamp": {ts},
		"Webhook-Signature": {"v1,bogus v1," + sig}}, now)
	if err != nil || ev.DeliveryID != "msg_1" {
		t.Fatalf("%+v %v", ev, err)
	}
	basic := parseOne(t, "sources:\n  - name: b\n    verify: {kind: basic, secret_env: K}\n", map[string]string{"K": "ops:pa55,ops:next"})
	for _, pair := range []string{"ops:pa55", "ops:next"} {
		h := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(pair))}}
		if _, err := basic.Routes[0].Verifier.Verify(body, h, now); err != nil {
			t.Fatalf("%s: %v", pair, err)
		}
	}
	h := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("other:pa55"))}}
	if _, err := basic.Routes[0].Verifier.Verify(body, h, now); !errors.Is(err, ErrSignature) {
		t.Fatalf("wrong user: %v", err)
	}
	// Without a delivery id the SHA-256 of the body dedupes.
	ev, _ = basic.Routes[0].Verifier.Verify(body, http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("ops:pa55"))}}, now)
	if !strings.HasPrefix(ev.DeliveryID, "sha256:") || len(ev.DeliveryID) != 71 {
		t.Fatalf("delivery id = %q", ev.DeliveryID)
	}
}

// TestConfigured_MistakesNameTheSourceAndTheField: every mistake stops
// start-up with one line naming the source and the field.
func TestConfigured_MistakesNameTheSourceAndTheField(t *testing.T) {
	env := map[string]string{"S": "secret", "W": "not-whsec", "W2": "whsec_" + base64.StdEncoding.EncodeToString([]byte("k"))}
	cases := []struct{ file, want string }{
		{`sources: [{name: Bad_Name, verify: {kind: token, secret_env: S}}]`, `source "Bad_Name": name: must match`},
		{`sources: [{name: github, verify: {kind: token, secret_env: S}}]`, `source "github": name: "github" is a built-in source's name`},
		{`sources: [{name: a, verify: {kind: hmac, header: X-Sig, secret: hunter2}}]`, `source "a": secret: secrets are never written in the file`},
		{`sources: [{name: a, verify: {kind: hmac, header: X-Sig, secret_env: UNSET}}]`, `source "a": verify.secret_env: UNSET is unset or empty`},
		{`sources: [{name: a, verify: {kind: hmac, header: X-Sig, algorithm: md5, secret_env: S}}]`, `source "a": verify.algorithm: "md5" is not sha1, sha256 or sha512`},
		{`sources: [{name: a, verify: {kind: hmac, header: X-Sig, encoding: b32, secret_env: S}}]`, `source "a": verify.encoding: "b32" is not hex or base64`},
		{`sources: [{name: a, verify: {kind: hmac, secret_env: S}}]`, `source "a": verify.header: required for kind hmac`},
		{`sources: [{name: a, verify: {kind: hmac, header: X-Sig, signed: "{timestamp}.{body}", secret_env: S}}]`, `source "a": verify.timestamp_header: required when verify.signed uses {timestamp}`},
		{`sources: [{name: a, verify: {kind: hmac, header: X-Sig, signed: "{nonce}{body}", secret_env: S}}]`, `source "a": verify.signed: unknown placeholder {nonce}`},
		{`sources: [{name: a, verify: {kind: hmac, header: X-Sig, signed: "{timestamp}", timestamp_header: T, secret_env: S}}]`, `source "a": verify.signed: must include {body}`},
		{`sources: [{name: a, verify: {kind: jwt, secret_env: S}}]`, `source "a": verify.kind: "jwt" is not hmac, standard-webhooks, token or basic`},
		{`sources: [{name: a, verify: {kind: standard-webhooks, secret_env: W}}]`, `source "a": verify.secret_env: W: entry 1 is not of the form whsec_<base64 key>`},
		{`sources: [{name: a, verify: {kind: basic, secret_env: S}}]`, `source "a": verify.secret_env: S: entry 1 is not user:password`},
		{`sources: [{name: a, verify: {kind: token, algorithm: sha1, secret_env: S}}]`, `source "a": verify.algorithm: only kind hmac takes it`},
		{`sources: [{name: a, verify: {kind: token, secret_env: S}, delivery_id: {value: x}}]`, `source "a": delivery_id: give exactly one of header or pointer`},
		{`sources: [{name: a, verify: {kind: token, secret_env: S}, event_type: {header: X, pointer: /t}}]`, `source "a": event_type: give exactly one of header, pointer or value`},
		{`sources: [{name: a, verify: {kind: token, secret_env: S}, routing: {service: service}}]`, `source "a": routing.service: "service" is not a JSON pointer`},
		{`sources: [{name: a, verify: {kind: token, secret_env: S}, routing: {Service: /s}}]`, `source "a": routing.Service: an identifier type must match`},
		{`sources: [{name: a, verify: {kind: token, secret_env: S}, alert: {key: /id, state: /s, firing: [up]}}]`, `source "a": alert: firing and resolved each list`},
		{`sources: [{name: a, verify: {kind: token, secret_env: S}, alert: {key: /id, state: /s, firing: [on], resolved: [off]}}]`, `source "a": alert.firing: must be a string`},
		{`sources: [{name: a, verify: {kind: token, secret_env: S}, describe: "{oops}"}]`, `source "a": describe: unknown placeholder {oops}`},
		{`sources: [{name: a, verify: {kind: token, secret_env: S}, coalesce: maybe}]`, `source "a": coalesce: must be true or false`},
		{`sources: [{name: a, verify: {kind: token, secret_env: S}}, {name: a, verify: {kind: token, secret_env: S}}]`, `source "a": name: listed twice`},
		{`sources: [{name: a, verify: {kind: token, secret_env: S}, colour: red}]`, `source "a": colour: unknown field`},
		{`slack_apps: [{slug: events, signing_secret_env: S}]`, `slack app "events": slug: must match`},
		{`slack_apps: [{slug: bot, signing_secret_env: NOPE}]`, `slack app "bot": signing_secret_env: NOPE is unset or empty`},
		{`slack_apps: [{slug: bot, signing_secret: abc}]`, `slack app #1: signing_secret: secrets are never written in the file`},
		{`slack_apps: [{slug: bot, signing_secret_env: S, bot_token: xoxb-hunter2}]`, `slack app #1: bot_token: secrets are never written in the file`},
		{`slack_apps: [{slug: bot, signing_secret_env: S, bot_token_env: xoxb-hunter2}]`, `slack app "bot": bot_token_env: must name an environment variable`},
		{`slack_apps: [{slug: bot, signing_secret_env: S, bot_token_env: NOPE}]`, `slack app "bot": bot_token_env: NOPE is unset or empty`},
		{"sources: [", `not YAML`},
		// Round 4: nothing that verified a delivery can be shifted or replaced.
		{`sources: [{name: a, verify: {kind: hmac, header: X-Sig, signed: "{body}{id}", id_header: X-Id, secret_env: S}}]`,
			`source "a": verify.signed: {body}{id}: placeholders must be separated by literal text`},
		{`sources: [{name: a, verify: {kind: hmac, header: X-Sig, signed: "v0:{timestamp}{body}", timestamp_header: T, secret_env: S}}]`,
			`source "a": verify.signed: {timestamp}{body}: placeholders must be separated`},
		{`sources: [{name: a, verify: {kind: hmac, header: X-Sig, signed: "{body}", timestamp_header: T, secret_env: S}}]`,
			`source "a": verify.timestamp_header: requires {timestamp} in verify.signed`},
		{`sources: [{name: a, verify: {kind: hmac, header: X-Sig, id_header: X-Id, secret_env: S}}]`,
			`source "a": verify.id_header: requires {id} in verify.signed`},
		{`sources: [{name: a, verify: {kind: hmac, header: X-Sig, signed: "{timestamp}.{body}", timestamp_header: T, secret_env: S}, delivery_id: {header: X-D}}]`,
			`source "a": delivery_id.header: X-D is not signed: name it in verify.id_header and put {id} in verify.signed`},
		{`sources: [{name: a, verify: {kind: hmac, header: X-Sig, signed: "{id}.{body}", id_header: X-Id, secret_env: S}, delivery_id: {header: X-Other}}]`,
			`source "a": delivery_id.header: X-Other is not signed`},
		{`sources: [{name: a, verify: {kind: standard-webhooks, secret_env: W2}, delivery_id: {header: X-D}}]`,
			`source "a": delivery_id.header: X-D is not signed: Standard Webhooks signs webhook-id`},
		{"sources:\n" + strings.Repeat("  - {name: a, verify: {kind: token, secret_env: S}}\n", 257), `sources: 257 sources listed, at most 256`},
		{"slack_apps:\n" + strings.Repeat("  - {slug: a, signing_secret_env: S}\n", 257), `slack_apps: 257 Slack apps listed, at most 256`},
		{"sources: []\n#" + strings.Repeat("x", MaxSourcesFileBytes), `the file is larger than 1048576 bytes (1 MiB)`},
	}
	for _, c := range cases {
		_, err := ParseSourcesFile([]byte(c.file), func(k string) string { return env[k] })
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s\n  error %v\n  want  %s", c.file, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the error echoes an inline secret: %v", err)
		}
	}
}

func TestAlertmanager_IdentityRoutingAndLine(t *testing.T) {
	body := []byte(`{"version":"4","groupKey":"{}:{alertname=\"HighErrorRate\"}","truncatedAlerts":0,"status":"firing",
	"receiver":"orchestrator","groupLabels":{"alertname":"HighErrorRate"},
	"commonLabels":{"alertname":"HighErrorRate","namespace":"payments","severity":"critical"},
	"commonAnnotations":{"summary":"5xx above 5%"},"externalURL":"http://am:9093",
	"alerts":[{"status":"firing","labels":{"alertname":"HighErrorRate","service":"checkout","namespace":"payments","pod":"a"},"annotations":{},"startsAt":"2026-11-26T01:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"bbb"},
	{"status":"firing","labels":{"alertname":"HighErrorRate","service":"checkout","namespace":"payments","pod":"b"},"annotations":{},"startsAt":"2026-11-26T01:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"aaa"},
	{"status":"resolved","labels":{"alertname":"PodRestarts","namespace":"payments"},"annotations":{},"startsAt":"2026-11-26T01:00:00Z","endsAt":"2026-11-26T01:05:00Z","fingerprint":"ccc"}]}`)
	v := &AlertmanagerVerifier{Tokens: []string{"t1", "t2"}, Labels: map[string]string{"namespace": "k8s_namespace"}}
	for _, h := range []http.Header{{"Authorization": {"Bearer t2"}},
		{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("alertmanager:t1"))}}} {
		ev, err := v.Verify(body, h, now)
		if err != nil {
			t.Fatal(err)
		}
		if ev.EventType != "alertmanager.firing" || ev.Identifiers["service"] != "checkout" || ev.Identifiers["k8s_namespace"] != "payments" ||
			ev.Alert.Key != `{}:{alertname="HighErrorRate"}` || ev.Alert.State != AlertFiring ||
			strings.Join(ev.Alert.Fingerprints, ",") != "aaa,bbb" || !strings.HasPrefix(ev.DeliveryID, "sha256:") {
			t.Fatalf("event = %+v, alert %+v", ev, ev.Alert)
		}
	}
	for _, h := range []http.Header{{"Authorization": {"Bearer t3"}}, {}, {"Authorization": {"Basic !!"}}} {
		if _, err := v.Verify(body, h, now); !errors.Is(err, ErrSignature) {
			t.Errorf("%v: %v", h, err)
		}
	}
	msg, meta := Describe(Alertmanager, "alertmanager.firing", body)
	want := "Alertmanager firing: 3 alerts (2 firing, 1 resolved): HighErrorRate ×2, PodRestarts — service=checkout namespace=payments severity=critical. 5xx above 5%"
	if msg != want || meta["group_key"] == nil {
		t.Fatalf("line = %q\nwant   %q", msg, want)
	}
	for _, bad := range []string{`{"version":"3","groupKey":"k","status":"firing"}`, `{"version":"4","status":"firing"}`,
		`{"version":"4","groupKey":"k","status":"odd"}`, `[]`, `nope`} {
		if _, err := ParseAlertmanager([]byte(bad), nil); !errors.Is(err, ErrPayload) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func TestSlackInteraction_FeedbackAndOthers(t *testing.T) {
	form := func(payload string) []byte { return []byte("payload=" + urlEscape(payload)) }
	fb := form(`{"type":"block_actions","trigger_id":"13345.98","user":{"id":"U1","username":"ana"},"channel":{"id":"C0A4967KRBM"},
		"actions":[{"action_id":"feedback_negative","value":"run-123","action_ts":"1.2"}]}`)
	ev, err := ParseSlackInteraction(fb)
	if err != nil || ev.Feedback == nil || ev.Feedback.Run != "run-123" || ev.Feedback.Value != FeedbackNegative ||
		ev.Feedback.UserName != "ana" || ev.DeliveryID != "interaction:13345.98" || ev.Identifiers["slack_channel_id"] != "C0A4967KRBM" {
		t.Fatalf("%+v %+v %v", ev, ev.Feedback, err)
	}
	other := form(`{"type":"block_actions","trigger_id":"9.9","user":{"id":"U1","username":"ana"},"container":{"channel_id":"C9"},
		"actions":[{"action_id":"rerun","value":"x"}]}`)
	ev, err = ParseSlackInteraction(other)
	if err != nil || ev.Feedback != nil || ev.EventType != "block_actions" || ev.Identifiers["slack_channel_id"] != "C9" {
		t.Fatalf("%+v %v", ev, err)
	}
	msg, meta := Describe(Slack, "block_actions", other)
	if msg != "Slack block_actions by ana: rerun=x" || meta["channel"] != "C9" || meta["app"] != DefaultApp {
		t.Fatalf("%q %v", msg, meta)
	}
	for _, bad := range []string{"", "payload=", "payload=%7B%7D", "a=b", "payload=notjson"} {
		if _, err := ParseSlackInteraction([]byte(bad)); !errors.Is(err, ErrPayload) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func urlEscape(s string) string {
	r := strings.NewReplacer("%", "%25", "&", "%26", "+", "%2B", "=", "%3D", " ", "+", "\n", "%0A", "\t", "%09")
	return r.Replace(s)
}

// TestConfigured_TheDocsExamplesParse: every sources file shown in
// docs/sources.md (and the chart's example) is one the parser accepts.
func TestConfigured_TheDocsExamplesParse(t *testing.T) {
	doc, err := os.ReadFile("../../docs/sources.md")
	if err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		if strings.Contains(k, "SVIX") {
			return "whsec_" + base64.StdEncoding.EncodeToString([]byte(k))
		}
		return "value-of-" + k
	}
	blocks := 0
	for _, part := range strings.Split(string(doc), "```yaml\n")[1:] {
		block := part[:strings.Index(part, "```")]
		if !strings.HasPrefix(block, "sources:") {
			continue
		}
		// The chart's values carry secrets and config beside the file's keys.
		if i := strings.Index(block, "\nsecrets:"); i > 0 {
			block = block[:i+1]
		}
		block = strings.Replace(block, "slackApps:", "slack_apps:", 1)
		blocks++
		if _, err := ParseSourcesFile([]byte(block), env); err != nil {
			t.Errorf("docs/sources.md example does not parse: %v\n%s", err, block)
		}
	}
	if blocks < 5 {
		t.Fatalf("%d examples found", blocks)
	}
}

// FuzzConfigured: a configured HMAC source (sha256, base64, prefix, a
// timestamp and an id in the signed string, pointers into the body) accepts
// every correctly signed body in its window, or refuses it as ErrPayload
// (not JSON, a pointer missing); refuses another secret; never panics on
// arbitrary headers; gives clean text within its columns.
func FuzzConfigured(f *testing.F) {
	f.Add([]byte(`{"id":"1","kind":"deploy","service":"checkout","incident":{"id":"I","state":"up"}}`), int64(0), "m-1")
	f.Add([]byte(`{"id":1e400,"kind":["x"],"service":{"a":null}}`), int64(299), "")
	f.Add([]byte("not json"), int64(-400), "\xff")
	src := parseOne(f, `sources:
  - name: fuzzed
    verify: {kind: hmac, header: X-Sig, algorithm: sha256, encoding: base64, prefix: "t=", signed: "{id}:{timestamp}:{body}", timestamp_header: X-Ts, id_header: X-Id, secret_env: S}
    delivery_id: {pointer: /id}
    event_type: {pointer: /kind}
    routing: {service: /service, team: /incident/owner}
    alert: {key: /incident/id, state: /incident/state, firing: [up], resolved: [down]}
    describe: "{event_type} {/service} {/incident/~1weird~0key}"
`, map[string]string{"S": "s1,s1-next"})
	v := src.Routes[0].Verifier
	sign := func(secret string, body []byte, ts, id string) http.Header {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(id + ":" + ts + ":"))
		m.Write(body)
		return http.Header{"X-Sig": {"t=" + base64.StdEncoding.EncodeToString(m.Sum(nil))}, "X-Ts": {ts}, "X-Id": {id}}
	}
	f.Fuzz(func(t *testing.T, body []byte, skew int64, id string) {
		if id == "" || !utf8.ValidString(id) || strings.ContainsAny(id, "\x00\r\n") || strings.TrimSpace(id) != id {
			id = "m"
		}
		ts := strconv.FormatInt(now.Unix()+skew%600, 10)
		ev, err := v.Verify(body, sign("s1-next", body, ts, id), now)
		inWindow := skew%600 <= 300 && skew%600 >= -300
		if err != nil && !errors.Is(err, ErrPayload) && !(errors.Is(err, ErrSignature) && !inWindow) {
			t.Fatalf("correctly signed body refused: %v", err)
		}
		if err == nil {
			checkClean(t, "delivery id", ev.DeliveryID, 255)
			checkClean(t, "event type", ev.EventType, 128)
			for k, val := range ev.Identifiers {
				checkClean(t, "identifier "+k, val, 256)
			}
			if msg, _ := src.Describe(ev.EventType, body, nil); msg == "" {
				t.Fatal("empty message")
			}
		}
		if _, err := v.Verify(body, sign("s2", body, ts, id), now); err == nil {
			t.Fatal("accepted a body signed with another secret")
		}
		_, _ = v.Verify(body, http.Header{"X-Sig": {string(body)}, "X-Ts": {string(body)}, "X-Id": {id}}, now)
	})
}

// A Slack app's bot token, which posts the answers to its mentions, is read
// from the variable bot_token_env names; an app without one has none.
func TestSourcesFile_SlackAppBotTokens(t *testing.T) {
	env := map[string]string{"S": "signing", "SREBOT_TOKEN": " xoxb-sre "}
	f, err := ParseSourcesFile([]byte(`slack_apps:
  - {slug: sre-bot, signing_secret_env: S, bot_token_env: SREBOT_TOKEN}
  - {slug: quiet, signing_secret_env: S}
`), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if a := f.SlackApps[0]; a.BotToken != "xoxb-sre" || a.BotTokenEnv != "SREBOT_TOKEN" {
		t.Fatalf("sre-bot = %+v", a)
	}
	if a := f.SlackApps[1]; a.BotToken != "" || a.BotTokenEnv != "" {
		t.Fatalf("quiet = %+v", a)
	}
}

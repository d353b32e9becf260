package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A changed file is taken; a broken one keeps the policy in force and says
// why (status, metrics) until the file is fixed; an unchanged one is not
// read again into a new policy.
func TestHolder_ReloadTakesAGoodFileAndKeepsThePreviousOnABrokenOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sources.yaml")
	write(t, path, "sources: []\n")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	reg := prometheus.NewRegistry()
	var applied int
	h, err := New(Options{Path: path, Registry: reg, Now: func() time.Time { return now }, Applied: func(*Policy) { applied++ }})
	if err != nil {
		t.Fatal(err)
	}
	first := h.Current()
	if first.Hash == "" || applied != 1 || h.Status().Error != "" {
		t.Fatalf("first load: %+v, applied %d, status %+v", first, applied, h.Status())
	}
	if err := h.Reload(); err != nil || h.Current() != first || applied != 1 {
		t.Fatalf("an unchanged file gave a new policy: %v", err)
	}

	write(t, path, "sources: []\nnot_a_section: 1\n")
	now = now.Add(time.Minute)
	err = h.Reload()
	if err == nil || !strings.Contains(err.Error(), "not_a_section") {
		t.Fatalf("a broken file was taken: %v", err)
	}
	st := h.Status()
	if h.Current() != first || st.Error == "" || st.ErrorAt == nil || !st.ErrorAt.Equal(now) || st.Hash != first.Hash {
		t.Fatalf("after a broken file: current changed %v, status %+v", h.Current() != first, st)
	}
	if v := testutil.ToFloat64(h.ok); v != 0 {
		t.Fatalf("orchestrator_sources_file_ok = %v while the file is refused", v)
	}
	if v := testutil.ToFloat64(h.reloads.WithLabelValues("error")); v != 1 {
		t.Fatalf("error reloads = %v", v)
	}

	write(t, path, "# comment\nsources: []\n")
	if err := h.Reload(); err != nil {
		t.Fatal(err)
	}
	st = h.Status()
	if h.Current() == first || st.Error != "" || applied != 2 || testutil.ToFloat64(h.ok) != 1 {
		t.Fatalf("a fixed file was not taken: status %+v, applied %d", st, applied)
	}
	if st.RestartNeeded {
		t.Fatal("no source changed, yet a restart is asked for")
	}
}

// The sources and Slack apps are the door's: a change to them is taken at
// the next start, and the status says so.
func TestHolder_AChangedSourceWaitsForARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sources.yaml")
	write(t, path, "slack_apps: []\n")
	h, err := New(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	write(t, path, "slack_apps: [{slug: b, signing_secret_env: B}]\n")
	if err := h.Reload(); err != nil {
		t.Fatal(err)
	}
	if !h.Status().RestartNeeded {
		t.Fatalf("status %+v does not ask for a restart", h.Status())
	}
}

// At start a broken file stops the appliance (one line naming the file),
// as a broken sources file always has; an absent file too.
func TestNew_ABrokenFileStopsStartUp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sources.yaml")
	write(t, path, ": not yaml :\n\t-")
	if _, err := New(Options{Path: path}); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("New on a broken file = %v", err)
	}
	if _, err := New(Options{Path: filepath.Join(dir, "missing.yaml")}); err == nil {
		t.Fatal("New on a missing file succeeded")
	}
	big := filepath.Join(dir, "big.yaml")
	write(t, big, "sources: []\n#"+strings.Repeat("x", MaxFileBytes))
	if _, err := New(Options{Path: big}); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("New on a file past the bound = %v", err)
	}
	h, err := New(Options{})
	if err != nil || h.Current() == nil || h.Reload() != nil {
		t.Fatalf("no file: %v", err)
	}
}

// Routing rules are part of the policy: reloaded when changed, and a bad
// rule (an invalid regex here) keeps the rules in force, the error naming
// the rule. Identifier types the file's sources declare, and those passed
// in, may be matched.
func TestHolder_RoutesReloadAndABadRuleKeepsThePrevious(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sources.yaml")
	write(t, path, `sources:
  - name: acme-deploys
    verify: {kind: token, header: X-Token, secret_env: T}
    routing: {deploy_app: /app}
routes:
  - name: payments
    match: ['label.namespace="payments"', 'deploy_app="x"', 'k8s_namespace!=""']
    route_to: {org_id: acme, team_node_id: payments}
`)
	h, err := New(Options{Path: path, Identifiers: []string{"k8s_namespace"}})
	if err != nil {
		t.Fatal(err)
	}
	if h.Current().Routes.Len() != 1 || !h.Current().Routes.Has("payments") {
		t.Fatalf("rules in force: %v", h.Current().Routes.List())
	}
	write(t, path, `routes:
  - name: payments
    match: ['label.namespace=~"pay(ments"']
    route_to: {org_id: acme, team_node_id: payments}
`)
	err = h.Reload()
	if err == nil || !strings.HasPrefix(err.Error(), `routes: rule "payments": match "label.namespace=~\"pay(ments\"": invalid regex`) {
		t.Fatalf("a bad rule: %v", err)
	}
	if !h.Current().Routes.Has("payments") || !strings.Contains(h.Status().Error, `rule "payments"`) {
		t.Fatalf("the previous rules must stay: %v / %+v", h.Current().Routes.List(), h.Status())
	}
	write(t, path, `routes:
  - name: catch-all
    route_to: {org_id: acme, team_node_id: sre}
`)
	if err := h.Reload(); err != nil || !h.Current().Routes.Has("catch-all") || h.Current().Routes.Has("payments") {
		t.Fatalf("the fixed file: %v", err)
	}
}

// The destinations section is read into the policy (server/answers parses
// it); a mistake in it refuses the file with the destination and field.
func TestParse_ReadsTheWebhookDestinations(t *testing.T) {
	getenv := func(k string) string {
		if k == "HOOK_SECRET" {
			return "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		}
		return ""
	}
	p, err := Parse([]byte("destinations:\n  - {name: ops-feed, url: \"https://hooks.acme.example/in\", secret_env: HOOK_SECRET}\n"), getenv)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Destinations) != 1 || p.Destinations[0].Name != "ops-feed" || p.Destinations[0].URL != "https://hooks.acme.example/in" {
		t.Fatalf("destinations %+v", p.Destinations)
	}
	_, err = Parse([]byte("destinations:\n  - {name: ops-feed, url: \"https://hooks.acme.example/in\", secret_env: NOPE}\n"), getenv)
	if err == nil || err.Error() != `destination "ops-feed": secret_env: NOPE is unset or empty` {
		t.Fatalf("a destination without its secret = %v", err)
	}
}

// A file whose time intervals do not read is refused whole, naming the
// entry, and the intervals in force stay (SPEC §21).
func TestHolder_ABrokenTimeIntervalKeepsThePreviousFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sources.yaml")
	good := "time_intervals:\n  - name: weekend\n    time_intervals:\n      - weekdays: [saturday, sunday]\n        location: Europe/Berlin\n"
	write(t, path, good)
	h, err := New(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	first := h.Current()
	if first.Intervals.Get("weekend") == nil {
		t.Fatalf("the interval was not read: %v", first.Intervals.Names())
	}
	for _, c := range []struct{ entry, want string }{
		{"weekdays: [funday]", `time_intervals: "weekend": time_intervals[0].weekdays: funday is not a valid weekday`},
		{"location: Europe/Atlantis", `time_intervals: "weekend": time_intervals[0].location: unknown time zone Europe/Atlantis`},
		{`times: [{start_time: "09:00", end_time: "25:00"}]`, `time_intervals: "weekend": time_intervals[0].times[0].end_time: "25:00" is not a time of day`},
		{"weekdays: [saturday]\nroutes:\n  - name: pages\n    match: ['source=\"pagerduty\"']\n    route_to: {org_id: acme, team_node_id: sre}\n    active_time_intervals: [weekend, business-hours]",
			`routes: rule "pages": active_time_intervals: "business-hours" is not a time interval (defined: weekend)`},
	} {
		write(t, path, "time_intervals:\n  - name: weekend\n    time_intervals:\n      - "+c.entry+"\n")
		err := h.Reload()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: got %v, want %q", c.entry, err, c.want)
		}
		if h.Current() != first || !strings.Contains(h.Status().Error, c.want) {
			t.Fatalf("%s: the previous file is not the one in force (status %+v)", c.entry, h.Status())
		}
	}
}

// A file whose inhibit rules do not read is refused whole, naming the
// entry, and the rules in force stay (SPEC §21).
func TestHolder_ABrokenInhibitRuleKeepsThePreviousFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sources.yaml")
	write(t, path, "inhibit_rules:\n  - source_matchers: [alertname=\"NodeDown\"]\n    target_matchers: [alertname=\"PodCrashLooping\"]\n    equal: [node]\n")
	h, err := New(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	first := h.Current()
	if first.Inhibits.Len() != 1 {
		t.Fatalf("the rule was not read: %d rules", first.Inhibits.Len())
	}
	for _, c := range []struct{ file, want string }{
		{"inhibit_rules:\n  - target_matchers: [alertname=\"PodCrashLooping\"]\n", "inhibit_rules[0]: source_matchers: required"},
		{"inhibit_rules:\n  - {source_matchers: [a=\"b\"], target_matchers: [a=\"c\"]}\n  - {source_matchers: [a=\"b\"], target_matchers: ['x=~\"[\"']}\n",
			`inhibit_rules[1]: target_matchers[0]: "x=~\"[\"": invalid regex`},
	} {
		write(t, path, c.file)
		err := h.Reload()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("got %v, want %q", err, c.want)
		}
		if h.Current() != first || !strings.Contains(h.Status().Error, c.want) {
			t.Fatalf("the previous file is not the one in force (status %+v)", h.Status())
		}
	}
}

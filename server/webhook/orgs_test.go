package webhook

import (
	"slices"
	"strings"
	"testing"
)

// TestSourcesFile_OrgsBindSourcesAndSlackApps: orgs: in the sources file
// binds a configured source and a Slack app; ORCHESTRATOR_SOURCE_ORGS (the
// Builtins option) binds built-in ones; a mistake is one line naming the
// source or app and the field.
func TestSourcesFile_OrgsBindSourcesAndSlackApps(t *testing.T) {
	getenv := func(string) string { return "s3cret" }
	file, err := ParseSourcesFile([]byte(`sources:
  - name: bound
    verify: {kind: token, secret_env: T}
    orgs: [acme, aaa]
  - name: open
    verify: {kind: token, secret_env: T}
slack_apps:
  - {slug: sre-bot, signing_secret_env: S, orgs: [acme]}
  - {slug: open-bot, signing_secret_env: S}
`), getenv)
	if err != nil {
		t.Fatal(err)
	}
	builtins, err := Builtins(BuiltinOptions{SlackApps: file.SlackApps, Orgs: map[string][]string{Slack: {"big"}, GitHub: {"acme"}}})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := NewRegistry(append(builtins, file.Sources...)...)
	if err != nil {
		t.Fatal(err)
	}
	app := func(slug string) map[string]string { return map[string]string{AppHeader: slug} }
	for _, c := range []struct {
		source  string
		headers map[string]string
		org     string
		allowed bool
	}{
		{"bound", nil, "acme", true}, {"bound", nil, "aaa", true}, {"bound", nil, "big", false},
		{"open", nil, "big", true},
		{Slack, nil, "big", true}, {Slack, nil, "acme", false},
		{Slack, app("sre-bot"), "acme", true}, {Slack, app("sre-bot"), "big", false},
		{Slack, app("open-bot"), "big", true},
		{Slack, map[string]string{TriggerHeader: "internal"}, "acme", true},
		{GitHub, nil, "acme", true}, {GitHub, nil, "big", false},
		{PagerDuty, nil, "big", true},
	} {
		if got := reg.Allows(c.source, c.headers, c.org); got != c.allowed {
			t.Errorf("%s %v to %s = %v", c.source, c.headers, c.org, got)
		}
	}
	if got := reg.Binding(Slack, app("sre-bot")); got != "Slack app sre-bot is bound to org acme" {
		t.Errorf("binding = %q", got)
	}
	if got := reg.Binding("bound", nil); got != "source bound is bound to orgs acme, aaa" {
		t.Errorf("binding = %q", got)
	}
	if !slices.Equal(reg.Get("bound").Orgs, []string{"acme", "aaa"}) {
		t.Errorf("orgs = %v", reg.Get("bound").Orgs)
	}

	for file, want := range map[string]string{
		"sources:\n  - {name: x, verify: {kind: token, secret_env: T}, orgs: []}\n":     `source "x": orgs: list at least one org id`,
		"sources:\n  - {name: x, verify: {kind: token, secret_env: T}, orgs: [a/b]}\n":  `source "x": orgs: "a/b" is not an org id`,
		"sources:\n  - {name: x, verify: {kind: token, secret_env: T}, orgs: [a, a]}\n": `source "x": orgs: "a" is listed twice`,
		"sources:\n  - {name: x, verify: {kind: token, secret_env: T}, orgs: acme}\n":   `source "x": orgs: must be a list`,
		"slack_apps:\n  - {slug: b, signing_secret_env: S, orgs: [\"..\"]}\n":           `slack app "b": orgs: ".." is not an org id`,
		"slack_apps:\n  - {slug: b, signing_secret_env: S, orgs: []}\n":                 `slack app "b": orgs: list at least one org id`,
	} {
		_, err := ParseSourcesFile([]byte(file), getenv)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want %q", file, err, want)
		}
	}
	if _, err := Builtins(BuiltinOptions{Orgs: map[string][]string{"jira": {"acme"}}}); err == nil {
		t.Error("a binding of no built-in source was accepted")
	}
}

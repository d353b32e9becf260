package answers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// stubNotifier stands for a destination type's notifier in resolution
// tests: resolution only asks Check.
type stubNotifier struct{ refuse func(Destination) error }

func (s stubNotifier) Post(context.Context, Destination, Answer) (Posted, error) {
	return Posted{}, nil
}
func (s stubNotifier) Find(context.Context, Destination, Answer) (Posted, bool, error) {
	return Posted{}, false, nil
}
func (s stubNotifier) Check(d Destination) error {
	if s.refuse != nil {
		return s.refuse(d)
	}
	return nil
}

// config reads a team config written as JSON, as the Config Service
// answers it.
func config(t *testing.T, js string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestResolve_DestinationsInTheReferenceOrder(t *testing.T) {
	all := map[string]Notifier{}
	for _, typ := range Types {
		all[typ] = stubNotifier{}
	}
	r := Resolver{Notifiers: all}
	mention := Trigger{Source: "slack", Meta: map[string]any{"channel": "C0A4967KRBM", "ts": "1733312345.000100", "app": "default"}}
	thread := Destination{Type: TypeSlack, ChannelID: "C0A4967KRBM", ThreadTS: "1733312345.000100", PostedBy: PostedByOrchestrator}
	alerts := Destination{Type: TypeSlack, ChannelID: "C0ALERTS", PostedBy: PostedByOrchestrator}
	const defaults = `"default_destinations":[{"type":"slack","channel_id":"C0ALERTS"}]`
	posted := func(ds ...Destination) Plan {
		p := Plan{Mode: ModeOrchestrator, Destinations: ds}
		for _, d := range ds {
			p.Deliveries = append(p.Deliveries, Planned{Destination: d, Post: true})
		}
		return p
	}
	cases := []struct {
		name string
		cfg  string
		t    Trigger
		want Plan
	}{
		{"a mention is answered in its thread", `{}`, mention, posted(thread)},
		{"a reply in a thread stays in that thread", `{}`,
			Trigger{Source: "slack", Meta: map[string]any{"channel": "C1", "ts": "2.000200", "thread_ts": "1.000100", "app": "sre-bot"}},
			posted(Destination{Type: TypeSlack, ChannelID: "C1", ThreadTS: "1.000100", App: "sre-bot", PostedBy: PostedByOrchestrator})},
		{"the trigger's own place wins over the defaults", `{"output_config":{` + defaults + `}}`, mention, posted(thread)},
		{"reply_in_thread on a Slack trigger", `{"output_config":{"trigger_overrides":{"slack":"reply_in_thread"},` + defaults + `}}`, mention, posted(thread)},
		{"use_default sends a mention's answer to the defaults", `{"output_config":{"trigger_overrides":{"slack":"use_default"},` + defaults + `}}`,
			mention, posted(alerts)},
		{"a list override replaces the trigger's place",
			`{"output_config":{"trigger_overrides":{"pagerduty":[{"type":"webhook","name":"ops-bus"},{"type":"slack","channel_id":"C0ALERTS"}]}}}`,
			Trigger{Source: "pagerduty", Meta: map[string]any{"incident_id": "Q2W3E4R5"}},
			posted(Destination{Type: TypeWebhook, Name: "ops-bus", PostedBy: PostedByOrchestrator}, alerts)},
		{"a PR comment is answered on the PR", `{}`,
			Trigger{Source: "github", Meta: map[string]any{"repo": "acme/payments", "pr_number": 42}},
			posted(Destination{Type: TypeGitHubPRComment, Repo: "acme/payments", PRNumber: 42, PostedBy: PostedByOrchestrator})},
		{"an issue event is answered on the issue", `{"output_config":{"trigger_overrides":{"github":"comment_on_pr"}}}`,
			Trigger{Source: "github", Meta: map[string]any{"repo": "acme/payments", "issue_number": float64(7)}},
			posted(Destination{Type: TypeGitHubIssueComment, Repo: "acme/payments", IssueNumber: 7, PostedBy: PostedByOrchestrator})},
		{"a push has no place of its own: the defaults", `{"output_config":{` + defaults + `}}`,
			Trigger{Source: "github", Meta: map[string]any{"repo": "acme/payments"}}, posted(alerts)},
		{"a PagerDuty incident gets a note", `{}`, Trigger{Source: "pagerduty", Meta: map[string]any{"incident_id": "Q2W3E4R5"}},
			posted(Destination{Type: TypePagerDutyNote, IncidentID: "Q2W3E4R5", PostedBy: PostedByOrchestrator})},
		{"an override that does not fit its trigger falls through to the trigger's place",
			`{"output_config":{"trigger_overrides":{"pagerduty":"reply_in_thread"}}}`,
			Trigger{Source: "pagerduty", Meta: map[string]any{"incident_id": "Q2W3E4R5"}},
			posted(Destination{Type: TypePagerDutyNote, IncidentID: "Q2W3E4R5", PostedBy: PostedByOrchestrator})},
		{"other sources: nowhere without defaults", `{}`, Trigger{Source: "coralogix"}, Plan{Mode: ModeOrchestrator}},
		{"other sources: the defaults", `{"output_config":{` + defaults + `}}`, Trigger{Source: "acme-deploys"}, posted(alerts)},
		{"the same destination twice is posted once",
			`{"output_config":{"default_destinations":[{"type":"slack","channel_id":"C0ALERTS"},{"type":"slack","channel_id":"C0ALERTS","posted_by":"agent"}]}}`,
			Trigger{Source: "coralogix"}, posted(alerts)},
		{"a digest carries its team's defaults once, never a note per incident", `{"output_config":{` + defaults + `}}`,
			Trigger{Digest: true, Sources: []string{"pagerduty", "pagerduty", "coralogix"}}, posted(alerts)},
		{"a digest carries the lists its sources' overrides name, once",
			`{"output_config":{"trigger_overrides":{"pagerduty":[{"type":"slack","channel_id":"C0PD"}],"coralogix":[{"type":"slack","channel_id":"C0PD"}]},` + defaults + `}}`,
			Trigger{Digest: true, Sources: []string{"pagerduty", "coralogix"}},
			posted(Destination{Type: TypeSlack, ChannelID: "C0PD", PostedBy: PostedByOrchestrator})},
		{"a digest's use_default adds the defaults",
			`{"output_config":{"trigger_overrides":{"pagerduty":[{"type":"slack","channel_id":"C0PD"}],"coralogix":"use_default"},` + defaults + `}}`,
			Trigger{Digest: true, Sources: []string{"pagerduty", "coralogix"}},
			posted(Destination{Type: TypeSlack, ChannelID: "C0PD", PostedBy: PostedByOrchestrator}, alerts)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := r.Resolve(config(t, c.cfg), c.t)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("Resolve =\n%+v\nwant\n%+v", got, c.want)
			}
		})
	}
}

// A mistake in team config spoils only its own destination, which is
// recorded failed with a reason naming the field; nothing is posted to a
// URL a team wrote.
func TestResolve_BadTeamConfigFailsThatDestinationWithAReason(t *testing.T) {
	all := map[string]Notifier{}
	for _, typ := range Types {
		all[typ] = stubNotifier{}
	}
	r := Resolver{Notifiers: all}
	good := Destination{Type: TypeSlack, ChannelID: "C0ALERTS", PostedBy: PostedByOrchestrator}
	cases := []struct {
		entry, failed string
		dest          Destination
	}{
		{`{"type":"teams","channel":"x"}`, `team config output_config.default_destinations[0]: unknown destination type "teams" (slack, github_issue_comment, github_pr_comment, pagerduty_note, webhook)`,
			Destination{Type: "teams"}},
		{`{"channel_id":"C1"}`, `team config output_config.default_destinations[0]: a destination needs a type (slack, github_issue_comment, github_pr_comment, pagerduty_note, webhook)`, Destination{}},
		{`{"type":"webhook","url":"http://169.254.169.254/latest"}`, `team config output_config.default_destinations[0]: a webhook destination names one the operator declared in the sources file (destinations:), never a URL`,
			Destination{Type: TypeWebhook}},
		{`{"type":"webhook","name":"https://evil.example/hook"}`, `team config output_config.default_destinations[0]: a webhook destination names one the operator declared in the sources file (destinations:), never a URL`,
			Destination{Type: TypeWebhook}},
		{`{"type":"webhook"}`, `team config output_config.default_destinations[0]: webhook needs name, a destination declared in the sources file ([a-z][a-z0-9-]{0,31})`,
			Destination{Type: TypeWebhook}},
		{`{"type":"slack"}`, `team config output_config.default_destinations[0]: slack needs channel_id, a Slack channel id such as C0A4967KRBM`, Destination{Type: TypeSlack}},
		{`{"type":"slack","channel_id":"C1","thread_ts":"../../x"}`, `team config output_config.default_destinations[0]: slack thread_ts must be a Slack message timestamp such as 1733312345.000100`,
			Destination{Type: TypeSlack, ChannelID: "C1", ThreadTS: "../../x"}},
		{`{"type":"github_pr_comment","repo":"acme/payments"}`, `team config output_config.default_destinations[0]: github_pr_comment needs pr_number, a positive whole number`,
			Destination{Type: TypeGitHubPRComment, Repo: "acme/payments"}},
		{`{"type":"github_issue_comment","repo":"acme/../../admin","issue_number":3}`, `team config output_config.default_destinations[0]: github_issue_comment needs repo as owner/name`,
			Destination{Type: TypeGitHubIssueComment, Repo: "acme/../../admin", IssueNumber: 3}},
		{`{"type":"pagerduty_note","incident_id":"P1/notes"}`, `team config output_config.default_destinations[0]: pagerduty_note needs incident_id, a PagerDuty incident id such as Q2W3E4R5T6Y7U8`,
			Destination{Type: TypePagerDutyNote, IncidentID: "P1/notes"}},
		{`"C0ALERTS"`, `team config output_config.default_destinations[0]: a destination must be a mapping with a type`, Destination{}},
	}
	for _, c := range cases {
		t.Run(c.entry, func(t *testing.T) {
			cfg := config(t, `{"output_config":{"default_destinations":[`+c.entry+`,{"type":"slack","channel_id":"C0ALERTS"}]}}`)
			got := r.Resolve(cfg, Trigger{Source: "coralogix"})
			want := Plan{Mode: ModeOrchestrator, Destinations: []Destination{good},
				Deliveries: []Planned{{Destination: c.dest, Failed: c.failed}, {Destination: good, Post: true}}}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Resolve =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
	// Whole sections of the wrong shape.
	for cfg, failed := range map[string]string{
		`{"output_config":{"default_destinations":"C0ALERTS"}}`:              "team config output_config.default_destinations: must be a list of destinations",
		`{"output_config":{"trigger_overrides":{"coralogix":"post_it"}}}`:    `team config output_config.trigger_overrides.coralogix: "post_it" is not reply_in_thread, comment_on_pr, use_default or a list of destinations`,
		`{"output_config":{"trigger_overrides":{"coralogix":{"type":"x"}}}}`: "team config output_config.trigger_overrides.coralogix: must be reply_in_thread, comment_on_pr, use_default or a list of destinations",
	} {
		got := r.Resolve(config(t, cfg), Trigger{Source: "coralogix"})
		want := Plan{Mode: ModeOrchestrator, Deliveries: []Planned{{Failed: failed}}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Resolve =\n%+v\nwant\n%+v", cfg, got, want)
		}
	}
}

// Who posts: the appliance posts what it holds a credential for and says
// so; what it cannot post goes to the agent unmarked and is recorded
// failed with the reason; with agent, destinations are only passed on.
// Never both.
func TestResolve_WhoPosts(t *testing.T) {
	noToken := stubNotifier{refuse: func(d Destination) error {
		if d.App == "other" {
			return errors.New("no Slack bot token for app other (its bot_token_env is unset)")
		}
		return nil
	}}
	r := Resolver{Notifiers: map[string]Notifier{TypeSlack: noToken}}
	cfg := `{"output_config":{%s"default_destinations":[{"type":"slack","channel_id":"C1"},{"type":"slack","channel_id":"C2","app":"other"},{"type":"pagerduty_note","incident_id":"Q1"},{"type":"x"}]}}`
	c1 := Destination{Type: TypeSlack, ChannelID: "C1"}
	c2 := Destination{Type: TypeSlack, ChannelID: "C2", App: "other"}
	pd := Destination{Type: TypePagerDutyNote, IncidentID: "Q1"}
	bad := Planned{Destination: Destination{Type: "x"}, Failed: `team config output_config.default_destinations[3]: unknown destination type "x" (slack, github_issue_comment, github_pr_comment, pagerduty_note, webhook)`}

	c1Posted := c1
	c1Posted.PostedBy = PostedByOrchestrator
	orchestrator := Plan{Mode: ModeOrchestrator, Destinations: []Destination{c1Posted, c2, pd}, Deliveries: []Planned{
		{Destination: c1Posted, Post: true},
		{Destination: c2, Failed: "not posted by the orchestrator: no Slack bot token for app other (its bot_token_env is unset); passed to the agent without posted_by"},
		{Destination: pd, Failed: "not posted by the orchestrator: this appliance posts no pagerduty_note destinations; passed to the agent without posted_by"},
		bad,
	}}
	agent := Plan{Mode: ModeAgent, Destinations: []Destination{c1, c2, pd}, Deliveries: []Planned{bad}}
	for _, c := range []struct {
		env, team string
		want      Plan
	}{
		{"", "", orchestrator},
		{ModeOrchestrator, "", orchestrator},
		{ModeAgent, "", agent},
		{ModeAgent, `"posted_by":"orchestrator",`, orchestrator},
		{ModeOrchestrator, `"posted_by":"agent",`, agent},
	} {
		r.Mode = c.env
		got := r.Resolve(config(t, fmt.Sprintf(cfg, c.team)), Trigger{Source: "coralogix"})
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("env %q team %q: Resolve =\n%+v\nwant\n%+v", c.env, c.team, got, c.want)
		}
		for _, d := range got.Destinations {
			if d.PostedBy == PostedByOrchestrator && got.Mode != ModeOrchestrator {
				t.Errorf("marked posted_by orchestrator in agent mode: %+v", d)
			}
		}
	}
	r.Mode = ModeAgent
	got := r.Resolve(config(t, `{"output_config":{"posted_by":"robot"}}`), Trigger{Source: "coralogix"})
	if got.Mode != ModeAgent || len(got.Warnings) != 1 || got.Warnings[0] != `output_config.posted_by "robot" is not orchestrator or agent; using agent` {
		t.Fatalf("an unknown posted_by: %+v", got)
	}
}

// A team config with more destinations than MaxDestinations posts the
// first ones and says so.
func TestResolve_TooManyDestinationsAreCut(t *testing.T) {
	var entries []string
	for i := range 50 {
		entries = append(entries, fmt.Sprintf(`{"type":"slack","channel_id":"C%d"}`, i))
	}
	r := Resolver{Notifiers: map[string]Notifier{TypeSlack: stubNotifier{}}}
	got := r.Resolve(config(t, `{"output_config":{"default_destinations":[`+strings.Join(entries, ",")+`]}}`), Trigger{Source: "coralogix"})
	if len(got.Destinations) != MaxDestinations || len(got.Deliveries) != MaxDestinations ||
		!reflect.DeepEqual(got.Warnings, []string{"50 output destinations; only the first 20 are used"}) {
		t.Fatalf("%d destinations, %d deliveries, warnings %v", len(got.Destinations), len(got.Deliveries), got.Warnings)
	}
}

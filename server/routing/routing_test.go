package routing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var known = []string{"service", "slack_channel_id", "github_repo", "k8s_namespace"}

func parseYAML(t testing.TB, y string) (*Rules, error) {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return Parse(json.RawMessage(js), known)
}

func mustRules(t testing.TB, y string) *Rules {
	t.Helper()
	rs, err := parseYAML(t, y)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// configService answers lookups from a table: the routing logic's own
// test; the dispatcher's tests use the shared peer fake.
type configService struct {
	routes  map[string]Found // DescribeIdentifiers → answer
	teams   map[string]bool  // org/team
	lookups []string
	fail    error
}

func (c *configService) Lookup(_ context.Context, ids map[string]string) (Found, error) {
	key := DescribeIdentifiers(ids)
	c.lookups = append(c.lookups, key)
	if c.fail != nil {
		return Found{}, c.fail
	}
	return c.routes[key], nil
}

func (c *configService) TeamExists(_ context.Context, org, team string) (bool, error) {
	return c.teams[org+"/"+team], c.fail
}

func amInput(labels map[string]string, ids map[string]string) Input {
	return Input{Source: "alertmanager", EventType: "alertmanager.firing", Identifiers: ids,
		Load: func() (map[string]string, map[string]any) {
			return labels, map[string]any{"receiver": "orchestrator", "groupKey": "{}:{alertname=\"X\"}"}
		}}
}

const k8sRules = `
- name: drop-info
  when: always
  match: ['label.severity="info"']
  ignore: true
- name: k8s-namespace
  match: ['label.namespace="payments"']
  route_to: {org_id: acme, team_node_id: payments}
- name: by-app
  match: ['label.app=~".+"']
  identifiers: {service: "{label.app}"}
- name: eu-critical
  match: ['label.cluster=~"eu-.*"', 'label.severity!="warning"']
  route_to: {org_id: acme, team_node_id: eu-oncall}
- name: catch-all
  route_to: {org_id: acme, team_node_id: sre}
`

func cs() *configService {
	return &configService{
		routes: map[string]Found{
			"service=checkout": {Found: true, OrgID: "acme", TeamNodeID: "shop", MatchedBy: "service"},
			"service=billing":  {Found: true, OrgID: "acme", TeamNodeID: "billing", MatchedBy: "service"},
		},
		teams: map[string]bool{"acme/payments": true, "acme/eu-oncall": true, "acme/sre": true},
	}
}

func TestRulesRouteWhatIdentifiersCannot(t *testing.T) {
	rs := mustRules(t, k8sRules)
	for _, tc := range []struct {
		name         string
		labels, ids  map[string]string
		status, team string
		matchedBy    string
		sentence     string
	}{
		{"identifiers first", map[string]string{"namespace": "payments"}, map[string]string{"service": "checkout"},
			Routed, "shop", "service", "routed to acme/shop by its identifiers (service=checkout matched by service)"},
		{"namespace rule when the lookup finds none", map[string]string{"namespace": "payments"}, map[string]string{"service": "nope"},
			Routed, "payments", "rule:k8s-namespace", `routed to acme/payments by rule k8s-namespace: label.namespace="payments"`},
		{"no identifiers at all", map[string]string{"namespace": "payments"}, nil,
			Routed, "payments", "rule:k8s-namespace", `routed to acme/payments by rule k8s-namespace: label.namespace="payments"`},
		{"templated identifiers looked up again", map[string]string{"app": "billing"}, nil,
			Routed, "billing", "rule:by-app", `routed to acme/billing by rule by-app looking up service=billing: label.app=~".+"`},
		{"a lookup of a template that finds nothing falls through", map[string]string{"app": "ghost", "cluster": "eu-1", "severity": "critical"}, nil,
			Routed, "eu-oncall", "rule:eu-critical", `routed to acme/eu-oncall by rule eu-critical: label.cluster=~"eu-.*", label.severity!="warning"`},
		{"regexes are anchored", map[string]string{"cluster": "us-eu-1", "severity": "critical"}, nil,
			Routed, "sre", "rule:catch-all", "routed to acme/sre by rule catch-all (the fallback)"},
		{"a missing label reads empty: != holds", map[string]string{"cluster": "eu-2"}, nil,
			Routed, "eu-oncall", "rule:eu-critical", `routed to acme/eu-oncall by rule eu-critical: label.cluster=~"eu-.*", label.severity!="warning"`},
		{"always rules come before the identifiers", map[string]string{"severity": "info"}, map[string]string{"service": "checkout"},
			Ignored, "", "rule:drop-info", `ignored by rule drop-info: label.severity="info"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cs()
			res, err := Route(context.Background(), rs, amInput(tc.labels, tc.ids), c)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tc.status || res.TeamNodeID != tc.team || res.MatchedBy != tc.matchedBy {
				t.Fatalf("got %s %s/%s by %s, want %s %s by %s", res.Status, res.OrgID, res.TeamNodeID, res.MatchedBy, tc.status, tc.team, tc.matchedBy)
			}
			if got := res.Decision.Sentence(); got != tc.sentence {
				t.Fatalf("sentence %q, want %q", got, tc.sentence)
			}
		})
	}
}

func TestAlwaysRuleSkipsTheLookup(t *testing.T) {
	c := cs()
	res, err := Route(context.Background(), mustRules(t, k8sRules), amInput(map[string]string{"severity": "info"}, map[string]string{"service": "checkout"}), c)
	if err != nil || res.Status != Ignored {
		t.Fatal(res, err)
	}
	if len(c.lookups) != 0 {
		t.Fatalf("an ignored event was looked up: %v", c.lookups)
	}
	if res.Reason != "ignored by routing rule drop-info" {
		t.Fatalf("reason %q", res.Reason)
	}
}

func TestUnroutedSaysWhyNamingTheRule(t *testing.T) {
	rs := mustRules(t, `
- name: to-ghost
  match: ['source="alertmanager"']
  route_to: {org_id: acme, team_node_id: ghost}
- name: by-app
  match: ['source="alertmanager"']
  identifiers: {service: "{label.app}"}
`)
	res, err := Route(context.Background(), rs, amInput(map[string]string{"namespace": "x"}, map[string]string{"service": "nope"}), cs())
	if err != nil {
		t.Fatal(err)
	}
	want := "no team's routing matches service=nope, and no routing rule took it: rule to-ghost routes to acme/ghost, which does not exist; rule by-app: identifiers.service: label.app is missing"
	if res.Status != Unrouted || res.Reason != want {
		t.Fatalf("got %s %q\nwant %q", res.Status, res.Reason, want)
	}
	if got := res.Decision.Sentence(); got != "unrouted: "+want {
		t.Fatalf("sentence %q", got)
	}
	if len(res.Decision.Steps) != 4 { // lookup, two rules not taken, unrouted
		t.Fatalf("steps %+v", res.Decision.Steps)
	}
}

func TestContinueLetsALaterRuleTakeOver(t *testing.T) {
	rs := mustRules(t, `
- name: payments
  match: ['label.namespace="payments"']
  route_to: {org_id: acme, team_node_id: payments}
  continue: true
- name: critical-eu
  match: ['label.severity="critical"', 'label.cluster="eu-1"']
  route_to: {org_id: acme, team_node_id: eu-oncall}
- name: never
  match: ['label.namespace="payments"']
  route_to: {org_id: acme, team_node_id: sre}
`)
	res, _ := Route(context.Background(), rs, amInput(map[string]string{"namespace": "payments", "severity": "critical", "cluster": "eu-1"}, nil), cs())
	if res.TeamNodeID != "eu-oncall" || res.Rule != "critical-eu" {
		t.Fatalf("got %+v", res)
	}
	res, _ = Route(context.Background(), rs, amInput(map[string]string{"namespace": "payments", "severity": "warning"}, nil), cs())
	if res.TeamNodeID != "sre" || res.Rule != "never" {
		t.Fatalf("continue: a later matching rule takes over; got %+v", res)
	}
	rs = mustRules(t, `
- name: payments
  match: ['label.namespace="payments"']
  route_to: {org_id: acme, team_node_id: payments}
  continue: true
`)
	res, _ = Route(context.Background(), rs, amInput(map[string]string{"namespace": "payments"}, nil), cs())
	if res.TeamNodeID != "payments" {
		t.Fatalf("continue with nothing after: the rule stands; got %+v", res)
	}
}

func TestFieldsAndIdentifiersAreMatched(t *testing.T) {
	rs := mustRules(t, `
- name: prod-deploys
  match: ['event_type="deploy"', 'field./env="prod"', 'field./meta/tags/0=~"team-.*"', 'github_repo!~"acme/sandbox.*"']
  route_to: {org_id: acme, team_node_id: sre}
`)
	in := func(env, repo string) Input {
		return Input{Source: "acme-deploys", EventType: "deploy", Identifiers: map[string]string{"github_repo": repo},
			Load: func() (map[string]string, map[string]any) {
				return nil, map[string]any{"env": env, "meta": map[string]any{"tags": []any{"team-a"}}}
			}}
	}
	if res, _ := Route(context.Background(), rs, in("prod", "acme/api"), cs()); res.TeamNodeID != "sre" {
		t.Fatalf("got %+v", res)
	}
	for _, x := range [][2]string{{"staging", "acme/api"}, {"prod", "acme/sandbox-1"}} {
		if res, _ := Route(context.Background(), rs, in(x[0], x[1]), cs()); res.Status != Unrouted {
			t.Fatalf("%v: got %+v", x, res)
		}
	}
}

func TestTheBodyIsReadOnlyWhenARuleNeedsIt(t *testing.T) {
	loads := 0
	in := Input{Source: "github", Identifiers: map[string]string{"github_repo": "acme/api"},
		Load: func() (map[string]string, map[string]any) { loads++; return nil, nil }}
	c := cs()
	c.routes["github_repo=acme/api"] = Found{Found: true, OrgID: "acme", TeamNodeID: "shop", MatchedBy: "github_repo"}
	rs := mustRules(t, k8sRules[strings.Index(k8sRules, "- name: k8s-namespace"):]) // no when: always rule
	if _, err := Route(context.Background(), rs, in, c); err != nil || loads != 0 {
		t.Fatalf("routed by identifiers: body loaded %d times (%v)", loads, err)
	}
	in.Identifiers = nil
	if _, err := Route(context.Background(), rs, in, c); err != nil || loads != 1 {
		t.Fatalf("rules read labels: body loaded %d times, want once (%v)", loads, err)
	}
}

func TestALookupThatFailsIsAnError(t *testing.T) {
	c := cs()
	c.fail = errors.New("config service: 503")
	if _, err := Route(context.Background(), mustRules(t, k8sRules), amInput(nil, map[string]string{"service": "x"}), c); err == nil {
		t.Fatal("a failed lookup must be retried, not end unrouted")
	}
}

func TestBadRulesAreRefusedNamingTheRule(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{`[{name: a, match: ['label.x=~"(["'], route_to: {org_id: o, team_node_id: t}}]`, `routes: rule "a": match "label.x=~\"([\"": invalid regex "([": error parsing regexp: missing closing ]: ` + "`[)$`"},
		{`[{name: a, match: ['namespace="payments"'], ignore: true}]`, `routes: rule "a": match "namespace=\"payments\"": unknown field namespace (a rule reads source, event_type, label.<name>, field./json/pointer or a routing identifier: service, slack_channel_id, github_repo, k8s_namespace); an alert's label is label.namespace`},
		{`[{name: a, match: ['field.env="x"'], ignore: true}]`, `routes: rule "a": match "field.env=\"x\"": field.env: "env" is not a JSON pointer (like /incident/id)`},
		{`[{name: a, match: ['label.x'], ignore: true}]`, `routes: rule "a": match "label.x": no operator: a matcher is name="value" (or !=, =~, !~)`},
		{`[{name: a, match: ['source="x"']}]`, `routes: rule "a": a rule takes exactly one action: route_to, identifiers or ignore: true (it has 0)`},
		{`[{name: a, match: ['source="x"'], ignore: true, route_to: {org_id: o, team_node_id: t}}]`, `routes: rule "a": a rule takes exactly one action: route_to, identifiers or ignore: true (it has 2)`},
		{`[{name: a, ignore: true}, {name: b, match: ['source="x"'], ignore: true}]`, `routes: rule "a": match: missing; only the last rule may go without (the fallback), or it would take every event before the rules after it`},
		{`[{name: a, when: always, route_to: {org_id: o, team_node_id: t}}]`, `routes: rule "a": when: always on the fallback (a rule without match) would take every event before the identifier lookup; the fallback is read when nothing else routed the event`},
		{`[{name: a, match: ['source="x"'], route_to: {org_id: o, team_node_id: t}, active_time_intervals: [` + strings.Repeat("a", 40) + `, ` + strings.Repeat("b", 40) + `]}]`, `routes: rule "a": active_time_intervals: the names are 81 characters together (with commas), at most 64: each held event keeps them`},
		{`[{name: a, match: ['source="x"'], ignore: true, active_time_intervals: [hours]}]`, `routes: rule "a": active_time_intervals: only a rule that routes (route_to) holds the events it routes outside its time intervals`},
		{`[{name: a, match: ['source="x"'], route_to: {org_id: o, team_node_id: t}, active_time_intervals: hours}]`, `routes: rule "a": active_time_intervals: must be a list`},
		{`[{name: a, when: sometimes, match: ['source="x"'], ignore: true}]`, `routes: rule "a": when: "sometimes", must be unrouted or always`},
		{`[{name: a, match: ['source="x"'], identifiers: {service: "{labels.app}"}}]`, `routes: rule "a": identifiers.service: "{labels.app}": unknown field labels.app (a rule reads source, event_type, label.<name>, field./json/pointer or a routing identifier: service, slack_channel_id, github_repo, k8s_namespace)`},
		{`[{name: a, match: ['source="x"'], route_to: {org_id: "", team_node_id: t}}]`, `routes: rule "a": route_to.org_id: "" is not an org id`},
		{`[{name: a, match: ['source="x"'], ignore: true}, {name: a, match: ['source="y"'], ignore: true}]`, `routes: rule "a": name: listed twice`},
		{`[{name: a, match: ['source="x"'], ignore: true, contnue: true}]`, `routes: rule "a": contnue: unknown field (a rule has name, match, when, route_to, identifiers, ignore, continue, active_time_intervals)`},
		{`[{match: ['source="x"'], ignore: true}]`, `routes: rule #1: name: must match [a-zA-Z0-9][a-zA-Z0-9_.:-]{0,63}`},
		{`{name: a}`, `routes: must be a list of rules`},
	} {
		_, err := parseYAML(t, tc.yaml)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got %v\nwant %s", tc.yaml, err, tc.want)
		}
	}
}

func TestMatcherSyntax(t *testing.T) {
	for _, tc := range []struct {
		text, value string
		want        bool
		str         string
	}{
		{`label.namespace="payments"`, "payments", true, `label.namespace="payments"`},
		{`label.namespace = payments`, "payments", true, `label.namespace="payments"`},
		{`label.namespace!="payments"`, "", true, `label.namespace!="payments"`},
		{`label.severity=~"critical|page"`, "page", true, `label.severity=~"critical|page"`},
		{`label.severity=~"critical|page"`, "paged", false, `label.severity=~"critical|page"`},
		{`label.severity!~"info|debug"`, "critical", true, `label.severity!~"info|debug"`},
		{`"label.x"="a\"b"`, `a"b`, true, `label.x="a\"b"`},
		{`label.x=""`, "", true, `label.x=""`},
	} {
		m, err := ParseMatcher(tc.text, known)
		if err != nil {
			t.Fatalf("%s: %v", tc.text, err)
		}
		if m.m.Matches(tc.value) != tc.want || m.String() != tc.str {
			t.Errorf("%s on %q: %v %s", tc.text, tc.value, m.m.Matches(tc.value), m.String())
		}
	}
}

func TestDecisionIsBounded(t *testing.T) {
	var d Decision
	d.Add(Step{Kind: KindLookup, Identifiers: map[string]string{"service": strings.Repeat("s", 5000)}})
	for i := range 100 {
		d.Add(Step{Kind: KindRule, Rule: fmt.Sprintf("r%d", i), Matchers: []string{strings.Repeat("m", 300)}, Detail: "not taken"})
	}
	d.Add(Step{Kind: KindUnrouted, Reason: "nothing took it"})
	b := d.Encode()
	if len(b) > MaxDecisionBytes {
		t.Fatalf("%d bytes", len(b))
	}
	got := DecodeDecision(b)
	first, last := got.Steps[0], got.Steps[len(got.Steps)-1]
	if first.Kind != KindLookup || len(first.Identifiers["service"]) > maxText+3 || last.Kind != KindUnrouted {
		t.Fatalf("first %+v last %+v", first.Kind, last)
	}
	cut := false
	for _, s := range got.Steps {
		cut = cut || s.Kind == "cut" && strings.Contains(s.Detail, "steps left out")
	}
	if !cut {
		t.Fatal("no step says what was cut")
	}
	if DecodeDecision(nil).Sentence() != "" || (Decision{}).Encode() != nil {
		t.Fatal("empty decision")
	}
}

// BenchmarkThousandRules: 1,000 namespace rules, the event matching the
// last (the worst case: every rule read); the figure to compare is ns/op
// (the target: ≤ 20 µs per event).
func BenchmarkThousandRules(b *testing.B) {
	var y strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&y, "- name: ns-%d\n  match: ['label.namespace=\"ns-%d\"', 'label.severity=~\"critical|warning\"']\n  route_to: {org_id: acme, team_node_id: t%d}\n", i, i, i)
	}
	rs := mustRules(b, y.String())
	c := &configService{teams: map[string]bool{"acme/t999": true}}
	labels := map[string]string{"namespace": "ns-999", "severity": "critical", "cluster": "eu-1"}
	in := Input{Source: "alertmanager", EventType: "alertmanager.firing",
		Load: func() (map[string]string, map[string]any) { return labels, nil }}
	b.ReportAllocs()
	for b.Loop() {
		res, _ := Route(context.Background(), rs, in, c)
		if res.TeamNodeID != "t999" {
			b.Fatal(res)
		}
	}
}

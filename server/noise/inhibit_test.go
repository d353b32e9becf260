package noise

import (
	"encoding/json"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func inhibitSection(t *testing.T, y string) json.RawMessage {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestParseInhibitRules_ReadsAlertmanagersShape(t *testing.T) {
	rs, err := ParseInhibitRules(inhibitSection(t, `
- source_matchers: [alertname="NodeDown"]
  target_matchers: ['alertname=~"Pod.*"', 'label.severity!=critical']
  equal: [node, label.cluster]
`))
	if err != nil {
		t.Fatal(err)
	}
	if rs.Len() != 1 {
		t.Fatalf("%d rules", rs.Len())
	}
	r := rs.List()[0]
	if r.Name() != "inhibit_rules[0]" || len(r.Source) != 1 || len(r.Target) != 2 || strings.Join(r.Equal, ",") != "node,cluster" {
		t.Fatalf("rule %+v", r)
	}
	pod := map[string]string{"alertname": "PodCrashLooping", "severity": "warning"}
	if !r.Target[0].MatchesLabels(pod) || !r.Target[1].MatchesLabels(pod) {
		t.Fatal("the target matchers do not match a pod alert")
	}
	if r.Target[1].MatchesLabels(map[string]string{"severity": "critical"}) {
		t.Fatal("severity!=critical matched a critical alert")
	}
	if r.Source[0].Label() != "alertname" || !r.Source[0].MatchesLabels(map[string]string{"alertname": "NodeDown"}) {
		t.Fatal("the source matcher does not read alertname")
	}
}

func TestParseInhibitRules_BadInputNamesTheEntry(t *testing.T) {
	ok := `- {source_matchers: [alertname="NodeDown"], target_matchers: [alertname="PodDown"], equal: [node]}` + "\n"
	for _, c := range []struct{ entry, want string }{
		{`- {target_matchers: [a="b"]}`, `inhibit_rules[1]: source_matchers: required`},
		{`- {source_matchers: [a="b"]}`, `inhibit_rules[1]: target_matchers: required`},
		{`- {source_matchers: [a="b"], target_matchers: []}`, `inhibit_rules[1]: target_matchers: required`},
		{`- {source_matchers: [a="b"], target_matchers: ['c=~"("']}`, `inhibit_rules[1]: target_matchers[0]: "c=~\"(\"": invalid regex`},
		{`- {source_matchers: ['alertname'], target_matchers: [a="b"]}`, `inhibit_rules[1]: source_matchers[0]: "alertname": no operator`},
		{`- {source_matchers: ['foo.bar="x"'], target_matchers: [a="b"]}`, `inhibit_rules[1]: source_matchers[0]: "foo.bar=\"x\"": foo.bar: a label name must match`},
		{`- {source_matchers: [a="b"], target_matchers: [a="c"], equal: ["no-de"]}`, `inhibit_rules[1]: equal[0]: "no-de" is not a label name`},
		{`- {source_match: {a: b}, target_matchers: [a="c"]}`, `inhibit_rules[1]: source_match: unknown field`},
	} {
		_, err := ParseInhibitRules(inhibitSection(t, ok+c.entry))
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q…", c.entry, err, c.want)
		}
	}
	if _, err := ParseInhibitRules(inhibitSection(t, `{a: b}`)); err == nil || !strings.HasPrefix(err.Error(), "inhibit_rules: must be a list") {
		t.Errorf("a mapping: %v", err)
	}
}

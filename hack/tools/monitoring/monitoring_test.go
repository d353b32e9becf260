// Package monitoring checks the chart's Grafana dashboard and PrometheusRule
// against the real thing: every query and rule expression parses with
// Prometheus' own PromQL parser, and every metric, label and label value it
// names is one a running orchestrator really exports (scraped from the
// binary in dev mode after one sample event of every source).
package monitoring

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/hack/tools/internal/devserve"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// root is the repository, from this package's directory.
const root = "../../.."

// targetLabels are added by Prometheus when it scrapes, not by the binary.
var targetLabels = []string{"job", "namespace", "instance", "pod", "service", "container", "endpoint"}

// closedLabels have every value the binary can export from its start (the
// binary initializes their series at 0), so a value a query names that the
// scrape lacks is a typo.
var closedLabels = []string{"source", "outcome", "trigger", "kind", "status"}

// query is one PromQL expression of the chart and where it comes from.
type query struct{ where, expr string }

func TestMonitoring_QueriesParseAndNameExportedMetrics(t *testing.T) {
	queries, alerts, rules := chartQueries(t)
	// The rule groups as Prometheus loads them (what `promtool check
	// rules` does): names, durations, labels, and the annotations' templates.
	if _, errs := rulefmt.Parse(rules, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler)); len(errs) > 0 {
		for _, err := range errs {
			t.Errorf("PrometheusRule groups: %v", err)
		}
	}
	exported := scrape(t)

	p := parser.NewParser(parser.Options{})
	used := map[string]bool{}
	for _, q := range queries {
		expr, err := p.ParseExpr(q.expr)
		if err != nil {
			t.Errorf("%s: does not parse: %v\n%s", q.where, err, q.expr)
			continue
		}
		for _, problem := range check(expr, exported, used) {
			t.Errorf("%s: %s\n%s", q.where, problem, q.expr)
		}
	}
	// Every family of the product's own metrics is on the dashboard.
	missing := map[string]bool{}
	for _, s := range exported {
		if strings.HasPrefix(s.family, "orchestrator_") && !used[s.family] {
			missing[s.family] = true
		}
	}
	for _, f := range slices.Sorted(maps.Keys(missing)) {
		t.Errorf("the dashboard and rules never show %s", f)
	}
	t.Logf("%d queries parsed and checked against %d exported metric names; alerts: %s", len(queries), len(exported), strings.Join(alerts, ", "))
}

// check returns what is wrong with a parsed expression: metrics the binary
// does not export, labels those metrics lack, closed-label values never seen.
func check(expr parser.Expr, exported map[string]series, used map[string]bool) []string {
	var problems []string
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			s, ok := exported[n.Name]
			if !ok {
				problems = append(problems, fmt.Sprintf("metric %s is not exported by the binary", n.Name))
				return nil
			}
			used[s.family] = true
			for _, m := range n.LabelMatchers {
				if m.Name == model.MetricNameLabel || slices.Contains(targetLabels, m.Name) {
					continue
				}
				values, ok := s.labels[m.Name]
				if !ok {
					problems = append(problems, fmt.Sprintf("%s has no label %q", n.Name, m.Name))
					continue
				}
				if slices.Contains(closedLabels, m.Name) && !slices.ContainsFunc(values, m.Matches) {
					problems = append(problems, fmt.Sprintf("%s{%s} matches no value the binary exports (%v)", n.Name, m, values))
				}
			}
		case *parser.AggregateExpr:
			have := map[string]bool{}
			parser.Inspect(n.Expr, func(inner parser.Node, _ []parser.Node) error {
				if vs, ok := inner.(*parser.VectorSelector); ok {
					for l := range exported[vs.Name].labels {
						have[l] = true
					}
				}
				return nil
			})
			for _, l := range n.Grouping {
				if !have[l] && !slices.Contains(targetLabels, l) {
					problems = append(problems, fmt.Sprintf("%s by (%s): no metric under it has that label", n.Op, l))
				}
			}
		}
		return nil
	})
	return problems
}

// grafanaVars stand for the dashboard's variables, as Grafana would fill them.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__range", "6h", "$job", ".*")

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)

// chartQueries renders the chart with both monitoring objects on and returns
// every PromQL expression in them, the alert names, and the rule groups as
// a Prometheus rule file.
func chartQueries(t *testing.T) ([]query, []string, []byte) {
	t.Helper()
	helm := os.Getenv("HELM")
	if helm == "" {
		cache, _ := os.UserCacheDir()
		helm = filepath.Join(cache, "orchestrator-edge", "helm-v3.22.0")
	}
	out, err := exec.Command(helm, "template", "orch", filepath.Join(root, "charts/orchestrator"), "--namespace", "sre",
		"--set", "grafanaDashboard.enabled=true", "--set", "prometheusRule.enabled=true").CombinedOutput()
	if err != nil {
		t.Fatalf("helm template (make helm builds helm): %v\n%s", err, out)
	}
	var queries []query
	var alerts []string
	var rules []byte
	for _, doc := range strings.Split(string(out), "\n---") {
		var obj struct {
			Kind string
			Data map[string]string
			Spec struct {
				Groups []struct {
					Name  string
					Rules []struct{ Alert, Expr string }
				}
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		switch obj.Kind {
		case "ConfigMap":
			var dash struct {
				Panels []struct {
					Title   string
					Targets []struct{ Expr string }
				}
				Templating struct {
					List []struct {
						Name       string
						Definition string
					}
				}
			}
			if err := json.Unmarshal([]byte(obj.Data["orchestrator-edge.json"]), &dash); err != nil {
				t.Fatal(err)
			}
			for _, p := range dash.Panels {
				for i, tg := range p.Targets {
					queries = append(queries, query{fmt.Sprintf("dashboard panel %q query %d", p.Title, i+1), grafanaVars.Replace(tg.Expr)})
				}
			}
			for _, v := range dash.Templating.List {
				if m := labelValues.FindStringSubmatch(v.Definition); m != nil {
					queries = append(queries, query{"dashboard variable " + v.Name, m[1]})
				}
			}
		case "PrometheusRule":
			var raw struct {
				Spec struct {
					Groups []any `json:"groups"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal([]byte(doc), &raw); err != nil {
				t.Fatal(err)
			}
			if rules, err = yaml.Marshal(map[string]any{"groups": raw.Spec.Groups}); err != nil {
				t.Fatal(err)
			}
			for _, g := range obj.Spec.Groups {
				for _, r := range g.Rules {
					queries = append(queries, query{"rule " + r.Alert, r.Expr})
					alerts = append(alerts, r.Alert)
				}
			}
		}
	}
	if len(alerts) == 0 || len(queries) == len(alerts) {
		t.Fatalf("the chart rendered %d rules and %d dashboard queries", len(alerts), len(queries)-len(alerts))
	}
	return queries, alerts, rules
}

// series is what one exported sample name carries: its family and the
// values seen per label.
type series struct {
	family string
	labels map[string][]string
}

// scrape runs the orchestrator in dev mode, sends one sample event of every
// source, waits until those were dispatched (so the peer-call counters
// exist), and returns the sample names of /metrics: a histogram family
// gives name_bucket (with le), name_sum and name_count.
func scrape(t *testing.T) map[string]series {
	t.Helper()
	bin := os.Getenv("ORCHESTRATOR_BINARY")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "orchestrator")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/orchestrator")
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	srv := devserve.Start(t, bin)
	defer func() { _ = srv.Stop() }()
	base := srv.URL
	for _, src := range []string{"slack", "github", "pagerduty", "incidentio", "coralogix"} {
		if out, err := exec.Command(bin, "send-sample", src, "--dev", "--url", base).CombinedOutput(); err != nil {
			t.Fatalf("send-sample %s: %v\n%s", src, err, out)
		}
	}
	// The samples are dispatched after their acks; wait (bounded) until the
	// five are delivered, which also brings the peer-call counters.
	var families map[string]*dto.MetricFamily
	deadline := time.Now().Add(2 * time.Minute)
	for {
		families = metricsOf(t, base)
		if delivered(families) >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the 5 samples were not delivered within 2 minutes\n%s", srv.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := map[string]series{}
	add := func(name, family string, m *dto.Metric, extra ...string) {
		s, ok := out[name]
		if !ok {
			s = series{family: family, labels: map[string][]string{}}
		}
		for _, l := range m.GetLabel() {
			if !slices.Contains(s.labels[l.GetName()], l.GetValue()) {
				s.labels[l.GetName()] = append(s.labels[l.GetName()], l.GetValue())
			}
		}
		for _, l := range extra {
			s.labels[l] = append(s.labels[l], "")
		}
		out[name] = s
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				add(name+"_bucket", name, m, "le")
				add(name+"_sum", name, m)
				add(name+"_count", name, m)
			case dto.MetricType_SUMMARY:
				add(name, name, m, "quantile")
				add(name+"_sum", name, m)
				add(name+"_count", name, m)
			default:
				add(name, name, m)
			}
		}
	}
	return out
}

func metricsOf(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return families
}

// delivered sums orchestrator_dispatch_total{outcome="delivered"}.
func delivered(families map[string]*dto.MetricFamily) float64 {
	var n float64
	for _, m := range families["orchestrator_dispatch_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "outcome" && l.GetValue() == "delivered" {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

package charts

import (
	"strings"
	"testing"

	"github.com/incidentfox/orchestrator-edge/server/config"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// chartEnv renders the chart and returns the container's environment as
// the binary would see it, Secret references filled from the chart's
// Secret.
func chartEnv(t *testing.T, args ...string) map[string]string {
	t.Helper()
	var dep appsv1.Deployment
	secret := map[string]string{}
	for _, o := range render(t, "sre", args...) {
		switch {
		case o.GetKind() == "Deployment":
			b, _ := yaml.Marshal(o.Object)
			if err := yaml.Unmarshal(b, &dep); err != nil {
				t.Fatal(err)
			}
		case o.GetKind() == "Secret" && o.GetName() == "orch-orchestrator":
			if data, ok := o.Object["stringData"].(map[string]any); ok {
				for k, v := range data {
					secret[k] = v.(string)
				}
			}
		}
	}
	env := map[string]string{"CONFIG_SERVICE_URL": "http://c", "AI_PIPELINE_API_URL": "http://p", "AGENT_API_URL": "http://a"}
	for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			if v, ok := secret[e.ValueFrom.SecretKeyRef.Key]; ok {
				env[e.Name] = v
			}
			continue
		}
		env[e.Name] = e.Value
	}
	return env
}

// TestChart_TracingValuesReachTheBinary: by default the chart sets no
// OTEL_* variable and the binary traces nothing; the tracing values become
// the standard variables, the headers come from the Secret (never the
// Deployment), and the binary's config reads them all.
func TestChart_TracingValuesReachTheBinary(t *testing.T) {
	off := chartEnv(t)
	for k := range off {
		if strings.HasPrefix(k, "OTEL_") && off[k] != "" || k == "ORCHESTRATOR_TRACE_URL_TEMPLATE" {
			t.Errorf("the default chart sets %s=%q", k, off[k])
		}
	}
	if cfg, err := config.Load(func(k string) string { return off[k] }); err != nil || cfg.Tracing.Enabled {
		t.Fatalf("default chart: tracing %v (%v)", cfg.Tracing.Enabled, err)
	}

	on := chartEnv(t, "--set", "tracing.otlpEndpoint=http://tempo-distributor:4317", "--set", "tracing.protocol=grpc",
		"--set", "tracing.sampler=parentbased_traceidratio", "--set", "tracing.samplerArg=0.25",
		"--set", "tracing.traceURLTemplate=http://jaeger-query:16686/trace/{trace_id}",
		"--set", "secrets.otlpHeaders=X-Scope-OrgID=acme\\,Authorization=Basic%20c2VjcmV0")
	cfg, err := config.Load(func(k string) string { return on[k] })
	if err != nil {
		t.Fatalf("the binary refuses the chart's environment: %v", err)
	}
	tr := cfg.Tracing
	if !tr.Enabled || tr.Endpoint != "http://tempo-distributor:4317" || tr.Protocol != "grpc" || tr.Sampler != "parentbased_traceidratio" ||
		tr.SamplerArg != 0.25 || tr.URLTemplate != "http://jaeger-query:16686/trace/{trace_id}" ||
		tr.Headers["X-Scope-OrgID"].Reveal() != "acme" || tr.Headers["Authorization"].Reveal() != "Basic c2VjcmV0" {
		t.Fatalf("tracing config %+v", tr)
	}
	out, err := helm(t, "template", "sre", "./orchestrator", "--set", "tracing.otlpEndpoint=http://jaeger:4318",
		"--set", "secrets.otlpHeaders=Authorization=Basic%20c2VjcmV0")
	if err != nil {
		t.Fatal(err)
	}
	if dep := out[strings.Index(out, "kind: Deployment"):]; strings.Contains(dep, "c2VjcmV0") {
		t.Fatal("the OTLP headers are in the Deployment, not only the Secret")
	}

	for _, set := range []string{"tracing.protocol=http/json", "tracing.otlpEndpoint=jaeger:4318", "tracing.sampler=sometimes",
		"tracing.traceURLTemplate=http://jaeger-query:16686/search", "tracing.samplerArg=2", "secrets.otlpHeaders=no-equals-sign"} {
		if out, err := helm(t, "template", "orch", "./orchestrator", "--set", set); err == nil {
			t.Errorf("--set %s was accepted", set)
		} else if !strings.Contains(out, "schema") && !strings.Contains(out, "at '/") {
			t.Errorf("--set %s failed without naming the schema: %s", set, out)
		}
	}
}

// Package charts tests the Helm chart: helm lint --strict, the values
// schema, and rendered manifests applied to a real kube-apiserver with a
// server-side dry run, plus the RBAC rules checked by impersonating the
// chart's ServiceAccount.
package charts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/kube/kubetest"
	"github.com/incidentfox/orchestrator-edge/server/policy"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

var cluster *kubetest.Cluster

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m, &cluster)) }

// HelmRequireEnv turns a missing helm binary from a skip into a failure.
const HelmRequireEnv = "ORCHESTRATOR_TEST_REQUIRE_HELM"

// helm runs the helm binary the Makefile builds (HELM, else the cache).
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := os.Getenv("HELM")
	if bin == "" {
		cache, _ := os.UserCacheDir()
		bin = filepath.Join(cache, "orchestrator-edge", "helm-v3.22.0")
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv(HelmRequireEnv) == "1" {
			t.Fatalf("helm required but missing at %s (make helm)", bin)
		}
		t.Skipf("helm not built (make helm): %v", err)
	}
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String() + errb.String(), err
	}
	return out.String(), nil
}

// allOn switches on every optional part of the chart.
var allOn = []string{
	"--set", "ingress.enabled=true", "--set", "ingress.className=nginx",
	"--set", "serviceMonitor.enabled=true", "--set", "networkPolicy.enabled=true",
	"--set", "persistence.existingClaim=orchestrator-data",
	"--set", "image.registry=registry.internal:5000", "--set", "imagePullSecrets[0].name=regcred",
	"--set", "secrets.internalAdminToken=adm", "--set", `secrets.slackSigningSecret=s1\,s2`,
	"--set", "secrets.incidentioWebhookSecret=whsec_c2VjcmV0",
	"--set", "config.namespace=teams",
	"--set", "grafanaDashboard.enabled=true", "--set", "prometheusRule.enabled=true",
	"--set-json", `sources=[{"name":"acme-deploys","verify":{"kind":"hmac","header":"X-Acme-Signature","algorithm":"sha512","encoding":"base64","prefix":"v1=","signed":"{id}.{timestamp}.{body}","timestamp_header":"X-Acme-Timestamp","id_header":"X-Acme-Delivery","secret_env":"ACME_DEPLOYS_SECRET"},"delivery_id":{"header":"X-Acme-Delivery"},"event_type":{"pointer":"/kind"},"routing":{"service":"/service"},"alert":{"key":"/incident/id","state":"/status","firing":["triggered"],"resolved":["resolved"]},"coalesce":true,"describe":"{event_type} of {/app}"}]`,
	"--set-json", `slackApps=[{"slug":"sre-bot","signing_secret_env":"SREBOT_SIGNING_SECRET","orgs":["acme"],"bot_token_env":"SREBOT_BOT_TOKEN"}]`,
	"--set", `config.sourceOrgs=slack=acme\,github=acme;aaa`,
	"--set", "secrets.sourceSecrets.ACME_DEPLOYS_SECRET=new\\,old", "--set", "secrets.sourceSecrets.SREBOT_SIGNING_SECRET=bot-signing-value",
	"--set", "secrets.sourceSecrets.SREBOT_BOT_TOKEN=xoxb-sre-bot", "--set", "secrets.slackBotToken=xoxb-default",
	"--set", "config.publicURL=https://orchestrator.example",
	"--set", "secrets.alertmanagerWebhookToken=am", "--set", "config.alertmanagerRoutingLabels=namespace=k8s_namespace",
	"--set", "config.githubAppID=4242", "--set", "secrets.githubAppPrivateKey=-----BEGIN RSA PRIVATE KEY-----",
	"--set", "secrets.pagerdutyApiToken=pd", "--set", "config.pagerdutyFromEmail=oncall@acme.example",
	"--set-json", `destinations=[{"name":"ops-feed","url":"https://hooks.acme.example/in","secret_env":"OPS_FEED_SECRET"}]`,
	"--set", "secrets.sourceSecrets.OPS_FEED_SECRET=whsec_c2VjcmV0",
}

func render(t *testing.T, ns string, extra ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := helm(t, append([]string{"template", "orch", "./orchestrator", "--namespace", ns}, extra...)...)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs
}

func TestChart_LintStrict(t *testing.T) {
	for _, set := range [][]string{nil, allOn} {
		if out, err := helm(t, append([]string{"lint", "--strict", "./orchestrator"}, set...)...); err != nil {
			t.Fatalf("helm lint --strict %v: %v\n%s", set, err, out)
		}
	}
}

func TestChart_SchemaRejectsWrongValues(t *testing.T) {
	for _, set := range []string{
		"config.dispatchWorkers=many", "service.port=http", "persistence.enabled=yes", "image.pullPolicy=Sometimes",
		"config.agentURL=agent:8000", "terminationGracePeriodSeconds=5", "secrets.incidentioWebhookSecret=plain",
		"config.githubApiURL=ghe.acme.example", "config.githubAppID=my-app", "config.pagerdutyFromEmail=oncall",
		"secrets.githubAppPrivateKey=not-a-pem",
		"grafanaDashboard.enabled=yes", "prometheusRule.thresholds.peerErrorRatio=2", "prometheusRule.thresholds.queueDepth=-1",
		"unknownKey=1", "image.digest=latest",
		// Several replicas need PostgreSQL (SPEC §13).
		"replicaCount=2", "database.url=mysql://x", "replicaCount=0",
		"config.agentProtocol=sse",
	} {
		out, err := helm(t, "template", "orch", "./orchestrator", "--set", set)
		if err == nil {
			t.Errorf("--set %s was accepted", set)
		} else if !strings.Contains(out, "schema") && !strings.Contains(out, "at '/") {
			t.Errorf("--set %s failed without naming the schema: %s", set, out)
		}
	}
}

func TestChart_Manifests(t *testing.T) {
	objs := render(t, "sre")
	var dep appsv1.Deployment
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			b, _ := yaml.Marshal(o.Object)
			if err := yaml.Unmarshal(b, &dep); err != nil {
				t.Fatal(err)
			}
		}
		if o.GetKind() == "Ingress" || o.GetKind() == "ServiceMonitor" || o.GetKind() == "NetworkPolicy" ||
			o.GetKind() == "PrometheusRule" || o.GetKind() == "ConfigMap" {
			t.Errorf("%s rendered with default values", o.GetKind())
		}
	}
	pod, c := dep.Spec.Template.Spec, dep.Spec.Template.Spec.Containers[0]
	checks := map[string]bool{
		"one replica":           *dep.Spec.Replicas == 1,
		"Recreate":              dep.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType,
		"non-root":              *pod.SecurityContext.RunAsNonRoot && *c.SecurityContext.RunAsNonRoot,
		"uid":                   *pod.SecurityContext.RunAsUser == 65532,
		"read-only root":        *c.SecurityContext.ReadOnlyRootFilesystem,
		"no escalation":         !*c.SecurityContext.AllowPrivilegeEscalation,
		"drop ALL":              len(c.SecurityContext.Capabilities.Drop) == 1 && c.SecurityContext.Capabilities.Drop[0] == "ALL",
		"seccomp":               pod.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault,
		"serve":                 len(c.Args) == 1 && c.Args[0] == "serve",
		"liveness /health":      c.LivenessProbe.HTTPGet.Path == "/health",
		"readiness /ready":      c.ReadinessProbe.HTTPGet.Path == "/ready",
		"data at /data":         c.VolumeMounts[0].MountPath == "/data" && pod.Volumes[0].PersistentVolumeClaim != nil,
		"image from appVersion": c.Image == "incidentfox/orchestrator-edge:0.1.0",
		"resources":             c.Resources.Limits.Memory().String() == "512Mi",
	}
	for name, ok := range checks {
		if !ok {
			t.Errorf("deployment: %s wrong", name)
		}
	}
	secretEnv := 0
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			secretEnv++
		}
		if strings.Contains(strings.ToLower(e.Name), "secret") && e.Value != "" {
			t.Errorf("%s carries a literal value", e.Name)
		}
	}
	if secretEnv != 11 {
		t.Errorf("%d env vars from the Secret, want 11", secretEnv)
	}
	// The Ingress exposes /webhooks/ only.
	for _, o := range render(t, "sre", allOn...) {
		if o.GetKind() == "Ingress" {
			b, _ := yaml.Marshal(o.Object["spec"])
			if strings.Count(string(b), "path:") != 1 || !strings.Contains(string(b), "path: /webhooks/") {
				t.Errorf("ingress paths: %s", b)
			}
		}
		if o.GetKind() == "PersistentVolumeClaim" {
			t.Error("a PVC rendered although existingClaim is set")
		}
	}
}

// postgresReplicas: three replicas on PostgreSQL (SPEC §13).
var postgresReplicas = []string{"--set", "replicaCount=3", "--set", "database.url=postgres://orch:pw@db:5432/orch?sslmode=require"}

func TestChart_PostgresReplicas(t *testing.T) {
	var dep appsv1.Deployment
	kinds := map[string]int{}
	var dbSecret map[string]any
	for _, o := range render(t, "sre", postgresReplicas...) {
		kinds[o.GetKind()]++
		switch {
		case o.GetKind() == "Deployment":
			b, _ := yaml.Marshal(o.Object)
			if err := yaml.Unmarshal(b, &dep); err != nil {
				t.Fatal(err)
			}
		case o.GetKind() == "Secret" && strings.HasSuffix(o.GetName(), "-database"):
			dbSecret, _ = o.Object["stringData"].(map[string]any)
		}
	}
	if kinds["PersistentVolumeClaim"] != 0 || kinds["PodDisruptionBudget"] != 1 {
		t.Fatalf("with PostgreSQL: %v (want no PVC, one PodDisruptionBudget)", kinds)
	}
	if *dep.Spec.Replicas != 3 || dep.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
		t.Fatalf("replicas %d, strategy %s", *dep.Spec.Replicas, dep.Spec.Strategy.Type)
	}
	pod, c := dep.Spec.Template.Spec, dep.Spec.Template.Spec.Containers[0]
	if pod.Volumes[0].EmptyDir == nil {
		t.Error("the data volume is not an emptyDir")
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if e := env["DATABASE_URL"]; e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef.Key != "database-url" {
		t.Errorf("DATABASE_URL = %+v", e)
	}
	if dbSecret["database-url"] != "postgres://orch:pw@db:5432/orch?sslmode=require" {
		t.Errorf("database secret = %v", dbSecret)
	}
	if env["ORCHESTRATOR_BACKUP_SCHEDULE"].Value != "none" {
		t.Errorf("backups on PostgreSQL: %q", env["ORCHESTRATOR_BACKUP_SCHEDULE"].Value)
	}
	// An existing Secret is used as named, and the chart makes none for it.
	for _, o := range render(t, "sre", "--set", "replicaCount=2", "--set", "database.existingSecret=pg", "--set", "database.existingSecretKey=url") {
		if o.GetKind() == "Secret" && strings.HasSuffix(o.GetName(), "-database") {
			t.Error("a database Secret rendered beside existingSecret")
		}
		if o.GetKind() == "Deployment" {
			b, _ := yaml.Marshal(o.Object)
			if !strings.Contains(string(b), "name: pg") || !strings.Contains(string(b), "key: url") {
				t.Errorf("DATABASE_URL does not come from the existing Secret:\n%s", b)
			}
		}
	}
}

// dryRun sends each object to the real API server with a server-side dry run.
func dryRun(t *testing.T, cfg *rest.Config, ns string, objs []*unstructured.Unstructured) {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s: %v", gvk, err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(m.Resource).Namespace(ns)
		}
		if _, err := ri.Create(context.Background(), o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Errorf("the API server refused %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
}

func TestChart_RealAPIServerAcceptsTheManifests(t *testing.T) {
	kubetest.Require(t, cluster)
	for _, path := range []string{"testdata/servicemonitor-crd.yaml", "testdata/prometheusrule-crd.yaml"} {
		applyReal(t, cluster.Config, "", render2(t, path))
	}
	for name, set := range map[string][]string{"defaults": nil, "everything on": allOn, "postgres replicas": postgresReplicas} {
		t.Run(name, func(t *testing.T) {
			ns := cluster.Namespace(t)
			objs := render(t, ns, set...)
			if len(objs) < 7 {
				t.Fatalf("%d objects rendered", len(objs))
			}
			dryRun(t, cluster.Config, ns, objs)
		})
	}
}

// render2 reads a YAML file of objects.
func render2(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return []*unstructured.Unstructured{{Object: m}}
}

// applyReal creates objects for real (RBAC objects, the CRD).
func applyReal(t *testing.T, cfg *rest.Config, ns string, objs []*unstructured.Unstructured) {
	t.Helper()
	dc, _ := discovery.NewDiscoveryClientForConfig(cfg)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, _ := dynamic.NewForConfig(cfg)
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatal(err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(m.Resource).Namespace(ns)
		}
		if _, err := ri.Create(context.Background(), o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create %s: %v", o.GetName(), err)
		}
	}
}

// The chart's Role lets the orchestrator do its work in its namespace and
// nothing more: checked by acting as its ServiceAccount.
func TestChart_RBACIsEnoughAndNoMore(t *testing.T) {
	kubetest.Require(t, cluster)
	ctx := context.Background()
	ns, other := cluster.Namespace(t), cluster.Namespace(t)
	var rbac []*unstructured.Unstructured
	sa := ""
	for _, o := range render(t, ns) {
		switch o.GetKind() {
		case "ServiceAccount":
			sa = o.GetName()
			rbac = append(rbac, o)
		case "Role", "RoleBinding":
			rbac = append(rbac, o)
		}
	}
	applyReal(t, cluster.Config, ns, rbac)
	// The RBAC authorizer learns of a new Role and RoleBinding through its
	// informers, a moment after they are stored: wait until it allows one of
	// the Role's rules to the ServiceAccount before acting as it (a check
	// right away was refused in one CI run). The bound only keeps a broken
	// build from hanging.
	user := "system:serviceaccount:" + ns + ":" + sa
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		review, err := cluster.Clientset.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: user, ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: "create", Group: "batch", Resource: "cronjobs"}}}, metav1.CreateOptions{})
		if err == nil && review.Status.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the chart's RoleBinding never took effect: %v %+v", err, review)
		}
	}
	as := rest.CopyConfig(cluster.Config)
	as.Impersonate = rest.ImpersonationConfig{UserName: user}
	cs, err := kubernetes.NewForConfig(as)
	if err != nil {
		t.Fatal(err)
	}
	meta := metav1.ObjectMeta{Name: "rbac-check"}
	cj := &batchv1.CronJob{ObjectMeta: meta, Spec: batchv1.CronJobSpec{Schedule: "0 2 * * *", JobTemplate: batchv1.JobTemplateSpec{
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: "Never",
			Containers: []corev1.Container{{Name: "c", Image: "x"}}}}}}}}
	labels := map[string]string{"app": "x"}
	one := int32(1)
	dep := &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}}}
	svc := &corev1.Service{ObjectMeta: meta, Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 8000}}}}

	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s as the chart's ServiceAccount: %v", what, err)
		}
	}
	_, err = cs.BatchV1().CronJobs(ns).Create(ctx, cj, metav1.CreateOptions{})
	must("create CronJob", err)
	_, err = cs.BatchV1().CronJobs(ns).List(ctx, metav1.ListOptions{})
	must("list CronJobs", err)
	got, err := cs.BatchV1().CronJobs(ns).Get(ctx, "rbac-check", metav1.GetOptions{})
	must("get CronJob", err)
	if got != nil {
		got.Spec.Schedule = "0 3 * * *"
		_, err = cs.BatchV1().CronJobs(ns).Update(ctx, got, metav1.UpdateOptions{})
		must("update CronJob", err)
	}
	must("delete CronJob", cs.BatchV1().CronJobs(ns).Delete(ctx, "rbac-check", metav1.DeleteOptions{}))
	_, err = cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{})
	must("create Deployment", err)
	must("delete Deployment", cs.AppsV1().Deployments(ns).Delete(ctx, "rbac-check", metav1.DeleteOptions{}))
	_, err = cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	must("create Service", err)
	must("delete Service", cs.CoreV1().Services(ns).Delete(ctx, "rbac-check", metav1.DeleteOptions{}))

	refused := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want Forbidden", what, err)
		}
	}
	_, err = cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	refused("list Secrets", err)
	_, err = cs.CoreV1().Secrets(ns).Get(ctx, "orch-orchestrator", metav1.GetOptions{})
	refused("get a Secret", err)
	_, err = cs.BatchV1().CronJobs(other).Create(ctx, cj, metav1.CreateOptions{})
	refused("create a CronJob in another namespace", err)
	_, err = cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	refused("list Pods", err)
	_, err = cs.RbacV1().Roles(ns).List(ctx, metav1.ListOptions{})
	refused("list Roles", err)
	_, err = cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	refused("list Namespaces", err)
}

// TestChart_DashboardAndAlertRules checks the optional monitoring objects'
// shape: the dashboard ConfigMap carries the sidecar's label and a dashboard
// whose every panel has a query, and every alert has a severity, a summary
// and a runbook line. hack/tools/monitoring parses every query with
// Prometheus' own parser against the metrics a running server exports.
func TestChart_DashboardAndAlertRules(t *testing.T) {
	var dash map[string]any
	var rules []any
	for _, o := range render(t, "sre", "--set", "grafanaDashboard.enabled=true", "--set", "prometheusRule.enabled=true",
		"--set", "grafanaDashboard.namespace=monitoring", "--set", "prometheusRule.labels.release=kube-prometheus-stack") {
		switch o.GetKind() {
		case "ConfigMap":
			if o.GetLabels()["grafana_dashboard"] != "1" || o.GetNamespace() != "monitoring" {
				t.Errorf("dashboard ConfigMap labels %v in namespace %q", o.GetLabels(), o.GetNamespace())
			}
			data, _ := o.Object["data"].(map[string]any)
			raw, _ := data["orchestrator-edge.json"].(string)
			if err := json.Unmarshal([]byte(raw), &dash); err != nil {
				t.Fatalf("dashboard JSON: %v", err)
			}
		case "PrometheusRule":
			if o.GetLabels()["release"] != "kube-prometheus-stack" {
				t.Errorf("PrometheusRule labels %v", o.GetLabels())
			}
			groups, _, _ := unstructured.NestedSlice(o.Object, "spec", "groups")
			for _, g := range groups {
				rs, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
				rules = append(rules, rs...)
			}
		}
	}
	if dash == nil || dash["uid"] != "orchestrator-edge" {
		t.Fatalf("no dashboard rendered: %v", dash)
	}
	queries := 0
	for _, p := range dash["panels"].([]any) {
		p := p.(map[string]any)
		if p["type"] == "row" {
			continue
		}
		targets, _ := p["targets"].([]any)
		if len(targets) == 0 || p["title"] == "" || p["description"] == "" {
			t.Errorf("panel %v has no query, title or description", p["title"])
		}
		queries += len(targets)
	}
	var names []string
	for _, r := range rules {
		r := r.(map[string]any)
		name, _ := r["alert"].(string)
		names = append(names, name)
		ann, _ := r["annotations"].(map[string]any)
		labels, _ := r["labels"].(map[string]any)
		if name == "" || r["expr"] == "" || labels["severity"] == nil || ann["summary"] == nil || len(fmt.Sprint(ann["runbook"])) < 40 {
			t.Errorf("rule %q lacks a name, expression, severity, summary or runbook: %v", name, r)
		}
	}
	// The alerts SPEC §15 asks for.
	for _, want := range []string{"OrchestratorEventsDead", "OrchestratorAnswersDead", "OrchestratorEventsUnrouted", "OrchestratorDispatchQueueGrowing",
		"OrchestratorWebhooksAnswering503", "OrchestratorSignatureFailuresSpiking", "OrchestratorScheduledBackupFailed",
		"OrchestratorScheduleDriftRepaired"} {
		if !slices.Contains(names, want) {
			t.Errorf("no %s rule among %v", want, names)
		}
	}
	t.Logf("dashboard: %d queries; rules: %v", queries, names)
}

// TestChart_SourcesRenderAFileTheBinaryReads: values.sources and slackApps
// become a ConfigMap holding a sources file the binary's own parser accepts,
// with each secret it names read from the Secret by that name; a secret
// written inline in values is refused at render time.
func TestChart_SourcesRenderAFileTheBinaryReads(t *testing.T) {
	objs := render(t, "sre", allOn...)
	var file string
	secret := map[string]string{}
	var dep appsv1.Deployment
	for _, o := range objs {
		switch {
		case o.GetKind() == "ConfigMap" && strings.HasSuffix(o.GetName(), "-sources"):
			file, _ = o.Object["data"].(map[string]any)["sources.yaml"].(string)
		case o.GetKind() == "Secret" && o.GetName() == "orch-orchestrator":
			for k, v := range o.Object["stringData"].(map[string]any) {
				secret[k] = v.(string)
			}
		case o.GetKind() == "Deployment":
			b, _ := yaml.Marshal(o.Object)
			if err := yaml.Unmarshal(b, &dep); err != nil {
				t.Fatal(err)
			}
		}
	}
	env := map[string]string{}
	c := dep.Spec.Template.Spec.Containers[0]
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = secret[e.ValueFrom.SecretKeyRef.Key]
		default:
			env[e.Name] = e.Value
		}
	}
	if env["ORCHESTRATOR_SOURCES_FILE"] != "/etc/orchestrator/sources.yaml" || env["ORCHESTRATOR_ALERTMANAGER_ROUTING_LABELS"] != "namespace=k8s_namespace" ||
		env["ALERTMANAGER_WEBHOOK_TOKEN"] != "am" || env["ORCHESTRATOR_SOURCE_ORGS"] != "slack=acme,github=acme;aaa" ||
		env["SLACK_BOT_TOKEN"] != "xoxb-default" ||
		env["ORCHESTRATOR_PUBLIC_URL"] != "https://orchestrator.example" || env["ORCHESTRATOR_POST_ANSWERS"] != "orchestrator" ||
		env["ORCHESTRATOR_AGENT_PROTOCOL"] != "run" {
		t.Fatalf("env = %v", env)
	}
	f, err := webhook.ParseSourcesFile([]byte(file), func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the binary refuses the rendered file: %v\n%s", err, file)
	}
	if len(f.Sources) != 1 || f.Sources[0].Name != "acme-deploys" || len(f.SlackApps) != 1 || f.SlackApps[0].Secrets[0] != "bot-signing-value" ||
		len(f.SlackApps[0].Orgs) != 1 || f.SlackApps[0].Orgs[0] != "acme" ||
		f.SlackApps[0].BotToken != "xoxb-sre-bot" {
		t.Fatalf("parsed = %+v", f)
	}
	if strings.Contains(file, "new,old") || strings.Contains(file, "bot-signing-value") || strings.Contains(file, "xoxb-") {
		t.Fatalf("a secret is in the ConfigMap:\n%s", file)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		mounted = mounted || m.MountPath == "/etc/orchestrator" && m.ReadOnly
	}
	if !mounted || dep.Spec.Template.Annotations["checksum/sources"] == "" {
		t.Fatalf("sources not mounted read-only or not rolled on change")
	}
	// Routes, time intervals and inhibit rules ride in the same file, read by the binary's own policy parser;
	// changing them does not roll the pods (they are reloaded).
	withRoutes := render(t, "sre", append(slices.Clone(allOn), "--set-json",
		`routes=[{"name":"k8s-namespace","match":["label.namespace=\"payments\""],"route_to":{"org_id":"acme","team_node_id":"payments"}},{"name":"fallback","route_to":{"org_id":"acme","team_node_id":"sre"}}]`,
		"--set-json", `inhibitRules=[{"source_matchers":["alertname=\"NodeDown\""],"target_matchers":["alertname=~\"Pod.*\""],"equal":["node"]}]`,
		"--set-json", `timeIntervals=[{"name":"business-hours","time_intervals":[{"times":[{"start_time":"09:00","end_time":"17:00"}],"weekdays":["monday:friday"],"location":"Europe/Berlin"}]}]`)...)
	for _, o := range withRoutes {
		switch {
		case o.GetKind() == "ConfigMap" && strings.HasSuffix(o.GetName(), "-sources"):
			text, _ := o.Object["data"].(map[string]any)["sources.yaml"].(string)
			p, err := policy.Parse([]byte(text), func(k string) string { return env[k] })
			if err != nil || p.Routes.Len() != 2 || !p.Routes.Has("k8s-namespace") || p.Inhibits.Len() != 1 || p.Intervals.Get("business-hours") == nil {
				t.Fatalf("the binary does not read the rendered routes and inhibit rules: %v\n%s", err, text)
			}
		case o.GetKind() == "Deployment":
			ann, _, _ := unstructured.NestedString(o.Object, "spec", "template", "metadata", "annotations", "checksum/sources")
			if ann != dep.Spec.Template.Annotations["checksum/sources"] {
				t.Fatalf("a routes change rolls the pods: %s != %s", ann, dep.Spec.Template.Annotations["checksum/sources"])
			}
		}
	}
	out, err := helm(t, "template", "sre", "./orchestrator", "--set-json",
		`sources=[{"name":"x","verify":{"kind":"token","secret_env":"X","secret":"inline"}}]`)
	if err == nil || !strings.Contains(out, "secrets are never written in values") {
		t.Fatalf("an inline secret rendered: %v %s", err, out)
	}
}

package charts

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/incidentfox/orchestrator-edge/server/config"
	"github.com/incidentfox/orchestrator-edge/server/policy"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// TestChart_AnswerCredentialsReachTheBinary: the chart's answer values and
// Secret keys become the variables the binary reads — the GitHub App's key
// mounted where GITHUB_APP_PRIVATE_KEY_FILE points, the PagerDuty key and
// From email, the webhook destinations in the sources file with their
// secrets from the Secret — and the binary's own config and policy accept
// them.
func TestChart_AnswerCredentialsReachTheBinary(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemFile := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	objs := render(t, "sre",
		"--set", "config.githubAppID=4242", "--set-file", "secrets.githubAppPrivateKey="+pemFile,
		"--set", "config.githubApiURL=https://ghe.acme.example/api/v3",
		"--set", "secrets.pagerdutyApiToken=pd-key", "--set", "config.pagerdutyFromEmail=oncall@acme.example",
		"--set-json", `destinations=[{"name":"ops-feed","url":"https://hooks.acme.example/in","secret_env":"OPS_FEED_SECRET"}]`,
		"--set", "secrets.sourceSecrets.OPS_FEED_SECRET=whsec_c2VjcmV0")
	var dep appsv1.Deployment
	secret := map[string]string{}
	var file string
	for _, o := range objs {
		switch {
		case o.GetKind() == "Deployment":
			b, _ := yaml.Marshal(o.Object)
			if err := yaml.Unmarshal(b, &dep); err != nil {
				t.Fatal(err)
			}
		case o.GetKind() == "Secret" && o.GetName() == "orch-orchestrator":
			for k, v := range o.Object["stringData"].(map[string]any) {
				secret[k] = v.(string)
			}
		case o.GetKind() == "ConfigMap" && strings.HasSuffix(o.GetName(), "-sources"):
			file, _ = o.Object["data"].(map[string]any)["sources.yaml"].(string)
		}
	}
	c := dep.Spec.Template.Spec.Containers[0]
	env := map[string]string{"CONFIG_SERVICE_URL": "http://c", "AI_PIPELINE_API_URL": "http://p", "AGENT_API_URL": "http://a"}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			if v, ok := secret[e.ValueFrom.SecretKeyRef.Key]; ok {
				env[e.Name] = v
			}
			continue
		}
		env[e.Name] = e.Value
	}
	// The key file: the Secret's key, mounted where the variable says.
	var mounted string
	for _, m := range c.VolumeMounts {
		for _, v := range dep.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.Secret != nil && len(v.Secret.Items) == 1 && v.Secret.Items[0].Key == "github-app-private-key" {
				mounted = m.MountPath + "/" + v.Secret.Items[0].Path
				if !m.ReadOnly || *v.Secret.DefaultMode != 0o400 {
					t.Fatal("the App's key is not mounted read-only, owner-only")
				}
			}
		}
	}
	if mounted == "" || env["GITHUB_APP_PRIVATE_KEY_FILE"] != mounted {
		t.Fatalf("GITHUB_APP_PRIVATE_KEY_FILE=%q, key mounted at %q", env["GITHUB_APP_PRIVATE_KEY_FILE"], mounted)
	}
	local := filepath.Join(t.TempDir(), "mounted.pem")
	if err := os.WriteFile(local, []byte(secret["github-app-private-key"]), 0o600); err != nil {
		t.Fatal(err)
	}
	env["GITHUB_APP_PRIVATE_KEY_FILE"] = local
	getenv := func(k string) string { return env[k] }
	cfg, err := config.Load(getenv)
	if err != nil {
		t.Fatalf("the binary refuses the chart's environment: %v", err)
	}
	if cfg.GitHub.AppID != "4242" || cfg.GitHub.APIURL != "https://ghe.acme.example/api/v3" ||
		cfg.PagerDuty.Token.Reveal() != "pd-key" || cfg.PagerDuty.FromEmail != "oncall@acme.example" {
		t.Fatalf("config %+v %+v", cfg.GitHub, cfg.PagerDuty)
	}
	p, err := policy.Parse([]byte(file), getenv)
	if err != nil {
		t.Fatalf("the binary refuses the rendered sources file: %v\n%s", err, file)
	}
	if len(p.Destinations) != 1 || p.Destinations[0].Name != "ops-feed" || string(p.Destinations[0].Secret) != "whsec_c2VjcmV0" {
		t.Fatalf("destinations %+v", p.Destinations)
	}
	if strings.Contains(file, "whsec_") {
		t.Fatal("a secret is in the ConfigMap")
	}

	// A token instead of an App; an inline secret is refused at render.
	objs = render(t, "sre", "--set", "secrets.githubToken=ghp_x")
	for _, o := range objs {
		if o.GetKind() == "Secret" && o.Object["stringData"].(map[string]any)["github-token"] != "ghp_x" {
			t.Fatal("github-token is not in the Secret")
		}
	}
	out, err := helm(t, "template", "sre", "./orchestrator", "--set-json",
		`destinations=[{"name":"x","url":"https://a.example","secret_env":"X","secret":"whsec_inline"}]`)
	if err == nil || !strings.Contains(out, "secrets are never written in values") {
		t.Fatalf("an inline destination secret rendered: %v %s", err, out)
	}
}

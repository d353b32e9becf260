package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writePEM(t *testing.T, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The answer credentials: a GitHub token or App (checked at start: the key
// file is read and must be an RSA key), a PagerDuty token with the email
// notes are written as. A mistake is one line naming the variable.
func TestLoad_AnswerCredentials(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := writePEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))
	pkcs8der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	pkcs8 := writePEM(t, "PRIVATE KEY", pkcs8der)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	ec := writePEM(t, "EC PRIVATE KEY", ecDER)

	c, err := Load(prod(nil))
	if err != nil || c.GitHub != (GitHubAnswers{}) || c.PagerDuty != (PagerDutyAnswers{}) {
		t.Fatalf("unset: %+v %+v %v", c.GitHub, c.PagerDuty, err)
	}
	for _, kv := range []map[string]string{
		{"GITHUB_TOKEN": "ghp_hunter2", "GITHUB_API_URL": "https://ghe.acme.example/api/v3/"},
		{"GITHUB_APP_ID": "4242", "GITHUB_APP_PRIVATE_KEY_FILE": pkcs1},
		{"GITHUB_APP_ID": "Iv23liABCdef.123", "GITHUB_APP_PRIVATE_KEY_FILE": pkcs8},
		{"PAGERDUTY_API_TOKEN": "u+hunter2", "PAGERDUTY_FROM_EMAIL": "oncall-bot@acme.example", "PAGERDUTY_API_URL": "https://pd-proxy.acme.example/"},
	} {
		c, err := Load(prod(kv))
		if err != nil {
			t.Fatalf("%v: %v", kv, err)
		}
		if strings.Contains(fmt.Sprintf("%+v %#v", c.GitHub, c.PagerDuty), "hunter2") {
			t.Fatal("a token prints")
		}
	}
	c, _ = Load(prod(map[string]string{"GITHUB_TOKEN": "ghp_x", "GITHUB_API_URL": "https://ghe.acme.example/api/v3/",
		"PAGERDUTY_API_TOKEN": "k", "PAGERDUTY_FROM_EMAIL": "a@b.example"}))
	if c.GitHub.APIURL != "https://ghe.acme.example/api/v3" || c.GitHub.Token.Reveal() != "ghp_x" ||
		c.PagerDuty.Token.Reveal() != "k" || c.PagerDuty.FromEmail != "a@b.example" {
		t.Fatalf("read %+v %+v", c.GitHub, c.PagerDuty)
	}

	for _, tc := range []struct {
		kv         map[string]string
		name, says string
	}{
		{map[string]string{"GITHUB_TOKEN": "ghp_hunter2", "GITHUB_APP_ID": "4242", "GITHUB_APP_PRIVATE_KEY_FILE": pkcs1}, "GITHUB_APP_ID", "not both"},
		{map[string]string{"GITHUB_APP_PRIVATE_KEY_FILE": pkcs1}, "GITHUB_APP_ID", "is required with GITHUB_APP_PRIVATE_KEY_FILE"},
		{map[string]string{"GITHUB_APP_ID": "4242"}, "GITHUB_APP_PRIVATE_KEY_FILE", "is required with GITHUB_APP_ID"},
		{map[string]string{"GITHUB_APP_ID": "my-app", "GITHUB_APP_PRIVATE_KEY_FILE": pkcs1}, "GITHUB_APP_ID", "is not a GitHub App id"},
		{map[string]string{"GITHUB_APP_ID": "4242", "GITHUB_APP_PRIVATE_KEY_FILE": filepath.Join(t.TempDir(), "gone.pem")}, "GITHUB_APP_PRIVATE_KEY_FILE", "cannot read"},
		{map[string]string{"GITHUB_APP_ID": "4242", "GITHUB_APP_PRIVATE_KEY_FILE": ec}, "GITHUB_APP_PRIVATE_KEY_FILE", "is not a PEM-encoded RSA private key"},
		{map[string]string{"PAGERDUTY_API_TOKEN": "u+hunter2"}, "PAGERDUTY_FROM_EMAIL", "is required with PAGERDUTY_API_TOKEN"},
		{map[string]string{"PAGERDUTY_FROM_EMAIL": "oncall@acme.example"}, "PAGERDUTY_API_TOKEN", "is required with PAGERDUTY_FROM_EMAIL"},
		{map[string]string{"PAGERDUTY_API_TOKEN": "u+hunter2", "PAGERDUTY_FROM_EMAIL": "On call <oncall@acme.example>"}, "PAGERDUTY_FROM_EMAIL", "not an email address"},
	} {
		_, err := Load(prod(tc.kv))
		if err == nil || !strings.HasPrefix(err.Error(), "config: "+tc.name+": ") || !strings.Contains(err.Error(), tc.says) ||
			strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: %v; want one line naming %s saying %q", tc.kv, err, tc.name, tc.says)
		}
	}
}

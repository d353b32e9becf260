package webhook

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The file is read at most to its bound: a larger one is refused without
// being read or parsed (a 60,000-source file took 20 s and 1.3 GB).
func TestReadSourcesFile_RefusesAFilePastOneMiB(t *testing.T) {
	dir := t.TempDir()
	ok, big := filepath.Join(dir, "ok.yaml"), filepath.Join(dir, "big.yaml")
	exact := "sources: []\n#" + strings.Repeat("x", MaxSourcesFileBytes-len("sources: []\n#"))
	if err := os.WriteFile(ok, []byte(exact), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(big, []byte(exact+"x"), 0o600); err != nil {
		t.Fatal(err)
	}
	data, err := ReadSourcesFile(ok)
	if err != nil || len(data) != MaxSourcesFileBytes {
		t.Fatalf("a file of exactly 1 MiB: %d bytes, %v", len(data), err)
	}
	if _, err := ParseSourcesFile(data, func(string) string { return "" }); err != nil {
		t.Fatalf("a file of exactly 1 MiB does not parse: %v", err)
	}
	if _, err := ReadSourcesFile(big); err == nil || err.Error() != "larger than 1048576 bytes (1 MiB)" {
		t.Fatalf("a file one byte past 1 MiB: %v", err)
	}
	if _, err := ReadSourcesFile(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("a missing file was read")
	}
}

// Exactly 256 sources load; the 257th is refused.
func TestParseSourcesFile_AtMost256Sources(t *testing.T) {
	var b strings.Builder
	b.WriteString("sources:\n")
	for i := range MaxSources {
		b.WriteString("  - {name: s" + strconv.Itoa(i) + ", verify: {kind: token, secret_env: S}}\n")
	}
	f, err := ParseSourcesFile([]byte(b.String()), func(string) string { return "tok" })
	if err != nil || len(f.Sources) != MaxSources {
		t.Fatalf("256 sources: %v", err)
	}
	b.WriteString("  - {name: one-more, verify: {kind: token, secret_env: S}}\n")
	if _, err := ParseSourcesFile([]byte(b.String()), func(string) string { return "tok" }); err == nil ||
		err.Error() != "sources: 257 sources listed, at most 256" {
		t.Fatalf("257 sources: %v", err)
	}
}

// FuzzSourcesFile: whatever the file holds, the parser never panics; a
// refusal is one line that never echoes a secret; an accepted file has at
// most 256 sources, each with a valid name, a route of its own, and its
// verify headers in lower case (they are left out of stored headers by
// name).
func FuzzSourcesFile(f *testing.F) {
	f.Add([]byte(specFile))
	f.Add([]byte(`sources: [{name: a, verify: {kind: hmac, header: X-Sig, signed: "{body}{id}", id_header: X-Id, secret_env: S}}]`))
	f.Add([]byte(`sources: [{name: b, verify: {kind: standard-webhooks, secret_env: W}, delivery_id: {header: webhook-id}}]`))
	f.Add([]byte(`sources: [{name: c, verify: {kind: basic, secret_env: B}, routing: {service: /a~1b}, describe: "{/x} {event_type}"}]`))
	f.Add([]byte("sources:\n  - &a {name: d, verify: {kind: token, secret_env: S}}\n  - *a\n"))
	f.Add([]byte("slack_apps: [{slug: bot, signing_secret_env: S}]\nsources: null\n"))
	f.Add([]byte("{sources: [{name: e, verify: {kind: token, header: X-Hook, secret_env: S}, alert: {key: /k, state: /s, firing: [a], resolved: [b]}}]}"))
	const secretValue = "fuzz-secret-value-9d1c"
	env := func(k string) string {
		switch k {
		case "W":
			return "whsec_c2VjcmV0"
		case "B":
			return "user:" + secretValue
		}
		return secretValue
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := ParseSourcesFile(data, env)
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") || strings.Contains(msg, secretValue) {
				t.Fatalf("error %q", msg)
			}
			return
		}
		if len(file.Sources) > MaxSources || len(file.SlackApps) > MaxSources {
			t.Fatalf("%d sources, %d Slack apps", len(file.Sources), len(file.SlackApps))
		}
		if _, err := NewRegistry(file.Sources...); err != nil {
			t.Fatalf("accepted sources do not make a registry: %v", err)
		}
		for _, s := range file.Sources {
			if !slugPattern.MatchString(s.Name) || len(s.Routes) != 1 || s.Routes[0].Path != "/webhooks/"+s.Name {
				t.Fatalf("source %+v", s)
			}
			for _, h := range s.VerifyHeaders {
				if h == "" || h != strings.ToLower(h) {
					t.Fatalf("source %s: verify header %q", s.Name, h)
				}
			}
			if strings.Contains(s.Scheme, secretValue) || strings.Contains(s.Description, secretValue) {
				t.Fatalf("source %s shows a secret", s.Name)
			}
		}
	})
}

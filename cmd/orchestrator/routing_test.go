package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServe_RoutingRulesReloadWhileTheBinaryRuns: the real binary reads
// routes: from its sources file, takes a changed rule within its reload
// period (ORCHESTRATOR_SOURCES_RELOAD_SECONDS=1) without a restart, and
// keeps the rules in force when the file is broken, logging why naming
// the rule. The routes test endpoint shows which rules are in force.
func TestServe_RoutingRulesReloadWhileTheBinaryRuns(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sources.yaml")
	rules := func(name, ns string) string {
		return "routes:\n  - name: " + name + "\n    match: ['label.namespace=\"" + ns + "\"']\n" +
			"    route_to: {org_id: acme, team_node_id: platform-sre}\n"
	}
	if err := os.WriteFile(file, []byte(rules("payments-ns", "payments")), 0o600); err != nil {
		t.Fatal(err)
	}
	proc, r, _ := child(t, []string{"ORCHESTRATOR_DEV_ADMIN_TOKEN=dev-admin-token", "KUBECONFIG=/nonexistent",
		"ORCHESTRATOR_SOURCES_FILE=" + file, "ORCHESTRATOR_SOURCES_RELOAD_SECONDS=1"},
		"serve", "--dev", "--addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"))
	defer func() { _ = proc.Process.Signal(syscall.SIGTERM); _ = proc.Wait() }()
	base := "http://" + waitLine(t, r, "listening")["addr"].(string)
	lines := make(chan map[string]any, 100)
	go func(r *bufio.Reader) {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				close(lines)
				return
			}
			// Only the reload's own lines are kept: the reader must never
			// wait on the test, or a chatty start fills the channel, the
			// child blocks writing its log and stops answering (this test
			// once hung CI that way).
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil {
				if msg, _ := m["msg"].(string); strings.HasPrefix(msg, "sources file") {
					select {
					case lines <- m:
					default:
					}
				}
			}
		}
	}(r)
	waitReady(t, base)
	try := func(ns string) map[string]any {
		t.Helper()
		payload := map[string]any{"version": "4", "groupKey": "{}:{alertname=\"X\"}", "status": "firing",
			"commonLabels": map[string]string{"alertname": "X", "namespace": ns},
			"alerts":       []map[string]any{{"status": "firing", "labels": map[string]string{"alertname": "X"}, "fingerprint": "f"}}}
		code, body := apiCall(t, "POST", base+"/api/v1/admin/routes/test", "dev-admin-token", map[string]any{"source": "alertmanager", "body": payload})
		if code != 200 {
			t.Fatalf("routes/test: %d %v", code, body)
		}
		return body
	}
	waitLog := func(msg string) map[string]any {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case m, ok := <-lines:
				if !ok {
					t.Fatalf("the binary stopped before %q", msg)
				}
				if m["msg"] == msg {
					return m
				}
			case <-deadline:
				t.Fatalf("no %q log line", msg)
			}
		}
	}
	if got := try("payments"); got["rule"] != "payments-ns" || got["team_node_id"] != "platform-sre" {
		t.Fatalf("at start: %v", got)
	}
	// A broken rule: the previous rules stay, the log names the rule.
	broken := rules("ledger-ns", "ledger") + "  - name: bad-regex\n    match: ['label.cluster=~\"eu-(\"']\n    ignore: true\n"
	if err := os.WriteFile(file, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	refused := waitLog("sources file not reloaded: the previous routing rules, intervals and destinations stay in force")
	if e, _ := refused["error"].(string); !strings.Contains(e, `rule "bad-regex"`) || !strings.Contains(e, "invalid regex") {
		t.Fatalf("the refusal says %q", e)
	}
	if got := try("payments"); got["rule"] != "payments-ns" {
		t.Fatalf("after a broken file the rules changed: %v", got)
	}
	// A good change is taken without a restart.
	if err := os.WriteFile(file, []byte(rules("ledger-ns", "ledger")), 0o600); err != nil {
		t.Fatal(err)
	}
	waitLog("sources file reloaded")
	if got := try("ledger"); got["rule"] != "ledger-ns" {
		t.Fatalf("after the change: %v", got)
	}
	if got := try("payments"); got["status"] != "unrouted" {
		t.Fatalf("the old rule still routes: %v", got)
	}
}

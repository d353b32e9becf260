package main

import (
	"bufio"
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
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

// TestReplicas_TwoOnPostgresRouteByTheSameRulesFile: two replicas of the
// binary on one PostgreSQL read the same sources file: each one's routes
// test answers by its rules, alerts sent to either are routed by them
// (matched_by rule:<name>, whichever replica's router took them), and a
// changed file is taken by both without a restart, the events sent after
// it routed by the new rule.
func TestReplicas_TwoOnPostgresRouteByTheSameRulesFile(t *testing.T) {
	const admin, amToken = "replica-admin-token", "am-replica-token"
	dir := t.TempDir()
	file := filepath.Join(dir, "sources.yaml")
	rules := func(name, ns, team string) string {
		return "routes:\n  - name: " + name + "\n    match: ['label.namespace=\"" + ns + "\"']\n" +
			"    route_to: {org_id: " + peerstest.DevOrg + ", team_node_id: " + team + "}\n"
	}
	if err := os.WriteFile(file, []byte(rules("payments-ns", "payments", "payments")), 0o600); err != nil {
		t.Fatal(err)
	}
	f := startPeerFakes(t, admin)
	f.cs.AddTeam(peerstest.DevOrg, "payments", map[string]any{})
	f.cs.AddTeam(peerstest.DevOrg, "ledger", map[string]any{})
	dbURL := pgtest.Database(t)
	reps := startReplicas(t, 2, append(f.env, "DATABASE_URL="+dbURL, "ALERTMANAGER_WEBHOOK_TOKEN="+amToken,
		"ORCHESTRATOR_SOURCES_FILE="+file, "ORCHESTRATOR_SOURCES_RELOAD_SECONDS=1"))
	defer func() {
		for _, r := range reps {
			_ = r.cmd.Process.Signal(syscall.SIGTERM)
			_ = r.cmd.Wait()
		}
	}()
	db := sharedDB(t, dbURL)
	payload := func(name, ns string) map[string]any {
		return map[string]any{"version": "4", "groupKey": "{}:{alertname=\"" + name + "\"}", "status": "firing", "receiver": "orchestrator",
			"groupLabels": map[string]string{"alertname": name}, "commonLabels": map[string]string{"alertname": name, "namespace": ns},
			"alerts": []map[string]any{{"status": "firing", "labels": map[string]string{"alertname": name}, "fingerprint": name}}}
	}
	try := func(rep *replica, ns string) string {
		t.Helper()
		code, body := apiCall(t, "POST", rep.base+"/api/v1/admin/routes/test", admin, map[string]any{"source": "alertmanager", "body": payload("Try", ns)})
		if code != 200 {
			t.Fatalf("routes/test: %d %v", code, body)
		}
		rule, _ := body["rule"].(string)
		return rule
	}
	client := &http.Client{Timeout: 10 * time.Second}
	send := func(rep *replica, name, ns string) string {
		t.Helper()
		body, _ := json.Marshal(payload(name, ns))
		req, _ := http.NewRequest("POST", rep.base+"/webhooks/alertmanager", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+amToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		id, _ := out["event_id"].(string)
		if resp.StatusCode != 200 || id == "" {
			t.Fatalf("%s: %d %v", name, resp.StatusCode, out)
		}
		return id
	}
	routed := func(id string) (status, team, by string) {
		var tm, mb sql.NullString
		if err := db.QueryRow(`SELECT status, team_node_id, matched_by FROM orchestrator_webhook_events WHERE id = $1`, id).Scan(&status, &tm, &mb); err != nil {
			t.Fatal(err)
		}
		return status, tm.String, mb.String
	}
	check := func(ids map[string]string, team, rule string) {
		t.Helper()
		for name, id := range ids {
			waitUntil(t, time.Minute, name+" routed", func() bool { s, _, _ := routed(id); return s != "queued" && s != "dispatching" })
			if s, tm, by := routed(id); s != "delivered" || tm != team || by != "rule:"+rule {
				t.Fatalf("%s: %s to %q by %q, want delivered to %s by rule:%s", name, s, tm, by, team, rule)
			}
		}
	}
	for i, rep := range reps {
		if got := try(rep, "payments"); got != "payments-ns" {
			t.Fatalf("replica %d at start answers rule %q", i, got)
		}
	}
	check(map[string]string{"PaymentsA": send(reps[0], "PaymentsA", "payments"), "PaymentsB": send(reps[1], "PaymentsB", "payments")},
		"payments", "payments-ns")

	if err := os.WriteFile(file, []byte(rules("ledger-ns", "ledger", "ledger")), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, rep := range reps {
		waitUntil(t, 30*time.Second, fmt.Sprintf("replica %d to reload", i), func() bool { return try(rep, "ledger") == "ledger-ns" })
		if got := try(rep, "payments"); got != "" {
			t.Fatalf("replica %d still routes payments by rule %q", i, got)
		}
	}
	check(map[string]string{"LedgerA": send(reps[0], "LedgerA", "ledger"), "LedgerB": send(reps[1], "LedgerB", "ledger")},
		"ledger", "ledger-ns")
}

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// devServe starts dev mode on dir (the simulated cluster, a fixed admin
// token) and waits for its first schedule reconcile, returning its base URL
// and the log lines it wrote until then.
func devServe(t *testing.T, dir string) (base string, stop func(), logs []string) {
	t.Helper()
	proc, r, _ := child(t, []string{"ORCHESTRATOR_DEV_ADMIN_TOKEN=dev-admin-token", "KUBECONFIG=/nonexistent",
		"ORCHESTRATOR_LOG_LEVEL=debug"}, "serve", "--dev", "--addr", "127.0.0.1:0", "--data-dir", dir)
	var addr string
	reconciled := false
	for !reconciled || addr == "" {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("dev mode stopped: %v\n%s", err, strings.Join(logs, ""))
		}
		logs = append(logs, line)
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		switch m["msg"] {
		case "listening":
			addr = m["addr"].(string)
		case "schedule reconcile", "schedule reconcile did not run":
			reconciled = true
		}
	}
	go func(r *bufio.Reader) { _, _ = io.Copy(io.Discard, r) }(r)
	waitReady(t, "http://"+addr)
	return "http://" + addr, func() { _ = proc.Process.Signal(syscall.SIGTERM); _ = proc.Wait() }, logs
}

// A restart of dev mode is a restart: the fake Config Service and the
// simulated cluster keep their state in the data directory beside the
// database, so a team provisioned before the restart is there after it —
// its dedicated agent still dedicated, its CronJob in place (no drift
// repair at start) — and deprovisioning it works (it used to fail with 502
// peer_rejected "team not found").
func TestDevMode_ARestartRemembersTheFakePeersAndTheSimulatedCluster(t *testing.T) {
	dir := t.TempDir()
	base, stop, _ := devServe(t, dir)
	code, body := apiCall(t, "POST", base+"/api/v1/admin/provision/team", "dev-admin-token", map[string]any{
		"org_id": "acme", "team_node_id": "payments",
		"routing":                  map[string]any{"slack_channel_ids": []string{"C0PAYMENTS1"}, "services": []string{"payment"}},
		"create_pipeline_schedule": true, "pipeline_schedule": "0 2 * * *", "deployment_mode": "dedicated"})
	if code != 200 || body["status"] != "succeeded" {
		t.Fatalf("provision: %d %v", code, body)
	}
	token, _ := body["team_token"].(string)
	stop()
	for _, f := range []string{devConfigServiceState, devClusterState} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(filepath.Join(dir, f)); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", f, fi.Mode().Perm())
		}
		if _, secret, _ := strings.Cut(token, "."); secret == "" || strings.Contains(string(b), secret) {
			t.Errorf("%s holds the team token's secret (or there was no token: %q)", f, token)
		}
	}

	base, stop, logs := devServe(t, dir)
	defer stop()
	for _, line := range logs {
		if strings.Contains(line, "CronJob drift repaired") {
			t.Errorf("the restart repaired drift: %s", line)
		}
	}
	if last := logs[len(logs)-1]; !strings.Contains(last, `"msg":"schedule reconcile"`) || !strings.Contains(last, `"checked":1,"repaired":0`) {
		t.Errorf("the first reconcile after the restart did not check the one schedule cleanly:\n%s", strings.Join(logs, ""))
	}
	code, body = apiCall(t, "GET", base+"/api/v1/admin/teams/acme/payments/deployment", "dev-admin-token", nil)
	if code != 200 || body["mode"] != "dedicated" {
		t.Fatalf("payments' agent after the restart: %d %v", code, body)
	}
	code, body = apiCall(t, "POST", base+"/api/v1/admin/deprovision/team", "dev-admin-token", map[string]any{
		"org_id": "acme", "team_node_id": "payments", "delete_k8s_resources": true, "revoke_tokens": true, "clear_routing": true})
	if code != 200 || body["ok"] != true || len(body["errors"].([]any)) != 0 {
		t.Fatalf("deprovision after the restart: %d %v", code, body)
	}
	var done []string
	for _, d := range body["deleted"].([]any) {
		d := d.(map[string]any)
		done = append(done, fmt.Sprint(d["action"], " ", d["kind"]))
	}
	if want := "delete CronJob,delete Deployment,delete Service,revoke_token <nil>,clear_routing <nil>,remove_schedule <nil>"; strings.Join(done, ",") != want {
		t.Fatalf("deprovision did %v, want %s", done, want)
	}
}

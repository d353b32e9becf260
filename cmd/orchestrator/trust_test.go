package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

// serveDev starts `serve --dev` in-process with env and returns its base
// URL, what it printed, and a stop function.
func serveDev(t *testing.T, dir string, env map[string]string) (string, *lineWaiter, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs, stdout := newLineWaiter(), newLineWaiter()
	exited := make(chan struct{})
	var runErr error
	go func() {
		defer logs.cond.Broadcast()
		defer close(exited)
		runErr = run(ctx, []string{"serve", "--dev", "--addr", "127.0.0.1:0", "--data-dir", dir}, envOf(env), stdout, logs)
	}()
	listening, ok := logs.wait("listening", exited)
	if !ok {
		t.Fatalf("serve exited: %v\n%s", runErr, logs)
	}
	if _, ok := logs.wait("started", exited); !ok {
		t.Fatalf("serve exited: %v\n%s", runErr, logs)
	}
	stop := func() {
		cancel()
		<-exited
	}
	t.Cleanup(stop)
	return "http://" + listening["addr"].(string), stdout, stop
}

func sendSignedSample(t *testing.T, base, source, secret string) int {
	t.Helper()
	now := wallclock.Now()
	body := webhook.Sample(source, "trust-"+source, now)
	req, _ := http.NewRequest("POST", base+webhook.BuiltinPath(source), bytes.NewReader(body))
	req.Header = webhook.Sign(source, secret, body, now, "trust-"+source)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// SPEC §18: dev mode's webhook secrets are public, so they are installed
// only while every peer is a built-in fake. The review's reproduction: with
// AGENT_API_URL pointing at a real agent, a PagerDuty event signed with the
// dev secret was accepted and would have reached it. Now it is 401.
func TestServe_DevModeWithARealPeerInstallsNoDevSecrets(t *testing.T) {
	realAgent := httptest.NewServer(peerstest.NewAgent())
	defer realAgent.Close()
	base, stdout, stop := serveDev(t, t.TempDir(), map[string]string{"AGENT_API_URL": realAgent.URL})
	if code := sendSignedSample(t, base, "pagerduty", "dev-pagerduty-secret"); code != 401 {
		t.Fatalf("a dev-signed PagerDuty event with a real agent = %d, want 401", code)
	}
	if strings.Contains(stdout.String(), "webhook secret") {
		t.Fatalf("dev secrets printed with a real peer:\n%s", stdout)
	}
	stop()

	// With every peer a fake, the dev secrets are there as before.
	base, stdout, _ = serveDev(t, t.TempDir(), nil)
	if code := sendSignedSample(t, base, "pagerduty", "dev-pagerduty-secret"); code != 200 {
		t.Fatalf("a dev-signed PagerDuty event with the fakes = %d, want 200", code)
	}
	if !strings.Contains(stdout.String(), "dev mode: pagerduty webhook secret dev-pagerduty-secret") {
		t.Fatalf("dev secrets not printed:\n%s", stdout)
	}
}

// SPEC §18: the database, its WAL and shared memory, and every snapshot are
// 0600; the data directory the appliance creates is 0700; /ui/static/ lists
// nothing. Before the fix they were 0644 and 0755 under the usual umask.
func TestServe_FilesAreTheOwnersOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	base, _, _ := serveDev(t, dir, nil)
	if code := sendSignedSample(t, base, "slack", "dev-slack-secret"); code != 200 {
		t.Fatalf("sample = %d", code)
	}
	mode := func(p string) os.FileMode {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	if m := mode(dir); m != 0o700 {
		t.Errorf("data directory mode %o, want 700", m)
	}
	for _, f := range []string{"orchestrator.db", "orchestrator.db-wal", "orchestrator.db-shm"} {
		if m := mode(filepath.Join(dir, f)); m != 0o600 {
			t.Errorf("%s mode %o, want 600", f, m)
		}
	}
	snap := filepath.Join(t.TempDir(), "snap.db")
	if err := run(context.Background(), []string{"backup", "--out", snap, "--data-dir", dir}, envOf(nil), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if m := mode(snap); m != 0o600 {
		t.Errorf("snapshot mode %o, want 600", m)
	}
	for path, want := range map[string]int{"/ui/static/": 404, "/ui/static": 404, "/ui/static/app.css": 200} {
		if code, body := get(t, base+path); code != want {
			t.Errorf("GET %s = %d, want %d: %.200s", path, code, want, body)
		}
	}
}

// apiCall sends a JSON request with the admin token and decodes the answer.
func apiCall(t *testing.T, method, url, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// The newcomer's report: the README's provisioning example gave a new
// dedicated team the sample Slack channel; in dev mode's simulated cluster
// the dedicated agent's Service resolved nowhere, so every later Slack
// sample ended dead and agent runs answered 502 "no such host". Now a
// simulated dedicated agent is served by the built-in fake agent, and the
// sample channel, owned by the seeded team, cannot be taken (409).
func TestServe_DevModeDedicatedTeamIsServedByTheFakeAgent(t *testing.T) {
	const token = "dev-walkthrough-token"
	base, _, _ := serveDev(t, t.TempDir(), map[string]string{"ORCHESTRATOR_DEV_ADMIN_TOKEN": token, "KUBECONFIG": "/nonexistent"})
	code, body := apiCall(t, "POST", base+"/api/v1/admin/provision/team", token, map[string]any{"org_id": "acme",
		"team_node_id": "payments", "routing": map[string]any{"slack_channel_ids": []string{"C0A4967KRBM"}}, "deployment_mode": "dedicated"})
	if code != 409 || body["error"] != "routing_conflict" {
		t.Fatalf("taking the sample channel = %d %v", code, body)
	}
	code, body = apiCall(t, "POST", base+"/api/v1/admin/provision/team", token, map[string]any{"org_id": "acme",
		"team_node_id": "payments", "routing": map[string]any{"slack_channel_ids": []string{"C0PAYMENTS1"}, "services": []string{"payment"}},
		"create_pipeline_schedule": true, "pipeline_schedule": "0 2 * * *", "deployment_mode": "dedicated"})
	if code != 200 || body["status"] != "succeeded" {
		t.Fatalf("provisioning a dedicated team = %d %v", code, body)
	}
	code, body = apiCall(t, "POST", base+"/api/v1/admin/agents/run", token, map[string]any{"org_id": "acme",
		"team_node_id": "payments", "agent_name": "planner", "message": "why is checkout slow?"})
	if code != 200 || body["agent_result"] == nil {
		t.Fatalf("agent run for the dedicated team = %d %v", code, body)
	}
	// A mention in the team's own channel reaches it; the sample channel's
	// still reaches the seeded team.
	now := wallclock.Now()
	for channel, team := range map[string]string{"C0PAYMENTS1": "payments", "C0A4967KRBM": peerstest.DevTeam} {
		msg := []byte(`{"type":"event_callback","event_id":"Ev-` + channel + `","event":{"type":"app_mention","channel":"` + channel + `","text":"<@U0BOT> hi"}}`)
		req, _ := http.NewRequest("POST", base+"/webhooks/slack/events", bytes.NewReader(msg))
		req.Header = webhook.Sign(webhook.Slack, "dev-slack-secret", msg, now, "")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var ack map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&ack)
		resp.Body.Close()
		id, _ := ack["event_id"].(string)
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, ev := apiCall(t, "GET", base+"/api/v1/admin/events/"+id, token, nil)
			if ev["status"] == "delivered" {
				if ev["team_node_id"] != team {
					t.Fatalf("mention in %s went to %v", channel, ev["team_node_id"])
				}
				break
			}
			if ev["status"] == "dead" || ev["status"] == "failed" || time.Now().After(deadline) {
				t.Fatalf("mention in %s: %v", channel, ev)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

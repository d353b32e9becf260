package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

// The real binary acks signed events under load and is killed with SIGKILL
// right after the last ack, while dispatch is stuck on the routing lookup.
// After a restart every acknowledged event is in the store and reaches the
// agent exactly once.
func TestCrash_SIGKILLAfterAcksLosesNothingAndDispatchesOnce(t *testing.T) {
	const secret, admin = "crash-slack-secret", "crash-admin-token"
	cs := peerstest.NewDevConfigService(admin)
	agent := peerstest.NewAgent()
	csSrv, agentSrv, pipeSrv := httptest.NewServer(cs), httptest.NewServer(agent), httptest.NewServer(peerstest.NewAIPipeline())
	defer csSrv.Close()
	defer agentSrv.Close()
	defer pipeSrv.Close()

	hold := make(chan struct{})
	cs.Fail(peerstest.RouteRoutingLookup, peerstest.Fault{Until: hold})
	dir := t.TempDir()
	env := []string{
		"CONFIG_SERVICE_URL=" + csSrv.URL, "AGENT_API_URL=" + agentSrv.URL, "AI_PIPELINE_API_URL=" + pipeSrv.URL,
		"ORCHESTRATOR_INTERNAL_ADMIN_TOKEN=" + admin, "SLACK_SIGNING_SECRET=" + secret,
		"ORCHESTRATOR_DATA_DIR=" + dir, "ORCHESTRATOR_LISTEN_ADDR=127.0.0.1:0", "KUBECONFIG=/nonexistent",
		"ORCHESTRATOR_WEBHOOK_RATE_LIMIT=0", "ORCHESTRATOR_TEAM_DISPATCH_PER_MINUTE=100000",
	}
	first, logs, _ := child(t, env, "serve")
	base := "http://" + waitLine(t, logs, "listening")["addr"].(string)
	waitLine(t, logs, "started")
	go drain(logs)

	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	const senders, perSender = 4, 25
	client := &http.Client{Timeout: 10 * time.Second}
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perSender {
				id := fmt.Sprintf("crash%d_%d", s, i)
				body := webhook.Sample(webhook.Slack, id, time.Now())
				req, _ := http.NewRequest("POST", base+"/webhooks/slack/events", bytes.NewReader(body))
				req.Header = webhook.Sign(webhook.Slack, secret, body, time.Now(), "")
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("send: %v", err)
					return
				}
				var out struct {
					OK      bool   `json:"ok"`
					EventID string `json:"event_id"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if resp.StatusCode == 200 && out.OK {
					mu.Lock()
					acked[out.EventID] = true
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	if len(acked) != senders*perSender {
		t.Fatalf("%d of %d events acked before the kill", len(acked), senders*perSender)
	}
	if n := len(agent.Calls()); n != 0 {
		t.Fatalf("the agent was called %d times before the kill (routing was held)", n)
	}

	// Restart with routing working.
	close(hold)
	cs.Clear()
	second, logs2, _ := child(t, env, "serve")
	waitLine(t, logs2, "started")
	go drain(logs2)
	deadline := time.Now().Add(60 * time.Second)
	for {
		calls := map[string]int{}
		for _, c := range agent.CallsTo(peerstest.RouteAgentRun) {
			calls[c.Header.Get("X-Correlation-ID")]++
		}
		done := true
		for id := range acked {
			if calls[id] == 0 {
				done = false
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart only %d of %d acked events reached the agent", len(calls), len(acked))
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = second.Process.Signal(syscall.SIGTERM)
	_ = second.Wait()
	calls := map[string]int{}
	for _, c := range agent.CallsTo(peerstest.RouteAgentRun) {
		calls[c.Header.Get("X-Correlation-ID")]++
	}
	for id := range acked {
		if calls[id] != 1 {
			t.Errorf("event %s reached the agent %d times", id, calls[id])
		}
	}
	t.Logf("%d acked events, all delivered exactly once after SIGKILL and restart", len(acked))
}

// drain keeps reading a child's log so it never blocks on a full pipe.
func drain(r interface{ ReadString(byte) (string, error) }) {
	for {
		if _, err := r.ReadString('\n'); err != nil {
			return
		}
	}
}

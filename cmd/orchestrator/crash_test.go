package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite" // reads the database after the crashes

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

// The real binary acks signed events under load and is killed with SIGKILL
// right after the last ack, while dispatch is stuck on the routing lookup.
// After a restart every acknowledged event is in the store and reaches the
// agent exactly once.
func TestCrash_SIGKILLAfterAcksLosesNothingAndDispatchesOnce(t *testing.T) {
	const secret, admin = "crash-slack-secret", "crash-admin-token"
	f := startPeerFakes(t, admin)
	cs, agent := f.cs, f.agent
	hold := make(chan struct{})
	cs.Fail(peerstest.RouteRoutingLookup, peerstest.Fault{Until: hold})
	dir := t.TempDir()
	env := append(f.env, "SLACK_SIGNING_SECRET="+secret, "ORCHESTRATOR_DATA_DIR="+dir)
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
				body := webhook.Sample(webhook.Slack, id, wallclock.Now())
				req, _ := http.NewRequest("POST", base+"/webhooks/slack/events", bytes.NewReader(body))
				req.Header = webhook.Sign(webhook.Slack, secret, body, wallclock.Now(), "")
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
		calls := callsPerEvent(agent)
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
	calls := callsPerEvent(agent)
	for id := range acked {
		if calls[id] != 1 {
			t.Errorf("event %s reached the agent %d times", id, calls[id])
		}
	}
	t.Logf("%d acked events, all delivered exactly once after SIGKILL and restart", len(acked))
}

// callsPerEvent counts the agent's calls per event: a lone event by its
// X-Correlation-ID, the events of a digest by the ids it lists.
func callsPerEvent(agent *peerstest.Agent) map[string]int {
	calls := map[string]int{}
	for _, c := range agent.CallsTo(peerstest.RouteAgentRun) {
		var body struct {
			TriggerSource string `json:"trigger_source"`
			Context       struct {
				Metadata struct {
					Events []struct {
						EventID string `json:"event_id"`
					} `json:"events"`
				} `json:"metadata"`
			} `json:"context"`
		}
		_ = json.Unmarshal(c.Body, &body)
		if body.TriggerSource != "digest" {
			calls[c.Header.Get("X-Correlation-ID")]++
			continue
		}
		// A digest carries each folded event by id.
		for _, e := range body.Context.Metadata.Events {
			calls[e.EventID]++
		}
	}
	return calls
}

// peerFakes serves the three peer fakes on loopback for a child process and
// returns the environment that points it at them.
type peerFakes struct {
	cs    *peerstest.ConfigService
	agent *peerstest.Agent
	pipe  *peerstest.AIPipeline
	env   []string
}

// mustDevConfigService is dev mode's seeded Config Service fake, in memory.
func mustDevConfigService(t testing.TB, admin string) *peerstest.ConfigService {
	cs, err := peerstest.NewDevConfigService(admin, "")
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func startPeerFakes(t testing.TB, admin string) *peerFakes {
	f := &peerFakes{cs: mustDevConfigService(t, admin), agent: peerstest.NewAgent(), pipe: peerstest.NewAIPipeline()}
	csSrv, agentSrv, pipeSrv := httptest.NewServer(f.cs), httptest.NewServer(f.agent), httptest.NewServer(f.pipe)
	t.Cleanup(csSrv.Close)
	t.Cleanup(agentSrv.Close)
	t.Cleanup(pipeSrv.Close)
	f.env = []string{"CONFIG_SERVICE_URL=" + csSrv.URL, "AGENT_API_URL=" + agentSrv.URL, "AI_PIPELINE_API_URL=" + pipeSrv.URL,
		"ORCHESTRATOR_INTERNAL_ADMIN_TOKEN=" + admin, "KUBECONFIG=/nonexistent", "ORCHESTRATOR_LISTEN_ADDR=127.0.0.1:0",
		"ORCHESTRATOR_WEBHOOK_RATE_LIMIT=0", "ORCHESTRATOR_TEAM_DISPATCH_PER_MINUTE=1000000"}
	return f
}

// webhookPaths are the routes of the sources the process tests send.
var webhookPaths = map[string]string{webhook.Slack: "/webhooks/slack/events", webhook.GitHub: "/webhooks/github", webhook.PagerDuty: "/webhooks/pagerduty"}

// sendSigned posts a sample event of src with id, signed with secret (and
// with delivery as its vendor delivery id, if the source has one), to a
// process at base, and returns the answer's status and JSON body.
func sendSigned(client *http.Client, base, src, secret, id, delivery string) (int, map[string]any, error) {
	body := webhook.Sample(src, id, wallclock.Now())
	req, _ := http.NewRequest("POST", base+webhookPaths[src], bytes.NewReader(body))
	req.Header = webhook.Sign(src, secret, body, wallclock.Now(), delivery)
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, nil
}

// drain keeps reading a child's log so it never blocks on a full pipe.
func drain(r interface{ ReadString(byte) (string, error) }) {
	for {
		if _, err := r.ReadString('\n'); err != nil {
			return
		}
	}
}

// Several rounds of SIGKILL at random moments while signed events of three
// sources stream in and a provisioning run is in progress. Afterwards every
// acknowledged event is stored and reaches the agent exactly once, no run is
// left running, and the database passes PRAGMA integrity_check.
func TestCrash_RandomSIGKILLRoundsUnderLoad(t *testing.T) {
	const admin = "crash-admin-token"
	secrets := map[string]string{webhook.Slack: "s-secret", webhook.GitHub: "g-secret", webhook.PagerDuty: "p-secret"}
	f := startPeerFakes(t, admin)
	cs, agent, pipe := f.cs, f.agent, f.pipe
	hold := make(chan struct{})
	cs.Fail(peerstest.RouteRoutingLookup, peerstest.Fault{Until: hold})
	pipe.Fail(peerstest.RouteBootstrap, peerstest.Fault{Until: hold})
	dir := t.TempDir()
	env := append(f.env, "SLACK_SIGNING_SECRET="+secrets[webhook.Slack], "GITHUB_WEBHOOK_SECRET="+secrets[webhook.GitHub],
		"PAGERDUTY_WEBHOOK_SECRETS="+secrets[webhook.PagerDuty], "ORCHESTRATOR_DATA_DIR="+dir)
	client := &http.Client{Timeout: 5 * time.Second}
	var mu sync.Mutex
	acked := map[string]bool{}
	const rounds = 4
	for round := range rounds {
		proc, logs, _ := child(t, env, "serve")
		base := "http://" + waitLine(t, logs, "listening")["addr"].(string)
		waitLine(t, logs, "started")
		go drain(logs)
		mu.Lock()
		before := len(acked)
		mu.Unlock()

		stop := make(chan struct{})
		var wg sync.WaitGroup
		for src := range secrets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("r%d_%s_%d", round, src, i)
					code, out, err := sendSigned(client, base, src, secrets[src], id, "d-"+id)
					if err != nil {
						return // the process died under us: that request was never acked
					}
					if eventID, _ := out["event_id"].(string); code == 200 && eventID != "" {
						mu.Lock()
						acked[eventID] = true
						mu.Unlock()
					}
				}
			}()
		}
		// A provisioning run that is held in its bootstrap step when the kill comes.
		go func() {
			req, _ := http.NewRequest("POST", base+"/api/v1/admin/provision/team",
				strings.NewReader(fmt.Sprintf(`{"org_id":"acme","team_node_id":"crash-%d"}`, round)))
			req.Header.Set("Authorization", "Bearer "+admin)
			req.Header.Set("Content-Type", "application/json")
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		// Kill at a random moment once this round has events in: on a
		// loaded machine the first ack can take longer than the random wait,
		// and a round killed before it proves nothing.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			n := len(acked)
			mu.Unlock()
			if n > before {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: no event acked within 30 s", round)
			}
		}
		time.Sleep(time.Duration(50+rand.IntN(250)) * time.Millisecond)
		_ = proc.Process.Signal(syscall.SIGKILL)
		_ = proc.Wait()
		close(stop)
		wg.Wait()
	}
	if len(acked) == 0 {
		t.Fatal("no event was acked in any round")
	}
	if n := len(agent.Calls()); n != 0 {
		t.Fatalf("the agent was called %d times while routing was held", n)
	}

	// Recovery: routing and bootstrap work again.
	close(hold)
	cs.Clear()
	pipe.Clear()
	final, logs, _ := child(t, env, "serve")
	base := "http://" + waitLine(t, logs, "listening")["addr"].(string)
	waitLine(t, logs, "started")
	go drain(logs)
	deadline := time.Now().Add(60 * time.Second)
	for {
		calls := callsPerEvent(agent)
		missing := 0
		for id := range acked {
			if calls[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acked events never reached the agent", missing, len(acked))
		}
		time.Sleep(10 * time.Millisecond)
	}
	req, _ := http.NewRequest("GET", base+"/api/v1/admin/provision/runs?status=running", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var runs struct {
		Runs []any `json:"runs"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&runs)
	resp.Body.Close()
	if len(runs.Runs) != 0 {
		t.Fatalf("%d runs left running", len(runs.Runs))
	}
	_ = final.Process.Signal(syscall.SIGTERM)
	_ = final.Wait()

	calls := callsPerEvent(agent)
	for id := range acked {
		if calls[id] != 1 {
			t.Errorf("event %s reached the agent %d times", id, calls[id])
		}
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "orchestrator.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var check string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check = %q %v", check, err)
	}
	var stored, interrupted int
	_ = db.QueryRow(`SELECT COUNT(*) FROM orchestrator_webhook_events`).Scan(&stored)
	_ = db.QueryRow(`SELECT COUNT(*) FROM orchestrator_provisioning_runs WHERE error LIKE 'interrupted%'`).Scan(&interrupted)
	t.Logf("%d rounds: %d events acked (%d stored), each delivered exactly once; %d interrupted runs settled; integrity ok",
		rounds, len(acked), stored, interrupted)
}

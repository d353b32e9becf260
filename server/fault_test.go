package server_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/kube"
	"github.com/incidentfox/orchestrator-edge/kube/kubetest"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// mount runs mount(8); the fault tests need root for a tmpfs of their own.
func mount(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		t.Fatalf("mount %v: %v %s", args, err, out)
	}
}

// bigAlert is a unique Coralogix alert of about n bytes.
// bigAlert is an alert of about n bytes that does not compress (bodies are
// stored compressed): its padding is random hex.
func bigAlert(i, n int) []byte {
	return fmt.Appendf(nil, `{"alert_name":"fill %d","team_name":"acme","pad":"%s"}`, i, randomHex(n))
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// The data disk (a 3 MiB tmpfs) fills up: webhooks answer 503, never 200,
// for what they could not store; the process stays up; everything
// acknowledged stays readable; and once the disk grows, intake works again
// without a restart. (Remounting read-only is refused while the database is
// open, so that fault is not staged here.)
func TestFault_DiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	e := newEnv(t, envOptions{webhooks: true, noDispatch: true, dataDir: dir})
	coral := http.Header{"X-Webhook-Token": {coralogixToken}, "Content-Type": {"application/json"}}

	var acked []string
	full := false
	for i := range 40 {
		r := e.send(webhook.Coralogix, bigAlert(i, 300<<10), coral)
		switch r.code {
		case 200:
			acked = append(acked, r.body["event_id"].(string))
		case 503:
			if r.body["error"] != "store_unavailable" {
				t.Fatalf("disk full answer: %s", r.raw)
			}
			full = true
		default:
			t.Fatalf("disk full: %d %s", r.code, r.raw)
		}
		if full {
			break
		}
	}
	if !full || len(acked) == 0 {
		t.Fatalf("the disk never filled (acked %d)", len(acked))
	}
	// Small events may still fit; fill what is left until they do not.
	for i := range 2000 {
		body, h := signed(webhook.Slack, fmt.Sprint("small", i), slackSecret, wallclock.Now())
		r := e.send(webhook.Slack, body, h)
		if r.code == 200 {
			acked = append(acked, r.body["event_id"].(string))
			continue
		}
		if r.code != 503 {
			t.Fatalf("small event on a full disk: %d %s", r.code, r.raw)
		}
		break
	}
	// (/ready may still say 200 here: its probe rewrites one page, which can
	// fit where an event with its five index entries does not.)
	if r := e.do("GET", "/health", "", nil); r.code != 200 {
		t.Fatal("the process stopped answering")
	}
	for _, id := range acked {
		if r := e.do("GET", "/api/v1/admin/events/"+id, adminToken, nil); r.code != 200 {
			t.Fatalf("acked event %s unreadable on a full disk: %d", id, r.code)
		}
	}

	// The disk grows: intake works again, without a restart.
	mount(t, "-o", "remount,size=64m", dir)
	body, h := signed(webhook.Slack, "after-full", slackSecret, wallclock.Now())
	if r := e.send(webhook.Slack, body, h); r.code != 200 {
		t.Fatalf("after the disk grew: %d %s", r.code, r.raw)
	}

	for _, id := range acked {
		if r := e.do("GET", "/api/v1/admin/events/"+id, adminToken, nil); r.code != 200 {
			t.Fatalf("acked event %s lost: %d", id, r.code)
		}
	}
	t.Logf("%d events acked before the disk filled; all kept; intake recovered after the disk grew", len(acked))
}

// The kube-apiserver stops in the middle of a provisioning run: the run
// fails with 503 kubernetes_not_available, the token it issued is revoked,
// the CronJob it could not delete is reported as left behind, and the
// process goes on serving.
func TestFault_APIServerStopsMidProvisioning(t *testing.T) {
	kubetest.Require(t, cluster)
	own, err := kubetest.Start()
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = own.Stop()
		}
	}()
	kc := kube.New(own.Clientset, "default")
	e := newEnv(t, envOptions{cluster: kc})
	hold := make(chan struct{})
	e.pipe.Fail(peerstest.RouteBootstrap, peerstest.Fault{Until: hold, Times: 1})
	done := make(chan response, 1)
	go func() { done <- e.do("POST", provisionPath, adminToken, fullRequest("acme", "midway")) }()
	waitFor(t, "the bootstrap call", func() bool { return len(e.pipe.CallsTo(peerstest.RouteBootstrap)) > 0 })
	if err := own.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	close(hold)
	r := <-done
	if r.code != 503 || r.body["error"] != "kubernetes_not_available" || steps(r.body)["dedicated_agent"] != "failed" {
		t.Fatalf("provision with the API server gone = %d %s", r.code, r.raw)
	}
	for _, tok := range e.cs.Tokens("acme", "midway") {
		if !tok.Revoked {
			t.Fatalf("token %s left active", tok.ID)
		}
	}
	if got := steps(r.body)["compensate_pipeline_cronjob"]; got != "failed" || !strings.Contains(stepField(r.body, "compensate_pipeline_cronjob", "error"), "could not undo CronJob/") {
		t.Fatalf("the orphaned CronJob is not reported: %s", r.raw)
	}
	// A team that needs nothing from the cluster is still provisioned.
	if r := e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "acme", "team_node_id": "no-cluster-needed"}); r.code != 200 {
		t.Fatalf("shared team without schedule, cluster down = %d %s", r.code, r.raw)
	}
	if r := e.do("GET", "/health", "", nil); r.code != 200 {
		t.Fatal("the process stopped answering")
	}
}

// Peer faults during dispatch: transient ones (5xx, closed connections)
// are retried to delivery; a refusal (401) fails the event without retry;
// nothing is lost either way.
func TestFault_PeersDuringDispatch(t *testing.T) {
	cases := []struct {
		name   string
		inject func(e *env)
		want   string
		calls  int // agent calls
	}{
		{"routing 500 twice", func(e *env) { e.cs.Fail(peerstest.RouteRoutingLookup, peerstest.Fault{Status: 500, Times: 2}) }, "delivered", 1},
		{"routing closes the connection", func(e *env) { e.cs.Fail(peerstest.RouteRoutingLookup, peerstest.Fault{Close: true, Times: 1}) }, "delivered", 1},
		{"impersonation 503", func(e *env) { e.cs.Fail(peerstest.RouteImpersonate, peerstest.Fault{Status: 503, Times: 1}) }, "delivered", 1},
		{"config/me closes", func(e *env) { e.cs.Fail(peerstest.RouteConfigMe, peerstest.Fault{Close: true, Times: 1}) }, "delivered", 1},
		{"agent closes the connection", func(e *env) { e.agent.Fail(peerstest.RouteAgentRun, peerstest.Fault{Close: true, Times: 1}) }, "delivered", 2},
		{"agent 429", func(e *env) { e.agent.Fail(peerstest.RouteAgentRun, peerstest.Fault{Status: 429, Times: 1}) }, "delivered", 2},
		{"routing 401", func(e *env) { e.cs.Fail(peerstest.RouteRoutingLookup, peerstest.Fault{Status: 401}) }, "failed", 0},
		{"impersonation 403", func(e *env) { e.cs.Fail(peerstest.RouteImpersonate, peerstest.Fault{Status: 403}) }, "failed", 0},
		{"agent 401", func(e *env) { e.agent.Fail(peerstest.RouteAgentRun, peerstest.Fault{Status: 401}) }, "failed", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{webhooks: true})
			tc.inject(e)
			body, h := signed(webhook.PagerDuty, "fault", pagerdutySecret, wallclock.Now())
			r := e.send(webhook.PagerDuty, body, h)
			if r.code != 200 {
				t.Fatalf("ack = %d", r.code)
			}
			ev := e.waitStatus(r.body["event_id"].(string), tc.want)
			if got := len(e.agent.CallsTo(peerstest.RouteAgentRun)); got != tc.calls {
				t.Fatalf("agent calls = %d, want %d (event %+v)", got, tc.calls, ev.LastError)
			}
			if tc.want == "failed" && ev.LastError == "" {
				t.Fatal("failed without a reason")
			}
		})
	}
}

// An event whose stored payload was corrupted after its ack (a crafted row,
// a snapshot someone handed to restore) ends failed with the reason, without
// an agent call; its neighbours are delivered, the API and the page say
// the event is unreadable (issue 43).
func TestFault_AnUnreadableStoredPayloadFailsItsEventAlone(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, noDispatch: true})
	good := e.sendPD(t, "PD-ok", "Q1OK", "incident.triggered")
	bad := e.sendPD(t, "PD-bad", "Q1BAD", "incident.triggered")
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(e.dataDir, "orchestrator.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	crafted := []byte("\x02\xcc\xcc\xcc\xcc\x06accept\xf3\xf3\xf3\xf3\x0f:,\x03\x00.-\x03\x00.02\\x")
	if _, err := raw.Exec(`UPDATE orchestrator_event_payloads SET payload = ? WHERE event_id = ?`, crafted, e.event(t, bad).Key); err != nil {
		t.Fatal(err)
	}
	if r := e.do("GET", "/api/v1/admin/events/"+bad, adminToken, nil); r.code != 200 || r.body["payload_error"] == nil || r.body["body"] != nil {
		t.Fatalf("the event API on the corrupt event = %d %s", r.code, r.raw)
	}
	if err := e.disp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.disp.Stop(context.Background()) })
	e.waitStatus(good, store.EventDelivered)
	ev := e.waitStatus(bad, store.EventFailed)
	if !strings.Contains(ev.LastError, "stored payload unreadable") {
		t.Fatalf("last error %q", ev.LastError)
	}
	for _, m := range e.agentMessages() {
		if strings.Contains(m, "Q1BAD") {
			t.Fatalf("the agent was called about the unreadable event: %q", m)
		}
	}
	if n := len(e.agentMessages()); n != 1 {
		t.Fatalf("%d agent calls, want 1", n)
	}
}

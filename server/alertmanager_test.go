package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// alertmanagerBinary is a real Prometheus Alertmanager, built by
// hack/alertmanager.sh (make alertmanager) into the cache.
func alertmanagerBinary(t *testing.T) string {
	t.Helper()
	path := os.Getenv("ALERTMANAGER")
	if path == "" {
		home, _ := os.UserHomeDir()
		path = filepath.Join(home, ".cache", "orchestrator-edge", "alertmanager-v0.35.0", "alertmanager")
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("ORCHESTRATOR_TEST_REQUIRE_ALERTMANAGER") == "1" {
			t.Fatalf("alertmanager is required: run hack/alertmanager.sh (%v)", err)
		}
		t.Skip("alertmanager not built (hack/alertmanager.sh)")
	}
	return path
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startAlertmanager runs Alertmanager with a webhook receiver pointed at
// the orchestrator: bearer auth for most alerts, basic auth for those
// labelled via="basic". It returns Alertmanager's address.
func startAlertmanager(t *testing.T, orchestrator, token string, repeat time.Duration) string {
	t.Helper()
	cfg := fmt.Sprintf(`route:
  receiver: orchestrator
  group_by: [alertname, service]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: %[3]s
  routes:
    - receiver: orchestrator-basic
      matchers: ['via="basic"']
receivers:
  - name: orchestrator
    webhook_configs:
      - url: %[1]s/webhooks/alertmanager
        send_resolved: true
        http_config:
          authorization: {type: Bearer, credentials: %[2]s}
  - name: orchestrator-basic
    webhook_configs:
      - url: %[1]s/webhooks/alertmanager
        send_resolved: true
        http_config:
          basic_auth: {username: alertmanager, password: %[2]s}
`, orchestrator, token, model(repeat))
	return runAlertmanager(t, cfg)
}

// runAlertmanager runs a real Alertmanager with the configuration cfg
// until the test ends, and returns its address once it is ready.
func runAlertmanager(t *testing.T, cfg string) string {
	t.Helper()
	bin := alertmanagerBinary(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "alertmanager.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	runProcess(t, "alertmanager", bin, "--config.file="+filepath.Join(dir, "alertmanager.yml"),
		"--storage.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--cluster.listen-address=")
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager did not become ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runProcess runs bin with args until the test ends; a failed test logs
// what it wrote.
func runProcess(t *testing.T, name, bin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s's log:\n%s", name, logs.String())
		}
	})
}

// pushAlerts posts alerts to Alertmanager's API; ends in the past resolves them.
func pushAlerts(t *testing.T, am string, ends time.Time, labels ...map[string]string) {
	t.Helper()
	var alerts []map[string]any
	for _, l := range labels {
		alerts = append(alerts, map[string]any{"labels": l, "startsAt": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339),
			"endsAt": ends.UTC().Format(time.RFC3339), "annotations": map[string]string{"summary": "checkout answers 503"}})
	}
	body, _ := json.Marshal(alerts)
	resp, err := http.Post("http://"+am+"/api/v2/alerts", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("alertmanager took the alerts with %d", resp.StatusCode)
	}
}

// waitAlertmanagerEvent waits for a delivered Alertmanager event of the
// event type whose body passes match.
func waitAlertmanagerEvent(t *testing.T, e *env, eventType string, match func(store.Event) bool) store.Event {
	t.Helper()
	return waitAlertmanagerStored(t, e, eventType, []string{store.EventDelivered}, match)
}

// TestAlertmanager_ARealAlertmanagerFiresAndResolvesThroughTheDoor: a real
// Alertmanager's webhook notifications (bearer and basic auth, as its
// http_config sends them) arrive, are routed by the service label and a
// configured label mapping, and reach the agent with a line naming the
// alerts; the resolve carries the same alert identity (group key) with no
// firing fingerprints left.
func TestAlertmanager_ARealAlertmanagerFiresAndResolvesThroughTheDoor(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, amLabels: map[string]string{"namespace": "k8s_namespace"}})
	if err := e.srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.srv.Shutdown(context.Background()) })
	am := startAlertmanager(t, "http://"+e.srv.Addr(), alertmanagerTok, time.Hour)

	a := map[string]string{"alertname": "CheckoutDown", "service": "checkout", "namespace": "payments", "severity": "critical", "pod": "checkout-a"}
	b := map[string]string{"alertname": "CheckoutDown", "service": "checkout", "namespace": "payments", "severity": "critical", "pod": "checkout-b"}
	pushAlerts(t, am, time.Now().Add(time.Hour), a, b)
	firing := waitAlertmanagerEvent(t, e, "alertmanager.firing", func(ev store.Event) bool {
		parsed, err := webhook.ParseAlertmanager(ev.Body, nil)
		return err == nil && len(parsed.Alert.Fingerprints) == 2
	})
	if firing.TeamNodeID != peerstest.DevTeam || firing.MatchedBy != "service" || firing.Identifiers["k8s_namespace"] != "payments" {
		t.Fatalf("firing event routed as %+v", firing.Identifiers)
	}
	if _, kept := firing.Headers["authorization"]; kept || firing.Headers["user-agent"] == "" {
		t.Fatalf("stored headers = %v (the token that verified it is never kept)", firing.Headers)
	}
	fired, _ := webhook.ParseAlertmanager(firing.Body, nil)

	pushAlerts(t, am, time.Now().Add(-time.Second), a, b)
	resolved := waitAlertmanagerEvent(t, e, "alertmanager.resolved", func(store.Event) bool { return true })
	done, _ := webhook.ParseAlertmanager(resolved.Body, nil)
	if done.Alert.Key != fired.Alert.Key || done.Alert.State != webhook.AlertResolved || len(done.Alert.Fingerprints) != 0 {
		t.Fatalf("resolve identity %+v, firing %+v", done.Alert, fired.Alert)
	}

	// Basic auth, as another receiver's http_config sends it.
	pushAlerts(t, am, time.Now().Add(time.Hour), map[string]string{"alertname": "QueueBacklog", "service": "checkout", "via": "basic"})
	basic := waitAlertmanagerEvent(t, e, "alertmanager.firing", func(ev store.Event) bool {
		return strings.Contains(string(ev.Body), "QueueBacklog")
	})

	joined := strings.Join(e.agentMessages(), "\n")
	for _, want := range []string{
		"Alertmanager firing: 2 alerts: CheckoutDown ×2 — service=checkout namespace=payments severity=critical. checkout answers 503",
		"Alertmanager resolved: 2 alerts: CheckoutDown ×2 — service=checkout namespace=payments severity=critical. checkout answers 503",
		"Alertmanager firing: 1 alert: QueueBacklog — service=checkout",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("no agent call says %q; they said:\n%s", want, joined)
		}
	}
	t.Logf("Alertmanager's notifications: firing %s, resolved %s, basic auth %s, all delivered", firing.ID, resolved.ID, basic.ID)
}

// model writes a duration as Alertmanager's configuration reads it.
func model(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

// openEnv is a webhook env listening on loopback (Alertmanager posts to it).
func openEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	o.webhooks = true
	e := newEnv(t, o)
	if err := e.srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.srv.Shutdown(context.Background()) })
	return e
}

// waitAlertmanagerStored waits for an Alertmanager event of the type in
// one of the statuses, whose body passes match.
func waitAlertmanagerStored(t *testing.T, e *env, eventType string, statuses []string, match func(store.Event) bool) store.Event {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		evs, _, err := e.db.ListEvents(context.Background(), store.EventFilter{Source: webhook.Alertmanager, Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if ev.EventType != eventType || !slices.Contains(statuses, ev.Status) {
				continue
			}
			if full, err := e.db.GetEvent(context.Background(), ev.ID); err == nil && match(full) {
				return full
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no %s event %v arrived", eventType, statuses)
	return store.Event{}
}

// TestAlertmanager_ARealResolveSettlesTheFiringHeldBack: a real
// Alertmanager's firing notification waits behind the team's spent limit;
// its resolved notification settles it at its ack: the agent never hears
// of the alert.
func TestAlertmanager_ARealResolveSettlesTheFiringHeldBack(t *testing.T) {
	e := openEnv(t, envOptions{teamPerMinute: 1, fakeClock: true})
	am := startAlertmanager(t, "http://"+e.srv.Addr(), alertmanagerTok, time.Hour)
	body := webhook.Sample(webhook.Slack, "spend", wallclock.Now())
	e.waitStatus(e.send(webhook.Slack, body, slackSigned(t, slackSecret, body)).body["event_id"].(string), store.EventDelivered)

	flap := map[string]string{"alertname": "DiskPressure", "service": "checkout", "instance": "node-3"}
	pushAlerts(t, am, time.Now().Add(time.Hour), flap)
	firing := waitAlertmanagerStored(t, e, "alertmanager.firing", []string{store.EventQueued}, func(ev store.Event) bool { return ev.TeamNodeID != "" })
	pushAlerts(t, am, time.Now().Add(-time.Second), flap)
	// The resolve settles when it is routed (the alert is one team's), so
	// wait for its team: a resolve read before its routing is still queued.
	resolved := waitAlertmanagerStored(t, e, "alertmanager.resolved", []string{store.EventSuppressed, store.EventQueued, store.EventDelivered},
		func(ev store.Event) bool { return ev.TeamNodeID != "" })
	f := e.event(t, firing.ID)
	if f.Status != store.EventSuppressed || f.SuppressedReason != "resolved" || f.SuppressedBy != resolved.ID ||
		resolved.Status != store.EventSuppressed || resolved.SuppressedBy != firing.ID {
		t.Fatalf("firing %s %s by %s; resolve %s by %s", f.Status, f.SuppressedReason, f.SuppressedBy, resolved.Status, resolved.SuppressedBy)
	}
	if msgs := e.agentMessages(); len(msgs) != 1 {
		t.Fatalf("agent heard %q", msgs)
	}
}

// TestAlertmanager_ARealRepeatIsSuppressedAndANewAlertIsNews: Alertmanager
// notifies the same group again after repeat_interval (a new body: its
// notification_reason says so); nothing new, it is suppressed as a repeat
// of the delivered one. A new alert joining the group is delivered.
func TestAlertmanager_ARealRepeatIsSuppressedAndANewAlertIsNews(t *testing.T) {
	e := openEnv(t, envOptions{alertRepeat: 4 * time.Hour})
	am := startAlertmanager(t, "http://"+e.srv.Addr(), alertmanagerTok, 2*time.Second)
	a := map[string]string{"alertname": "LatencyHigh", "service": "checkout", "pod": "checkout-a"}
	pushAlerts(t, am, time.Now().Add(time.Hour), a)
	first := waitAlertmanagerStored(t, e, "alertmanager.firing", []string{store.EventDelivered}, func(store.Event) bool { return true })
	repeat := waitAlertmanagerStored(t, e, "alertmanager.firing", []string{store.EventSuppressed}, func(store.Event) bool { return true })
	if repeat.SuppressedReason != "repeat" || repeat.SuppressedBy != first.ID || repeat.AlertKey != first.AlertKey {
		t.Fatalf("repeat = %s %s by %s", repeat.Status, repeat.SuppressedReason, repeat.SuppressedBy)
	}
	pushAlerts(t, am, time.Now().Add(time.Hour), map[string]string{"alertname": "LatencyHigh", "service": "checkout", "pod": "checkout-b"})
	joined := waitAlertmanagerStored(t, e, "alertmanager.firing", []string{store.EventDelivered}, func(ev store.Event) bool {
		parsed, err := webhook.ParseAlertmanager(ev.Body, nil)
		return err == nil && len(parsed.Alert.Fingerprints) == 2
	})
	if joined.AlertKey != first.AlertKey {
		t.Fatalf("the joined notification is of another group: %s vs %s", joined.AlertKey, first.AlertKey)
	}
	t.Logf("first %s delivered, repeat %s suppressed, a new alert joining (%s) delivered", first.ID, repeat.ID, joined.ID)
}

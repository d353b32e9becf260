package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/noise"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
	"sigs.k8s.io/yaml"
)

// amGroup is an Alertmanager notification of one group whose alerts share
// labels (its commonLabels).
func amCommon(group, status string, labels map[string]string) []byte {
	l, _ := json.Marshal(labels)
	return fmt.Appendf(nil, `{"version":"4","groupKey":"%s","status":"%s","receiver":"o","groupLabels":{},"commonLabels":%s,
		"commonAnnotations":{},"externalURL":"","alerts":[{"status":"%s","labels":%s,"annotations":{},
		"startsAt":"2026-11-26T01:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"%x"}],"n":%d}`,
		group, status, l, status, l, group, time.Now().UnixNano())
}

func (e *env) sendGroup(t *testing.T, group, status string, labels map[string]string) string {
	t.Helper()
	body := amCommon(group, status, labels)
	r := e.send(webhook.Alertmanager, body, webhook.Sign(webhook.Alertmanager, alertmanagerTok, body, wallclock.Now(), ""))
	if r.code != 200 {
		t.Fatalf("%s %s = %d %s", group, status, r.code, r.raw)
	}
	return r.body["event_id"].(string)
}

func (e *env) setInhibits(text string) {
	e.t.Helper()
	js, err := yaml.YAMLToJSON([]byte(text))
	if err != nil {
		e.t.Fatal(err)
	}
	rs, err := noise.ParseInhibitRules(js)
	if err != nil {
		e.t.Fatal(err)
	}
	e.inhibits.Store(rs)
}

const orgRoutes = `routes:
  - name: globex
    when: always
    match: ['label.org="globex"']
    route_to: {org_id: globex, team_node_id: ops}
  - name: fallback
    route_to: {org_id: ` + peerstest.DevOrg + `, team_node_id: ` + peerstest.DevTeam + `}
`

// TestInhibit_ANodeDownHoldsItsPodsInItsOrgAndReleasesThemWhenItResolves
// (SPEC §21): a firing NodeDown (itself matching the target: an alert
// never inhibits itself) holds its org's pod alerts on its node,
// suppressed inhibited with suppressed_by its event; a pod on another
// node, or another org's pod on the same node, goes to the agent. When
// NodeDown resolves, the pod still firing is released once (marked with
// the resolve) and delivered; the one that resolved meanwhile stays
// suppressed and the agent never hears of it.
func TestInhibit_ANodeDownHoldsItsPodsInItsOrgAndReleasesThemWhenItResolves(t *testing.T) {
	e, base := uiEnv(t, envOptions{fakeClock: true, routes: orgRoutes})
	e.cs.AddTeam("globex", "ops", map[string]any{})
	e.setInhibits(`
- source_matchers: [alertname="NodeDown"]
  target_matchers: ['alertname=~"NodeDown|Pod.*"']
  equal: [node]
`)
	node := e.sendGroup(t, "node-n1", "firing", map[string]string{"alertname": "NodeDown", "node": "n1"})
	e.waitStatus(node, store.EventDelivered)

	podA := e.sendGroup(t, "pod-a", "firing", map[string]string{"alertname": "PodCrashLooping", "node": "n1", "pod": "a"})
	podB := e.sendGroup(t, "pod-b", "firing", map[string]string{"alertname": "PodCrashLooping", "node": "n1", "pod": "b"})
	other := e.sendGroup(t, "pod-c", "firing", map[string]string{"alertname": "PodCrashLooping", "node": "n2", "pod": "c"})
	globex := e.sendGroup(t, "pod-g", "firing", map[string]string{"alertname": "PodCrashLooping", "node": "n1", "pod": "g", "org": "globex"})
	for _, id := range []string{podA, podB} {
		ev := e.waitStatus(id, store.EventSuppressed, store.EventDelivered)
		if ev.Status != store.EventSuppressed || ev.SuppressedReason != "inhibited" || ev.SuppressedBy != node {
			t.Fatalf("pod on the down node = %s %q by %q, want inhibited by %s", ev.Status, ev.SuppressedReason, ev.SuppressedBy, node)
		}
		if !strings.Contains(ev.LastError, "inhibited by event "+node) || !strings.Contains(ev.LastError, "inhibit_rules[0]") {
			t.Fatalf("why = %q", ev.LastError)
		}
	}
	if ev := e.waitStatus(other, store.EventSuppressed, store.EventDelivered); ev.Status != store.EventDelivered {
		t.Fatalf("a pod on another node = %s %s", ev.Status, ev.SuppressedReason)
	}
	if ev := e.waitStatus(globex, store.EventSuppressed, store.EventDelivered); ev.Status != store.EventDelivered || ev.OrgID != "globex" {
		t.Fatalf("another org's pod on the node = %s %s (org %s)", ev.Status, ev.SuppressedReason, ev.OrgID)
	}
	d := e.do("GET", "/api/v1/admin/events/"+podA, adminToken, nil)
	if d.body["suppressed_reason"] != "inhibited" || d.body["suppressed_by"] != node {
		t.Fatalf("event API = %s", d.raw)
	}
	page := func(id string) string {
		t.Helper()
		resp, err := login(t, base, adminToken).Get(base + "/ui/events/" + id)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if p := page(podA); !strings.Contains(p, `<a href="/ui/events/`+node+`" id="event-cause">inhibited by firing event `+node) {
		t.Fatalf("the event page does not name the inhibiting event:\n%s", p)
	}
	if !e.metric(`orchestrator_suppressed_total{reason="inhibited",source="alertmanager"} 2`) {
		t.Error("the inhibited are not counted")
	}
	if n := e.disp.ReleaseInhibited(); n != 0 {
		t.Fatalf("released %d while NodeDown fires", n)
	}

	// pod-b resolves while held; then the node comes back.
	e.sendGroup(t, "pod-b", "resolved", map[string]string{"alertname": "PodCrashLooping", "node": "n1", "pod": "b"})
	resolve := e.sendGroup(t, "node-n1", "resolved", map[string]string{"alertname": "NodeDown", "node": "n1"})
	waitFor(t, "the resolve routed", func() bool { return e.event(t, resolve).TeamNodeID != "" })
	e.clock.Add(time.Minute)
	// The dispatcher's own releaser may run first (every 10 s): either
	// way pod-a is released once (the metric below counts 1).
	if n := e.disp.ReleaseInhibited(); n > 1 {
		t.Fatalf("released %d, want pod-a only", n)
	}
	if n := e.disp.ReleaseInhibited(); n != 0 {
		t.Fatalf("released %d more the second time", n)
	}
	a := e.waitStatus(podA, store.EventDelivered, store.EventSuppressed)
	if a.Status != store.EventDelivered || a.ReleasedBy != resolve || a.SuppressedBy != node {
		t.Fatalf("released pod = %s released by %q held by %q", a.Status, a.ReleasedBy, a.SuppressedBy)
	}
	if b := e.event(t, podB); b.Status != store.EventSuppressed || b.ReleasedBy != "" {
		t.Fatalf("the pod that resolved meanwhile = %s released by %q", b.Status, b.ReleasedBy)
	}
	e.waitStatus(resolve, store.EventDelivered)
	if r := e.do("GET", "/api/v1/admin/events/"+podA, adminToken, nil); r.body["released_by"] != resolve {
		t.Fatalf("event API = %s", r.raw)
	}
	msgs := strings.Join(e.agentMessages(), "\n")
	if strings.Contains(msgs, "pod-b") || strings.Count(msgs, "PodCrashLooping") < 3 {
		t.Fatalf("agent heard %q", msgs)
	}
	if p := page(podA); !strings.Contains(p, `then released <a href="/ui/events/`+resolve+`" id="event-released">when that alert resolved (event `+resolve+`)</a>`) {
		t.Fatalf("the event page does not say it was released:\n%s", p)
	}
	if !e.metric(`orchestrator_released_total{reason="inhibited"} 1`) {
		t.Error("the release is not counted")
	}
}

// TestInhibit_ARealAlertmanagersCascadeIsOneAgentCall (issue 41): a real
// Alertmanager, one group per alert, sends a NodeDown and forty
// PodCrashLooping alerts on the same node: the agent is called once, for
// NodeDown; the pods are inhibited by it. Two pods resolve meanwhile; when
// NodeDown resolves, the 38 still firing are released, once, and reach the
// agent, the two that resolved never do.
func TestInhibit_ARealAlertmanagersCascadeIsOneAgentCall(t *testing.T) {
	e, base := uiEnv(t, envOptions{routes: orgRoutes})
	e.setInhibits(`
- source_matchers: [alertname="NodeDown"]
  target_matchers: [alertname="PodCrashLooping"]
  equal: [node]
`)
	am := runAlertmanager(t, fmt.Sprintf(`route:
  receiver: orchestrator
  group_by: ['...']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: orchestrator
    webhook_configs:
      - url: %s/webhooks/alertmanager
        send_resolved: true
        http_config:
          authorization: {type: Bearer, credentials: %s}
`, base, alertmanagerTok))
	later := time.Now().Add(time.Hour)
	nodeDown := map[string]string{"alertname": "NodeDown", "node": "n1", "severity": "critical"}
	pushAlerts(t, am, later, nodeDown)
	node := waitAlertmanagerEvent(t, e, "alertmanager.firing", func(ev store.Event) bool { return strings.Contains(string(ev.Body), "NodeDown") })

	pods := make([]map[string]string, 40)
	for i := range pods {
		pods[i] = map[string]string{"alertname": "PodCrashLooping", "node": "n1", "pod": fmt.Sprintf("web-%02d", i)}
	}
	pushAlerts(t, am, later, pods...)
	// podEvents waits for exactly n pod events that pass ok.
	podEvents := func(what string, n int, ok func(store.Event) bool) []store.Event {
		t.Helper()
		var got []store.Event
		waitFor(t, what, func() bool {
			evs, _, err := e.db.ListEvents(context.Background(), store.EventFilter{Source: webhook.Alertmanager, Limit: 200})
			if err != nil {
				t.Fatal(err)
			}
			got = got[:0]
			for _, ev := range evs {
				if strings.Contains(ev.AlertKey, "PodCrashLooping") && ok(ev) {
					got = append(got, ev)
				}
			}
			return len(got) == n
		})
		return got
	}
	podEvents("40 pods inhibited", 40, func(ev store.Event) bool {
		return ev.AlertState == store.AlertStateFiring && ev.Status == store.EventSuppressed && ev.SuppressedReason == "inhibited" && ev.SuppressedBy == node.ID
	})
	if calls := len(e.agentMessages()); calls != 1 {
		t.Fatalf("agent calls for the cascade = %d, want 1", calls)
	}

	// Two pods recover while the node is down.
	pushAlerts(t, am, time.Now().Add(-time.Second), pods[0], pods[1])
	podEvents("two pods resolved", 2, func(ev store.Event) bool { return ev.AlertState == store.AlertStateResolved })
	pushAlerts(t, am, time.Now().Add(-time.Second), nodeDown)
	resolve := waitAlertmanagerStored(t, e, "alertmanager.resolved", []string{store.EventQueued, store.EventDispatching, store.EventDelivered},
		func(ev store.Event) bool { return strings.Contains(ev.AlertKey, "NodeDown") && ev.TeamNodeID != "" })
	// The dispatcher's own releaser (every 10 s) may release some first.
	if n := e.disp.ReleaseInhibited(); n > 38 {
		t.Fatalf("released %d, more than the 38 pods still firing", n)
	}
	released := podEvents("38 pods released and delivered", 38, func(ev store.Event) bool {
		return ev.Status == store.EventDelivered && ev.ReleasedBy == resolve.ID && ev.SuppressedBy == node.ID
	})
	msgs := strings.Join(e.agentMessages(), "\n")
	for _, p := range []string{"web-00", "web-01"} {
		if strings.Contains(msgs, p) {
			t.Errorf("the agent heard of %s, which resolved while held", p)
		}
	}
	if len(released) != 38 || !e.metric(`orchestrator_released_total{reason="inhibited"} 38`) {
		t.Fatal("the release is not counted")
	}
}

package server_test

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// TestInhibit_ATargetThatResolvesWhileInhibitedStaysSuppressedResolved
// (SPEC §21: one that resolved meanwhile stays suppressed resolved): an
// inhibited pod whose resolve comes while its node is down is suppressed
// resolved, by that resolve, on the API and the event page, which still
// say what held it; when the node resolves, the release pass does not
// queue it and the agent never hears of it; orchestrator_suppressed_total
// counts it once (inhibited), the resolve once (resolved). The overview's
// agent calls saved shows inhibited and held (1 inhibited, then, once it
// resolved, 0 inhibited and 2 resolved: the event counted once).
func TestInhibit_ATargetThatResolvesWhileInhibitedStaysSuppressedResolved(t *testing.T) {
	e, base := uiEnv(t, envOptions{fakeClock: true, routes: orgRoutes})
	e.setInhibits(`
- source_matchers: [alertname="NodeDown"]
  target_matchers: [alertname="PodCrashLooping"]
  equal: [node]
`)
	nodeLabels := map[string]string{"alertname": "NodeDown", "node": "n1"}
	podLabels := map[string]string{"alertname": "PodCrashLooping", "node": "n1", "pod": "a"}
	node := e.sendGroup(t, "node-n1", "firing", nodeLabels)
	e.waitStatus(node, store.EventDelivered)
	pod := e.sendGroup(t, "pod-a", "firing", podLabels)
	if ev := e.waitStatus(pod, store.EventSuppressed, store.EventDelivered); ev.SuppressedReason != store.SuppressedInhibited {
		t.Fatalf("pod = %s %q, want inhibited", ev.Status, ev.SuppressedReason)
	}

	// The overview's agent calls saved names every reason, inhibited and
	// held among them.
	get := func(path string) string {
		t.Helper()
		resp, err := login(t, base, adminToken).Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	saved := func(want ...string) {
		t.Helper()
		o := get("/ui/overview")
		if i := strings.Index(o, `<p id="saved-total">`); i >= 0 {
			o = o[i:]
			if j := strings.Index(o, "</p>"); j >= 0 {
				o = o[:j]
			}
		}
		for _, w := range want {
			if !strings.Contains(o, w) {
				t.Fatalf("the overview's agent calls saved lacks %s: %s", w, o)
			}
		}
	}
	saved(`1 alert events kept from the agent`, `<a href="/ui/events?suppressed_reason=inhibited" class="saved-inhibited">1 inhibited</a>`,
		`<a href="/ui/events?suppressed_reason=held" class="saved-held">0 held</a>`)

	podResolve := e.sendGroup(t, "pod-a", "resolved", podLabels)
	waitFor(t, "the pod's resolve settled", func() bool { return e.event(t, podResolve).Status == store.EventSuppressed })
	ev := e.event(t, pod)
	if ev.Status != store.EventSuppressed || ev.SuppressedReason != store.SuppressedResolved || ev.SuppressedBy != podResolve ||
		!strings.Contains(ev.LastError, "inhibited by event "+node) {
		t.Fatalf("pod after its resolve = %s %q by %q (%q), want resolved by %s, naming %s", ev.Status, ev.SuppressedReason, ev.SuppressedBy,
			ev.LastError, podResolve, node)
	}
	if d := e.do("GET", "/api/v1/admin/events/"+pod, adminToken, nil); d.body["suppressed_reason"] != "resolved" || d.body["suppressed_by"] != podResolve {
		t.Fatalf("event API = %s", d.raw)
	}
	p := get("/ui/events/" + pod)
	if !strings.Contains(p, `<a href="/ui/events/`+podResolve+`" id="event-cause">resolved while it was kept back: resolved by event `+podResolve) ||
		!strings.Contains(p, "while kept back (inhibited: inhibited by event "+node) {
		t.Fatalf("the event page does not say it resolved while inhibited:\n%s", p)
	}

	// Counted once, under resolved now (with the pod's resolve).
	saved(`2 alert events kept from the agent`, `class="saved-inhibited">0 inhibited</a>`, `class="saved-resolved">2 resolved</a>`)

	resolve := e.sendGroup(t, "node-n1", "resolved", nodeLabels)
	waitFor(t, "the node's resolve routed", func() bool { return e.event(t, resolve).TeamNodeID != "" })
	e.clock.Add(time.Minute)
	if n := e.disp.ReleaseInhibited(); n != 0 {
		t.Fatalf("released %d, want none", n)
	}
	e.waitStatus(resolve, store.EventDelivered)
	if ev := e.event(t, pod); ev.Status != store.EventSuppressed || ev.ReleasedBy != "" || ev.SuppressedReason != store.SuppressedResolved {
		t.Fatalf("pod after the node's resolve = %s %q released by %q", ev.Status, ev.SuppressedReason, ev.ReleasedBy)
	}
	if msgs := strings.Join(e.agentMessages(), "\n"); strings.Contains(msgs, "PodCrashLooping") {
		t.Fatalf("the agent heard of the pod: %q", msgs)
	}
	for _, m := range []string{`orchestrator_suppressed_total{reason="inhibited",source="alertmanager"} 1`,
		`orchestrator_suppressed_total{reason="resolved",source="alertmanager"} 1`, `orchestrator_released_total{reason="inhibited"} 0`} {
		if !e.metric(m) {
			t.Errorf("want %s", m)
		}
	}
}

// TestInhibit_WhatIsInhibitedLeavesNoHoleInADigest: with a cascade's pods
// queued behind the team's limit (one call a minute), every other one on
// the down node, the next call's digest is full — 50 pods on the other
// node, the team's next due alerts taking the place of the 50 inhibited
// ones — rather than the 25 of a claim of 50 with half of it inhibited
// (what made BenchmarkStormWithHalfInhibited drain slower than the same
// storm with nothing inhibited).
func TestInhibit_WhatIsInhibitedLeavesNoHoleInADigest(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, fakeClock: true, teamPerMinute: 1, coalesce: []string{webhook.Alertmanager}, routes: orgRoutes})
	e.setInhibits(`
- source_matchers: [alertname="NodeDown"]
  target_matchers: [alertname="PodCrashLooping"]
  equal: [node]
`)
	node := e.sendGroup(t, "node-n1", "firing", map[string]string{"alertname": "NodeDown", "node": "n1"})
	e.waitStatus(node, store.EventDelivered)
	var pods []string
	for i := range 110 {
		pods = append(pods, e.sendGroup(t, fmt.Sprint("pod-", i), "firing",
			map[string]string{"alertname": "PodCrashLooping", "node": []string{"n1", "n2"}[i%2], "pod": fmt.Sprint("web-", i)}))
	}
	waitFor(t, "the pods routed", func() bool { return e.event(t, pods[len(pods)-1]).TeamNodeID != "" })
	e.clock.Add(time.Minute)
	e.disp.Notify("", "")
	waitFor(t, "the second call", func() bool { return len(e.agentMessages()) == 2 })
	if first := strings.SplitN(e.agentMessages()[1], "\n", 2)[0]; !strings.HasPrefix(first, "50 alerts for ") {
		t.Fatalf("the digest after the limit = %q, want 50 alerts", first)
	}
	delivered, inhibited := 0, 0
	for i, id := range pods[:100] {
		switch ev := e.waitStatus(id, store.EventDelivered, store.EventSuppressed); {
		case i%2 == 1 && ev.Status == store.EventDelivered:
			delivered++
		case i%2 == 0 && ev.Status == store.EventSuppressed && ev.SuppressedReason == store.SuppressedInhibited:
			inhibited++
		}
	}
	if delivered != 50 || inhibited != 50 {
		t.Fatalf("of the first 100 pods, %d on n2 delivered and %d on n1 inhibited, want 50 and 50", delivered, inhibited)
	}
}

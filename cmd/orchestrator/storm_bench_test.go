package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/tracing/tracingtest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

// BenchmarkStorm is the alert storm of SPEC §6 against the real binary with
// the default dispatch settings (team limit 60/min, coalescing, routing
// cache): PagerDuty alerts for one team at 1,000/s for 3 s, with 20 Slack
// mentions for the same team mixed in. It prints the ack latencies during
// the storm, the time until the backlog is delivered, agent and Config
// Service calls, digests and their sizes, and peak RSS. Run with
// `make bench`; the figures are printed, not asserted.
func BenchmarkStorm(b *testing.B) { storm(b, stormPlain) }

// BenchmarkStormWithNoise is the same storm, at the same request rate, with
// noise in it (SPEC §6 Noise): every nine requests are six firing alerts —
// four incidents, one of them firing three times (a third of the alerts are
// repeats) — and three resolves a few milliseconds later, while the team's
// limit holds the firings back (half the alerts resolve). It prints the same
// figures and what noise control kept from the agent.
func BenchmarkStormWithNoise(b *testing.B) { storm(b, stormNoisy) }

// BenchmarkStormTraced is the plain storm with tracing on (SPEC §22): every
// trace sampled and exported over OTLP/HTTP to a receiver on this machine,
// so that the figures can be set beside BenchmarkStorm's of the same run. It
// prints how many spans the receiver took.
func BenchmarkStormTraced(b *testing.B) { storm(b, stormTraced) }

// BenchmarkStormWithHalfInhibited is the storm of Alertmanager alerts
// (issue 41: "the storm with half its alerts inhibited drains no slower
// than the plain storm"): the sources file routes every alert to the team
// and has one inhibit rule (a NodeDown inhibits PodCrashLooping equal on
// node); a NodeDown on node n1 fires first (delivered before the storm),
// then one firing PodCrashLooping group per request at the same rate, every
// other one on n1 (inhibited) and the rest on n2. It prints the same
// figures and what noise control kept from the agent.
func BenchmarkStormWithHalfInhibited(b *testing.B) { storm(b, stormInhibited) }

// BenchmarkStormAlertmanager is BenchmarkStormWithHalfInhibited's storm
// without the NodeDown: the same deliveries and the same rule, nothing
// inhibited — the baseline of the same source for the figures above.
func BenchmarkStormAlertmanager(b *testing.B) { storm(b, stormAlertmanager) }

// The storms' kinds.
const (
	stormPlain = iota
	stormNoisy
	stormTraced
	stormInhibited
	stormAlertmanager
)

// amStormAlert is an Alertmanager v4 notification of one group: one firing
// alert whose labels are its commonLabels.
func amStormAlert(alertname, node, pod string) []byte {
	return fmt.Appendf(nil, `{"version":"4","groupKey":"{}:{alertname=\"%s\", node=\"%s\", pod=\"%s\"}","status":"firing","receiver":"orchestrator",`+
		`"groupLabels":{"alertname":"%s","node":"%s","pod":"%s"},"commonLabels":{"alertname":"%s","node":"%s","pod":"%s","severity":"critical"},`+
		`"commonAnnotations":{"summary":"%s on %s"},"externalURL":"http://alertmanager:9093","alerts":[{"status":"firing",`+
		`"labels":{"alertname":"%s","node":"%s","pod":"%s","severity":"critical"},"annotations":{"summary":"%s on %s"},`+
		`"startsAt":"2026-11-26T01:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"%s"}]}`,
		alertname, node, pod, alertname, node, pod, alertname, node, pod, alertname, node, alertname, node, pod, alertname, node, alertname+node+pod)
}

// pdAlert is a PagerDuty v3 delivery about an incident.
func pdAlert(delivery, incident, eventType string) []byte {
	return fmt.Appendf(nil, `{"event":{"id":"%s","event_type":"%s","resource_type":"incident","occurred_at":"2026-11-26T01:00:00Z","agent":{"type":"service_reference","id":"PF9KMXH"},"data":{"id":"%s","type":"incident","html_url":"https://acme.pagerduty.com/incidents/%s","status":"triggered","title":"Checkout error rate above 5%% (%s)","service":{"id":"PF9KMXH","type":"service_reference","summary":"payments"},"urgency":"high"}}}`,
		delivery, eventType, incident, incident, incident)
}

func storm(b *testing.B, kind int) {
	const admin, pdSecret, slackSecret, amToken = "storm-admin", "storm-pd", "storm-slack", "storm-am"
	const rate, seconds, mentions = 1000, 3, 20
	noisy, traced := kind == stormNoisy, kind == stormTraced
	am := kind == stormInhibited || kind == stormAlertmanager
	name := "storm"
	switch kind {
	case stormNoisy:
		name = "storm with noise"
	case stormInhibited:
		name = "storm half inhibited"
	case stormAlertmanager:
		name = "storm alertmanager"
	}
	var spans *tracingtest.Receiver
	if traced {
		name = "storm traced"
		spans = tracingtest.NewHTTP(b).Discard()
	}
	f := startPeerFakes(b, admin)
	dir := b.TempDir()
	env := []string{"PAGERDUTY_WEBHOOK_SECRETS=" + pdSecret, "SLACK_SIGNING_SECRET=" + slackSecret, "ORCHESTRATOR_DATA_DIR=" + dir}
	for _, kv := range f.env {
		// The storm runs at the defaults an operator gets.
		if kv != "ORCHESTRATOR_TEAM_DISPATCH_PER_MINUTE=1000000" {
			env = append(env, kv)
		}
	}
	if am {
		// Every alert to the storm's team; one inhibit rule.
		file := dir + "/sources.yaml"
		if err := os.WriteFile(file, []byte(`routes:
  - name: storm
    route_to: {org_id: `+peerstest.DevOrg+`, team_node_id: `+peerstest.DevTeam+`}
inhibit_rules:
  - source_matchers: [alertname="NodeDown"]
    target_matchers: [alertname="PodCrashLooping"]
    equal: [node]
`), 0o600); err != nil {
			b.Fatal(err)
		}
		env = append(env, "ALERTMANAGER_WEBHOOK_TOKEN="+amToken, "ORCHESTRATOR_SOURCES_FILE="+file)
	}
	if traced {
		env = append(env, "OTEL_EXPORTER_OTLP_ENDPOINT="+spans.URL, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_TRACES_SAMPLER=always_on")
	}
	proc, logs, _ := child(b, env, "serve")
	base := "http://" + waitLine(b, logs, "listening")["addr"].(string)
	go drain(logs)
	waitReady(b, base)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 10 * time.Second}
	var mu sync.Mutex
	var acks []time.Duration
	failed := 0
	send := func(path string, body []byte, h http.Header) {
		req, _ := http.NewRequest("POST", base+path, bytes.NewReader(body))
		req.Header = h
		t := time.Now()
		resp, err := client.Do(req)
		d := time.Since(t)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed++
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			failed++
			return
		}
		acks = append(acks, d)
	}
	// The inhibitor fires first, and is delivered, before the storm.
	pre := 0
	if kind == stormInhibited {
		body := amStormAlert("NodeDown", "n1", "node-exporter")
		req, _ := http.NewRequest("POST", base+"/webhooks/alertmanager", bytes.NewReader(body))
		req.Header = webhook.Sign(webhook.Alertmanager, amToken, body, wallclock.Now(), "")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("NodeDown: %d", resp.StatusCode)
		}
		for until := time.Now().Add(time.Minute); len(f.agent.CallsTo(peerstest.RouteAgentRun)) == 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(until) {
				b.Fatal("NodeDown never reached the agent")
			}
		}
		pre = 1
	}
	var wg sync.WaitGroup
	peak := 0
	tick := time.NewTicker(time.Second / rate)
	start := time.Now()
	total := rate * seconds
	repeats, resolves := 0, 0
	// The noisy pattern, nine requests a block: incident a fires three
	// times, b, c and d once each, then b, c and d resolve.
	pattern := []struct {
		incident  int
		eventType string
	}{{0, "incident.triggered"}, {1, "incident.triggered"}, {2, "incident.triggered"}, {3, "incident.triggered"},
		{0, "incident.triggered"}, {0, "incident.triggered"}, {1, "incident.resolved"}, {2, "incident.resolved"}, {3, "incident.resolved"}}
	for i := 0; i < total; i++ {
		<-tick.C
		incident, eventType := fmt.Sprintf("Q%05d", i), "incident.triggered"
		if noisy {
			p := pattern[i%len(pattern)]
			incident, eventType = fmt.Sprintf("Q%05d-%d", i/len(pattern), p.incident), p.eventType
			switch {
			case eventType == "incident.resolved":
				resolves++
			case i%len(pattern) >= 4:
				repeats++
			}
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if am {
				// Every other pod on the down node.
				body := amStormAlert("PodCrashLooping", []string{"n1", "n2"}[i%2], fmt.Sprintf("web-%05d", i))
				send("/webhooks/alertmanager", body, webhook.Sign(webhook.Alertmanager, amToken, body, wallclock.Now(), ""))
				return
			}
			body := pdAlert(fmt.Sprintf("storm%05d", i), incident, eventType)
			send("/webhooks/pagerduty", body, webhook.Sign(webhook.PagerDuty, pdSecret, body, wallclock.Now(), ""))
		}(i)
		if i%(total/mentions) == total/mentions/2 {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				body := webhook.Sample(webhook.Slack, fmt.Sprintf("stormmention%05d", i), wallclock.Now())
				send("/webhooks/slack/events", body, webhook.Sign(webhook.Slack, slackSecret, body, wallclock.Now(), ""))
			}(i)
		}
		if i%100 == 0 {
			peak = max(peak, rssKB(proc.Process.Pid, "VmRSS"))
		}
	}
	tick.Stop()
	wg.Wait()
	stormEnd := time.Now()

	// Delivered: every event the agent received, alone or in a digest.
	type body struct {
		TriggerSource string `json:"trigger_source"`
		Context       struct {
			Metadata struct {
				Events []json.RawMessage `json:"events"`
			} `json:"metadata"`
		} `json:"context"`
	}
	var delivered, alone, alerts int
	var sizes []int
	count := func() {
		delivered, alone, alerts, sizes = 0, 0, 0, sizes[:0]
		for _, c := range f.agent.CallsTo(peerstest.RouteAgentRun) {
			var bd body
			_ = json.Unmarshal(c.Body, &bd)
			switch {
			case bd.TriggerSource == "digest":
				sizes = append(sizes, len(bd.Context.Metadata.Events))
				delivered += len(bd.Context.Metadata.Events)
				alerts += len(bd.Context.Metadata.Events)
			case bd.TriggerSource == webhook.Slack:
				alone++
				delivered++
			default:
				sizes = append(sizes, 1)
				delivered++
				alerts++
			}
		}
	}
	// Kept back: what noise control suppressed (from /metrics).
	suppressed := func() map[string]int {
		out := map[string]int{}
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			return out
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(raw), "\n") {
			if !strings.HasPrefix(line, "orchestrator_suppressed_total{") {
				continue
			}
			reason := line[strings.Index(line, `reason="`)+8:]
			reason = reason[:strings.Index(reason, `"`)]
			var v float64
			_, _ = fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v)
			out[reason] += int(v)
		}
		return out
	}
	kept := func() int {
		n := 0
		for _, v := range suppressed() {
			n += v
		}
		return n
	}
	deadline := start.Add(5 * time.Minute)
	for count(); delivered-pre+kept() < len(acks) && time.Now().Before(deadline); count() {
		time.Sleep(100 * time.Millisecond)
		peak = max(peak, rssKB(proc.Process.Pid, "VmRSS"))
	}
	drained := time.Since(start)
	calls := len(f.agent.CallsTo(peerstest.RouteAgentRun))
	cs := len(f.cs.CallsTo(peerstest.RouteRoutingLookup)) + len(f.cs.CallsTo(peerstest.RouteImpersonate)) + len(f.cs.CallsTo(peerstest.RouteConfigMe))
	slices.Sort(sizes)
	digests := 0
	for _, s := range sizes {
		if s > 1 {
			digests++
		}
	}
	slices.Sort(acks)
	vendor := "PagerDuty"
	if am {
		vendor = "Alertmanager"
	}
	fmt.Printf("%s: offered %d %s deliveries (%d/s for %ds; %d of them resolves) + %d mentions for one team; acked %d, refused %d; ack p50 %v p99 %v max %v\n",
		name, total, vendor, rate, seconds, resolves, mentions, len(acks), failed, pctl(acks, .5).Round(time.Microsecond), pctl(acks, .99).Round(time.Microsecond),
		acks[len(acks)-1].Round(time.Microsecond))
	fmt.Printf("%s: %d of %d delivered, %d kept back, %v after the storm began (storm lasted %v); %d mentions delivered alone\n",
		name, delivered-pre, len(acks), kept(), drained.Round(100*time.Millisecond), stormEnd.Sub(start).Round(100*time.Millisecond), alone)
	if len(sizes) == 0 {
		sizes = []int{0}
	}
	fmt.Printf("%s: %d agent calls for %d alerts (%.3f per alert); %d digests, sizes min %d median %d max %d; %d Config Service calls (%.2f per agent call)\n",
		name, calls, alerts, float64(calls-alone)/float64(max(1, alerts)), digests, sizes[0], sizes[len(sizes)/2], sizes[len(sizes)-1], cs, float64(cs)/float64(max(1, calls)))
	if noisy {
		fmt.Printf("%s: %d repeats and %d resolves offered; kept from the agent by reason: %v\n", name, repeats, resolves, suppressed())
	}
	if am {
		fmt.Printf("%s: %d PodCrashLooping alerts, half on node n1 (NodeDown firing first: %v); kept from the agent by reason: %v\n",
			name, total, kind == stormInhibited, suppressed())
	}
	fmt.Printf("%s: peak RSS %d MiB sampled, VmHWM %d MiB\n", name, peak/1024, rssKB(proc.Process.Pid, "VmHWM")/1024)
	_ = proc.Process.Signal(syscall.SIGTERM)
	_ = proc.Wait()
	if traced {
		// The exporter flushes its batch on shutdown.
		fmt.Printf("%s: %d spans exported (every trace sampled)\n", name, spans.Count())
	}
}

// waitReady polls /ready until it answers 200.
func waitReady(b testing.TB, base string) {
	for range 10000 {
		resp, err := http.Get(base + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	b.Fatal("never ready")
}

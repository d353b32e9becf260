package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/config"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/tracing"
	"github.com/incidentfox/orchestrator-edge/server/tracing/tracingtest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/prometheus/client_golang/prometheus"
)

// tracedEnv is a webhook env whose door, dispatch and outbox export their
// spans to an OTLP receiver (always sampled, as a parent-based sampler
// samples a root).
func tracedEnv(t *testing.T, o envOptions) (*env, *tracing.Tracing, *tracingtest.Receiver) {
	t.Helper()
	rcv := tracingtest.NewHTTP(t)
	tr, err := tracing.New(context.Background(), tracing.Options{Config: config.Tracing{Enabled: true, Endpoint: rcv.URL + "/v1/traces",
		Protocol: "http/protobuf", Timeout: 5 * time.Second, ServiceName: config.DefaultServiceName, Sampler: "always_on"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	o.webhooks, o.tracing = true, tr
	return newEnv(t, o), tr, rcv
}

// spansNamed waits until the receiver holds spans of the trace with every
// name asked for, flushing the exporter between looks.
func spansNamed(t *testing.T, tr *tracing.Tracing, rcv *tracingtest.Receiver, traceID string, names ...string) map[string]tracingtest.Span {
	t.Helper()
	var got map[string]tracingtest.Span
	waitFor(t, "spans "+strings.Join(names, ", "), func() bool {
		_ = tr.ForceFlush(context.Background())
		got = map[string]tracingtest.Span{}
		for _, s := range rcv.Trace(traceID) {
			got[s.Name] = s
		}
		for _, n := range names {
			if _, ok := got[n]; !ok {
				return false
			}
		}
		return true
	})
	return got
}

// allowedAttrs are the only attribute keys the appliance's spans carry.
var allowedAttrs = []string{"orchestrator.source", "orchestrator.event_id", "orchestrator.org_id", "orchestrator.team_node_id",
	"orchestrator.outcome", "orchestrator.attempt", "orchestrator.events", "orchestrator.agent", "orchestrator.cached",
	"orchestrator.destination"}

// One trace per event, from the sender through the agent call to the
// posted answer: the sender's traceparent is the door span's parent;
// verify and store hang under the door, which ends at the ack; the routing
// lookup, the claim, the team's token and config, the agent call and the
// answer's post continue the same trace; the agent and the Config Service
// are sent traceparent naming the span each call was made under; the event
// keeps the trace id, and the dispatch log lines name it. No span carries a
// body, a header's value, a token or a secret.
func TestTraces_OneTracePerEventFromTheSenderToThePostedAnswer(t *testing.T) {
	e, tr, rcv := tracedEnv(t, envOptions{answers: true})
	const sender, senderSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	body, h := signed(webhook.Slack, "traced1", slackSecret, wallclock.Now())
	h.Set("Traceparent", "00-"+sender+"-"+senderSpan+"-01")
	h.Set("X-Custom-Note", "header-value-never-in-a-span")
	r := e.send(webhook.Slack, body, h)
	if r.code != 200 {
		t.Fatalf("send = %d %s", r.code, r.raw)
	}
	id := r.body["event_id"].(string)
	ev := e.waitStatus(id, store.EventDelivered)
	if got := tracing.TraceID(ev.Trace); got != sender {
		t.Fatalf("the event keeps trace %q, want the sender's %s", got, sender)
	}
	spans := spansNamed(t, tr, rcv, sender, "webhook slack", "verify", "store", "routing lookup", "dispatch", "claim",
		"impersonation token", "team config", "agent call", "answer delivery")
	door := spans["webhook slack"]
	if door.ParentID != senderSpan || door.Attrs["orchestrator.event_id"] != id || door.Attrs["orchestrator.outcome"] != "accepted" ||
		door.Attrs["orchestrator.source"] != "slack" || door.Service != "orchestrator-edge" {
		t.Fatalf("door span = %+v", door)
	}
	if tracing.SpanContext(ev.Trace).SpanID().String() != door.SpanID {
		t.Fatalf("the event keeps span %x, the door's is %s", ev.Trace[16:24], door.SpanID)
	}
	for _, child := range []string{"verify", "store", "routing lookup", "dispatch"} {
		if spans[child].ParentID != door.SpanID {
			t.Errorf("%s's parent = %s, want the door's %s", child, spans[child].ParentID, door.SpanID)
		}
	}
	if spans["store"].EndUnixNano > door.EndUnixNano {
		t.Error("the store span ends after the door's (the ack)")
	}
	disp := spans["dispatch"]
	for _, child := range []string{"claim", "impersonation token", "team config", "agent call"} {
		if spans[child].ParentID != disp.SpanID {
			t.Errorf("%s's parent = %s, want dispatch's %s", child, spans[child].ParentID, disp.SpanID)
		}
	}
	if disp.Attrs["orchestrator.outcome"] != "delivered" || disp.Attrs["orchestrator.org_id"] != peerstest.DevOrg ||
		disp.Attrs["orchestrator.team_node_id"] != peerstest.DevTeam || disp.Attrs["orchestrator.attempt"] != "1" {
		t.Errorf("dispatch span = %+v", disp.Attrs)
	}
	if spans["answer delivery"].ParentID != door.SpanID || spans["answer delivery"].Attrs["orchestrator.outcome"] != store.AnswerPosted {
		t.Errorf("answer delivery span = %+v", spans["answer delivery"])
	}
	// traceparent to the agent names the agent call's span.
	calls := e.agent.CallsTo(peerstest.RouteAgentRun)
	if len(calls) != 1 || calls[0].Header.Get("Traceparent") != "00-"+sender+"-"+spans["agent call"].SpanID+"-01" {
		t.Fatalf("the agent got traceparent %q, agent call span %s", calls[0].Header.Get("Traceparent"), spans["agent call"].SpanID)
	}
	traced := 0
	for _, c := range e.cs.Calls() {
		if strings.Contains(c.Header.Get("Traceparent"), sender) {
			traced++
		}
	}
	if traced < 3 { // the routing lookup, the token, the team config
		t.Errorf("%d Config Service calls carried the trace", traced)
	}
	// Every log line about the event names its trace.
	var dispatchLines int
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(line, `"msg":"dispatch"`) && strings.Contains(line, id) {
			dispatchLines++
			if !strings.Contains(line, `"trace_id":"`+sender+`"`) || !strings.Contains(line, `"span_id":"`) {
				t.Errorf("a dispatch log line without the trace: %s", line)
			}
		}
	}
	if dispatchLines == 0 {
		t.Fatalf("no dispatch log line about event %s:\n%s", id, e.logs.String())
	}
	// Bounded, safe attributes only.
	secretsAndBodies := []string{slackSecret, "header-value-never-in-a-span", adminToken, "Investigated", h.Get("X-Slack-Signature"),
		h.Get("User-Agent"), string(body[:min(40, len(body))])}
	for _, s := range rcv.Trace(sender) {
		for k, v := range s.Attrs {
			if !slices.Contains(allowedAttrs, k) {
				t.Errorf("span %s carries attribute %s", s.Name, k)
			}
			for _, bad := range secretsAndBodies {
				if bad != "" && strings.Contains(v, bad) {
					t.Errorf("span %s attribute %s = %q carries %q", s.Name, k, v, bad)
				}
			}
		}
	}
}

// A malformed traceparent is not believed: the door's span is a new root,
// and the event is accepted, stored with that new trace, and delivered.
func TestTraces_AMalformedTraceparentStartsANewRootAndTheEventIsAccepted(t *testing.T) {
	e, tr, rcv := tracedEnv(t, envOptions{})
	for i, bad := range []string{"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"garbage", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"} {
		body, h := signed(webhook.PagerDuty, fmt.Sprintf("bad-tp-%d", i), pagerdutySecret, wallclock.Now())
		h.Set("Traceparent", bad)
		r := e.send(webhook.PagerDuty, body, h)
		if r.code != 200 {
			t.Fatalf("%q: send = %d %s", bad, r.code, r.raw)
		}
		ev := e.waitStatus(r.body["event_id"].(string), store.EventDelivered)
		traceID := tracing.TraceID(ev.Trace)
		if traceID == "" || strings.Contains(bad, traceID) {
			t.Fatalf("%q: the event keeps trace %q", bad, traceID)
		}
		spans := spansNamed(t, tr, rcv, traceID, "webhook pagerduty", "agent call")
		if door := spans["webhook pagerduty"]; door.ParentID != "" {
			t.Fatalf("%q: the door span has parent %s", bad, door.ParentID)
		}
	}
}

// Tracing off still carries a sender's trace on: the no-op tracer keeps
// the incoming traceparent, the event stores it and the agent is sent it;
// an event that came without one stores nothing.
func TestTraces_OffStillPassesTheSendersTraceparentOn(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, tracing: tracing.Off()})
	const sender = "4bf92f3577b34da6a3ce929d0e0e4736"
	body, h := signed(webhook.PagerDuty, "off-1", pagerdutySecret, wallclock.Now())
	h.Set("Traceparent", "00-"+sender+"-00f067aa0ba902b7-01")
	ev := e.waitStatus(e.send(webhook.PagerDuty, body, h).body["event_id"].(string), store.EventDelivered)
	if tracing.TraceID(ev.Trace) != sender {
		t.Fatalf("the event keeps trace %q", tracing.TraceID(ev.Trace))
	}
	calls := e.agent.CallsTo(peerstest.RouteAgentRun)
	if len(calls) != 1 || !strings.Contains(calls[0].Header.Get("Traceparent"), sender) {
		t.Fatalf("the agent got traceparent %q", calls[0].Header.Get("Traceparent"))
	}
	body, h = signed(webhook.PagerDuty, "off-2", pagerdutySecret, wallclock.Now())
	ev = e.waitStatus(e.send(webhook.PagerDuty, body, h).body["event_id"].(string), store.EventDelivered)
	if ev.Trace != nil {
		t.Fatalf("an untraced event stores %x", ev.Trace)
	}
	if got := e.agent.CallsTo(peerstest.RouteAgentRun); got[len(got)-1].Header.Get("Traceparent") != "" {
		t.Fatalf("an untraced event's agent call carries %q", got[len(got)-1].Header.Get("Traceparent"))
	}
}

// A digest's agent call goes under its first event's trace and links every
// event it folds.
func TestTraces_ADigestLinksEveryFoldedEvent(t *testing.T) {
	e, tr, rcv := tracedEnv(t, envOptions{noDispatch: true, coalesce: []string{webhook.PagerDuty}, workers: 1})
	ids := sendAlerts(t, e, "digest", 3)
	if err := e.disp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.disp.Stop(context.Background()) })
	var traces []string
	for _, id := range ids {
		ev := e.waitStatus(id, store.EventDelivered)
		if ev.DigestSize != 3 {
			t.Fatalf("event %s folded into a digest of %d", id, ev.DigestSize)
		}
		traces = append(traces, tracing.TraceID(ev.Trace))
	}
	var digest tracingtest.Span
	waitFor(t, "the digest's span", func() bool {
		_ = tr.ForceFlush(context.Background())
		for _, s := range rcv.Spans() {
			if s.Name == "dispatch" && s.Attrs["orchestrator.events"] == "3" {
				digest = s
				return true
			}
		}
		return false
	})
	if !slices.Contains(traces, digest.TraceID) {
		t.Errorf("the digest's span is in trace %s, not one of its events' %v", digest.TraceID, traces)
	}
	linked := slices.Clone(digest.Links)
	slices.Sort(linked)
	want := slices.Clone(traces)
	slices.Sort(want)
	if !slices.Equal(linked, want) {
		t.Fatalf("the digest links traces %v, its events are in %v", linked, want)
	}
}

// An unreachable collector costs the door nothing: the events are
// accepted and delivered, and the spans are dropped and counted.
func TestTraces_AnUnreachableCollectorDropsSpansAndIngestGoesOn(t *testing.T) {
	addr := freePort(t) // nothing listens there
	reg := prometheus.NewRegistry()
	tr, err := tracing.New(context.Background(), tracing.Options{Registry: reg, Config: config.Tracing{Enabled: true,
		Endpoint: "http://" + addr + "/v1/traces", Protocol: "http/protobuf", Timeout: 200 * time.Millisecond,
		ServiceName: config.DefaultServiceName, Sampler: "always_on"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	e := newEnv(t, envOptions{webhooks: true, tracing: tr})
	for i := range 5 {
		body, h := signed(webhook.PagerDuty, fmt.Sprintf("dark-%d", i), pagerdutySecret, wallclock.Now())
		r := e.send(webhook.PagerDuty, body, h)
		if r.code != 200 {
			t.Fatalf("send = %d %s", r.code, r.raw)
		}
		e.waitStatus(r.body["event_id"].(string), store.EventDelivered)
	}
	if err := tr.ForceFlush(context.Background()); err == nil {
		t.Fatal("spans reached a collector that is not there")
	}
	dropped, ended := 0.0, 0.0
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			switch m.Label[0].GetValue() {
			case "dropped":
				dropped = m.Counter.GetValue()
			case "ended":
				ended = m.Counter.GetValue()
			}
		}
	}
	// Each event made at least its door, verify, store, dispatch, claim
	// and agent call spans; every one that ended was dropped.
	if ended < 5*6 || dropped != ended {
		t.Fatalf("spans ended %v, dropped %v", ended, dropped)
	}
}

// The event page shows the event's trace id, linked to the operator's
// trace viewer by ORCHESTRATOR_TRACE_URL_TEMPLATE; an untraced event shows
// none. The ack and agent-call latency histograms carry the trace id as an
// exemplar when the scraper asks for OpenMetrics, and the text format
// stays as it was otherwise.
func TestTraces_TheEventPageLinksItsTraceAndTheHistogramsCarryExemplars(t *testing.T) {
	e, _, _ := tracedEnv(t, envOptions{ui: true, traceURL: "http://jaeger.example:16686/trace/{trace_id}"})
	if err := e.srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.srv.Shutdown(context.Background()) })
	const sender = "0af7651916cd43dd8448eb211c80319c"
	body, h := signed(webhook.PagerDuty, "paged-1", pagerdutySecret, wallclock.Now())
	h.Set("Traceparent", "00-"+sender+"-b7ad6b7169203331-01")
	id := e.send(webhook.PagerDuty, body, h).body["event_id"].(string)
	e.waitStatus(id, store.EventDelivered)

	base := "http://" + e.srv.Addr()
	c := login(t, base, adminToken)
	code, page := getPage(t, c, base+"/ui/events/"+id)
	want := `<a href="http://jaeger.example:16686/trace/` + sender + `" id="event-trace-link"><code>` + sender + `</code></a>`
	if code != 200 || !strings.Contains(page, want) {
		t.Fatalf("event page (%d) without %s", code, want)
	}

	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0; charset=utf-8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	text := string(raw)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/openmetrics-text") {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	for _, metric := range []string{"orchestrator_webhook_ack_seconds_bucket", "orchestrator_dispatch_latency_seconds_bucket"} {
		found := false
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, metric) && strings.Contains(line, `# {trace_id="`+sender+`"}`) {
				found = true
			}
		}
		if !found {
			t.Errorf("no %s line with the exemplar trace_id=%s", metric, sender)
		}
	}
	if plain := e.do("GET", "/metrics", "", nil).raw; strings.Contains(plain, "trace_id") {
		t.Error("the text format carries exemplars")
	}

	// An event without a trace: no row.
	off := newEnv(t, envOptions{webhooks: true, ui: true, traceURL: "http://jaeger.example:16686/trace/{trace_id}"})
	if err := off.srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = off.srv.Shutdown(context.Background()) })
	body, h = signed(webhook.PagerDuty, "paged-2", pagerdutySecret, wallclock.Now())
	id = off.send(webhook.PagerDuty, body, h).body["event_id"].(string)
	offBase := "http://" + off.srv.Addr()
	if _, page := getPage(t, login(t, offBase, adminToken), offBase+"/ui/events/"+id); strings.Contains(page, "event-trace") {
		t.Fatal("an untraced event's page shows a trace")
	}
}

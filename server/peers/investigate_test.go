package peers_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"go.opentelemetry.io/otel/trace"
)

func investigateSetup(t *testing.T) (*peerstest.Agent, *peers.Agent) {
	t.Helper()
	fake := peerstest.NewAgent()
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	return fake, peers.NewAgent(peers.Options{BaseURL: srv.URL})
}

var investigateReq = peers.InvestigateRequest{Prompt: "why is checkout slow", ThreadID: "run-1", TenantID: "acme", TeamID: "sre",
	Context: map[string]any{"k": "v"}}

// The streaming call follows the contract: POST /investigate asking for
// text/event-stream, the team token and correlation id, the body's fields;
// every event of a known type but result reaches the handler in order, the
// unknown and malformed ones are skipped with a reason, and result's data
// is returned.
func TestInvestigate_StreamsEventsAndReturnsTheResult(t *testing.T) {
	fake, agent := investigateSetup(t)
	fake.SetScript(func(in peerstest.InvestigateBody) []peerstest.Step {
		return []peerstest.Step{
			{Type: "thought", Data: map[string]any{"text": "hm"}},
			{Type: "telemetry", Data: map[string]any{"x": 1}},
			{Raw: "data: {oops\n\n"},
			{Type: "tool_start", Data: map[string]any{"tool": "k"}},
			{Type: "result", Data: map[string]any{"text": "answer to " + in.Prompt}},
			{Type: "thought", Data: map[string]any{"text": "never read"}},
		}
	})
	var got, skipped []string
	out, err := agent.Investigate(context.Background(), "", "team-tok", "corr-1", investigateReq, 5*time.Second, peers.StreamHandler{
		Event:   func(ev peers.StreamEvent) { got = append(got, ev.Type) },
		Skipped: func(r string) { skipped = append(skipped, r) },
	})
	if err != nil {
		t.Fatal(err)
	}
	var res struct{ Text string }
	if json.Unmarshal(out, &res) != nil || res.Text != "answer to why is checkout slow" {
		t.Fatalf("result = %s", out)
	}
	if strings.Join(got, ",") != "thought,tool_start" || len(skipped) != 2 || !strings.Contains(skipped[0], `unknown type "telemetry"`) ||
		!strings.Contains(skipped[1], "not the contract's JSON") {
		t.Fatalf("events %q, skipped %q", got, skipped)
	}
	calls := fake.CallsTo(peerstest.RouteInvestigate)
	if len(calls) != 1 {
		t.Fatalf("%d calls", len(calls))
	}
	c := calls[0]
	var body map[string]any
	_ = json.Unmarshal(c.Body, &body)
	if c.Header.Get("Accept") != "text/event-stream" || c.Header.Get("X-Incidentfox-Team-Token") != "team-tok" ||
		c.Header.Get("X-Correlation-Id") != "corr-1" || body["prompt"] != "why is checkout slow" || body["thread_id"] != "run-1" ||
		body["tenant_id"] != "acme" || body["team_id"] != "sre" || body["context"].(map[string]any)["k"] != "v" {
		t.Fatalf("call %v %s", c.Header, c.Body)
	}
}

// A stream that fails before any event is the run call's failure, with its
// classification (so dispatch retries it); once an event came, a cut, an
// early end, the agent's error event or the timeout is a StreamFailure,
// saying what happened.
func TestInvestigate_FailuresBeforeAndAfterTheFirstEvent(t *testing.T) {
	thought := peerstest.Step{Type: "thought", Data: map[string]any{"text": "hm"}}
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	cases := []struct {
		name    string
		fault   *peerstest.Fault
		script  []peerstest.Step
		code    string // apperr code before any event
		failure string // StreamFailure reason after one
	}{
		{name: "503", fault: &peerstest.Fault{Status: 503}, code: "peer_unavailable"},
		{name: "401", fault: &peerstest.Fault{Status: 401}, code: "peer_forbidden"},
		{name: "closed before answering", fault: &peerstest.Fault{Close: true}, code: "peer_unavailable"},
		{name: "cut before any event", script: []peerstest.Step{{Cut: true}}, code: "peer_unavailable"},
		{name: "ended before any event", script: []peerstest.Step{}, code: "peer_unavailable"},
		{name: "timed out before any event", script: []peerstest.Step{{Until: hang}}, code: "peer_timeout"},
		{name: "cut mid-way", script: []peerstest.Step{thought, {Cut: true}}, failure: "the agent's stream broke after 1 events"},
		{name: "ended without result", script: []peerstest.Step{thought, thought}, failure: "the agent's stream ended after 2 events without a result"},
		{name: "error event", script: []peerstest.Step{thought, {Type: "error", Data: map[string]any{"message": "kubectl: forbidden"}}},
			failure: "the agent reported an error: kubectl: forbidden"},
		{name: "timed out mid-way", script: []peerstest.Step{thought, {Until: hang}}, failure: "did not finish within"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake, agent := investigateSetup(t)
			if tc.fault != nil {
				fake.Fail(peerstest.RouteInvestigate, *tc.fault)
			}
			steps := tc.script
			fake.SetScript(func(peerstest.InvestigateBody) []peerstest.Step { return steps })
			_, err := agent.Investigate(context.Background(), "", "tok", "c", investigateReq, 300*time.Millisecond, peers.StreamHandler{})
			f, isFailure := peers.AsStreamFailure(err)
			var ae *apperr.Error
			switch {
			case tc.code != "":
				if isFailure || !errors.As(err, &ae) || ae.Code != tc.code {
					t.Fatalf("err = %v, want code %s", err, tc.code)
				}
				if _, ok := peers.AsHTTPError(err); !ok {
					t.Fatalf("err = %v carries no HTTPError", err)
				}
			case !isFailure || !strings.Contains(f.Reason, tc.failure):
				t.Fatalf("err = %v, want a stream failure %q", err, tc.failure)
			}
		})
	}
}

// A caller that goes away (shutdown) gets its own cancellation back, not a
// peer failure.
func TestInvestigate_CallerCancelIsNotAPeerFailure(t *testing.T) {
	fake, agent := investigateSetup(t)
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	started := make(chan struct{})
	fake.SetScript(func(peerstest.InvestigateBody) []peerstest.Step {
		return []peerstest.Step{{Type: "thought", Data: map[string]any{}}, {Until: hang}}
	})
	ctx, cancel := context.WithCancel(context.Background())
	_, err := agent.Investigate(ctx, "", "tok", "c", investigateReq, time.Minute, peers.StreamHandler{
		Event: func(peers.StreamEvent) { close(started); cancel() }})
	<-started
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if _, ok := peers.AsStreamFailure(err); ok {
		t.Fatal("a canceled call is reported as a stream failure")
	}
}

// The streaming call carries the event's trace like every other peer call
// (SPEC §22): traceparent names the span it is made under.
func TestInvestigate_SendsTheCallersTraceparent(t *testing.T) {
	fake, agent := investigateSetup(t)
	fake.SetScript(func(peerstest.InvestigateBody) []peerstest.Step {
		return []peerstest.Step{{Type: "result", Data: map[string]any{"text": "ok"}}}
	})
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	if _, err := agent.Investigate(ctx, "", "team-tok", "corr-1", investigateReq, 5*time.Second, peers.StreamHandler{}); err != nil {
		t.Fatal(err)
	}
	calls := fake.CallsTo(peerstest.RouteInvestigate)
	if want := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"; len(calls) != 1 || calls[0].Header.Get("Traceparent") != want {
		t.Fatalf("calls %d, traceparent %q, want %q", len(calls), calls[0].Header.Get("Traceparent"), want)
	}
}

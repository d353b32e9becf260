package answers

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
)

// manualClock moves only when told.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func event(typ string, data map[string]any) peers.StreamEvent {
	b, _ := json.Marshal(data)
	return peers.StreamEvent{Type: typ, Data: b}
}

func progressMessage(t *testing.T, fake *peerstest.Slack) peerstest.SlackMessage {
	t.Helper()
	msgs := fake.Messages("C0ANSWERS")
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want the one progress message", len(msgs))
	}
	return msgs[0]
}

// textOf is a message's blocks' text, joined.
func textOf(t *testing.T, m peerstest.SlackMessage) string {
	t.Helper()
	var parts []string
	for _, b := range blocksOf(t, m) {
		if b.Text != nil {
			parts = append(parts, b.Text.Text)
		}
		for _, e := range b.Elements {
			var txt struct{ Text string }
			_ = json.Unmarshal(e.Text, &txt)
			parts = append(parts, txt.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A progress message is posted in the thread when the run starts, and
// shows — once 2 s have passed by the clock and something changed — the
// current thought, the tools running and done, and the time elapsed; an
// update is never made sooner.
func TestProgress_ShowsTheThoughtAndToolsAtMostEveryTwoSeconds(t *testing.T) {
	fake, s := slackFake(t)
	clock := &manualClock{t: time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)}
	tick := make(chan time.Time)
	pp := &ProgressPoster{Slack: s, PublicURL: "https://o.example", Now: clock.Now,
		Tick: func() (<-chan time.Time, func()) { return tick, func() {} }}
	d := Destination{Type: TypeSlack, ChannelID: "C0ANSWERS", ThreadTS: "1700000000.000100"}
	p := pp.Start(context.Background(), d, "run-7")
	defer p.Close()
	m := progressMessage(t, fake)
	if p.TS() != m.TS || m.ThreadTS != d.ThreadTS || !strings.Contains(textOf(t, m), "*Investigating…* (0s)") ||
		!strings.Contains(string(m.Blocks), "https://o.example/ui/agent-runs/run-7") {
		t.Fatalf("progress message %+v", m)
	}
	p.Event(event("thought", map[string]any{"text": "Reading <the> alert"}))
	p.Event(event("tool_start", map[string]any{"tool": "kubectl_get_pods", "id": "t1"}))
	tick <- time.Time{} // 0 s passed: no update
	if n := p.Updates(); n != 0 {
		t.Fatalf("%d updates before 2 s passed", n)
	}
	clock.Add(2 * time.Second)
	tick <- time.Time{}
	waitUntil(t, "the update", func() bool { return progressMessage(t, fake).Updates == 1 })
	got := textOf(t, progressMessage(t, fake))
	for _, want := range []string{"(2s)", "Reading &lt;the&gt; alert", "Running: kubectl_get_pods"} {
		if !strings.Contains(got, want) {
			t.Errorf("update lacks %q: %s", want, got)
		}
	}
	p.Event(event("tool_end", map[string]any{"tool": "kubectl_get_pods", "id": "t1"}))
	clock.Add(time.Second)
	tick <- time.Time{}
	tick <- time.Time{} // the second tick waits until the first was handled
	if n := p.Updates(); n != 1 {
		t.Fatalf("%d updates 1 s after the last, want still 1", n)
	}
	clock.Add(65 * time.Second)
	tick <- time.Time{}
	waitUntil(t, "the second update", func() bool { return progressMessage(t, fake).Updates == 2 })
	got = textOf(t, progressMessage(t, fake))
	if !strings.Contains(got, "(1m 08s)") || !strings.Contains(got, "Done: kubectl_get_pods") || strings.Contains(got, "Running:") {
		t.Fatalf("second update: %s", got)
	}
}

// A stream of 10,000 events, 1 ms apart by the clock (10 s), makes at most
// 5 updates (one per 2 s) however the updater is scheduled, and what the
// progress holds stays bounded though every event names a new tool.
func TestProgress_TenThousandEventsStayWithinOneUpdatePerTwoSecondsAndBoundedMemory(t *testing.T) {
	fake, s := slackFake(t)
	clock := &manualClock{t: time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)}
	pp := &ProgressPoster{Slack: s, Now: clock.Now, Tick: func() (<-chan time.Time, func()) { return nil, func() {} }}
	p := pp.Start(context.Background(), Destination{Type: TypeSlack, ChannelID: "C0ANSWERS"}, "run-8")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	long := strings.Repeat("x", 200)
	for i := range 10000 {
		clock.Add(time.Millisecond)
		id := fmt.Sprintf("tool-%d-%s", i, long)
		switch i % 3 {
		case 0:
			p.Event(event("thought", map[string]any{"text": fmt.Sprintf("thought %d %s%s", i, long, long)}))
		case 1:
			p.Event(event("tool_start", map[string]any{"tool": id, "id": id}))
		case 2:
			p.Event(event("tool_end", map[string]any{"tool": id, "id": fmt.Sprintf("tool-%d-%s", i-1, long)}))
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	p.Close()
	updates := progressMessage(t, fake).Updates
	if updates > 5 || updates != p.Updates() {
		t.Fatalf("%d updates (%d counted) over 10 s of events, want at most 5", updates, p.Updates())
	}
	p.mu.Lock()
	held := len(p.running) + len(p.ids) + len(p.done)
	p.mu.Unlock()
	if held > progressTools*2+progressDoneNames {
		t.Fatalf("the progress holds %d tools", held)
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 256<<10 {
		t.Fatalf("the heap grew by %d bytes over 10,000 events", grew)
	}
	t.Logf("10,000 events over 10 s by the clock: %d chat.update calls; heap %+d bytes", updates, int64(after.HeapAlloc)-int64(before.HeapAlloc))
}

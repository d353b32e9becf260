package peers_test

import (
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/incidentfox/orchestrator-edge/server/peers"
)

// readAll reads a stream to its end: the events taken (type:data) and the
// skip reasons, in order.
func readAll(t testing.TB, r io.Reader, limit int) (events []string, skips []string) {
	t.Helper()
	s := peers.NewSSEReader(r, limit)
	for {
		ev, err := s.Next()
		switch {
		case err == nil:
			events = append(events, ev.Type+":"+string(ev.Data))
		case peers.IsSkip(err):
			skips = append(skips, err.Error())
		case errors.Is(err, io.EOF):
			return events, skips
		default:
			t.Fatalf("read: %v", err)
		}
	}
}

// The reader takes the contract's events however the lines end, joins
// multi-line data, ignores comments and the fields it does not use, and
// skips — with a reason, reading on — data that is not the contract's
// JSON, an event without a type, and an event over the bound.
func TestSSE_MalformedLinesAndOversizedEventsAreSkippedAndReadingGoesOn(t *testing.T) {
	big := strings.Repeat("x", 2000)
	stream := ": a comment\n" +
		"event: ignored\nid: 7\nretry: 100\n" +
		"data: {\"type\":\"thought\",\"data\":{\"text\":\"one\"}}\n\n" +
		"data: {\"type\":\"tool_start\",\r\ndata: \"data\":{\"tool\":\"k\"}}\r\n\r\n" +
		"data: not json\n\n" +
		"garbage line without a colon\n" +
		"data: {\"data\":{}}\n\n" +
		"data: {\"type\":\"thought\",\"data\":{\"text\":\"" + big + "\"}}\n\n" +
		"data: {\"type\":\"thought\",\n" + "data: \"data\":{\"text\":\"" + big[:900] + "\"}}\n" + "data: " + big[:900] + "\n\n" +
		"\n\n\n" +
		"data: {\"type\":\"result\",\"data\":{\"text\":\"done\"}}"
	events, skips := readAll(t, strings.NewReader(stream), 1024)
	want := []string{`thought:{"text":"one"}`, `tool_start:{"tool":"k"}`, `result:{"text":"done"}`}
	if strings.Join(events, "|") != strings.Join(want, "|") {
		t.Fatalf("events = %q, want %q", events, want)
	}
	if len(skips) != 4 || !strings.Contains(skips[0], "not the contract's JSON") || !strings.Contains(skips[1], "without a type") ||
		!strings.Contains(skips[2], "more than 1024 bytes") || !strings.Contains(skips[3], "more than 1024 bytes") {
		t.Fatalf("skips = %q", skips)
	}
}

// An event of more than 1 MiB — here one data line of 64 MiB — is skipped
// without being held: the reader allocates a small fraction of it, and the
// event after it is read.
func TestSSE_AHugeEventIsSkippedInBoundedMemory(t *testing.T) {
	const huge = 64 << 20
	r := io.MultiReader(strings.NewReader(`data: {"type":"thought","data":{"text":"`),
		io.LimitReader(repeatReader('a'), huge),
		strings.NewReader("\"}}\n\ndata: {\"type\":\"result\",\"data\":{\"text\":\"after\"}}\n\n"))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	events, skips := readAll(t, r, 0)
	runtime.ReadMemStats(&after)
	if len(events) != 1 || events[0] != `result:{"text":"after"}` || len(skips) != 1 || !strings.Contains(skips[0], "more than 1048576 bytes") {
		t.Fatalf("events %q skips %q", events, skips)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Fatalf("reading a 64 MiB event allocated %d bytes; it should be dropped as it is read", alloc)
	}
}

type repeatReader byte

func (b repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

// FuzzSSE: whatever a peer sends, the reader ends (EOF) without a panic,
// every event it returns has a type and JSON data within the bound.
func FuzzSSE(f *testing.F) {
	f.Add([]byte("data: {\"type\":\"thought\",\"data\":{\"text\":\"x\"}}\n\n"))
	f.Add([]byte("data: {\"type\":\"result\"}\r\n\r\ndata: x\n\n:c\n"))
	f.Add([]byte("data:\ndata:\n\n\r\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := peers.NewSSEReader(strings.NewReader(string(b)), 64)
		for range len(b) + 2 {
			ev, err := s.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if peers.IsSkip(err) {
				continue
			}
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if ev.Type == "" || len(ev.Data) == 0 || len(ev.Data) > 64 {
				t.Fatalf("event %+v", ev)
			}
		}
		t.Fatalf("the reader did not end on %d bytes", len(b))
	})
}

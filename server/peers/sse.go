package peers

// The server-sent events of the agent's streaming contract (SPEC §19, "The
// conversation, streamed"): each event's data lines are one JSON object
// {"type":…, "data":{…}}. The reader is built for a peer that may send
// anything: a line or an event bigger than the bound is skipped without
// ever being held whole, a line that is not SSE or data that is not the
// contract's JSON is skipped with a reason, and memory stays bounded by
// the bound whatever the stream's length.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxStreamEventBytes bounds one event's data (1 MiB): a bigger event is
// skipped, never held.
const MaxStreamEventBytes = 1 << 20

// Stream event types (SPEC §19).
const (
	StreamThought         = "thought"
	StreamToolStart       = "tool_start"
	StreamToolEnd         = "tool_end"
	StreamResult          = "result"
	StreamError           = "error"
	StreamQuestion        = "question"
	StreamQuestionTimeout = "question_timeout"
	StreamApproval        = "approval"
)

// KnownStreamType reports whether t is one of the contract's event types.
func KnownStreamType(t string) bool {
	switch t {
	case StreamThought, StreamToolStart, StreamToolEnd, StreamResult, StreamError, StreamQuestion, StreamQuestionTimeout, StreamApproval:
		return true
	}
	return false
}

// StreamEvent is one event of an investigation's stream.
type StreamEvent struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// SSEReader reads server-sent events with bounded memory.
type SSEReader struct {
	r     *bufio.Reader
	limit int
	// data is the current event's data; over is set once it passed limit
	// (the rest of the event is read and dropped).
	data     bytes.Buffer
	over     bool
	haveData bool
}

// NewSSEReader reads events from r; an event whose data is over limit
// bytes (<= 0: MaxStreamEventBytes) is skipped.
func NewSSEReader(r io.Reader, limit int) *SSEReader {
	if limit <= 0 {
		limit = MaxStreamEventBytes
	}
	return &SSEReader{r: bufio.NewReaderSize(r, 64<<10), limit: limit}
}

// SkipError is an event the reader skipped: too big, not JSON, not the
// contract's shape. Reading may go on after it.
type SkipError struct{ Reason string }

func (e *SkipError) Error() string { return "stream event skipped: " + e.Reason }

// IsSkip reports whether err is a skipped event (reading may go on).
func IsSkip(err error) bool {
	var s *SkipError
	return errors.As(err, &s)
}

// Next returns the stream's next event. A *SkipError says an event was
// skipped (call Next again); io.EOF is the stream's end; any other error
// is the transport's. An event cut by the end of the stream (no blank
// line after it) is still returned, as browsers do not, but a peer that
// closes right after its last event should not lose it.
func (s *SSEReader) Next() (StreamEvent, error) {
	for {
		line, tooLong, err := s.line()
		if err != nil && !(errors.Is(err, io.EOF) && (len(line) > 0 || s.haveData || s.over)) {
			return StreamEvent{}, err
		}
		eof := err != nil
		if tooLong {
			// A line longer than the bound: the event it belongs to is
			// dropped, whatever its field.
			s.over = true
		} else if len(line) > 0 {
			s.field(line)
		}
		if len(line) == 0 || eof {
			if ev, done, skip := s.dispatch(); done {
				return ev, skip
			}
			if eof {
				return StreamEvent{}, io.EOF
			}
		}
	}
}

// line reads one line without its end (\n or \r\n), never holding
// more than the bound: tooLong says the line was longer and was dropped.
func (s *SSEReader) line() (line []byte, tooLong bool, err error) {
	var buf []byte
	for {
		frag, err := s.r.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(frag) > s.limit+16 { // room for "data: " and the line end
				tooLong, buf = true, nil
			} else {
				buf = append(buf, frag...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if tooLong {
				return nil, true, err
			}
			return bytes.TrimRight(buf, "\r\n"), false, err
		}
		if tooLong {
			return nil, true, nil
		}
		return bytes.TrimRight(buf, "\r\n"), false, nil
	}
}

// field takes one line of an event. Only data counts (the contract puts
// the type in the JSON); comments, event:, id: and retry: are read and
// ignored, as is a field SSE does not know.
func (s *SSEReader) field(line []byte) {
	if line[0] == ':' {
		return
	}
	name, value, found := bytes.Cut(line, []byte(":"))
	if !found || string(name) != "data" {
		return
	}
	value = bytes.TrimPrefix(value, []byte(" "))
	if s.over {
		return
	}
	if s.haveData {
		s.data.WriteByte('\n')
	}
	s.haveData = true
	if s.data.Len()+len(value) > s.limit {
		s.over = true
		s.data.Reset()
		return
	}
	s.data.Write(value)
}

// dispatch ends the current event: done is false when there was none
// (blank lines between events).
func (s *SSEReader) dispatch() (ev StreamEvent, done bool, skip error) {
	defer func() {
		s.haveData, s.over = false, false
		if s.data.Cap() > 64<<10 {
			s.data = bytes.Buffer{} // one big event does not keep its buffer
		} else {
			s.data.Reset()
		}
	}()
	if s.over {
		return StreamEvent{}, true, &SkipError{Reason: fmt.Sprintf("an event of more than %d bytes", s.limit)}
	}
	if !s.haveData {
		return StreamEvent{}, false, nil
	}
	raw := bytes.TrimSpace(s.data.Bytes())
	if err := json.Unmarshal(raw, &ev); err != nil {
		return StreamEvent{}, true, &SkipError{Reason: "data that is not the contract's JSON: " + trim(strings.ToValidUTF8(err.Error(), "?"))}
	}
	if ev.Type == "" {
		return StreamEvent{}, true, &SkipError{Reason: "an event without a type"}
	}
	if len(ev.Data) == 0 || string(ev.Data) == "null" {
		ev.Data = json.RawMessage("{}")
	}
	// json.RawMessage copies what it reads: the buffer is free for the
	// next event.
	return ev, true, nil
}

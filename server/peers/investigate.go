package peers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// InvestigateRequest is the body of POST {base}/investigate, the streaming
// contract (SPEC §19, "The conversation, streamed").
type InvestigateRequest struct {
	Prompt string `json:"prompt"`
	// ThreadID names the conversation: what the agent's answer, approve and
	// interrupt calls are addressed to.
	ThreadID string         `json:"thread_id"`
	TenantID string         `json:"tenant_id"`
	TeamID   string         `json:"team_id"`
	Context  map[string]any `json:"context"`
	// OutputDestinations as in AgentRequest.
	OutputDestinations any `json:"output_destinations,omitempty"`
}

// StreamHandler is told what a stream carries while it is read.
type StreamHandler struct {
	// Event gets every event of a known type but result and error, in
	// order (nil: none).
	Event func(StreamEvent)
	// Skipped gets why an event was not taken: too big, not the contract's
	// JSON, an unknown type (nil: none).
	Skipped func(reason string)
}

// StreamFailure is an investigation that failed once its stream had
// begun: the agent sent error, the stream broke or ended without a
// result, or it ran out of time. It is reported where the question was
// asked, never retried (the agent may have acted already).
type StreamFailure struct {
	// Events is how many events came before it.
	Events int
	// Reason says what happened, in words a person in the thread can read
	// (the agent's own error message is the agent's, meant to be shown).
	Reason string
	Err    error
}

func (f *StreamFailure) Error() string { return "investigation stream: " + f.Reason }
func (f *StreamFailure) Unwrap() error { return f.Err }

// AsStreamFailure finds a StreamFailure in err's chain.
func AsStreamFailure(err error) (*StreamFailure, bool) {
	var f *StreamFailure
	ok := errors.As(err, &f)
	return f, ok
}

// investigatePath is the streaming call's path.
const investigatePath = "/investigate"

// Investigate makes the streaming call: POST {base}/investigate with
// Accept: text/event-stream, the team token and correlation id as Run
// sends them, timeout bounding the whole stream. It returns the result
// event's data. A failure before any event (refused, non-2xx, cut or timed
// out before the first event) is classified as the run call's is, and
// retried the same way; a failure after one is a *StreamFailure.
func (a *Agent) Investigate(ctx context.Context, baseURL, teamToken, correlationID string, req InvestigateRequest, timeout time.Duration, h StreamHandler) (json.RawMessage, error) {
	if baseURL == "" || a.sharedOnly {
		baseURL = a.c.base
	}
	c := a.c
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hr, err := c.newRequest(ctx, http.MethodPost, baseURL+investigatePath, "text/event-stream", "",
		http.Header{"X-Incidentfox-Team-Token": {teamToken}, "X-Correlation-Id": {correlationID}}, req)
	if err != nil {
		return nil, err
	}
	fail := func(status int, detail string, err error) error {
		e := &HTTPError{Peer: c.peer, Method: http.MethodPost, Path: investigatePath, Status: status, Detail: detail, Err: err}
		var ne net.Error
		e.Timeout = errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) ||
			(errors.As(err, &ne) && ne.Timeout())
		return classify(e)
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		c.count("error")
		if gone(ctx) {
			return nil, err // the caller went away
		}
		return nil, fail(0, "", err)
	}
	defer resp.Body.Close()
	c.count(strconv.Itoa(resp.StatusCode))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
		detail := detailOf(raw)
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			detail = "answered with a redirect, which is never followed"
		}
		return nil, fail(resp.StatusCode, detail, nil)
	}
	r := NewSSEReader(resp.Body, MaxStreamEventBytes)
	events := 0
	for {
		ev, err := r.Next()
		switch {
		case err == nil:
		case IsSkip(err):
			events++
			if h.Skipped != nil {
				h.Skipped(err.(*SkipError).Reason)
			}
			continue
		case events == 0:
			// Nothing came: the call failed as a run call can, and is
			// retried like one.
			if errors.Is(err, io.EOF) {
				return nil, fail(0, "", errors.New("the stream ended before any event"))
			}
			if gone(ctx) {
				return nil, err
			}
			return nil, fail(0, "", err)
		case errors.Is(err, io.EOF):
			return nil, &StreamFailure{Events: events, Reason: fmt.Sprintf("the agent's stream ended after %d events without a result", events)}
		case gone(ctx):
			return nil, err // the caller went away (shutdown)
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return nil, &StreamFailure{Events: events, Err: err,
				Reason: fmt.Sprintf("the investigation did not finish within %s (%d events came)", timeout.Round(time.Second), events)}
		default:
			return nil, &StreamFailure{Events: events, Err: err,
				Reason: fmt.Sprintf("the agent's stream broke after %d events", events)}
		}
		events++
		switch ev.Type {
		case StreamResult:
			return ev.Data, nil
		case StreamError:
			return nil, &StreamFailure{Events: events, Reason: "the agent reported an error: " + errorMessage(ev.Data)}
		}
		if !KnownStreamType(ev.Type) {
			if h.Skipped != nil {
				h.Skipped("an event of unknown type " + strconv.Quote(trim(strings.ToValidUTF8(ev.Type, "?"))))
			}
			continue
		}
		if h.Event != nil {
			h.Event(ev)
		}
	}
}

// gone: the caller canceled (not the timeout).
func gone(ctx context.Context) bool {
	return ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded)
}

// errorMessage is an error event's message (data.message, .error or
// .detail, else the data itself), trimmed.
func errorMessage(data json.RawMessage) string {
	var m struct {
		Message string `json:"message"`
		Error   string `json:"error"`
		Detail  string `json:"detail"`
	}
	if json.Unmarshal(data, &m) == nil {
		for _, s := range []string{m.Message, m.Error, m.Detail} {
			if s = strings.TrimSpace(s); s != "" {
				return trim(strings.ToValidUTF8(s, "?"))
			}
		}
	}
	if s := strings.TrimSpace(string(data)); s != "" && s != "{}" {
		return trim(strings.ToValidUTF8(s, "?"))
	}
	return "(no message)"
}

// ConverseRequest is the body of the streaming contract's calls back to
// the agent: POST {base}/answer {thread_id, answers}, POST {base}/approve
// {thread_id, approval_id, decision, by}, POST {base}/interrupt
// {thread_id}.
type ConverseRequest struct {
	ThreadID   string `json:"thread_id"`
	Answers    any    `json:"answers,omitempty"`
	ApprovalID string `json:"approval_id,omitempty"`
	Decision   string `json:"decision,omitempty"`
	By         string `json:"by,omitempty"`
}

// Paths of the calls back to the agent.
const (
	AnswerPath    = "/answer"
	ApprovePath   = "/approve"
	InterruptPath = "/interrupt"
)

// Converse makes one call back to a streaming agent (path AnswerPath,
// ApprovePath or InterruptPath) with the team token and correlation id as
// Investigate sends them; its answer is read and dropped.
func (a *Agent) Converse(ctx context.Context, baseURL, teamToken, correlationID, path string, req ConverseRequest, timeout time.Duration) error {
	if baseURL == "" || a.sharedOnly {
		baseURL = a.c.base
	}
	h := http.Header{"X-Incidentfox-Team-Token": {teamToken}, "X-Correlation-Id": {correlationID}}
	var out json.RawMessage
	return a.c.callURL(ctx, baseURL+path, path, http.MethodPost, "", h, req, &out, timeout)
}

package peerstest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Routes of the agent's streaming contract (SPEC §19), usable with Fail.
const (
	RouteInvestigate = "POST /investigate"
	RouteAnswer      = "POST /answer"
	RouteApprove     = "POST /approve"
	RouteInterrupt   = "POST /interrupt"
)

// InvestigateBody is the body of an investigate call, as the fake reads it.
type InvestigateBody struct {
	Prompt             string         `json:"prompt"`
	ThreadID           string         `json:"thread_id"`
	TenantID           string         `json:"tenant_id"`
	TeamID             string         `json:"team_id"`
	Context            map[string]any `json:"context"`
	OutputDestinations any            `json:"output_destinations"`
}

// Step is one thing the fake's investigation does, in order: send an
// event (Type and Data), write Raw as it is (a malformed stream), wait
// Pause, wait until Until is closed, or cut the connection (Cut).
type Step struct {
	Type  string
	Data  any
	Raw   string
	Pause time.Duration
	Until <-chan struct{}
	Cut   bool
}

// Script gives the steps of one investigation.
type Script func(InvestigateBody) []Step

// QuickScript is the default investigation: a thought, one tool, the
// result "Investigated: <prompt>".
func QuickScript(in InvestigateBody) []Step {
	return []Step{
		{Type: "thought", Data: map[string]any{"text": "Reading the alert"}},
		{Type: "tool_start", Data: map[string]any{"tool": "kubectl_get_pods", "id": "t1"}},
		{Type: "tool_end", Data: map[string]any{"tool": "kubectl_get_pods", "id": "t1"}},
		{Type: "result", Data: map[string]any{"text": "Investigated: " + in.Prompt}},
	}
}

// DevScript is dev mode's investigation: slow enough to watch the
// progress message change (a few seconds between steps), with thoughts
// and tools before the result.
func DevScript(in InvestigateBody) []Step {
	p := 2500 * time.Millisecond
	return []Step{
		{Type: "thought", Data: map[string]any{"text": "Reading the alert and the recent deploys"}},
		{Pause: p},
		{Type: "tool_start", Data: map[string]any{"tool": "kubectl_get_pods", "id": "t1"}},
		{Pause: p},
		{Type: "tool_end", Data: map[string]any{"tool": "kubectl_get_pods", "id": "t1"}},
		{Type: "thought", Data: map[string]any{"text": "Two pods restart; looking at their logs"}},
		{Pause: p},
		{Type: "tool_start", Data: map[string]any{"tool": "kubectl_logs", "id": "t2"}},
		{Pause: p},
		{Type: "tool_end", Data: map[string]any{"tool": "kubectl_logs", "id": "t2"}},
		{Pause: p},
		{Type: "result", Data: map[string]any{"text": "Investigated: " + in.Prompt +
			"\n\nThe pods of checkout restart on an out-of-memory kill since the last deploy (dev mode's fake agent)."}},
	}
}

// streaming is the fake's streaming side.
type streaming struct {
	mu     sync.Mutex
	script Script
}

// SetScript makes every investigation from now on follow s (nil: QuickScript).
func (a *Agent) SetScript(s Script) {
	a.stream.mu.Lock()
	defer a.stream.mu.Unlock()
	a.stream.script = s
}

func (a *Agent) investigate(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-IncidentFox-Team-Token") == "" {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"detail": "missing team token"})
		return
	}
	var in InvestigateBody
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Prompt == "" || in.ThreadID == "" {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"detail": "prompt and thread_id are required"})
		return
	}
	a.stream.mu.Lock()
	script := a.stream.script
	a.stream.mu.Unlock()
	if script == nil {
		script = QuickScript
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	flush()
	for _, s := range script(in) {
		if !runStep(r.Context(), w, s) {
			return
		}
		flush()
	}
}

// runStep carries out one step; false ends the stream.
func runStep(ctx context.Context, w http.ResponseWriter, s Step) bool {
	switch {
	case s.Cut:
		panic(http.ErrAbortHandler)
	case s.Pause > 0:
		t := time.NewTimer(s.Pause)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		}
	case s.Until != nil:
		select {
		case <-s.Until:
		case <-ctx.Done():
			return false
		}
	case s.Raw != "":
		if _, err := fmt.Fprint(w, s.Raw); err != nil {
			return false
		}
	case s.Type != "":
		b, err := json.Marshal(map[string]any{"type": s.Type, "data": s.Data})
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return false
		}
	}
	return true
}

// ConverseBody is the body of an answer, approve or interrupt call.
type ConverseBody struct {
	ThreadID   string         `json:"thread_id"`
	Answers    map[string]any `json:"answers,omitempty"`
	ApprovalID string         `json:"approval_id,omitempty"`
	Decision   string         `json:"decision,omitempty"`
	By         string         `json:"by,omitempty"`
}

// converse takes an answer, approve or interrupt call: the team token and
// a thread id are required; 200 {"ok": true}.
func (a *Agent) converse(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-IncidentFox-Team-Token") == "" {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"detail": "missing team token"})
		return
	}
	var in ConverseBody
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.ThreadID == "" {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"detail": "thread_id is required"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}

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
// Pause, wait until Until is closed, cut the connection (Cut), or wait for
// the appliance's next call back on the investigation's thread (Await).
type Step struct {
	Type  string
	Data  any
	Raw   string
	Pause time.Duration
	Until <-chan struct{}
	Cut   bool
	// Await waits for the next answer, approve or interrupt call naming
	// this investigation's thread id — at most Timeout when it is set, and
	// then with the zero Reply — and replaces the rest of the script with
	// the steps it returns for what came.
	Await   func(Reply) []Step
	Timeout time.Duration
}

// Reply is a call back to the agent on an investigation's thread: Route
// is RouteAnswer, RouteApprove or RouteInterrupt ("" when an Await step
// timed out).
type Reply struct {
	Route string
	Body  ConverseBody
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

// The dev investigation's question and how long it waits for an answer
// before it sends question_timeout; its approval's deadline.
const (
	DevQuestion       = "Which cluster runs the checkout you are asking about?"
	DevQuestionWait   = 2 * time.Minute
	DevApprovalExpiry = 120 // seconds
)

// DevScript is dev mode's investigation, the whole conversation of SPEC
// §19 with pace between its steps (dev mode: a few seconds, to watch the
// progress message change): thoughts and a tool; a question with two
// options, waited for (question_timeout after DevQuestionWait, then the
// first option is assumed); another tool; an approval to restart the
// deployment, waited for (the appliance sends deny when nobody decides
// before its deadline); the restart when approved; the result, which says
// what was answered and decided. An interrupt (Stop) ends it with a result
// saying so.
func DevScript(pace time.Duration) Script {
	return func(in InvestigateBody) []Step {
		tool := func(name, id string) []Step {
			return []Step{
				{Type: "tool_start", Data: map[string]any{"tool": name, "id": id}},
				{Pause: pace},
				{Type: "tool_end", Data: map[string]any{"tool": name, "id": id}},
			}
		}
		stopped := func(what string) []Step {
			return []Step{{Type: "result", Data: map[string]any{"text": "Stopped at your request " + what +
				" (dev mode's fake agent). Nothing was changed."}}}
		}
		approvalID := "restart-" + in.ThreadID
		afterDecision := func(cluster string) func(Reply) []Step {
			return func(r Reply) []Step {
				switch {
				case r.Route == RouteInterrupt:
					return stopped("before the restart was decided")
				case r.Route != RouteApprove || r.Body.ApprovalID != approvalID:
					return []Step{{Type: "error", Data: map[string]any{"message": "dev mode's fake agent: an unexpected call " + r.Route}}}
				case r.Body.Decision == "approve":
					steps := []Step{{Type: "thought", Data: map[string]any{"text": "Approved by " + r.Body.By + "; restarting"}}}
					steps = append(steps, tool("kubectl_rollout_restart", "t3")...)
					return append(steps, Step{Pause: pace}, Step{Type: "result", Data: map[string]any{"text": "Investigated: " + in.Prompt +
						"\n\nThe pods of checkout in " + cluster + " were killed for running out of memory since the last deploy. " +
						"deployment/checkout was restarted (approved by " + r.Body.By + "); watch its memory (dev mode's fake agent)."}})
				default:
					by := "rejected by " + r.Body.By
					if r.Body.By == "expiry" {
						by = "nobody decided in time"
					}
					return []Step{{Type: "result", Data: map[string]any{"text": "Investigated: " + in.Prompt +
						"\n\nThe pods of checkout in " + cluster + " were killed for running out of memory since the last deploy. " +
						"deployment/checkout was not restarted (" + by + "); raise its memory limit (dev mode's fake agent)."}}}
				}
			}
		}
		afterAnswer := func(r Reply) []Step {
			var steps []Step
			cluster := "prod-eu"
			switch r.Route {
			case RouteInterrupt:
				return stopped("before the question was answered")
			case "":
				steps = append(steps, Step{Type: "question_timeout", Data: map[string]any{}},
					Step{Type: "thought", Data: map[string]any{"text": "No answer in time; assuming " + cluster}})
			case RouteAnswer:
				if v, ok := r.Body.Answers[DevQuestion].(string); ok && v != "" {
					cluster = v
				}
				steps = append(steps, Step{Type: "thought", Data: map[string]any{"text": "Looking at the logs in " + cluster}})
			default:
				return []Step{{Type: "error", Data: map[string]any{"message": "dev mode's fake agent: an unexpected call " + r.Route}}}
			}
			steps = append(steps, Step{Pause: pace})
			steps = append(steps, tool("kubectl_logs", "t2")...)
			return append(steps,
				Step{Type: "thought", Data: map[string]any{"text": "OOMKilled since the last deploy; a restart would bring them back for now"}},
				Step{Type: "approval", Data: map[string]any{"approval_id": approvalID, "action": "rollout restart",
					"target": "deployment/checkout in " + cluster, "reason": "its pods are killed for running out of memory",
					"expires_in": DevApprovalExpiry}},
				Step{Await: afterDecision(cluster)})
		}
		steps := []Step{{Type: "thought", Data: map[string]any{"text": "Reading the alert and the recent deploys"}}, {Pause: pace}}
		steps = append(steps, tool("kubectl_get_pods", "t1")...)
		return append(steps,
			Step{Type: "thought", Data: map[string]any{"text": "Two pods of checkout restart; it runs in two clusters"}},
			Step{Type: "question", Data: map[string]any{"questions": []any{map[string]any{"question": DevQuestion,
				"header": "Cluster", "options": []any{"prod-eu", "prod-us"}, "allow_free_text": true}}}},
			Step{Await: afterAnswer, Timeout: DevQuestionWait})
	}
}

// streaming is the fake's streaming side.
type streaming struct {
	mu     sync.Mutex
	script Script
	// replies has, per thread id being streamed, the calls back on it not
	// yet awaited.
	replies map[string]chan Reply
}

// open starts taking the calls back on a thread.
func (s *streaming) open(thread string) chan Reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replies == nil {
		s.replies = map[string]chan Reply{}
	}
	c := make(chan Reply, 64)
	s.replies[thread] = c
	return c
}

func (s *streaming) close(thread string, c chan Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replies[thread] == c {
		delete(s.replies, thread)
	}
}

// reply hands a call back to the investigation of its thread, if one is
// being streamed (a full buffer drops it: a script that never awaits).
func (s *streaming) reply(r Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case s.replies[r.Body.ThreadID] <- r:
	default:
	}
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
	replies := a.stream.open(in.ThreadID)
	defer a.stream.close(in.ThreadID, replies)
	steps := script(in)
	for len(steps) > 0 {
		s := steps[0]
		steps = steps[1:]
		if s.Await != nil {
			got, ok := await(r.Context(), replies, s.Timeout)
			if !ok {
				return
			}
			steps = s.Await(got)
			continue
		}
		if !runStep(r.Context(), w, s) {
			return
		}
		flush()
	}
}

// await waits for the next call back (the zero Reply after timeout, when
// set); false when the stream's request ended.
func await(ctx context.Context, replies <-chan Reply, timeout time.Duration) (Reply, bool) {
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case got := <-replies:
		return got, true
	case <-expired:
		return Reply{}, true
	case <-ctx.Done():
		return Reply{}, false
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

// converse takes an answer, approve or interrupt call (route): the team
// token and a thread id are required, an answer's answers, an approval's
// approval_id and decision (approve or deny) and by; 200 {"ok": true}.
// The call is handed to the investigation streaming on that thread.
func (a *Agent) converse(route string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-IncidentFox-Team-Token") == "" {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"detail": "missing team token"})
			return
		}
		var in ConverseBody
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.ThreadID == "" {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"detail": "thread_id is required"})
			return
		}
		switch {
		case route == RouteAnswer && len(in.Answers) == 0:
			writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"detail": "answers are required"})
			return
		case route == RouteApprove && (in.ApprovalID == "" || (in.Decision != "approve" && in.Decision != "deny") || in.By == ""):
			writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"detail": "approval_id, decision (approve or deny) and by are required"})
			return
		}
		a.stream.reply(Reply{Route: route, Body: in})
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	}
}

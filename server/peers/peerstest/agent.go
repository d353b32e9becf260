package peerstest

import (
	"encoding/json"
	"net/http"
)

// RouteAgentRun is the Agent API's run route, usable with Fail.
const RouteAgentRun = "POST /agents/{agent}/run"

// Agent is a fake Agent API: it answers every run with a short result,
// and streams every investigation (POST /investigate) as its Script says.
type Agent struct {
	faults
	mux    *http.ServeMux
	stream streaming
}

// NewAgent returns the fake.
func NewAgent() *Agent {
	a := &Agent{mux: http.NewServeMux()}
	a.mux.HandleFunc(RouteAgentRun, a.wrap(RouteAgentRun, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-IncidentFox-Team-Token") == "" {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"detail": "missing team token"})
			return
		}
		var in struct {
			Message       string         `json:"message"`
			Context       map[string]any `json:"context"`
			Timeout       int            `json:"timeout"`
			MaxTurns      int            `json:"max_turns"`
			TriggerSource string         `json:"trigger_source"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Message == "" {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"detail": "message is required"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"agent":          r.PathValue("agent"),
			"status":         "completed",
			"output":         "Investigated: " + in.Message,
			"correlation_id": r.Header.Get("X-Correlation-ID"),
			"turns":          1,
		})
	}))
	a.mux.HandleFunc(RouteInvestigate, a.wrap(RouteInvestigate, a.investigate))
	for _, route := range []string{RouteAnswer, RouteApprove, RouteInterrupt} {
		a.mux.HandleFunc(route, a.wrap(route, a.converse(route)))
	}
	return a
}

// ServeHTTP serves the fake's API.
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

package peers

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// Agent is the client of the Agent API (the shared one, or a team's
// dedicated Service).
type Agent struct{ c client }

// NewAgent returns an Agent client whose BaseURL is the shared agent.
func NewAgent(o Options) *Agent { return &Agent{c: newClient(AgentPeer, o)} }

// AgentRequest is the body of POST /agents/{agent}/run (SPEC §6, §7).
type AgentRequest struct {
	Message       string         `json:"message"`
	Context       map[string]any `json:"context"`
	Timeout       int            `json:"timeout"` // seconds
	MaxTurns      int            `json:"max_turns"`
	TriggerSource string         `json:"trigger_source"`
}

// Run calls the agent. baseURL "" means the shared agent. The team token
// goes in X-IncidentFox-Team-Token; timeout bounds the whole call.
func (a *Agent) Run(ctx context.Context, baseURL, agent, teamToken, correlationID string, req AgentRequest, timeout time.Duration) (json.RawMessage, error) {
	if baseURL == "" {
		baseURL = a.c.base
	}
	path := "/agents/" + url.PathEscape(agent) + "/run"
	h := http.Header{"X-Incidentfox-Team-Token": {teamToken}, "X-Correlation-Id": {correlationID}}
	var out json.RawMessage
	err := a.c.callURL(ctx, baseURL+path, path, http.MethodPost, "", h, req, &out, timeout)
	return out, err
}

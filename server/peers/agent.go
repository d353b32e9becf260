package peers

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Agent is the client of the Agent API (the shared one, or a team's
// dedicated Service).
type Agent struct {
	c          client
	sharedOnly bool
}

// NewAgent returns an Agent client whose BaseURL is the shared agent.
func NewAgent(o Options) *Agent { return &Agent{c: newClient(AgentPeer, o)} }

// ServeDedicatedFromShared sends the calls meant for a team's dedicated
// agent to the shared one. Dev mode's simulated cluster sets it: there a
// dedicated agent's Service exists only on paper and resolves nowhere, and
// the built-in fake agent stands in for every agent.
func (a *Agent) ServeDedicatedFromShared() { a.sharedOnly = true }

// AgentRequest is the body of POST /agents/{agent}/run (SPEC §6, §7).
type AgentRequest struct {
	Message       string         `json:"message"`
	Context       map[string]any `json:"context"`
	Timeout       int            `json:"timeout"` // seconds
	MaxTurns      int            `json:"max_turns"`
	TriggerSource string         `json:"trigger_source"`
	// OutputDestinations are where the answer goes (the answers room's
	// destinations, as JSON): the ones the appliance posts itself carry
	// "posted_by":"orchestrator", so the agent does not post them too.
	OutputDestinations any `json:"output_destinations,omitempty"`
}

// Run calls the agent. baseURL "" means the shared agent. The team token
// goes in X-IncidentFox-Team-Token; timeout bounds the whole call.
func (a *Agent) Run(ctx context.Context, baseURL, agent, teamToken, correlationID string, req AgentRequest, timeout time.Duration) (json.RawMessage, error) {
	if baseURL == "" || a.sharedOnly {
		baseURL = a.c.base
	}
	path := "/agents/" + url.PathEscape(agent) + "/run"
	h := http.Header{"X-Incidentfox-Team-Token": {teamToken}, "X-Correlation-Id": {correlationID}}
	var out json.RawMessage
	err := a.c.callURL(ctx, baseURL+path, path, http.MethodPost, "", h, req, &out, timeout)
	return out, err
}

// inClusterURL accepts only a Service inside the cluster, so a team's
// config cannot point the orchestrator at an arbitrary host (no SSRF).
var inClusterURL = regexp.MustCompile(`^http://[a-z0-9]([-a-z0-9]*[a-z0-9])?\.[a-z0-9]([-a-z0-9]*[a-z0-9])?\.svc(\.cluster\.local)?(:[0-9]{1,5})?/?$`)

// DedicatedURL reads agent.dedicated_service_url from a team's effective
// config. It returns "" when there is none; ok is false when there is one
// that is not an in-cluster Service URL (the caller then uses the shared
// agent and warns).
func DedicatedURL(cfg map[string]any) (url string, ok bool) {
	agent, _ := cfg["agent"].(map[string]any)
	u, _ := agent["dedicated_service_url"].(string)
	if u == "" {
		return "", true
	}
	if !inClusterURL.MatchString(u) {
		return "", false
	}
	return strings.TrimSuffix(u, "/"), true
}

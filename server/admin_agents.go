package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/ids"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/store"
)

// AgentProxy is what the agent run proxy needs (SPEC §7).
type AgentProxy struct {
	Config interface {
		ImpersonationToken(ctx context.Context, token, org, team string) (peers.Impersonation, error)
		ConfigMe(ctx context.Context, teamToken string) (map[string]any, error)
	}
	Agent interface {
		Run(ctx context.Context, baseURL, agent, teamToken, correlationID string, req peers.AgentRequest, timeout time.Duration) (json.RawMessage, error)
	}
	Audit interface {
		InsertAgentRun(ctx context.Context, r store.AgentRun) error
	}
}

// agentRunRequest is the body of POST /api/v1/admin/agents/run.
type agentRunRequest struct {
	OrgID      string         `json:"org_id"`
	TeamNodeID string         `json:"team_node_id"`
	AgentName  string         `json:"agent_name"`
	Message    string         `json:"message"`
	Context    map[string]any `json:"context,omitempty"`
	Timeout    *int           `json:"timeout,omitempty"`   // seconds, 1–3600, default 300
	MaxTurns   *int           `json:"max_turns,omitempty"` // 1–1000, default 50
}

func (req *agentRunRequest) validate() error {
	switch {
	case !ids.Valid(req.OrgID):
		return apperr.New(apperr.Invalid, "invalid_org_id", "org_id must be 1-128 characters of [A-Za-z0-9._-]")
	case !ids.Valid(req.TeamNodeID):
		return apperr.New(apperr.Invalid, "invalid_team_node_id", "team_node_id must be 1-128 characters of [A-Za-z0-9._-]")
	case !ids.ValidAgent(req.AgentName):
		return apperr.New(apperr.Invalid, "invalid_agent_name", "agent_name must be 1-64 characters of [A-Za-z0-9_.-]")
	case req.Message == "" || utf8.RuneCountInString(req.Message) > 20000:
		return apperr.New(apperr.Invalid, "invalid_message", "message must be 1-20000 characters")
	case req.Timeout != nil && (*req.Timeout < 1 || *req.Timeout > 3600):
		return apperr.New(apperr.Invalid, "invalid_timeout", "timeout must be 1-3600 seconds")
	case req.MaxTurns != nil && (*req.MaxTurns < 1 || *req.MaxTurns > 1000):
		return apperr.New(apperr.Invalid, "invalid_max_turns", "max_turns must be 1-1000")
	}
	return nil
}

// handleAgentRun runs an agent for a team on an admin's behalf: an
// impersonation token is minted with the admin's own token, the agent is
// called with it (on the team's dedicated agent if it has one), and the run
// is audited. The team token never appears in the answer or the logs.
func (s *Server) handleAgentRun(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermAgentRun)
	if a == nil {
		return
	}
	var req agentRunRequest
	if err := s.decode(w, r, &req); err != nil {
		s.out.Error(w, r, err)
		return
	}
	if err := req.validate(); err != nil {
		s.out.Error(w, r, err)
		return
	}
	if err := a.CanActOn(req.OrgID); err != nil {
		s.out.Error(w, r, err)
		return
	}
	// This answer may take as long as the agent: extend the write deadline.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(req.timeout() + time.Minute))
	out, err := s.runAgent(r.Context(), a, req)
	var up *upstreamErr
	if errors.As(err, &up) {
		// The agent's own status goes along, so callers can tell a crash from a refusal.
		s.out.JSON(w, r, http.StatusBadGateway, map[string]any{"error": up.e.Code, "detail": up.e.Detail, "upstream_status": up.status})
		return
	}
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	s.out.JSON(w, r, http.StatusOK, map[string]any{"team_node_id": req.TeamNodeID, "agent_name": req.AgentName,
		"agent_result": out.Result, "correlation_id": out.CorrelationID})
}

func (req *agentRunRequest) timeout() time.Duration {
	if req.Timeout != nil {
		return time.Duration(*req.Timeout) * time.Second
	}
	return 300 * time.Second
}

// upstreamErr is an agent failure with the agent's own HTTP status.
type upstreamErr struct {
	e      *apperr.Error
	status int
}

func (u *upstreamErr) Error() string { return u.e.Error() }
func (u *upstreamErr) Unwrap() error { return u.e }

// agentOutcome is a successful agent run.
type agentOutcome struct {
	Result        json.RawMessage
	CorrelationID string
}

// runAgent is the agent proxy behind the API and the page: impersonate with
// the admin's token, find the team's agent, call it, audit the run.
func (s *Server) runAgent(ctx context.Context, a *auth.Admin, req agentRunRequest) (agentOutcome, error) {
	timeout, maxTurns := req.timeout(), 50
	if req.MaxTurns != nil {
		maxTurns = *req.MaxTurns
	}
	p := s.opts.Agents
	imp, err := p.Config.ImpersonationToken(ctx, a.Token, req.OrgID, req.TeamNodeID)
	if err != nil {
		return agentOutcome{}, err
	}
	base := ""
	if cfg, err := p.Config.ConfigMe(ctx, imp.Token); err == nil {
		if u, ok := peers.DedicatedURL(cfg); ok {
			base = u
		} else {
			s.logger.Warn("team's dedicated_service_url is not an in-cluster Service URL; using the shared agent",
				"org_id", req.OrgID, "team_node_id", req.TeamNodeID)
		}
	}
	ctxMap := map[string]any{"trigger": map[string]any{"source": "admin", "actor": a.Actor}}
	for k, v := range req.Context {
		if k != "trigger" {
			ctxMap[k] = v
		}
	}
	correlation := uuid.NewString()
	start := s.now()
	result, err := p.Agent.Run(ctx, base, req.AgentName, imp.Token, correlation, peers.AgentRequest{
		Message: req.Message, Context: ctxMap, Timeout: int(timeout / time.Second), MaxTurns: maxTurns, TriggerSource: "admin",
	}, timeout)
	run := store.AgentRun{ID: uuid.NewString(), TriggerSource: "admin", Actor: a.Actor, OrgID: req.OrgID,
		TeamNodeID: req.TeamNodeID, AgentName: req.AgentName, Status: "succeeded", UpstreamStatus: http.StatusOK,
		CorrelationID: correlation, Duration: s.now().Sub(start), StartedAt: start}
	var answer error
	if err != nil {
		run.Status, run.UpstreamStatus, run.Error = "failed", 0, err.Error()
		h, _ := peers.AsHTTPError(err)
		switch {
		case h != nil && h.Timeout, errors.Is(err, context.DeadlineExceeded):
			run.Status = "timeout"
			answer = apperr.Wrap(err, apperr.GatewayTimeout, "agent_timeout", "the agent did not finish within %s", timeout)
		case h != nil:
			run.UpstreamStatus = h.Status
			answer = &upstreamErr{e: apperr.Wrap(err, apperr.BadGateway, "agent_upstream_error", "the agent failed: %s", h.Error()), status: h.Status}
		default:
			answer = err
		}
	}
	if aerr := p.Audit.InsertAgentRun(context.WithoutCancel(ctx), run); aerr != nil {
		s.logger.Error("auditing an agent run failed", "error", aerr)
	}
	s.logger.Info("agent run", "actor", a.Actor, "org_id", req.OrgID, "team_node_id", req.TeamNodeID,
		"agent", req.AgentName, "status", run.Status, "duration_ms", run.Duration.Milliseconds(), "correlation_id", correlation)
	return agentOutcome{Result: result, CorrelationID: correlation}, answer
}

// Package agentrun is the agent run proxy of SPEC §7, behind both the
// admin API and the admin page: an impersonation token is minted with the
// admin's own token, the agent is called with it (on the team's dedicated
// agent if it has one), and the run is audited. The team token never
// appears in an answer or a log.
package agentrun

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/ids"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/store"
)

// Proxy is what the agent run proxy needs.
type Proxy struct {
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
	// Logger and Now default to a silent logger and the wall clock.
	Logger *slog.Logger
	Now    func() time.Time
}

// Request is the body of POST /api/v1/admin/agents/run (the page's form
// fills the same).
type Request struct {
	OrgID      string         `json:"org_id"`
	TeamNodeID string         `json:"team_node_id"`
	AgentName  string         `json:"agent_name"`
	Message    string         `json:"message"`
	Context    map[string]any `json:"context,omitempty"`
	Timeout    *int           `json:"timeout,omitempty"`   // seconds, 1–3600, default 300
	MaxTurns   *int           `json:"max_turns,omitempty"` // 1–1000, default 50
}

// Validate checks the request before anything is called.
func (req *Request) Validate() error {
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

// CallTimeout is the call's bound (300 s unless asked).
func (req *Request) CallTimeout() time.Duration {
	if req.Timeout != nil {
		return time.Duration(*req.Timeout) * time.Second
	}
	return 300 * time.Second
}

// UpstreamError is an agent failure with the agent's own HTTP status.
type UpstreamError struct {
	Err    *apperr.Error
	Status int
}

func (u *UpstreamError) Error() string { return u.Err.Error() }
func (u *UpstreamError) Unwrap() error { return u.Err }

// Outcome is a successful agent run.
type Outcome struct {
	Result        json.RawMessage
	CorrelationID string
}

// Run impersonates the team with the admin's token, finds the team's
// agent, calls it and audits the run.
func (p *Proxy) Run(ctx context.Context, a *auth.Admin, req Request) (Outcome, error) {
	timeout, maxTurns := req.CallTimeout(), 50
	if req.MaxTurns != nil {
		maxTurns = *req.MaxTurns
	}
	imp, err := p.Config.ImpersonationToken(ctx, a.Token, req.OrgID, req.TeamNodeID)
	if err != nil {
		return Outcome{}, err
	}
	base := ""
	if cfg, err := p.Config.ConfigMe(ctx, imp.Token); err == nil {
		if u, ok := peers.DedicatedURL(cfg); ok {
			base = u
		} else {
			p.logger().Warn("team's dedicated_service_url is not an in-cluster Service URL; using the shared agent",
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
	start := p.now()
	result, err := p.Agent.Run(ctx, base, req.AgentName, imp.Token, correlation, peers.AgentRequest{
		Message: req.Message, Context: ctxMap, Timeout: int(timeout / time.Second), MaxTurns: maxTurns, TriggerSource: "admin",
	}, timeout)
	run := store.AgentRun{ID: uuid.NewString(), TriggerSource: "admin", Actor: a.Actor, OrgID: req.OrgID,
		TeamNodeID: req.TeamNodeID, AgentName: req.AgentName, Status: "succeeded", UpstreamStatus: http.StatusOK,
		CorrelationID: correlation, Duration: p.now().Sub(start), StartedAt: start}
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
			answer = &UpstreamError{Err: apperr.Wrap(err, apperr.BadGateway, "agent_upstream_error", "the agent failed: %s", h.Error()), Status: h.Status}
		default:
			answer = err
		}
	}
	if aerr := p.Audit.InsertAgentRun(context.WithoutCancel(ctx), run); aerr != nil {
		p.logger().Error("auditing an agent run failed", "error", aerr)
	}
	p.logger().Info("agent run", "actor", a.Actor, "org_id", req.OrgID, "team_node_id", req.TeamNodeID,
		"agent", req.AgentName, "status", run.Status, "duration_ms", run.Duration.Milliseconds(), "correlation_id", correlation)
	return Outcome{Result: result, CorrelationID: correlation}, answer
}

func (p *Proxy) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}

func (p *Proxy) now() time.Time {
	if p.Now == nil {
		return wallclock.Now().UTC()
	}
	return p.Now().UTC()
}

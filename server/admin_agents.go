package server

import (
	"errors"
	"net/http"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/agentrun"
	"github.com/incidentfox/orchestrator-edge/server/auth"
)

// handleAgentRun runs an agent for a team on an admin's behalf: an
// impersonation token is minted with the admin's own token, the agent is
// called with it (on the team's dedicated agent if it has one), and the run
// is audited. The team token never appears in the answer or the logs.
func (s *Server) handleAgentRun(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermAgentRun)
	if a == nil {
		return
	}
	var req agentrun.Request
	if err := s.decode(w, r, &req); err != nil {
		s.out.Error(w, r, err)
		return
	}
	if err := req.Validate(); err != nil {
		s.out.Error(w, r, err)
		return
	}
	if err := a.CanActOn(req.OrgID); err != nil {
		s.out.Error(w, r, err)
		return
	}
	// This answer may take as long as the agent: extend the write deadline.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(req.CallTimeout() + time.Minute))
	out, err := s.opts.Agents.Run(r.Context(), a, req)
	var up *agentrun.UpstreamError
	if errors.As(err, &up) {
		// The agent's own status goes along, so callers can tell a crash from a refusal.
		s.out.JSON(w, r, http.StatusBadGateway, map[string]any{"error": up.Err.Code, "detail": up.Err.Detail, "upstream_status": up.Status})
		return
	}
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	s.out.JSON(w, r, http.StatusOK, map[string]any{"team_node_id": req.TeamNodeID, "agent_name": req.AgentName,
		"agent_result": out.Result, "correlation_id": out.CorrelationID})
}

package server

import (
	"context"
	"net/http"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/incidentfox/orchestrator-edge/server/ids"
	"github.com/incidentfox/orchestrator-edge/server/scoped"
	"github.com/julienschmidt/httprouter"
)

// PipelineRunner starts a team's pipeline now (peers.AIPipeline).
type PipelineRunner interface {
	Run(ctx context.Context, token, org, team string) (map[string]any, error)
}

// teamRequest is a body naming one team.
type teamRequest struct {
	OrgID      string `json:"org_id"`
	TeamNodeID string `json:"team_node_id"`
}

// teamBody decodes and checks a teamRequest for an admin.
func (s *Server) teamBody(w http.ResponseWriter, r *http.Request, a *auth.Admin) (teamRequest, bool) {
	var req teamRequest
	err := s.decode(w, r, &req)
	if err == nil {
		err = scoped.CheckTeam(a, req.OrgID, req.TeamNodeID)
	}
	if err != nil {
		s.out.Error(w, r, err)
		return req, false
	}
	return req, true
}

func (s *Server) handleListSchedules(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermPipelineRead)
	if a == nil {
		return
	}
	org, team := r.URL.Query().Get("org_id"), r.URL.Query().Get("team_node_id")
	_, err := scoped.ListQuery(r, a, &org)
	if err == nil && team != "" && !ids.Valid(team) {
		err = httpx.QueryError("team_node_id", "must be 1-128 characters of [A-Za-z0-9._-]")
	}
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	views, err := s.opts.Schedules.List(r.Context(), org, team)
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	s.out.JSON(w, r, http.StatusOK, map[string]any{"schedules": views})
}

// schedulePatch is the body of PATCH /api/v1/admin/schedules/{id}.
type schedulePatch struct {
	Enabled        *bool   `json:"enabled,omitempty"`
	CronExpression *string `json:"cron_expression,omitempty"`
}

func (s *Server) handlePatchSchedule(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermCronJobsSync)
	if a == nil {
		return
	}
	row, err := s.opts.Schedules.Get(r.Context(), httprouter.ParamsFromContext(r.Context()).ByName("id"))
	if err == nil && a.CanActOn(row.OrgID) != nil {
		err = apperr.New(apperr.NotFound, "schedule_not_found", "no schedule %q", row.ID)
	}
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	var p schedulePatch
	if err := s.decode(w, r, &p); err != nil {
		s.out.Error(w, r, err)
		return
	}
	v, err := s.opts.Schedules.Patch(r.Context(), row, p.Enabled, p.CronExpression)
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	s.logger.Info("schedule patched", "actor", a.Actor, "schedule_id", row.ID)
	s.out.JSON(w, r, http.StatusOK, v)
}

func (s *Server) handleSyncCronJobs(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermCronJobsSync)
	if a == nil {
		return
	}
	req, ok := s.teamBody(w, r, a)
	if !ok {
		return
	}
	res, err := s.opts.Schedules.Sync(r.Context(), a.Token, req.OrgID, req.TeamNodeID)
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	s.out.JSON(w, r, http.StatusOK, res)
}

func (s *Server) handlePipelineTrigger(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermPipelineRun)
	if a == nil {
		return
	}
	req, ok := s.teamBody(w, r, a)
	if !ok {
		return
	}
	out, err := s.opts.PipelineRunner.Run(r.Context(), a.Token, req.OrgID, req.TeamNodeID)
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	s.logger.Info("pipeline triggered", "actor", a.Actor, "org_id", req.OrgID, "team_node_id", req.TeamNodeID)
	s.out.JSON(w, r, http.StatusAccepted, map[string]any{"org_id": req.OrgID, "team_node_id": req.TeamNodeID, "result": out})
}

func (s *Server) handleTeamStatus(perm string, deployment bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a := s.admin(w, r, perm)
		if a == nil {
			return
		}
		p := httprouter.ParamsFromContext(r.Context())
		org, team := p.ByName("org"), p.ByName("team")
		if err := scoped.CheckTeam(a, org, team); err != nil {
			s.out.Error(w, r, err)
			return
		}
		var v any
		var err error
		if deployment {
			v, err = s.opts.Schedules.Deployment(r.Context(), org, team)
		} else {
			v, err = s.opts.Schedules.Pipeline(r.Context(), org, team)
		}
		if err != nil {
			s.out.Error(w, r, err)
			return
		}
		s.out.JSON(w, r, http.StatusOK, v)
	}
}

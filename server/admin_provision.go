package server

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/incidentfox/orchestrator-edge/server/ids"
	"github.com/incidentfox/orchestrator-edge/server/provision"
	"github.com/incidentfox/orchestrator-edge/server/scoped"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/julienschmidt/httprouter"
)

// admin authenticates the request for perm, answering the error itself;
// it returns nil when the handler should stop.
func (s *Server) admin(w http.ResponseWriter, r *http.Request, perm string) *auth.Admin {
	if s.opts.Auth == nil {
		s.out.Error(w, r, apperr.New(apperr.Unavailable, "config_service_unavailable", "admin authentication is not configured"))
		return nil
	}
	a, err := s.opts.Auth.Authenticate(r.Context(), r, perm)
	if err != nil {
		s.out.Error(w, r, err)
		return nil
	}
	return a
}

// writeResult writes a workflow's answer with the run id header.
func (s *Server) writeResult(w http.ResponseWriter, r *http.Request, res provision.Result) {
	w.Header().Set("X-Provisioning-Run-Id", res.RunID)
	if res.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	s.out.JSON(w, r, res.HTTPStatus, res.Body)
}

func (s *Server) handleProvision(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermProvision)
	if a == nil {
		return
	}
	var req provision.Request
	if err := s.decode(w, r, &req); err != nil {
		s.out.Error(w, r, err)
		return
	}
	if err := req.Normalize(r.Header.Get("Idempotency-Key")); err != nil {
		s.out.Error(w, r, err)
		return
	}
	if err := a.CanActOn(req.OrgID); err != nil {
		s.out.Error(w, r, err)
		return
	}
	res, err := s.opts.Provision.Provision(r.Context(), provision.Caller{Token: a.Token, Actor: a.Actor}, req)
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	s.writeResult(w, r, res)
}

func (s *Server) handleDeprovision(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermDeprovision)
	if a == nil {
		return
	}
	var req provision.DeprovisionRequest
	if err := s.decode(w, r, &req); err != nil {
		s.out.Error(w, r, err)
		return
	}
	if err := req.Normalize(); err != nil {
		s.out.Error(w, r, err)
		return
	}
	if err := a.CanActOn(req.OrgID); err != nil {
		s.out.Error(w, r, err)
		return
	}
	res, err := s.opts.Provision.Deprovision(r.Context(), provision.Caller{Token: a.Token, Actor: a.Actor}, req)
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	s.writeResult(w, r, res)
}

// runView is a run as the admin API shows it.
type runView struct {
	ID             string          `json:"id"`
	Kind           string          `json:"kind"`
	OrgID          string          `json:"org_id"`
	TeamNodeID     string          `json:"team_node_id"`
	Status         string          `json:"status"`
	DryRun         bool            `json:"dry_run,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	Actor          string          `json:"actor,omitempty"`
	HTTPStatus     int             `json:"http_status,omitempty"`
	Error          string          `json:"error,omitempty"`
	Steps          json.RawMessage `json:"steps"`
	Response       json.RawMessage `json:"response,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
}

func viewRun(run store.Run, withResponse bool) runView {
	v := runView{ID: run.ID, Kind: run.Kind, OrgID: run.OrgID, TeamNodeID: run.TeamNodeID, Status: run.Status,
		IdempotencyKey: run.IdempotencyKey, Actor: run.Actor, HTTPStatus: run.HTTPStatus, Error: run.Error,
		Steps: run.Steps, CreatedAt: run.CreatedAt, UpdatedAt: run.UpdatedAt, DryRun: provision.IsDryRun(run)}
	if withResponse {
		v.Response = run.Response
	}
	return v
}

var runStatuses = map[string]bool{store.RunRunning: true, store.RunSucceeded: true, store.RunFailed: true}
var runKinds = map[string]bool{store.RunKindProvision: true, store.RunKindDeprovision: true}

func (s *Server) handleListRuns(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermProvisionRead)
	if a == nil {
		return
	}
	q := r.URL.Query()
	f := store.RunFilter{OrgID: q.Get("org_id"), TeamNodeID: q.Get("team_node_id"), Status: q.Get("status"),
		Kind: q.Get("kind"), Cursor: q.Get("cursor")}
	var err error
	switch {
	case f.TeamNodeID != "" && !ids.Valid(f.TeamNodeID):
		err = httpx.QueryError("team_node_id", "must be 1-128 characters of [A-Za-z0-9._-]")
	case f.Status != "" && !runStatuses[f.Status]:
		err = httpx.QueryError("status", "must be running, succeeded or failed")
	case f.Kind != "" && !runKinds[f.Kind]:
		err = httpx.QueryError("kind", "must be provision or deprovision")
	default:
		f.Limit, err = scoped.ListQuery(r, a, &f.OrgID)
	}
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	runs, next, err := s.opts.Runs.ListRuns(r.Context(), f)
	if err != nil {
		s.out.Error(w, r, httpx.CursorError(err))
		return
	}
	views := make([]runView, 0, len(runs))
	for _, run := range runs {
		views = append(views, viewRun(run, false))
	}
	s.out.JSON(w, r, http.StatusOK, map[string]any{"runs": views, "next_cursor": next})
}

func (s *Server) handleGetRun(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermProvisionRead)
	if a == nil {
		return
	}
	run, err := s.reads.Run(r.Context(), a, httprouter.ParamsFromContext(r.Context()).ByName("id"))
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	s.out.JSON(w, r, http.StatusOK, viewRun(run, true))
}

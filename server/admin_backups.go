package server

import (
	"net/http"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/backups"
	"github.com/julienschmidt/httprouter"
)

// backupAdmin checks admin:backup for an admin bound to no org: a snapshot
// holds every org's data.
func (s *Server) backupAdmin(w http.ResponseWriter, r *http.Request) *auth.Admin {
	a := s.admin(w, r, auth.PermBackup)
	if a == nil {
		return nil
	}
	if a.Identity.OrgID != "" {
		s.out.Error(w, r, apperr.New(apperr.Forbidden, "insufficient_permissions",
			"a backup holds every org's data: it needs an admin token bound to no org"))
		return nil
	}
	return a
}

func (s *Server) handleCreateBackup(w http.ResponseWriter, r *http.Request) {
	a := s.backupAdmin(w, r)
	if a == nil {
		return
	}
	info, err := s.opts.Backups.CreateFor(r.Context(), a.Actor)
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	s.out.JSON(w, r, http.StatusCreated, info)
}

func (s *Server) handleListBackups(w http.ResponseWriter, r *http.Request) {
	if s.backupAdmin(w, r) == nil {
		return
	}
	list, err := s.opts.Backups.List()
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	s.out.JSON(w, r, http.StatusOK, map[string]any{"backups": list})
}

func (s *Server) handleDownloadBackup(w http.ResponseWriter, r *http.Request) {
	if s.backupAdmin(w, r) == nil {
		return
	}
	if err := s.opts.Backups.Serve(w, httprouter.ParamsFromContext(r.Context()).ByName("name")); err != nil {
		s.out.Error(w, r, err)
	}
}

func (s *Server) handleDeleteBackup(w http.ResponseWriter, r *http.Request) {
	a := s.backupAdmin(w, r)
	if a == nil {
		return
	}
	name := httprouter.ParamsFromContext(r.Context()).ByName("name")
	if err := s.opts.Backups.Delete(name); err != nil {
		s.out.Error(w, r, backups.Problem(err))
		return
	}
	s.logger.Info("backup deleted", "name", name, "actor", a.Actor)
	w.WriteHeader(http.StatusNoContent)
}

package server

import (
	"net/http"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/backups"
	"github.com/julienschmidt/httprouter"
)

// uiBackupAdmin checks admin:backup for an admin bound to no org, as the
// API does.
func (s *Server) uiBackupAdmin(w http.ResponseWriter, r *http.Request, se *uiSession) *auth.Admin {
	a := s.uiAdmin(w, r, se, auth.PermBackup, "backups")
	if a != nil && a.Identity.OrgID != "" {
		s.render(w, r, http.StatusForbidden, "notfound", page{Session: se, Nav: "backups",
			Error: "A backup holds every org's data: it needs an admin token bound to no org."})
		return nil
	}
	return a
}

func (s *Server) uiBackups(w http.ResponseWriter, r *http.Request, se *uiSession) {
	if s.uiBackupAdmin(w, r, se) == nil {
		return
	}
	list, err := s.opts.Backups.List()
	errText := ""
	if err != nil {
		errText = apperr.Message(err)
	}
	schedule, keep := s.opts.Backups.Schedule()
	failure, failedAt := s.opts.Backups.LastFailure()
	s.render(w, r, http.StatusOK, "backups", page{Session: se, Nav: "backups", Error: errText, Data: struct {
		Backups       []backups.Info
		Dir, Schedule string
		Keep          int
		Failure       string
		FailedAt      time.Time
	}{list, s.opts.Backups.Dir(), schedule, keep, failure, failedAt}})
}

func (s *Server) uiBackupNow(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := s.uiBackupAdmin(w, r, se)
	if a == nil {
		return
	}
	if info, err := s.opts.Backups.CreateFor(r.Context(), a.Actor); err != nil {
		s.setFlash(r, se, "No backup: "+apperr.Message(err))
	} else {
		s.setFlash(r, se, "Backup "+info.Name+" written and verified.")
	}
	http.Redirect(w, r, "/ui/backups", http.StatusSeeOther)
}

func (s *Server) uiBackupDownload(w http.ResponseWriter, r *http.Request, se *uiSession) {
	if s.uiBackupAdmin(w, r, se) == nil {
		return
	}
	name := httprouter.ParamsFromContext(r.Context()).ByName("name")
	if _, _, err := s.opts.Backups.Find(name); err != nil {
		s.render(w, r, http.StatusNotFound, "notfound", page{Session: se, Nav: "backups", Error: "No such backup."})
		return
	}
	if err := s.opts.Backups.Serve(w, name); err != nil {
		s.out.Error(w, r, err)
	}
}

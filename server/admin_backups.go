package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/backups"
	"github.com/incidentfox/orchestrator-edge/store"
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

// backupError maps the backup manager's errors.
func backupError(err error) error {
	switch {
	case errors.Is(err, backups.ErrInProgress):
		return apperr.Wrap(err, apperr.Conflict, "backup_in_progress", "a backup is already running; try again when it is done")
	case errors.Is(err, store.ErrNoSnapshots):
		return apperr.Wrap(err, apperr.Conflict, "backups_unavailable", "%s", store.ErrNoSnapshots.Error())
	case errors.Is(err, backups.ErrNotFound):
		return apperr.Wrap(err, apperr.NotFound, "backup_not_found", "no such backup")
	}
	return err
}

// createBackup takes a manual backup for an admin (the API and the page).
func (s *Server) createBackup(ctx context.Context, a *auth.Admin) (backups.Info, error) {
	info, err := s.opts.Backups.Create(context.WithoutCancel(ctx), backups.Manual)
	if err == nil {
		s.logger.Info("backup taken", "name", info.Name, "actor", a.Actor)
	}
	return info, backupError(err)
}

func (s *Server) handleCreateBackup(w http.ResponseWriter, r *http.Request) {
	a := s.backupAdmin(w, r)
	if a == nil {
		return
	}
	info, err := s.createBackup(r.Context(), a)
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

// serveBackup streams a backup file as a download.
func (s *Server) serveBackup(w http.ResponseWriter, r *http.Request, name string) {
	info, path, err := s.opts.Backups.Find(name)
	if err != nil {
		s.out.Error(w, r, backupError(err))
		return
	}
	f, err := os.Open(path)
	if err != nil {
		s.out.Error(w, r, backupError(fmt.Errorf("%w: %v", backups.ErrNotFound, err)))
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", "application/vnd.sqlite3")
	h.Set("Content-Disposition", `attachment; filename="`+info.Name+`"`)
	h.Set("Content-Length", strconv.FormatInt(info.Size, 10))
	h.Set("X-Backup-Sha256", info.SHA256)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, f)
}

func (s *Server) handleDownloadBackup(w http.ResponseWriter, r *http.Request) {
	if s.backupAdmin(w, r) == nil {
		return
	}
	s.serveBackup(w, r, httprouter.ParamsFromContext(r.Context()).ByName("name"))
}

func (s *Server) handleDeleteBackup(w http.ResponseWriter, r *http.Request) {
	a := s.backupAdmin(w, r)
	if a == nil {
		return
	}
	name := httprouter.ParamsFromContext(r.Context()).ByName("name")
	if err := s.opts.Backups.Delete(name); err != nil {
		s.out.Error(w, r, backupError(err))
		return
	}
	s.logger.Info("backup deleted", "name", name, "actor", a.Actor)
	w.WriteHeader(http.StatusNoContent)
}

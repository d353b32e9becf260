package server

import (
	"context"
	"net/http"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
)

// handleHealth is liveness: the process is up and serving.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	s.out.JSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReady is readiness: migrations applied and the database writable,
// and the process not shutting down.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if !s.serving.Load() && !s.draining.Load() {
		s.out.Error(w, r, apperr.New(apperr.Unavailable, "not_ready", "the server is still starting"))
		return
	}
	if s.draining.Load() {
		s.out.Error(w, r, apperr.New(apperr.Unavailable, "shutting_down", "the server is shutting down"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.opts.Store.Ready(ctx); err != nil {
		s.out.Error(w, r, apperr.Wrap(err, apperr.Unavailable, "not_ready", "%v", err))
		return
	}
	s.out.JSON(w, r, http.StatusOK, map[string]string{"status": "ready"})
}

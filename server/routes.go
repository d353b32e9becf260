package server

import (
	"net/http"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes registers every route of the HTTP surface (SPEC §3).
func (s *Server) routes() {
	s.handle(http.MethodGet, "/health", s.handleHealth)
	s.handle(http.MethodGet, "/ready", s.handleReady)
	s.router.Handler(http.MethodGet, "/metrics", s.instrument("/metrics",
		promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{Registry: s.opts.Registry}).ServeHTTP))

	s.router.NotFound = s.instrument("unmatched", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, apperr.New(apperr.NotFound, "not_found", "no route for %s", r.URL.Path))
	})
	s.router.MethodNotAllowed = s.instrument("unmatched", func(w http.ResponseWriter, r *http.Request) {
		s.writeJSON(w, r, http.StatusMethodNotAllowed, errorBody{Error: "method_not_allowed", Detail: r.Method + " is not allowed here"})
	})
}

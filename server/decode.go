package server

import (
	"net/http"

	"github.com/incidentfox/orchestrator-edge/server/httpx"
)

// decode reads a strict JSON request body (httpx.DecodeJSON) within the
// server's body cap.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, dst any) error {
	return httpx.DecodeJSON(w, r, s.opts.MaxBodyBytes, dst)
}

package peerstest

import (
	"encoding/json"
	"net/http"
	"strings"
)

// AI Pipeline routes, usable with Fail.
const (
	RouteBootstrap   = "POST /api/v1/teams/{team}/bootstrap"
	RoutePipelineRun = "POST /api/v1/teams/{team}/run"
)

// AIPipeline is a fake AI Pipeline API: it records bootstraps and runs.
type AIPipeline struct {
	faults
	mux *http.ServeMux
}

// NewAIPipeline returns the fake.
func NewAIPipeline() *AIPipeline {
	p := &AIPipeline{mux: http.NewServeMux()}
	p.handle(RouteBootstrap, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"team_id": r.PathValue("team"), "bootstrapped": true})
	})
	p.handle(RoutePipelineRun, func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			OrgID  string `json:"org_id"`
			TeamID string `json:"team_id"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.OrgID == "" || in.TeamID != r.PathValue("team") {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"detail": "org_id and team_id (matching the path) are required"})
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]any{"team_id": in.TeamID, "status": "started", "run_id": "run_" + randomHex(6)})
	})
	return p
}

// ServeHTTP serves the fake's API.
func (p *AIPipeline) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.mux.ServeHTTP(w, r) }

func (p *AIPipeline) handle(route string, h http.HandlerFunc) {
	p.mux.HandleFunc(route, p.wrap(route, func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"detail": "missing bearer token"})
			return
		}
		h(w, r)
	}))
}

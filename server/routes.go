package server

import (
	"net/http"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes registers every route of the HTTP surface (SPEC §3).
func (s *Server) routes() {
	s.handleProbe(http.MethodGet, "/health", s.handleHealth)
	s.handleProbe(http.MethodGet, "/ready", s.handleReady)
	s.handleProbe(http.MethodGet, "/metrics",
		promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{Registry: s.opts.Registry,
			// A scraper that asks for OpenMetrics (Accept:
			// application/openmetrics-text) gets the latency histograms'
			// trace-id exemplars (SPEC §22); the text format otherwise.
			EnableOpenMetrics: true}).ServeHTTP)
	s.handleProbe(http.MethodGet, "/api/v1/openapi.json", s.handleOpenAPI)

	if s.opts.Provision != nil {
		s.handle(http.MethodPost, "/api/v1/admin/provision/team", s.handleProvision)
		s.handle(http.MethodPost, "/api/v1/admin/deprovision/team", s.handleDeprovision)
	}
	if s.opts.Runs != nil {
		s.handle(http.MethodGet, "/api/v1/admin/provision/runs", s.handleListRuns)
		s.handle(http.MethodGet, "/api/v1/admin/provision/runs/:id", s.handleGetRun)
	}

	if s.door != nil {
		for _, src := range s.door.Registry().Sources() {
			for _, rt := range src.Routes {
				s.handle(http.MethodPost, rt.Path, s.door.Handler(src.Name, rt))
			}
		}
		if s.door.TriggerEnabled() {
			s.handle(http.MethodPost, "/api/v1/internal/slack/trigger", s.door.Trigger)
		}
	}
	if s.opts.Events != nil {
		s.handle(http.MethodGet, "/api/v1/admin/events", s.handleListEvents)
		s.handle(http.MethodGet, "/api/v1/admin/events/:id", s.handleGetEvent)
		s.handle(http.MethodPost, "/api/v1/admin/events/:id/redrive", s.handleRedrive)
	}
	if s.opts.RouteTest != nil && s.door != nil {
		s.handle(http.MethodPost, "/api/v1/admin/routes/test", s.handleRoutesTest)
	}
	if s.opts.Answers != nil {
		s.handle(http.MethodPost, "/api/v1/admin/answers/:id/redeliver", s.handleRedeliver)
	}
	if s.opts.Noise != nil {
		// POST /api/v1/admin/events/redrive shares the router's node with
		// /api/v1/admin/events/:id/redrive (httprouter allows no static
		// segment beside a parameter): the :id route serves it.
		s.handleAs(http.MethodPost, "/api/v1/admin/events/:id", "/api/v1/admin/events/redrive", s.handleBulkRedrive)
		s.handle(http.MethodPost, "/api/v1/admin/silences", s.handleCreateSilence)
		s.handle(http.MethodGet, "/api/v1/admin/silences", s.handleListSilences)
		s.handle(http.MethodGet, "/api/v1/admin/silences/:id", s.handleGetSilence)
		s.handle(http.MethodDelete, "/api/v1/admin/silences/:id", s.handleExpireSilence)
		s.handle(http.MethodGet, "/api/v1/admin/audit", s.handleListAudit)
	}

	if s.opts.Schedules != nil {
		s.handle(http.MethodGet, "/api/v1/admin/schedules", s.handleListSchedules)
		s.handle(http.MethodPatch, "/api/v1/admin/schedules/:id", s.handlePatchSchedule)
		s.handle(http.MethodPost, "/api/v1/admin/teams/sync-cronjobs", s.handleSyncCronJobs)
		s.handle(http.MethodGet, "/api/v1/admin/teams/:org/:team/deployment", s.handleTeamStatus(auth.PermDeploymentRead, true))
		s.handle(http.MethodGet, "/api/v1/admin/teams/:org/:team/pipeline", s.handleTeamStatus(auth.PermPipelineRead, false))
	}
	if s.opts.PipelineRunner != nil {
		s.handle(http.MethodPost, "/api/v1/admin/pipeline/trigger", s.handlePipelineTrigger)
	}
	if s.opts.Agents != nil {
		s.handle(http.MethodPost, "/api/v1/admin/agents/run", s.handleAgentRun)
	}

	if s.opts.Backups != nil {
		s.handle(http.MethodPost, "/api/v1/admin/backups", s.handleCreateBackup)
		s.handle(http.MethodGet, "/api/v1/admin/backups", s.handleListBackups)
		s.handle(http.MethodGet, "/api/v1/admin/backups/:name", s.handleDownloadBackup)
		s.handle(http.MethodDelete, "/api/v1/admin/backups/:name", s.handleDeleteBackup)
	}

	if s.ui != nil {
		s.ui.Routes(pageRouter{s})
	}

	s.router.NotFound = s.instrument("unmatched", func(w http.ResponseWriter, r *http.Request) {
		s.out.Error(w, r, apperr.New(apperr.NotFound, "not_found", "no route for %s", r.URL.Path))
	})
	s.router.MethodNotAllowed = s.instrument("unmatched", func(w http.ResponseWriter, r *http.Request) {
		s.out.JSON(w, r, http.StatusMethodNotAllowed, httpx.ErrorBody{Error: "method_not_allowed", Detail: r.Method + " is not allowed here"})
	})
}

package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/incidentfox/orchestrator-edge/server/noise"
	"github.com/incidentfox/orchestrator-edge/server/scoped"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/julienschmidt/httprouter"
)

// silenceView is a silence as the API shows it.
type silenceView struct {
	ID         string       `json:"id"`
	OrgID      string       `json:"org_id"`
	TeamNodeID string       `json:"team_node_id,omitempty"`
	Sources    []string     `json:"sources,omitempty"`
	Match      *noise.Match `json:"match,omitempty"`
	StartsAt   time.Time    `json:"starts_at"`
	EndsAt     time.Time    `json:"ends_at"`
	Comment    string       `json:"comment"`
	State      string       `json:"state"`
	CreatedBy  string       `json:"created_by"`
	CreatedAt  time.Time    `json:"created_at"`
	ExpiredBy  string       `json:"expired_by,omitempty"`
	ExpiredAt  *time.Time   `json:"expired_at,omitempty"`
	// A recurring silence: its time intervals, whether one is open now,
	// the window open now or the next one, and the names the sources file
	// no longer defines.
	MuteTimeIntervals []string       `json:"mute_time_intervals,omitempty"`
	Muting            *bool          `json:"muting,omitempty"`
	NextWindow        *silenceWindow `json:"next_window,omitempty"`
	UnknownIntervals  []string       `json:"unknown_intervals,omitempty"`
}

// silenceWindow is one window of a recurring silence.
type silenceWindow struct {
	Interval string    `json:"interval"`
	StartsAt time.Time `json:"starts_at"`
	EndsAt   time.Time `json:"ends_at"`
}

func (s *Server) viewSilence(sil store.Silence, now time.Time) silenceView {
	v := silenceView{ID: sil.ID, OrgID: sil.OrgID, TeamNodeID: sil.TeamNodeID, Sources: sil.Sources, StartsAt: sil.StartsAt, EndsAt: sil.EndsAt,
		Comment: sil.Comment, State: sil.State(now), CreatedBy: sil.CreatedBy, CreatedAt: sil.CreatedAt, ExpiredBy: sil.ExpiredBy, ExpiredAt: sil.ExpiredAt}
	if sil.EventType != "" || sil.Service != "" || sil.AlertKey != "" {
		v.Match = &noise.Match{EventType: sil.EventType, Service: sil.Service, AlertKey: sil.AlertKey}
	}
	if rec := s.opts.Noise.Recurrence(sil, now); rec != nil {
		v.MuteTimeIntervals, v.Muting, v.UnknownIntervals = sil.MuteTimeIntervals, &rec.Open, rec.Unknown
		if !rec.Window.Start.IsZero() {
			v.NextWindow = &silenceWindow{Interval: rec.Interval, StartsAt: rec.Window.Start.UTC(), EndsAt: rec.Window.End.UTC()}
		}
	}
	return v
}

func (s *Server) handleCreateSilence(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermSilence)
	if a == nil {
		return
	}
	var req noise.SilenceRequest
	if err := s.decode(w, r, &req); err != nil {
		s.out.Error(w, r, err)
		return
	}
	sil, err := s.opts.Noise.Create(r.Context(), a, req)
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	s.logger.Info("silence set", "silence_id", sil.ID, "org_id", sil.OrgID, "team_node_id", sil.TeamNodeID, "ends_at", sil.EndsAt, "actor", a.Actor)
	s.out.JSON(w, r, http.StatusCreated, s.viewSilence(sil, s.now()))
}

func (s *Server) handleListSilences(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermSilence)
	if a == nil {
		return
	}
	q := r.URL.Query()
	list, err := s.opts.Noise.List(r.Context(), a, q.Get("org_id"), q.Get("state"))
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	now := s.now()
	out := make([]silenceView, 0, len(list))
	for _, sil := range list {
		out = append(out, s.viewSilence(sil, now))
	}
	s.out.JSON(w, r, http.StatusOK, map[string]any{"silences": out})
}

func (s *Server) handleGetSilence(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermSilence)
	if a == nil {
		return
	}
	sil, err := s.opts.Noise.Get(r.Context(), a, httprouter.ParamsFromContext(r.Context()).ByName("id"))
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	s.out.JSON(w, r, http.StatusOK, s.viewSilence(sil, s.now()))
}

func (s *Server) handleExpireSilence(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermSilence)
	if a == nil {
		return
	}
	sil, err := s.opts.Noise.Expire(r.Context(), a, httprouter.ParamsFromContext(r.Context()).ByName("id"))
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	s.logger.Info("silence expired", "silence_id", sil.ID, "actor", a.Actor)
	s.out.JSON(w, r, http.StatusOK, s.viewSilence(sil, s.now()))
}

func (s *Server) handleBulkRedrive(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermEventsRedrive)
	if a == nil {
		return
	}
	var req noise.RedriveRequest
	if err := s.decode(w, r, &req); err != nil {
		s.out.Error(w, r, err)
		return
	}
	res, err := s.opts.Noise.Redrive(r.Context(), a, req)
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	if !req.DryRun {
		s.logger.Info("events redriven in bulk", "matched", res.Matched, "redriven", res.Redriven, "actor", a.Actor)
		s.out.JSON(w, r, http.StatusOK, res)
		return
	}
	view := bulkRedriveView{RedriveResult: res}
	if view.Reroute, err = s.previewReroute(r, a, req); err != nil {
		s.out.Error(w, r, err)
		return
	}
	s.out.JSON(w, r, http.StatusOK, view)
}

// bulkRedriveView is the bulk redrive's answer; a dry run adds where the
// unrouted events it names would now be routed (SPEC §20).
type bulkRedriveView struct {
	noise.RedriveResult
	Reroute *scoped.Reroute `json:"reroute,omitempty"`
}

// previewReroute decides again, storing nothing, the unrouted events a
// bulk redrive's filter names (nil when the filter names none by status,
// or routing cannot be asked). The request was checked by the redrive.
func (s *Server) previewReroute(r *http.Request, a *auth.Admin, req noise.RedriveRequest) (*scoped.Reroute, error) {
	if s.opts.RouteTest == nil || s.opts.Events == nil || (req.Status != "" && req.Status != store.EventUnrouted) {
		return nil, nil
	}
	org, err := scoped.OrgScope(a, req.OrgID)
	if err != nil {
		return nil, err
	}
	f := store.EventFilter{Source: req.Source, OrgID: org, TeamNodeID: req.TeamNodeID, SuppressedReason: req.SuppressedReason}
	if req.Since != nil {
		f.Since = *req.Since
	}
	if req.Until != nil {
		f.Until = *req.Until
	}
	var allows func(string, map[string]string, string) bool
	if s.door != nil {
		allows = s.door.Registry().Allows
	}
	p, err := scoped.PreviewReroute(r.Context(), s.opts.Events, f, s.opts.RouteTest, allows)
	return &p, err
}

type auditView struct {
	ID     string         `json:"id"`
	At     time.Time      `json:"at"`
	Actor  string         `json:"actor"`
	OrgID  string         `json:"org_id,omitempty"`
	Action string         `json:"action"`
	Detail map[string]any `json:"detail"`
}

func (s *Server) handleListAudit(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermAuditRead)
	if a == nil {
		return
	}
	q := r.URL.Query()
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			s.out.Error(w, r, httpx.QueryError("limit", "1 to 500"))
			return
		}
		limit = n
	}
	list, err := s.opts.Noise.Audit(r.Context(), a, q.Get("org_id"), limit)
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	out := make([]auditView, 0, len(list))
	for _, x := range list {
		out = append(out, auditView{ID: x.ID, At: x.At, Actor: x.Actor, OrgID: x.OrgID, Action: x.Action, Detail: x.Detail})
	}
	s.out.JSON(w, r, http.StatusOK, map[string]any{"audit": out})
}

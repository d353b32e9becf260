// Package noise is what an admin does about noise (SPEC §6 Noise): silences
// (maintenance windows) and the bulk redrive of what was kept back or
// failed. The JSON API and the admin page both call it; the rules that keep
// events from the agent run in dispatch (and a resolve's settling in the
// store).
package noise

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/ids"
	"github.com/incidentfox/orchestrator-edge/server/scoped"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// MaxSilence is how far ahead a silence may end.
const MaxSilence = 30 * 24 * time.Hour

// MaxRecurringSilence is how far ahead a recurring silence (one with
// mute_time_intervals) may end, and when it ends if no ends_at is given.
const MaxRecurringSilence = 365 * 24 * time.Hour

// MaxMuteIntervals bounds the time intervals one silence names.
const MaxMuteIntervals = 20

// Store is what the service keeps its silences and audit in (store.DB).
type Store interface {
	CreateSilence(ctx context.Context, s store.Silence) (store.Silence, error)
	GetSilence(ctx context.Context, id string) (store.Silence, error)
	ListSilences(ctx context.Context, org, state string, now time.Time) ([]store.Silence, error)
	ExpireSilence(ctx context.Context, id, actor string, now time.Time) (store.Silence, error)
	RedriveMatching(ctx context.Context, f store.EventFilter, dryRun bool, now time.Time) (store.BulkRedrive, error)
	AddAudit(ctx context.Context, a store.Audit) error
	ListAudit(ctx context.Context, org string, limit int) ([]store.Audit, error)
}

// Service sets and ends silences and redrives in bulk.
type Service struct {
	Store   Store
	Sources *webhook.Registry
	// Changed tells dispatch a silence was set or ended (it caches them).
	Changed func()
	// Redriven wakes dispatch after a bulk redrive.
	Redriven func()
	// CallsToday is a team's alert-triggered agent calls today (UTC) and
	// its daily budget (0: none), as dispatch counts them.
	CallsToday func(org, team string, now time.Time) (int, int)
	Now        func() time.Time
	// Intervals are the sources file's time intervals now in force, which
	// a recurring silence's mute_time_intervals must name.
	Intervals func() *Intervals
	// Nodes, when set, is asked whether a silence's org (and team) exist,
	// with the admin's own token: a silence for an org the Config Service
	// does not know would silence nothing and say nothing.
	Nodes interface {
		NodeExists(ctx context.Context, token, org, node string) (bool, error)
	}
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return wallclock.Now().UTC()
}

// Match is what a silence matches besides its org, team and sources.
type Match struct {
	EventType string `json:"event_type,omitempty"`
	Service   string `json:"service,omitempty"`
	AlertKey  string `json:"alert_key,omitempty"`
}

// SilenceRequest is the body of POST /api/v1/admin/silences.
type SilenceRequest struct {
	OrgID      string     `json:"org_id"`
	TeamNodeID string     `json:"team_node_id,omitempty"`
	Sources    []string   `json:"sources,omitempty"`
	Match      *Match     `json:"match,omitempty"`
	StartsAt   *time.Time `json:"starts_at,omitempty"`
	EndsAt     *time.Time `json:"ends_at"`
	Comment    string     `json:"comment"`
	// MuteTimeIntervals makes the silence recurring: it mutes only while
	// one of these time intervals of the sources file is open; ends_at may
	// then be up to a year ahead, and defaults to a year from starts_at.
	MuteTimeIntervals []string `json:"mute_time_intervals,omitempty"`
}

func invalid(field, format string, args ...any) error {
	return apperr.New(apperr.Invalid, "invalid_silence", "%s: "+format, append([]any{field}, args...)...)
}

// Create checks a silence request and sets the silence, for the admin's
// own org only when the admin is bound to one.
func (s *Service) Create(ctx context.Context, a *auth.Admin, req SilenceRequest) (store.Silence, error) {
	now := s.now()
	if !ids.Valid(req.OrgID) {
		return store.Silence{}, invalid("org_id", "required, 1-128 characters of [A-Za-z0-9._-]")
	}
	if err := a.CanActOn(req.OrgID); err != nil {
		return store.Silence{}, err
	}
	if req.TeamNodeID != "" && !ids.Valid(req.TeamNodeID) {
		return store.Silence{}, invalid("team_node_id", "1-128 characters of [A-Za-z0-9._-]")
	}
	var sources []string
	for _, name := range req.Sources {
		src := s.Sources.Get(name)
		switch {
		case src == nil:
			return store.Silence{}, invalid("sources", "%q is not a webhook source (%s)", name, strings.Join(s.Sources.Names(), ", "))
		case src.People:
			return store.Silence{}, invalid("sources", "%s cannot be silenced: a person asked (mentions and interactions always reach the agent)", name)
		}
		if !slices.Contains(sources, name) {
			sources = append(sources, name)
		}
	}
	m := Match{}
	if req.Match != nil {
		m = *req.Match
	}
	for _, f := range []struct {
		name, value string
		max         int
	}{{"match.event_type", m.EventType, 128}, {"match.service", m.Service, 128}, {"match.alert_key", m.AlertKey, 255}} {
		if !utf8.ValidString(f.value) || strings.ContainsRune(f.value, 0) || utf8.RuneCountInString(f.value) > f.max {
			return store.Silence{}, invalid(f.name, "at most %d characters of text (exact, or with * for any run of characters)", f.max)
		}
	}
	comment := strings.TrimSpace(req.Comment)
	switch {
	case comment == "":
		return store.Silence{}, invalid("comment", "required: say why (a maintenance window, a known issue)")
	case !utf8.ValidString(comment) || strings.ContainsRune(comment, 0) || utf8.RuneCountInString(comment) > 1000:
		return store.Silence{}, invalid("comment", "at most 1000 characters of text")
	}
	var mute []string
	for _, name := range req.MuteTimeIntervals {
		if !slices.Contains(mute, name) {
			mute = append(mute, name)
		}
	}
	if len(mute) > MaxMuteIntervals {
		return store.Silence{}, invalid("mute_time_intervals", "at most %d time intervals", MaxMuteIntervals)
	}
	if len(mute) > 0 {
		var intervals *Intervals
		if s.Intervals != nil {
			intervals = s.Intervals()
		}
		if err := intervals.Check("mute_time_intervals", mute); err != nil {
			return store.Silence{}, apperr.Wrap(err, apperr.Invalid, "invalid_silence", "%s; time intervals are defined in the sources file's time_intervals:", err)
		}
	}
	starts := now
	if req.StartsAt != nil {
		starts = req.StartsAt.UTC()
	}
	limit, limitWords := MaxSilence, "30 days"
	if len(mute) > 0 {
		limit, limitWords = MaxRecurringSilence, "a year (a recurring silence)"
	}
	var ends time.Time
	switch {
	case req.EndsAt != nil:
		ends = req.EndsAt.UTC()
	case len(mute) > 0:
		// A recurring silence without an end lasts the longest it may.
		ends = now.Add(MaxRecurringSilence)
	default:
		return store.Silence{}, invalid("ends_at", "required (RFC 3339), at most 30 days ahead; or name mute_time_intervals for a recurring silence of up to a year")
	}
	switch {
	case !ends.After(now):
		return store.Silence{}, invalid("ends_at", "must be in the future")
	case ends.After(now.Add(limit)):
		return store.Silence{}, invalid("ends_at", "at most %s ahead (until %s)", limitWords, now.Add(limit).Format(time.RFC3339))
	case !ends.After(starts):
		return store.Silence{}, invalid("starts_at", "must be before ends_at")
	}
	// Last, after every check that needs no peer.
	if err := s.checkNodes(ctx, a, req.OrgID, req.TeamNodeID); err != nil {
		return store.Silence{}, err
	}
	sil, err := s.Store.CreateSilence(ctx, store.Silence{OrgID: req.OrgID, TeamNodeID: req.TeamNodeID, Sources: sources,
		EventType: m.EventType, Service: m.Service, AlertKey: m.AlertKey, StartsAt: starts, EndsAt: ends,
		Comment: comment, CreatedBy: a.Actor, CreatedAt: now, MuteTimeIntervals: mute})
	if errors.Is(err, store.ErrLimit) {
		return sil, apperr.Wrap(err, apperr.Conflict, "too_many_silences",
			"org %s has %d silences that have not ended, the most an org may have: expire some first", req.OrgID, store.MaxActiveSilences)
	}
	if err == nil && s.Changed != nil {
		s.Changed()
	}
	return sil, err
}

// checkNodes refuses (422) a silence for an org, or a team of it, that the
// Config Service does not know.
func (s *Service) checkNodes(ctx context.Context, a *auth.Admin, org, team string) error {
	if s.Nodes == nil {
		return nil
	}
	if ok, err := s.Nodes.NodeExists(ctx, a.Token, org, org); err != nil {
		return err
	} else if !ok {
		return apperr.New(apperr.Unprocessable, "unknown_org", "org_id: the Config Service knows no org %s", org)
	}
	if team == "" {
		return nil
	}
	if ok, err := s.Nodes.NodeExists(ctx, a.Token, org, team); err != nil {
		return err
	} else if !ok {
		return apperr.New(apperr.Unprocessable, "unknown_team", "team_node_id: the Config Service knows no team %s in org %s", team, org)
	}
	return nil
}

// List lists the silences the admin may see (state: active, expired or "").
func (s *Service) List(ctx context.Context, a *auth.Admin, org, state string) ([]store.Silence, error) {
	if state != "" && state != store.SilenceActive && state != store.SilenceExpired {
		return nil, apperr.New(apperr.Invalid, "invalid_query", "state: must be active or expired")
	}
	org, err := orgOf(a, org)
	if err != nil {
		return nil, err
	}
	return s.Store.ListSilences(ctx, org, state, s.now())
}

// Get returns a silence the admin may see (another org's is not found).
func (s *Service) Get(ctx context.Context, a *auth.Admin, id string) (store.Silence, error) {
	sil, err := s.Store.GetSilence(ctx, id)
	if err == nil && a.Identity.OrgID != "" && sil.OrgID != a.Identity.OrgID {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		return sil, apperr.New(apperr.NotFound, "not_found", "no silence %s", id)
	}
	return sil, err
}

// Expire ends a silence now; it is kept, with who ended it.
func (s *Service) Expire(ctx context.Context, a *auth.Admin, id string) (store.Silence, error) {
	if _, err := s.Get(ctx, a, id); err != nil {
		return store.Silence{}, err
	}
	sil, err := s.Store.ExpireSilence(ctx, id, a.Actor, s.now())
	if errors.Is(err, store.ErrConflict) {
		return sil, apperr.Wrap(err, apperr.Conflict, "silence_ended", "the silence has already ended")
	}
	if err == nil && s.Changed != nil {
		s.Changed()
	}
	return sil, err
}

// RedriveRequest is the body of POST /api/v1/admin/events/redrive: the
// events list's filter, and dry_run to count first.
type RedriveRequest struct {
	Status           string     `json:"status,omitempty"`
	SuppressedReason string     `json:"suppressed_reason,omitempty"`
	Source           string     `json:"source,omitempty"`
	OrgID            string     `json:"org_id,omitempty"`
	TeamNodeID       string     `json:"team_node_id,omitempty"`
	Since            *time.Time `json:"since,omitempty"`
	Until            *time.Time `json:"until,omitempty"`
	DryRun           bool       `json:"dry_run,omitempty"`
}

// RedriveResult is what a bulk redrive found and did.
type RedriveResult struct {
	DryRun bool `json:"dry_run"`
	store.BulkRedrive
	Limit int `json:"limit"`
}

// Redrive queues again the oldest store.RedriveLimit events the filter names
// that ended unrouted, failed, dead or suppressed (alone, past noise
// control), or with DryRun only counts them. An org-bound admin redrives
// its own org's only. A real redrive is audited with the actor.
func (s *Service) Redrive(ctx context.Context, a *auth.Admin, req RedriveRequest) (RedriveResult, error) {
	bad := func(field, msg string) error {
		return apperr.New(apperr.Invalid, "invalid_filter", "%s: %s", field, msg)
	}
	if req.Status != "" && !slices.Contains(store.RedrivableStatuses, req.Status) {
		return RedriveResult{}, bad("status", "must be one of "+strings.Join(store.RedrivableStatuses, ", "))
	}
	if req.SuppressedReason != "" && !slices.Contains(store.SuppressedReasons, req.SuppressedReason) {
		return RedriveResult{}, bad("suppressed_reason", "must be one of "+strings.Join(store.SuppressedReasons, ", "))
	}
	if req.Source != "" && !s.Sources.Has(req.Source) {
		return RedriveResult{}, bad("source", "must be one of "+strings.Join(s.Sources.Names(), ", "))
	}
	if req.TeamNodeID != "" && !ids.Valid(req.TeamNodeID) {
		return RedriveResult{}, bad("team_node_id", "1-128 characters of [A-Za-z0-9._-]")
	}
	if req.OrgID != "" && !ids.Valid(req.OrgID) {
		return RedriveResult{}, bad("org_id", "1-128 characters of [A-Za-z0-9._-]")
	}
	org, err := scoped.OrgScope(a, req.OrgID)
	if err != nil {
		return RedriveResult{}, err
	}
	f := store.EventFilter{Status: req.Status, SuppressedReason: req.SuppressedReason, Source: req.Source, OrgID: org, TeamNodeID: req.TeamNodeID}
	if req.Since != nil {
		f.Since = *req.Since
	}
	if req.Until != nil {
		f.Until = *req.Until
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return RedriveResult{}, bad("until", "must be after since")
	}
	now := s.now()
	res, err := s.Store.RedriveMatching(ctx, f, req.DryRun, now)
	if err != nil {
		return RedriveResult{}, err
	}
	out := RedriveResult{DryRun: req.DryRun, BulkRedrive: res, Limit: store.RedriveLimit}
	if req.DryRun {
		return out, nil
	}
	detail := map[string]any{"filter": req, "matched": res.Matched, "redriven": res.Redriven, "purged": res.Purged, "more": res.More}
	if len(res.IDs) > 0 {
		detail["first_event_id"], detail["last_event_id"] = res.IDs[0], res.IDs[len(res.IDs)-1]
	}
	id := uuid.NewString()
	if err := s.Store.AddAudit(ctx, store.Audit{ID: id, At: now, Actor: a.Actor, OrgID: org, Action: "events.redrive", Detail: detail}); err != nil {
		return out, err
	}
	// A redrive across orgs (by an admin of every org) is in each touched
	// org's audit too (SPEC §18, round 4), with that org's count only.
	if org == "" {
		for touched, n := range res.ByOrg {
			if err := s.Store.AddAudit(ctx, store.Audit{At: now, Actor: a.Actor, OrgID: touched, Action: "events.redrive",
				Detail: map[string]any{"filter": req, "redriven": n, "redrive_audit_id": id}}); err != nil {
				return out, err
			}
		}
	}
	if res.Redriven > 0 && s.Redriven != nil {
		s.Redriven()
	}
	return out, nil
}

// Audit lists the admin audit newest first, the admin's own org's only when
// the admin is bound to one (limit 1–500, default 100).
func (s *Service) Audit(ctx context.Context, a *auth.Admin, org string, limit int) ([]store.Audit, error) {
	org, err := orgOf(a, org)
	if err != nil {
		return nil, err
	}
	if limit == 0 {
		limit = 100
	}
	if limit < 1 || limit > 500 {
		return nil, apperr.New(apperr.Invalid, "invalid_query", "limit: 1 to 500")
	}
	return s.Store.ListAudit(ctx, org, limit)
}

// orgOf is the org a listing may show: the admin's own when it is bound to
// one (another org's is refused), else the org asked for ("" = every org).
func orgOf(a *auth.Admin, org string) (string, error) {
	if org != "" && !ids.Valid(org) {
		return "", apperr.New(apperr.Invalid, "invalid_query", "org_id: 1-128 characters of [A-Za-z0-9._-]")
	}
	return scoped.OrgScope(a, org)
}

// Recurrence is where a recurring silence stands: whether one of its time
// intervals is open, and the window open now or the one that opens next
// (within the silence's life).
type Recurrence struct {
	// Open: a window is open now (the silence mutes, if active).
	Open bool
	// Interval names the window's time interval; Window is the window
	// (zero when none opens again before the silence ends).
	Interval string
	Window   Window
	// Unknown lists the names the sources file no longer defines: they
	// mute nothing.
	Unknown []string
}

// Recurrence says where a recurring silence stands at now; nil for a
// silence without mute_time_intervals.
func (s *Service) Recurrence(sil store.Silence, now time.Time) *Recurrence {
	if len(sil.MuteTimeIntervals) == 0 {
		return nil
	}
	var is *Intervals
	if s.Intervals != nil {
		is = s.Intervals()
	}
	rec := &Recurrence{}
	from := now
	if sil.StartsAt.After(from) {
		from = sil.StartsAt
	}
	for _, name := range sil.MuteTimeIntervals {
		iv := is.Get(name)
		if iv == nil {
			rec.Unknown = append(rec.Unknown, name)
			continue
		}
		w, ok := iv.Next(from)
		if !ok || !w.Start.Before(sil.EndsAt) {
			continue
		}
		if rec.Window.Start.IsZero() || w.Start.Before(rec.Window.Start) {
			rec.Interval, rec.Window = name, w
		}
	}
	rec.Open = !rec.Window.Start.IsZero() && !rec.Window.Start.After(now) && sil.Active(now)
	return rec
}

// Package scoped is what the admin API and the admin page both ask before
// they read or act: which org an admin reads (OrgScope), whether a team is
// one it may act on (CheckTeam), the events filters, and the org-scoped
// reads of one event or run — another org's is answered as missing. One
// copy, below both faces, so they never disagree.
package scoped

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/incidentfox/orchestrator-edge/server/ids"
	"github.com/incidentfox/orchestrator-edge/server/routing"
	"github.com/incidentfox/orchestrator-edge/store"
)

// Reader reads single events and runs for an admin (store.DB implements
// both interfaces).
type Reader struct {
	Events interface {
		GetEvent(ctx context.Context, id string) (store.Event, error)
	}
	Runs interface {
		GetRun(ctx context.Context, id string) (store.Run, error)
	}
	Deliveries interface {
		GetAnswerDelivery(ctx context.Context, id string) (store.AnswerDelivery, error)
	}
	AgentRuns interface {
		GetAgentRun(ctx context.Context, id string) (store.RunAnswer, error)
	}
}

// ListQuery checks what every list shares: the limit (1–200, default
// 50) and the org scope (OrgScope).
func ListQuery(r *http.Request, a *auth.Admin, org *string) (int, error) {
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			return 0, httpx.QueryError("limit", "must be a whole number from 1 to 200")
		}
		limit = n
	}
	if *org != "" && !ids.Valid(*org) {
		return 0, httpx.QueryError("org_id", "must be 1-128 characters of [A-Za-z0-9._-]")
	}
	scoped, err := OrgScope(a, *org)
	*org = scoped
	return limit, err
}

// OrgScope is the one place that decides which org an admin reads: an
// org-bound admin reads its own org by default and may not name another; an
// unbound admin reads what it asked for ("" = every org). The API's lists
// and every page of the admin page ask here.
func OrgScope(a *auth.Admin, asked string) (string, error) {
	if a.Identity.OrgID == "" {
		return asked, nil
	}
	if asked == "" {
		return a.Identity.OrgID, nil
	}
	if err := a.CanActOn(asked); err != nil {
		return "", err
	}
	return asked, nil
}

// EventFilter reads the events list's filters, for the API and the page:
// source, status, team, delivery id, since/until (RFC 3339) and the cursor.
// The org and the limit are ListQuery's.
func EventFilter(q url.Values, sources []string) (store.EventFilter, error) {
	f := store.EventFilter{Source: q.Get("source"), Status: q.Get("status"), OrgID: q.Get("org_id"),
		TeamNodeID: q.Get("team_node_id"), DeliveryID: q.Get("delivery_id"), Cursor: q.Get("cursor"),
		SuppressedReason: q.Get("suppressed_reason")}
	if rule := q.Get("rule"); rule != "" {
		if !routing.ValidRuleName(rule) {
			return f, httpx.QueryError("rule", "must be a routing rule's name ([a-zA-Z0-9][a-zA-Z0-9_.:-]{0,63})")
		}
		f.MatchedBy = routing.RuleMatchedBy(rule)
	}
	if f.SuppressedReason != "" && !slices.Contains(store.SuppressedReasons, f.SuppressedReason) {
		return f, httpx.QueryError("suppressed_reason", "must be one of %s", strings.Join(store.SuppressedReasons, ", "))
	}
	if f.Source != "" && !slices.Contains(sources, f.Source) {
		return f, httpx.QueryError("source", "must be one of %s", strings.Join(sources, ", "))
	}
	if f.Status != "" && !slices.Contains(store.EventStatuses, f.Status) {
		return f, httpx.QueryError("status", "must be one of %s", strings.Join(store.EventStatuses, ", "))
	}
	if f.TeamNodeID != "" && !ids.Valid(f.TeamNodeID) {
		return f, httpx.QueryError("team_node_id", "must be 1-128 characters of [A-Za-z0-9._-]")
	}
	if len(f.DeliveryID) > 255 || !utf8.ValidString(f.DeliveryID) {
		return f, httpx.QueryError("delivery_id", "must be at most 255 characters of UTF-8")
	}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return f, httpx.QueryError(name, "must be an RFC 3339 time, e.g. 2026-11-24T10:00:00Z")
			}
			*dst = t
		}
	}
	return f, nil
}

// CheckTeam checks an org and team id and that the admin may act on the
// org.
func CheckTeam(a *auth.Admin, org, team string) error {
	switch {
	case !ids.Valid(org):
		return apperr.New(apperr.Invalid, "invalid_org_id", "org_id must be 1-128 characters of [A-Za-z0-9._-]")
	case !ids.Valid(team):
		return apperr.New(apperr.Invalid, "invalid_team_node_id", "team_node_id must be 1-128 characters of [A-Za-z0-9._-]")
	}
	return a.CanActOn(org)
}

// Event loads an event an admin may see. A malformed id, a missing
// event and another org's event are all 404 event_not_found.
func (rd Reader) Event(ctx context.Context, a *auth.Admin, id string) (store.Event, error) {
	notFound := apperr.New(apperr.NotFound, "event_not_found", "no webhook event %q", id)
	if len(id) > 64 {
		return store.Event{}, notFound
	}
	e, err := rd.Events.GetEvent(ctx, id) // an id no event can have is not found
	if errors.Is(err, store.ErrNotFound) || (err == nil && a.Identity.OrgID != "" && a.Identity.OrgID != e.OrgID) {
		return store.Event{}, notFound
	}
	return e, err
}

// Run loads a run an admin may see. A malformed id, a missing run
// and another org's run are all 404 run_not_found.
func (rd Reader) Run(ctx context.Context, a *auth.Admin, id string) (store.Run, error) {
	notFound := apperr.New(apperr.NotFound, "run_not_found", "no provisioning run %q", id)
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return store.Run{}, notFound
	}
	run, err := rd.Runs.GetRun(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && a.CanActOn(run.OrgID) != nil) {
		return store.Run{}, notFound
	}
	return run, err
}

// Delivery loads an answer delivery an admin may see. A malformed id, a
// missing delivery and another org's delivery are all 404
// delivery_not_found.
func (rd Reader) Delivery(ctx context.Context, a *auth.Admin, id string) (store.AnswerDelivery, error) {
	notFound := apperr.New(apperr.NotFound, "delivery_not_found", "no answer delivery %q", id)
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return store.AnswerDelivery{}, notFound
	}
	d, err := rd.Deliveries.GetAnswerDelivery(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && a.CanActOn(d.OrgID) != nil) {
		return store.AnswerDelivery{}, notFound
	}
	return d, err
}

// AgentRun loads an agent run (with its answer) an admin may see. A
// malformed id, a missing run and another org's run are all 404
// agent_run_not_found.
func (rd Reader) AgentRun(ctx context.Context, a *auth.Admin, id string) (store.RunAnswer, error) {
	notFound := apperr.New(apperr.NotFound, "agent_run_not_found", "no agent run %q", id)
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return store.RunAnswer{}, notFound
	}
	run, err := rd.AgentRuns.GetAgentRun(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && a.CanActOn(run.Run.OrgID) != nil) {
		return store.RunAnswer{}, notFound
	}
	return run, err
}

package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/routing"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// RouteTester decides where a payload would go without storing or
// dispatching it (the dispatcher's Decide: read-only lookups only).
type RouteTester func(ctx context.Context, e store.Event) (routing.Result, error)

// routeTestRequest is POST /api/v1/admin/routes/test's body.
type routeTestRequest struct {
	Source  string            `json:"source"`
	Body    json.RawMessage   `json:"body"`
	Headers map[string]string `json:"headers"`
}

// routeTestView is its answer.
type routeTestView struct {
	Source      string            `json:"source"`
	EventType   string            `json:"event_type"`
	Identifiers map[string]string `json:"routing_identifiers"`
	Status      string            `json:"status"`
	OrgID       string            `json:"org_id,omitempty"`
	TeamNodeID  string            `json:"team_node_id,omitempty"`
	MatchedBy   string            `json:"matched_by,omitempty"`
	Rule        string            `json:"rule,omitempty"`
	Reason      string            `json:"reason,omitempty"`
	Summary     string            `json:"decision_summary"`
	Decision    routing.Decision  `json:"decision"`
}

// handleRoutesTest answers where a payload of a source would go: the
// identifiers its source reads, the lookup, the routing rules in force. The
// rules are the appliance operator's and can take any sender's events, so
// only an admin:* token bound to no org may ask (SPEC §20). No signature is
// needed (the admin is authenticated); nothing is stored or called but the
// Config Service's read-only lookups.
func (s *Server) handleRoutesTest(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermAll)
	if a == nil {
		return
	}
	if a.Identity.OrgID != "" {
		s.out.Error(w, r, apperr.New(apperr.Forbidden, "operator_only",
			"routing rules are the appliance operator's: this admin token is limited to org %q", a.Identity.OrgID))
		return
	}
	var req routeTestRequest
	if err := s.decode(w, r, &req); err != nil {
		s.out.Error(w, r, err)
		return
	}
	src := s.door.Registry().Get(req.Source)
	if src == nil {
		s.out.Error(w, r, apperr.New(apperr.Invalid, "invalid_source", "source: must be one of %s", strings.Join(s.door.Registry().Names(), ", ")))
		return
	}
	body := []byte(req.Body)
	var str string
	if json.Unmarshal(req.Body, &str) == nil { // a form-encoded body (Slack interactions) comes as a string
		body = []byte(str)
	}
	if len(body) == 0 {
		s.out.Error(w, r, apperr.New(apperr.Invalid, "invalid_body", "body: the payload to try is required"))
		return
	}
	h := http.Header{}
	for k, v := range req.Headers {
		h.Set(k, v)
	}
	ev, err := src.Read(body, h)
	if err != nil {
		s.out.Error(w, r, apperr.New(apperr.Invalid, "unreadable_payload", "body: %s cannot read it: %s", src.Name, strings.TrimPrefix(err.Error(), webhook.ErrPayload.Error()+": ")))
		return
	}
	v := routeTestView{Source: src.Name, EventType: ev.EventType, Identifiers: ev.Identifiers}
	if v.Identifiers == nil {
		v.Identifiers = map[string]string{}
	}
	if ev.Ignore != "" {
		v.Status, v.Reason = routing.Ignored, ev.Ignore
		v.Decision.Add(routing.Step{Kind: routing.KindUnrouted, Reason: "the source ignores it: " + ev.Ignore})
		v.Summary = "ignored by the source: " + ev.Ignore
		s.out.JSON(w, r, http.StatusOK, v)
		return
	}
	res, err := s.opts.RouteTest(r.Context(), store.Event{Source: src.Name, EventType: ev.EventType, Identifiers: ev.Identifiers, Body: body})
	if err != nil {
		s.out.Error(w, r, apperr.New(apperr.Unavailable, "routing_lookup_failed", "the Config Service's routing lookup failed: %v", err))
		return
	}
	v.Status, v.OrgID, v.TeamNodeID, v.MatchedBy, v.Rule, v.Reason = res.Status, res.OrgID, res.TeamNodeID, res.MatchedBy, res.Rule, res.Reason
	v.Decision, v.Summary = res.Decision, res.Decision.Sentence()
	s.out.JSON(w, r, http.StatusOK, v)
}

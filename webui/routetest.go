package webui

import (
	"context"
	"net/http"
	"strings"

	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/routing"
	"github.com/incidentfox/orchestrator-edge/store"
)

// RouteTester decides where a payload would go without storing or
// dispatching it (the dispatcher's Decide).
type RouteTester func(ctx context.Context, e store.Event) (routing.Result, error)

// routeTest is the Sources page's "where would this go" form and answer.
type routeTest struct {
	// Allowed: the admin is the operator's (admin:*, bound to no org).
	Allowed      bool
	Source, Body string
	Error        string
	Result       *routing.Result
	Summary      string
	// Sent is the test event a source's button just sent (nil: none).
	Sent *sentEvent
}

// operator reports whether the session's admin may try routing rules: they
// are the appliance operator's, so admin:* bound to no org.
func (u *UI) operator(r *http.Request, se *uiSession) bool {
	a, err := u.o.Auth.Check(r.Context(), se.token, auth.PermAll)
	return err == nil && a.Identity.OrgID == "" && u.o.RouteTest != nil
}

// lastPayload is the body of the newest stored event of a source ("" when
// there is none, or its body was purged).
func (u *UI) lastPayload(r *http.Request, source string) string {
	if u.o.Events == nil || u.o.Sources == nil || u.o.Sources.Get(source) == nil {
		return ""
	}
	evs, _, err := u.o.Events.ListEvents(r.Context(), store.EventFilter{Source: source, Limit: 1})
	if err != nil || len(evs) == 0 {
		return ""
	}
	e, err := u.o.Events.GetEvent(r.Context(), evs[0].ID)
	if err != nil {
		return ""
	}
	return string(e.Body)
}

// uiRouteTest answers the form: the payload read as its source reads it
// (no signature), then routed with the rules in force; nothing stored.
func (u *UI) uiRouteTest(w http.ResponseWriter, r *http.Request, se *uiSession) {
	if u.uiAdmin(w, r, se, auth.PermAll, "sources") == nil {
		return
	}
	if !u.operator(r, se) {
		u.render(w, r, http.StatusForbidden, "notfound", page{Session: se, Nav: "sources",
			Error: "Routing rules are the appliance operator's: this admin token is limited to an org."})
		return
	}
	t := routeTest{Allowed: true, Source: r.PostFormValue("source"), Body: r.PostFormValue("body")}
	code := http.StatusOK
	src := u.o.Sources.Get(t.Source)
	switch {
	case src == nil:
		t.Error, code = "Source: choose one of "+strings.Join(u.sourceNames(), ", ")+".", http.StatusBadRequest
	case strings.TrimSpace(t.Body) == "":
		t.Error, code = "Payload: paste the body to try.", http.StatusBadRequest
	default:
		ev, err := src.Read([]byte(t.Body), http.Header{})
		if err != nil {
			t.Error, code = "Payload: "+src.Name+" cannot read it: "+err.Error(), http.StatusBadRequest
			break
		}
		if ev.Ignore != "" {
			t.Summary = "ignored by the source: " + ev.Ignore
			break
		}
		res, err := u.o.RouteTest(r.Context(), store.Event{Source: src.Name, EventType: ev.EventType, Identifiers: ev.Identifiers, Body: []byte(t.Body)})
		if err != nil {
			t.Error, code = "The Config Service's routing lookup failed: "+err.Error(), http.StatusServiceUnavailable
			break
		}
		t.Result, t.Summary = &res, res.Decision.Sentence()
	}
	u.renderSources(w, r, se, code, t)
}

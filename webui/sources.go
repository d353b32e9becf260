package webui

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/routing"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/julienschmidt/httprouter"
)

// sourceInfo is one webhook source as the sources page lists it: never a
// secret, only how a delivery is checked.
type sourceInfo struct {
	Name, Kind, Scheme, Description string
	Routes                          []string
	// Sample: a built-in source, so the page can send a test event.
	Sample                   bool
	Routing                  string
	Alerts, Coalesce, People bool
}

// uiSources lists the webhook sources: the built-in ones, the Slack apps
// and the configured ones, as the source registry has them.
func (u *UI) uiSources(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermEventsRead, "sources")
	if a == nil {
		return
	}
	t := routeTest{Allowed: u.operator(r, se), Source: r.URL.Query().Get("try")}
	if t.Allowed && t.Source != "" {
		t.Body = u.lastPayload(r, t.Source) // the last real payload of that source, prefilled
	}
	if t.Allowed {
		t.Sent = u.sentTestEvent(r, a)
	}
	u.renderSources(w, r, se, http.StatusOK, t)
}

// renderSources draws the Sources page with the routing test form.
func (u *UI) renderSources(w http.ResponseWriter, r *http.Request, se *uiSession, code int, t routeTest) {
	var rows []sourceInfo
	if u.o.Sources != nil {
		for _, s := range u.o.Sources.Sources() {
			row := sourceInfo{Name: s.Name, Kind: s.Kind, Scheme: s.Scheme, Description: s.Description,
				Routing: strings.Join(s.Routing, ", "), Alerts: s.Alerts, Coalesce: s.Coalesce, People: s.People,
				Sample: s.Kind == "built-in" && u.o.Door != nil}
			for _, rt := range s.Routes {
				row.Routes = append(row.Routes, rt.Path)
			}
			rows = append(rows, row)
		}
	}
	u.render(w, r, code, "sources", page{Session: se, Nav: "sources", Data: struct {
		Sources    []sourceInfo
		AppHeader  string
		DefaultApp string
		Test       routeTest
	}{rows, webhook.AppHeader, webhook.DefaultApp, t}})
}

// sentEvent is the event a "send a test event" button sent, as the Sources
// page shows it after the redirect: where it went, once routed.
type sentEvent struct {
	ID, Source, Status, Team, Summary string
	// Routed: the router has decided (the summary says how).
	Routed bool
}

// sentTestEvent reads the event ?sent= names for the page ("" and nil
// when there is none the admin may see).
func (u *UI) sentTestEvent(r *http.Request, a *auth.Admin) *sentEvent {
	id := r.URL.Query().Get("sent")
	if id == "" {
		return nil
	}
	e, err := u.reads.Event(r.Context(), a, id)
	if err != nil {
		return nil
	}
	s := &sentEvent{ID: e.ID, Source: e.Source, Status: e.Status, Summary: routing.DecodeDecision(e.Decision).Sentence()}
	if e.OrgID != "" {
		s.Team = e.OrgID + "/" + e.TeamNodeID
	}
	s.Routed = s.Summary != "" || e.Status != store.EventQueued
	return s
}

// uiSendTestEvent signs a sample of a built-in source with the source's own
// configured secret and hands it to the webhook door, as the vendor's
// delivery would arrive (SPEC §20): it is stored, routed and dispatched
// like any event. A sample routes to whichever team its identifiers or the
// rules name, in any org, so only the operator (admin:* bound to no org)
// may send one. The page then shows where it went.
func (u *UI) uiSendTestEvent(w http.ResponseWriter, r *http.Request, se *uiSession) {
	if u.uiAdmin(w, r, se, auth.PermAll, "sources") == nil {
		return
	}
	if !u.operator(r, se) || u.o.Door == nil {
		u.render(w, r, http.StatusForbidden, "notfound", page{Session: se, Nav: "sources",
			Error: "A test event routes to any org's team: sending one needs the operator's admin token (admin:*, bound to no org)."})
		return
	}
	name := httprouter.ParamsFromContext(r.Context()).ByName("source")
	var b [8]byte
	_, _ = rand.Read(b[:])
	now := wallclock.Now()
	body, h, err := u.o.Door.Registry().Get(name).SignedSample(strings.ToLower(base64.RawURLEncoding.EncodeToString(b[:])), now)
	if err != nil {
		u.setFlash(r, se, "No test event sent: "+strings.TrimPrefix(err.Error(), webhook.ErrNoSample.Error()+": ")+".")
		http.Redirect(w, r, "/ui/sources", http.StatusSeeOther)
		return
	}
	ack := u.o.Door.Accept(r.Context(), name, body, h)
	if ack.Err != nil || ack.EventID == "" {
		u.setFlash(r, se, "The door refused the test event: "+apperr.Message(ack.Err))
		http.Redirect(w, r, "/ui/sources", http.StatusSeeOther)
		return
	}
	u.log.Info("test event sent", "source", name, "event_id", ack.EventID, "actor", se.actor)
	http.Redirect(w, r, "/ui/sources?sent="+url.QueryEscape(ack.EventID)+"#sent-event", http.StatusSeeOther)
}

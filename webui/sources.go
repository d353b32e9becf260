package webui

import (
	"net/http"
	"strings"

	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

// sourceInfo is one webhook source as the sources page lists it: never a
// secret, only how a delivery is checked.
type sourceInfo struct {
	Name, Kind, Scheme, Description string
	Routes                          []string
	Routing                         string
	Alerts, Coalesce, People        bool
}

// uiSources lists the webhook sources: the built-in ones, the Slack apps
// and the configured ones, as the source registry has them.
func (u *UI) uiSources(w http.ResponseWriter, r *http.Request, se *uiSession) {
	if u.uiAdmin(w, r, se, auth.PermEventsRead, "sources") == nil {
		return
	}
	t := routeTest{Allowed: u.operator(r, se), Source: r.URL.Query().Get("try")}
	if t.Allowed && t.Source != "" {
		t.Body = u.lastPayload(r, t.Source) // the last real payload of that source, prefilled
	}
	u.renderSources(w, r, se, http.StatusOK, t)
}

// renderSources draws the Sources page with the routing test form.
func (u *UI) renderSources(w http.ResponseWriter, r *http.Request, se *uiSession, code int, t routeTest) {
	var rows []sourceInfo
	if u.o.Sources != nil {
		for _, s := range u.o.Sources.Sources() {
			row := sourceInfo{Name: s.Name, Kind: s.Kind, Scheme: s.Scheme, Description: s.Description,
				Routing: strings.Join(s.Routing, ", "), Alerts: s.Alerts, Coalesce: s.Coalesce, People: s.People}
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

package webui

// The provision form, the runs list and a run's page.

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/incidentfox/orchestrator-edge/server/provision"
	"github.com/incidentfox/orchestrator-edge/server/scoped"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/julienschmidt/httprouter"
)

// provisionFormData is the provision form: the request so far and every
// routing field.
type provisionFormData struct {
	provision.Request
	Routing []provision.RoutingField
}

func provisionForm(req provision.Request) provisionFormData {
	routing := req.Routing
	if routing == nil {
		routing = &provision.Routing{}
	}
	return provisionFormData{Request: req, Routing: routing.Fields()}
}

// splitList reads a comma-separated form field; empty means "leave as is".
func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

type runPage struct {
	Run   store.Run
	Steps []provision.Step
	Token string
}

func (u *UI) uiProvision(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermProvision, "provision")
	if a == nil {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, u.o.MaxBodyBytes)
	req := provision.Request{OrgID: strings.TrimSpace(r.PostFormValue("org_id")), TeamNodeID: strings.TrimSpace(r.PostFormValue("team_node_id")),
		CreatePipelineSchedule: r.PostFormValue("create_pipeline_schedule") == "1",
		PipelineSchedule:       strings.TrimSpace(r.PostFormValue("pipeline_schedule")), DeploymentMode: r.PostFormValue("deployment_mode")}
	routing := &provision.Routing{}
	for _, f := range routing.Fields() {
		if v := splitList(r.PostFormValue(f.Key)); v != nil {
			routing.Set(f.Key, v)
			req.Routing = routing
		}
	}
	if !req.CreatePipelineSchedule {
		req.PipelineSchedule = ""
	}
	err := req.Normalize("")
	if err == nil {
		err = a.CanActOn(req.OrgID)
	}
	if err != nil {
		u.render(w, r, httpx.Classify(err).Kind.Status(), "provision", page{Session: se, Nav: "provision", Error: apperr.Message(err), Data: provisionForm(req)})
		return
	}
	res, err := u.o.Provision.Provision(r.Context(), provision.Caller{Token: a.Token, Actor: a.Actor}, req)
	if err != nil {
		u.render(w, r, httpx.Classify(err).Kind.Status(), "provision", page{Session: se, Nav: "provision", Error: apperr.Message(err), Data: provisionForm(req)})
		return
	}
	// Redirect after POST: a reload shows the run, never provisions again.
	// The new token rides along once, sealed for this browser.
	if resp, ok := res.Body.(provision.Response); ok && resp.TeamToken != "" {
		if v, err := sealNewToken(se.id, res.RunID, resp.TeamToken); err == nil {
			http.SetCookie(w, &http.Cookie{Name: newTokenCookie, Value: v, Path: "/ui/runs/", HttpOnly: true,
				SameSite: http.SameSiteStrictMode, Secure: u.secure(r), MaxAge: int(newTokenTTL.Seconds())})
		}
	}
	http.Redirect(w, r, "/ui/runs/"+url.PathEscape(res.RunID), http.StatusSeeOther)
}

func (u *UI) uiRuns(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermProvisionRead, "runs")
	if a == nil {
		return
	}
	org, _ := scoped.OrgScope(a, "")
	runs, next, err := u.o.Runs.ListRuns(r.Context(), store.RunFilter{OrgID: org, Limit: 50, Cursor: r.URL.Query().Get("cursor")})
	if err != nil {
		u.render(w, r, http.StatusBadRequest, "notfound", page{Session: se, Nav: "runs", Error: apperr.Message(httpx.CursorError(err))})
		return
	}
	u.render(w, r, http.StatusOK, "runs", page{Session: se, Nav: "runs", Data: struct {
		Runs []store.Run
		Next string
	}{runs, next}})
}

func (u *UI) uiRun(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermProvisionRead, "runs")
	if a == nil {
		return
	}
	run, err := u.reads.Run(r.Context(), a, httprouter.ParamsFromContext(r.Context()).ByName("id"))
	if err != nil {
		u.render(w, r, httpx.Classify(err).Kind.Status(), "notfound", page{Session: se, Nav: "runs", Error: apperr.Message(err)})
		return
	}
	p := runPage{Run: run}
	_ = json.Unmarshal(run.Steps, &p.Steps)
	// A token this session's provisioning just issued is shown here once.
	if c, err := r.Cookie(newTokenCookie); err == nil {
		if p.Token = openNewToken(se.id, run.ID, c.Value); p.Token != "" {
			http.SetCookie(w, &http.Cookie{Name: newTokenCookie, Value: "", Path: "/ui/runs/", HttpOnly: true,
				SameSite: http.SameSiteStrictMode, Secure: u.secure(r), MaxAge: -1})
		}
	}
	u.render(w, r, http.StatusOK, "run", page{Session: se, Nav: "runs", Data: p})
}

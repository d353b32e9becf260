package webui

// Schedules (suspend, resume), the agent run form and dev mode's samples.

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/agentrun"
	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/incidentfox/orchestrator-edge/server/scoped"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/julienschmidt/httprouter"
)

func (u *UI) uiSchedules(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermPipelineRead, "schedules")
	if a == nil {
		return
	}
	var views any = nil
	errText := ""
	if u.o.Schedules != nil {
		org, _ := scoped.OrgScope(a, "")
		v, err := u.o.Schedules.List(r.Context(), org, "")
		if err != nil {
			errText = apperr.Message(err)
		}
		views = v
	}
	u.render(w, r, http.StatusOK, "schedules", page{Session: se, Nav: "schedules", Error: errText, Data: struct{ Schedules any }{views}})
}

func (u *UI) uiSchedule(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermCronJobsSync, "schedules")
	if a == nil {
		return
	}
	row, err := u.o.Schedules.Get(r.Context(), httprouter.ParamsFromContext(r.Context()).ByName("id"))
	if err == nil && a.CanActOn(row.OrgID) != nil {
		err = apperr.New(apperr.NotFound, "schedule_not_found", "no such schedule")
	}
	if err == nil {
		enabled := r.PostFormValue("enabled") == "1"
		_, err = u.o.Schedules.Patch(r.Context(), row, &enabled, nil)
		if err == nil {
			u.setFlash(r, se, row.CronJobName+map[bool]string{true: " resumed.", false: " suspended."}[enabled])
		}
	}
	if err != nil {
		u.setFlash(r, se, "Not changed: "+apperr.Message(err))
	}
	http.Redirect(w, r, "/ui/schedules", http.StatusSeeOther)
}

func (u *UI) uiAgent(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermAgentRun, "agents")
	if a == nil {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, u.o.MaxBodyBytes)
	req := agentrun.Request{OrgID: strings.TrimSpace(r.PostFormValue("org_id")), TeamNodeID: strings.TrimSpace(r.PostFormValue("team_node_id")),
		AgentName: strings.TrimSpace(r.PostFormValue("agent_name")), Message: r.PostFormValue("message")}
	err := req.Validate()
	if err == nil {
		err = a.CanActOn(req.OrgID)
	}
	data := agentPage{OrgID: req.OrgID, TeamNodeID: req.TeamNodeID, AgentName: req.AgentName, Message: req.Message}
	if err != nil {
		// Nothing was called: the form comes back with what was typed.
		u.render(w, r, httpx.Classify(err).Kind.Status(), "agents", page{Session: se, Nav: "agents", Error: apperr.Message(err), Data: data})
		return
	}
	// The agent was called (and the call audited): redirect after POST, so
	// a reload never calls it again; the answer rides along once.
	out, err := u.o.Agents.Run(r.Context(), a, req)
	back := "/ui/agents?" + url.Values{"org_id": {req.OrgID}, "team_node_id": {req.TeamNodeID}, "agent_name": {req.AgentName}}.Encode()
	if err != nil {
		u.setFlash(r, se, "The agent run failed: "+apperr.Message(err))
		http.Redirect(w, r, back, http.StatusSeeOther)
		return
	}
	var pretty bytes.Buffer
	result := string(out.Result)
	if json.Indent(&pretty, out.Result, "", "  ") == nil {
		result = pretty.String()
	}
	u.setFlashResult(r, se, "Agent run "+out.CorrelationID+" finished.", result)
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// agentPage is the agent form, filled from the query after a run.
type agentPage struct {
	OrgID, TeamNodeID, AgentName, Message string
}

// mayPostSamples: a dev sample routes to whichever team its identifiers
// match, in any org, and starts an agent run there; only an admin that may
// redrive events and is bound to no org may send one.
func (u *UI) mayPostSamples(a *auth.Admin) bool {
	return u.o.Dev && a.Identity.OrgID == "" && u.o.Auth.Permits(a, auth.PermEventsRedrive)
}

// uiSample (dev mode only) signs a sample event with the dev secret and
// hands it to the webhook door, as the vendor's delivery would be.
func (u *UI) uiSample(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermEventsRedrive, "overview")
	if a == nil {
		return
	}
	if !u.mayPostSamples(a) {
		u.render(w, r, http.StatusForbidden, "notfound", page{Session: se, Nav: "overview",
			Error: "Samples route to any org's team: sending one needs an admin bound to no org."})
		return
	}
	source := httprouter.ParamsFromContext(r.Context()).ByName("source")
	secret := u.o.DevSecrets[source]
	if u.o.Door == nil || !slices.Contains(u.o.Door.Sources(), source) || secret == "" {
		u.setFlash(r, se, "No such source, or no dev secret for it.")
		http.Redirect(w, r, "/ui/overview", http.StatusSeeOther)
		return
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := strings.ToLower(base64.RawURLEncoding.EncodeToString(b[:]))
	now := wallclock.Now()
	body := webhook.Sample(source, id, now)
	ack := u.o.Door.Accept(r.Context(), source, body, webhook.Sign(source, secret, body, now, "sample-"+id))
	if ack.Err != nil || ack.EventID == "" {
		u.setFlash(r, se, "The sample was refused: "+apperr.Message(ack.Err))
		http.Redirect(w, r, "/ui/overview", http.StatusSeeOther)
		return
	}
	u.setFlash(r, se, "Sample "+source+" event accepted.")
	http.Redirect(w, r, "/ui/events/"+ack.EventID, http.StatusSeeOther)
}

package webui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/incidentfox/orchestrator-edge/server/provision"
	"github.com/incidentfox/orchestrator-edge/server/schedules"
	"github.com/incidentfox/orchestrator-edge/server/scoped"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/julienschmidt/httprouter"
)

// The teams page (SPEC §9 round 2): every team this orchestrator knows —
// it ran a workflow for it or routed an event to it, marked by whether it
// was provisioned here — with its latest run, its schedules and dedicated agent as the
// cluster has them now, and its events of the last day by status; a page
// per team; and deprovisioning from there, the dry-run plan first.

// teamsPerPage bounds one teams page: each team costs a few cluster reads.
const teamsPerPage = 50

// teamRow is one team as the pages show it.
type teamRow struct {
	OrgID, TeamNodeID string
	Link              string
	Last              store.Run
	// Provisioned: this orchestrator provisioned the team (else it only
	// routed events to it, or only deprovisioned it).
	Provisioned bool
	// Schedules and Agent come from the cluster (with admin:pipeline:read
	// and admin:deployment:read); their errors say why they are missing.
	Schedules                []schedules.View
	SchedulesErr             string
	Agent                    *schedules.DeploymentStatus
	AgentErr                 string
	Events                   []outcomeRow // the last day's, by status (with admin:events:read)
	EventsTotal              int
	ShowSchedules, ShowAgent bool
	// CallsToday and Budget: alert-triggered agent calls today (UTC)
	// against the team's daily budget (Budget 0: none is set).
	CallsToday, Budget int
}

func teamLink(org, team string) string {
	return "/ui/teams/" + url.PathEscape(org) + "/" + url.PathEscape(team)
}

// newTeamRow is a team's row before its events and cluster state are read.
func newTeamRow(t store.TeamRun) teamRow {
	return teamRow{OrgID: t.OrgID, TeamNodeID: t.TeamNodeID, Link: teamLink(t.OrgID, t.TeamNodeID), Last: t.Last,
		Provisioned: t.Provisioned()}
}

// fillLive reads each team's schedules and dedicated agent from the
// cluster, a few teams at a time.
func (u *UI) fillLive(ctx context.Context, a *auth.Admin, rows []teamRow) {
	if u.o.Schedules == nil {
		return
	}
	sched, agent := u.o.Auth.Permits(a, auth.PermPipelineRead), u.o.Auth.Permits(a, auth.PermDeploymentRead)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range rows {
		row := &rows[i]
		row.ShowSchedules, row.ShowAgent = sched, agent
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if sched {
				p, err := u.o.Schedules.Pipeline(ctx, row.OrgID, row.TeamNodeID)
				row.Schedules = p.Schedules
				if err != nil {
					row.SchedulesErr = apperr.Message(err)
				}
			}
			if agent {
				d, err := u.o.Schedules.Deployment(ctx, row.OrgID, row.TeamNodeID)
				if err != nil {
					row.AgentErr = apperr.Message(err)
				} else {
					row.Agent = &d
				}
			}
		}()
	}
	wg.Wait()
}

// fillEvents adds the last day's events by status to each team.
func fillEvents(st pageStats, rows []teamRow) {
	index := map[[2]string]int{}
	for i, r := range rows {
		index[[2]string{r.OrgID, r.TeamNodeID}] = i
	}
	counts := make([]map[string]int, len(rows))
	for _, c := range st.Statuses {
		i, ok := index[[2]string{c.OrgID, c.TeamNodeID}]
		if !ok {
			continue
		}
		if counts[i] == nil {
			counts[i] = map[string]int{}
		}
		counts[i][c.Status] += c.Count
		rows[i].EventsTotal += c.Count
	}
	for i := range rows {
		for _, status := range store.EventStatuses {
			if n := counts[i][status]; n > 0 {
				rows[i].Events = append(rows[i].Events, outcomeRow{status, n})
			}
		}
	}
}

func (u *UI) uiTeams(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermProvisionRead, "teams")
	if a == nil {
		return
	}
	if u.o.Stats == nil {
		u.render(w, r, http.StatusServiceUnavailable, "notfound", page{Session: se, Nav: "teams", Error: "The teams page needs the store's statistics."})
		return
	}
	ctx := r.Context()
	org, _ := scoped.OrgScope(a, "")
	pageNo, err := strconv.Atoi(r.URL.Query().Get("page"))
	if r.URL.Query().Get("page") == "" {
		pageNo, err = 1, nil
	}
	if err != nil || pageNo < 1 {
		u.render(w, r, http.StatusBadRequest, "notfound", page{Session: se, Nav: "teams", Error: "page must be a whole number from 1"})
		return
	}
	teams, err := u.o.Stats.Teams(ctx, org)
	if err != nil {
		u.render(w, r, http.StatusServiceUnavailable, "notfound", page{Session: se, Nav: "teams", Error: "The teams could not be read: " + err.Error()})
		return
	}
	total := len(teams)
	from := min((pageNo-1)*teamsPerPage, total)
	to := min(from+teamsPerPage, total)
	rows := make([]teamRow, 0, to-from)
	for _, t := range teams[from:to] {
		rows = append(rows, newTeamRow(t))
	}
	events := u.o.Auth.Permits(a, auth.PermEventsRead)
	errText := ""
	if events {
		st, err := u.stats(ctx, org)
		if err != nil {
			errText = "The event figures could not be read: " + err.Error()
		}
		fillEvents(st, rows)
	}
	u.fillLive(ctx, a, rows)
	budget := false
	if u.o.Noise != nil && u.o.Noise.CallsToday != nil {
		for i := range rows {
			rows[i].CallsToday, rows[i].Budget = u.o.Noise.CallsToday(rows[i].OrgID, rows[i].TeamNodeID, u.now())
			budget = budget || rows[i].Budget > 0
		}
	}
	d := struct {
		Teams                      []teamRow
		Org                        string
		Budget                     bool
		Events                     bool
		Total, From, To            int
		Prev, Next                 string
		SchedulesShown, AgentShown bool
	}{Teams: rows, Org: org, Budget: budget, Events: events, Total: total, From: from + 1, To: to,
		SchedulesShown: u.o.Schedules != nil && u.o.Auth.Permits(a, auth.PermPipelineRead),
		AgentShown:     u.o.Schedules != nil && u.o.Auth.Permits(a, auth.PermDeploymentRead)}
	if pageNo > 1 {
		d.Prev = "/ui/teams?page=" + strconv.Itoa(pageNo-1)
	}
	if to < total {
		d.Next = "/ui/teams?page=" + strconv.Itoa(pageNo+1)
	}
	u.render(w, r, http.StatusOK, "teams", page{Session: se, Nav: "teams", Error: errText, Data: d})
}

// uiTeamFor loads the path's team for the admin: one it may see that this
// orchestrator knows (a run or a routed event).
func (u *UI) uiTeamFor(w http.ResponseWriter, r *http.Request, se *uiSession, a *auth.Admin) (store.TeamRun, bool) {
	p := httprouter.ParamsFromContext(r.Context())
	org, team := p.ByName("org"), p.ByName("team")
	err := scoped.CheckTeam(a, org, team)
	var found store.TeamRun
	if err == nil && u.o.Stats != nil {
		var teams []store.TeamRun
		teams, err = u.o.Stats.Teams(r.Context(), org)
		ok := false
		for _, t := range teams {
			if t.TeamNodeID == team {
				found, ok = t, true
			}
		}
		if err == nil && !ok {
			err = apperr.New(apperr.NotFound, "team_not_found", "this orchestrator knows no team %s/%s", org, team)
		}
	}
	if err != nil {
		// Another org's team is answered as missing, like the API does.
		if httpx.Classify(err).Kind == apperr.Forbidden {
			err = apperr.New(apperr.NotFound, "team_not_found", "this orchestrator knows no team %s/%s", org, team)
		}
		u.render(w, r, httpx.Classify(err).Kind.Status(), "notfound", page{Session: se, Nav: "teams", Error: apperr.Message(err)})
		return store.TeamRun{}, false
	}
	return found, true
}

// teamPage is one team's page, with the deprovisioning form or its plan.
type teamPage struct {
	Team           teamRow
	Silence        bool // the admin may silence the team's alerts
	Runs           []store.Run
	Events         bool
	CanDeprovision bool
	Options        deprovisionOptions
	Plan           []provision.Action
	PlanDigest     string
	PlanRunID      string
}

type deprovisionOptions struct {
	DeleteResources, RevokeTokens, ClearRouting bool
}

func (u *UI) uiTeam(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermProvisionRead, "teams")
	if a == nil {
		return
	}
	t, ok := u.uiTeamFor(w, r, se, a)
	if !ok {
		return
	}
	p, errText := u.teamPage(r.Context(), a, t)
	p.Options = deprovisionOptions{DeleteResources: true}
	// ?plan=<dry run id> shows that plan (the deprovision form redirects
	// here after planning) with the options it was made with.
	if q := r.URL.Query(); q.Get("plan") != "" && p.CanDeprovision {
		p.Options = deprovisionOptions{DeleteResources: q.Get("delete_k8s_resources") == "1",
			RevokeTokens: q.Get("revoke_tokens") == "1", ClearRouting: q.Get("clear_routing") == "1"}
		run, err := u.o.Runs.GetRun(r.Context(), q.Get("plan"))
		var body provision.DeprovisionResponse
		if err == nil && run.Kind == store.RunKindDeprovision && run.OrgID == t.OrgID && run.TeamNodeID == t.TeamNodeID &&
			json.Unmarshal(run.Response, &body) == nil && body.DryRun {
			p.Plan, p.PlanDigest, p.PlanRunID = body.Plan, provision.PlanDigest(body.Plan), run.ID
		} else {
			errText = "No such plan for this team: plan again."
		}
	}
	u.render(w, r, http.StatusOK, "team", page{Session: se, Nav: "teams", Error: errText, Data: p})
}

// planURL is the team page showing a dry run's plan and its options.
func planURL(t store.TeamRun, runID string, o deprovisionOptions) string {
	q := url.Values{"plan": {runID}}
	for k, on := range map[string]bool{"delete_k8s_resources": o.DeleteResources, "revoke_tokens": o.RevokeTokens, "clear_routing": o.ClearRouting} {
		if on {
			q.Set(k, "1")
		}
	}
	return teamLink(t.OrgID, t.TeamNodeID) + "?" + q.Encode() + "#deprovision"
}

func (u *UI) teamPage(ctx context.Context, a *auth.Admin, t store.TeamRun) (teamPage, string) {
	p := teamPage{Events: u.o.Auth.Permits(a, auth.PermEventsRead), CanDeprovision: u.o.Auth.Permits(a, auth.PermDeprovision)}
	rows := []teamRow{newTeamRow(t)}
	errText := ""
	if p.Events {
		st, err := u.stats(ctx, t.OrgID)
		if err != nil {
			errText = "The event figures could not be read: " + err.Error()
		}
		fillEvents(st, rows)
	}
	u.fillLive(ctx, a, rows)
	if u.o.Noise != nil && u.o.Noise.CallsToday != nil {
		rows[0].CallsToday, rows[0].Budget = u.o.Noise.CallsToday(t.OrgID, t.TeamNodeID, u.now())
	}
	p.Team = rows[0]
	p.Silence = u.o.Noise != nil && u.o.Auth.Permits(a, auth.PermSilence)
	p.Runs, _, _ = u.o.Runs.ListRuns(ctx, store.RunFilter{OrgID: t.OrgID, TeamNodeID: t.TeamNodeID, Limit: 10})
	return p, errText
}

// uiDeprovision plans (a dry run, recorded as a run) and, on confirm,
// carries out a team's deprovisioning. A confirm is one run: the plan is
// made again under the team lock and carried out only if it is the one
// shown; else that run is the dry run of the new plan, which is shown.
func (u *UI) uiDeprovision(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermDeprovision, "teams")
	if a == nil {
		return
	}
	t, ok := u.uiTeamFor(w, r, se, a)
	if !ok {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	opts := deprovisionOptions{DeleteResources: r.PostFormValue("delete_k8s_resources") == "1",
		RevokeTokens: r.PostFormValue("revoke_tokens") == "1", ClearRouting: r.PostFormValue("clear_routing") == "1"}
	req := provision.DeprovisionRequest{OrgID: t.OrgID, TeamNodeID: t.TeamNodeID, DeleteK8sResources: &opts.DeleteResources,
		RevokeTokens: opts.RevokeTokens, ClearRouting: opts.ClearRouting, DryRun: true}
	caller := provision.Caller{Token: a.Token, Actor: a.Actor}
	ctx := r.Context()
	// Every answer is a redirect (after POST): a reload re-plans nothing
	// and never deprovisions twice.
	back := func(msg string) {
		u.setFlash(r, se, msg)
		http.Redirect(w, r, teamLink(t.OrgID, t.TeamNodeID)+"#deprovision", http.StatusSeeOther)
	}
	if r.PostFormValue("confirm") != "1" {
		res, err := u.o.Provision.Deprovision(ctx, caller, req)
		if err != nil {
			back("Not planned: " + apperr.Message(err))
			return
		}
		if body, _ := res.Body.(provision.DeprovisionResponse); !body.OK {
			back("The plan could not be made: " + fmt.Sprint(body.Errors))
			return
		}
		http.Redirect(w, r, planURL(t, res.RunID, opts), http.StatusSeeOther)
		return
	}
	req.DryRun, req.ExpectPlan = false, r.PostFormValue("plan")
	if req.ExpectPlan == "" {
		back("Not deprovisioned: plan first, then confirm the plan shown.")
		return
	}
	res, err := u.o.Provision.Deprovision(ctx, caller, req)
	if err != nil {
		back("Not deprovisioned: " + apperr.Message(err))
		return
	}
	body, _ := res.Body.(provision.DeprovisionResponse)
	if body.PlanChanged {
		// Nothing was removed: this run planned again; show its plan.
		u.setFlash(r, se, "The plan changed since it was shown: review it and confirm again.")
		http.Redirect(w, r, planURL(t, res.RunID, opts), http.StatusSeeOther)
		return
	}
	u.log.Info("team deprovisioned from the admin page", "org_id", t.OrgID, "team_node_id", t.TeamNodeID, "actor", a.Actor, "ok", body.OK)
	if body.OK {
		u.setFlash(r, se, fmt.Sprintf("Deprovisioned %s/%s: %d actions carried out.", t.OrgID, t.TeamNodeID, len(body.Deleted)))
	} else {
		u.setFlash(r, se, fmt.Sprintf("Deprovisioning %s/%s finished with errors: %v", t.OrgID, t.TeamNodeID, body.Errors))
	}
	http.Redirect(w, r, "/ui/runs/"+res.RunID, http.StatusSeeOther)
}

package webui

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/incidentfox/orchestrator-edge/server/noise"
	"github.com/incidentfox/orchestrator-edge/server/scoped"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/julienschmidt/httprouter"
)

// silenceForm is the new-silence form, prefilled from "silence alerts like
// this" links (an event's or a team's) or from what was typed.
type silenceForm struct {
	OrgID, TeamNodeID, Source, EventType, Service, AlertKey, Comment string
	Hours                                                            string
	// Intervals: the time intervals of a recurring silence, comma-separated.
	Intervals string
}

type silenceRow struct {
	store.Silence
	State string
	// Rec: where a recurring silence stands (nil for a plain one).
	Rec *noise.Recurrence
}

func (u *UI) silencesPage(w http.ResponseWriter, r *http.Request, se *uiSession, a *auth.Admin, status int, form silenceForm, errText string) {
	org, _ := scoped.OrgScope(a, "")
	list, err := u.o.Noise.List(r.Context(), a, org, "")
	if err != nil && errText == "" {
		errText = apperr.Message(err)
	}
	now := u.now()
	var active, ended []silenceRow
	for _, s := range list {
		row := silenceRow{Silence: s, State: s.State(now), Rec: u.o.Noise.Recurrence(s, now)}
		if row.State == store.SilenceExpired {
			ended = append(ended, row)
		} else {
			active = append(active, row)
		}
	}
	var alertSources []string
	for _, s := range u.o.Sources.Sources() {
		if !s.People {
			alertSources = append(alertSources, s.Name)
		}
	}
	if form.Hours == "" {
		form.Hours = "2"
	}
	var intervals []string
	if u.o.Noise.Intervals != nil {
		intervals = u.o.Noise.Intervals().Names()
	}
	u.render(w, r, status, "silences", page{Session: se, Nav: "silences", Error: errText, Data: struct {
		Active, Ended []silenceRow
		Form          silenceForm
		Sources       []string
		Intervals     []string
	}{active, ended, form, alertSources, intervals}})
}

// uiSilences lists the silences and offers the form, prefilled from the
// query (the event page's and team page's "silence alerts like this").
func (u *UI) uiSilences(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermSilence, "silences")
	if a == nil || !u.noiseOn(w, r, se) {
		return
	}
	q := r.URL.Query()
	u.silencesPage(w, r, se, a, http.StatusOK, silenceForm{OrgID: q.Get("org_id"), TeamNodeID: q.Get("team_node_id"),
		Source: q.Get("source"), EventType: q.Get("event_type"), Service: q.Get("service"), AlertKey: q.Get("alert_key")}, "")
}

func (u *UI) noiseOn(w http.ResponseWriter, r *http.Request, se *uiSession) bool {
	if u.o.Noise == nil || u.o.Sources == nil {
		u.render(w, r, http.StatusNotFound, "notfound", page{Session: se, Nav: "silences", Error: "This server takes no webhooks: there is nothing to silence."})
		return false
	}
	return true
}

func (u *UI) uiCreateSilence(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermSilence, "silences")
	if a == nil || !u.noiseOn(w, r, se) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, u.o.MaxBodyBytes)
	v := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	form := silenceForm{OrgID: v("org_id"), TeamNodeID: v("team_node_id"), Source: v("source"), EventType: v("event_type"),
		Service: v("service"), AlertKey: v("alert_key"), Comment: r.PostFormValue("comment"), Hours: v("hours"), Intervals: v("mute_time_intervals")}
	req := noise.SilenceRequest{OrgID: form.OrgID, TeamNodeID: form.TeamNodeID, Comment: form.Comment,
		Match: &noise.Match{EventType: form.EventType, Service: form.Service, AlertKey: form.AlertKey}}
	if form.Source != "" {
		req.Sources = []string{form.Source}
	}
	for _, name := range strings.Split(form.Intervals, ",") {
		if name = strings.TrimSpace(name); name != "" {
			req.MuteTimeIntervals = append(req.MuteTimeIntervals, name)
		}
	}
	// The form asks for hours, so its errors speak of hours (the API's
	// speak of ends_at, which this form does not have). A recurring
	// silence may last a year.
	limit, limitWords := noise.MaxSilence, "30 days"
	if len(req.MuteTimeIntervals) > 0 {
		limit, limitWords = noise.MaxRecurringSilence, "a year, for a recurring silence"
	}
	maxHours := limit / time.Hour
	hours, err := time.ParseDuration(form.Hours + "h")
	switch {
	case err != nil || hours <= 0:
		u.silencesPage(w, r, se, a, http.StatusBadRequest, form, "For how many hours: a number of hours, e.g. 2 or 0.5.")
		return
	case hours > limit:
		u.silencesPage(w, r, se, a, http.StatusBadRequest, form,
			fmt.Sprintf("For how many hours: at most %d (%s); %s is more.", maxHours, limitWords, form.Hours))
		return
	}
	ends := u.now().Add(hours)
	req.EndsAt = &ends
	sil, err := u.o.Noise.Create(r.Context(), a, req)
	if err != nil {
		// Nothing was set: the form comes back with what was typed.
		msg := apperr.Message(err)
		if strings.HasPrefix(msg, "ends_at: ") || strings.HasPrefix(msg, "starts_at: ") {
			msg = fmt.Sprintf("For how many hours: %s is not a window that can be set now (at most %d hours).", form.Hours, maxHours)
		}
		u.silencesPage(w, r, se, a, httpx.Classify(err).Kind.Status(), form, msg)
		return
	}
	u.log.Info("silence set", "silence_id", sil.ID, "org_id", sil.OrgID, "actor", a.Actor)
	u.setFlash(r, se, "Silence set until "+sil.EndsAt.UTC().Format("2006-01-02 15:04")+" UTC.")
	http.Redirect(w, r, "/ui/silences#silence-"+sil.ID, http.StatusSeeOther)
}

func (u *UI) uiExpireSilence(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermSilence, "silences")
	if a == nil || !u.noiseOn(w, r, se) {
		return
	}
	if _, err := u.o.Noise.Expire(r.Context(), a, httprouter.ParamsFromContext(r.Context()).ByName("id")); err != nil {
		u.setFlash(r, se, "Not expired: "+apperr.Message(err))
	} else {
		u.setFlash(r, se, "Silence expired: alerts it held back from now on reach the agent.")
	}
	http.Redirect(w, r, "/ui/silences", http.StatusSeeOther)
}

// redriveFilter reads the events list's filter from a form (the bulk
// redrive form carries the list's current filter).
func redriveFilter(v func(string) string) (noise.RedriveRequest, error) {
	req := noise.RedriveRequest{Status: v("status"), SuppressedReason: v("suppressed_reason"), Source: v("source"),
		OrgID: v("org_id"), TeamNodeID: v("team_node_id")}
	for name, dst := range map[string]**time.Time{"since": &req.Since, "until": &req.Until} {
		if s := v(name); s != "" {
			if len(s) == len("2006-01-02T15:04") {
				s += ":00Z"
			}
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return req, apperr.New(apperr.Invalid, "invalid_filter", "%s: an RFC 3339 time", name)
			}
			*dst = &t
		}
	}
	return req, nil
}

// uiBulkRedrive counts what the events list's filter would redrive, then,
// confirmed, redrives it (at most 10,000 a time, audited).
func (u *UI) uiBulkRedrive(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermEventsRedrive, "events")
	if a == nil || !u.noiseOn(w, r, se) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, u.o.MaxBodyBytes)
	v := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	req, err := redriveFilter(v)
	back := url.Values{}
	for _, k := range []string{"status", "suppressed_reason", "source", "org_id", "team_node_id", "since", "until"} {
		if s := v(k); s != "" {
			back.Set(k, s)
		}
	}
	list := "/ui/events?" + back.Encode()
	if err == nil {
		req.DryRun = v("confirm") != "1"
		var res noise.RedriveResult
		res, err = u.o.Noise.Redrive(r.Context(), a, req)
		switch {
		case err != nil:
		case req.DryRun:
			back.Set("redrive_matched", strconv.Itoa(res.Matched))
			back.Set("redrive_purged", strconv.Itoa(res.Purged))
			http.Redirect(w, r, "/ui/events?"+back.Encode()+"#bulk-redrive", http.StatusSeeOther)
			return
		default:
			msg := strconv.Itoa(res.Redriven) + " events queued again, each alone and past noise control."
			if res.More {
				msg += " More than " + strconv.Itoa(res.Limit) + " matched: redrive again for the rest."
			}
			u.log.Info("events redriven in bulk", "redriven", res.Redriven, "actor", a.Actor)
			u.setFlash(r, se, msg)
			http.Redirect(w, r, list, http.StatusSeeOther)
			return
		}
	}
	u.setFlash(r, se, "Not redriven: "+apperr.Message(err))
	http.Redirect(w, r, list, http.StatusSeeOther)
}

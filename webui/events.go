package webui

// The events list, an event's page and its redrive.

import (
	"bytes"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/incidentfox/orchestrator-edge/server/routing"
	"github.com/incidentfox/orchestrator-edge/server/scoped"
	"github.com/incidentfox/orchestrator-edge/server/tracing"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/julienschmidt/httprouter"
)

// uiEvents lists events with the API's filters (source, status, team, time
// range) and a search box: an event id opens that event, anything else is
// looked up as a delivery id.
func (u *UI) uiEvents(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermEventsRead, "events")
	if a == nil {
		return
	}
	q := r.URL.Query()
	find := strings.TrimSpace(q.Get("q"))
	if find != "" {
		if e, err := u.reads.Event(r.Context(), a, find); err == nil {
			http.Redirect(w, r, "/ui/events/"+e.ID, http.StatusSeeOther)
			return
		}
		q.Set("delivery_id", find)
	}
	// The page's time fields are datetime-local (no zone): read them as UTC.
	for _, k := range []string{"since", "until"} {
		if v := q.Get(k); len(v) == len("2006-01-02T15:04") {
			q.Set(k, v+":00Z")
		}
	}
	f, err := scoped.EventFilter(q, u.sourceNames())
	if err == nil {
		f.OrgID, err = scoped.OrgScope(a, f.OrgID)
	}
	f.Limit, f.Before = 50, q.Get("before")
	if f.Before != "" && f.Cursor != "" {
		err = httpx.QueryError("before", "give cursor or before, not both")
	}
	var events []store.Event
	var more string
	switch {
	case err != nil:
	case f.DeliveryID != "" && f.Source == "":
		// A delivery id is unique per source: one indexed lookup each.
		for _, src := range u.sourceNames() {
			f.Source = src
			got, _, lerr := u.o.Events.ListEvents(r.Context(), f)
			events, err = append(events, got...), lerr
			if err != nil {
				break
			}
		}
		f.Source = ""
	default:
		events, more, err = u.o.Events.ListEvents(r.Context(), f)
		err = httpx.CursorError(err)
	}
	if err != nil {
		u.render(w, r, httpx.Classify(err).Kind.Status(), "notfound", page{Session: se, Nav: "events", Error: apperr.Message(err)})
		return
	}
	filters := url.Values{}
	for _, k := range []string{"source", "status", "suppressed_reason", "rule", "org_id", "team_node_id", "since", "until", "q"} {
		if v := r.URL.Query().Get(k); v != "" {
			filters.Set(k, v)
		}
	}
	link := func(key, cursor string) template.URL {
		o := url.Values{}
		for k, v := range filters {
			o[k] = v
		}
		o.Set(key, cursor)
		return template.URL(o.Encode())
	}
	// Older follows the last row, Newer goes back from the first.
	var older, newer template.URL
	switch {
	case f.Before != "":
		if len(events) > 0 {
			older = link("cursor", store.EventCursor(events[len(events)-1]))
		}
		if more != "" {
			newer = link("before", more)
		}
	default:
		if more != "" {
			older = link("cursor", more)
		}
		if f.Cursor != "" && len(events) > 0 {
			newer = link("before", store.EventCursor(events[0]))
		}
	}
	q = r.URL.Query()
	canRedrive := u.o.Noise != nil && u.o.Auth.Permits(a, auth.PermEventsRedrive)
	// A bulk redrive's count (its dry run) says where the unrouted events
	// it names would now be routed (SPEC §20); the rule filter is the
	// list's, not the redrive's.
	var reroute *scoped.Reroute
	if canRedrive && q.Get("redrive_matched") != "" && q.Get("redrive_matched") != "0" && u.o.RouteTest != nil &&
		(f.Status == "" || f.Status == store.EventUnrouted) {
		pf := f
		pf.MatchedBy = ""
		var allows func(string, map[string]string, string) bool
		if u.o.Sources != nil {
			allows = u.o.Sources.Allows
		}
		p, err := scoped.PreviewReroute(r.Context(), u.o.Events, pf, u.o.RouteTest, allows)
		if err != nil {
			u.log.Warn("the bulk redrive's routing preview failed", "error", err)
		} else {
			reroute = &p
		}
	}
	u.render(w, r, http.StatusOK, "events", page{Session: se, Nav: "events", Data: struct {
		Events                                        []store.Event
		Older, Newer, Newest                          template.URL // encoded query strings, not to be escaped again
		Paged                                         bool
		Source, Status, Org, Team, Since, Until, Find string
		Reason, Rule                                  string
		Sources, Statuses, Reasons                    []string
		// CanRedrive: the admin may redrive what the filter names in
		// bulk; RedriveMatched is the count a dry run answered.
		CanRedrive                    bool
		RedriveMatched, RedrivePurged string
		// Reroute: where the unrouted events among them would now go.
		Reroute *scoped.Reroute
	}{events, older, newer, template.URL(filters.Encode()), f.Cursor != "" || f.Before != "", f.Source, f.Status, q.Get("org_id"), f.TeamNodeID,
		q.Get("since"), q.Get("until"), find, f.SuppressedReason, q.Get("rule"), u.sourceNames(), store.EventStatuses, store.SuppressedReasons,
		canRedrive, q.Get("redrive_matched"), q.Get("redrive_purged"), reroute}})
}

// uiEventFor loads the path's event for the session's admin.
func (u *UI) uiEventFor(w http.ResponseWriter, r *http.Request, se *uiSession, a *auth.Admin) (store.Event, bool) {
	e, err := u.reads.Event(r.Context(), a, httprouter.ParamsFromContext(r.Context()).ByName("id"))
	if err != nil {
		u.render(w, r, httpx.Classify(err).Kind.Status(), "notfound", page{Session: se, Nav: "events", Error: apperr.Message(err)})
		return store.Event{}, false
	}
	return e, true
}

func (u *UI) uiEvent(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermEventsRead, "events")
	if a == nil {
		return
	}
	e, ok := u.uiEventFor(w, r, se, a)
	if !ok {
		return
	}
	runs, _ := u.o.Events.EventAgentRuns(r.Context(), e.ID)
	ids := make([]string, len(runs))
	for i, run := range runs {
		ids[i] = run.ID
	}
	feedback, _ := u.o.Events.RunFeedback(r.Context(), ids)
	redrivable := e.Redrivable() && e.BodyPurgedAt == nil && e.PayloadError == ""
	// What the agent is told of this event (alone, or as its line of a
	// digest), and the body as indented JSON when it is JSON.
	message, body := "", string(e.Body)
	if e.BodyPurgedAt == nil && len(e.Body) > 0 {
		message = u.describe(e)
		var pretty bytes.Buffer
		if json.Indent(&pretty, e.Body, "", "  ") == nil {
			body = pretty.String()
		}
	}
	cause, causeLink := suppressionCause(e)
	released, releasedLink := releaseCause(e)
	traceID := tracing.TraceID(e.Trace)
	var recorded []store.Feedback
	if e.Status == store.EventIgnored {
		recorded, _ = u.o.Events.EventFeedback(r.Context(), e.ID)
	}
	silence := ""
	if u.o.Noise != nil && u.o.Auth.Permits(a, auth.PermSilence) && e.OrgID != "" && (u.o.Sources == nil || !u.isPeople(e.Source)) {
		q := url.Values{"org_id": {e.OrgID}, "team_node_id": {e.TeamNodeID}, "source": {e.Source}, "event_type": {e.EventType}}
		if svc := e.Service(); svc != "" {
			q.Set("service", svc)
		}
		if e.AlertKey != "" {
			q.Set("alert_key", e.AlertKey)
		}
		silence = "/ui/silences?" + q.Encode() + "#new-silence"
	}
	u.render(w, r, http.StatusOK, "event", page{Session: se, Nav: "events", Data: struct {
		Event         store.Event
		Runs          []store.AgentRun
		Feedback      map[string][]store.Feedback
		Deliveries    map[string][]deliveryRow
		Redrivable    bool
		Message, Body string
		Cause         string
		CauseLink     string
		SilenceLink   string
		// Released says what ended the hold on a released event, and
		// links it ("" for none).
		Released, ReleasedLink string
		Recorded               []store.Feedback
		// Decision is where the event went and why (SPEC §20).
		Decision routing.Decision
		// TraceID is the event's trace (SPEC §22), TraceLink where the
		// operator's trace viewer shows it ("" = no link).
		TraceID, TraceLink string
	}{e, runs, feedback, u.deliveryRows(r.Context(), a, ids), redrivable, message, body, cause, causeLink, silence, released, releasedLink, recorded, routing.DecodeDecision(e.Decision),
		traceID, u.traceLink(traceID)}})
}

func (u *UI) uiRedrive(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermEventsRedrive, "events")
	if a == nil {
		return
	}
	e, ok := u.uiEventFor(w, r, se, a)
	if !ok {
		return
	}
	if _, err := u.o.Events.Redrive(r.Context(), e.ID, u.now()); err != nil {
		u.setFlash(r, se, "Not redriven: "+err.Error())
	} else {
		u.setFlash(r, se, "Event queued again.")
		u.log.Info("event redriven", "event_id", e.ID, "actor", a.Actor)
		if u.o.Notify != nil {
			u.o.Notify(e.OrgID, e.TeamNodeID)
		}
	}
	http.Redirect(w, r, "/ui/events/"+e.ID, http.StatusSeeOther)
}

// traceLink is where the trace viewer shows traceID ("" without a
// template or a trace).
func (u *UI) traceLink(traceID string) string {
	if traceID == "" || u.o.Settings.TraceURLTemplate == "" {
		return ""
	}
	return strings.ReplaceAll(u.o.Settings.TraceURLTemplate, "{trace_id}", traceID)
}

// suppressionCause says what kept a suppressed event from the agent, and
// links it: the resolving event (or the firing a resolve closed), the
// earlier delivery, the silence, the inhibiting event, the time intervals.
func suppressionCause(e store.Event) (string, string) {
	switch e.SuppressedReason {
	case store.SuppressedResolved:
		if e.AlertState == store.AlertStateResolved {
			return "resolved before anyone looked: it closed firing event " + e.SuppressedBy + ", which never reached the agent", "/ui/events/" + e.SuppressedBy
		}
		if strings.Contains(e.LastError, "while kept back") {
			// Kept back (a silence, an inhibition, held) when it resolved
			// (SPEC §21): the last error says what held it.
			return "resolved while it was kept back: resolved by event " + e.SuppressedBy, "/ui/events/" + e.SuppressedBy
		}
		return "resolved before anyone looked: resolved by event " + e.SuppressedBy, "/ui/events/" + e.SuppressedBy
	case store.SuppressedRepeat:
		return "a repeat with nothing new: its alert's firing event " + e.SuppressedBy + " was delivered", "/ui/events/" + e.SuppressedBy
	case store.SuppressedSilence:
		return "silenced by silence " + e.SuppressedBy, "/ui/silences#silence-" + e.SuppressedBy
	case store.SuppressedInhibited:
		return "inhibited by firing event " + e.SuppressedBy + " (an inhibit rule's source, in the same org)", "/ui/events/" + e.SuppressedBy
	case store.SuppressedHeld:
		return "held outside its route's or team's active_time_intervals (" + strings.ReplaceAll(e.SuppressedBy, ",", ", ") + "): delivered when one opens, if still firing", ""
	case store.SuppressedBudget:
		return "the team's daily budget of alert-triggered agent calls was spent on " + e.SuppressedBy + " (UTC)", ""
	}
	return "", ""
}

// releaseCause says what ended the hold on an event released at the end of
// it (SPEC §21), and links it: the resolve of its inhibitor, its silence,
// the route's interval.
func releaseCause(e store.Event) (string, string) {
	by := e.ReleasedBy
	switch {
	case by == "":
		return "", ""
	case by == store.ReleasedSilenceEnded:
		return "when silence " + e.SuppressedBy + " ended", "/ui/silences#silence-" + e.SuppressedBy
	case by == store.ReleasedSilenceExpired:
		return "when silence " + e.SuppressedBy + " was expired early", "/ui/silences#silence-" + e.SuppressedBy
	case by == store.ReleasedWindowClosed:
		return "when the time interval of recurring silence " + e.SuppressedBy + " closed", "/ui/silences#silence-" + e.SuppressedBy
	case by == store.ReleasedIntervalsGone:
		return "when the time intervals (" + e.SuppressedBy + ") were removed from the sources file", ""
	case by == store.ReleasedIntervalOpened:
		return "when one of its time intervals opened", ""
	case strings.HasPrefix(by, store.ReleasedIntervalOpened+":"):
		return "when the time interval " + strings.TrimPrefix(by, store.ReleasedIntervalOpened+":") + " opened", ""
	}
	return "when that alert resolved (event " + by + ")", "/ui/events/" + by
}

// isPeople reports whether a source's events are a person's (never silenced).
func (u *UI) isPeople(source string) bool {
	s := u.o.Sources.Get(source)
	return s != nil && s.People
}

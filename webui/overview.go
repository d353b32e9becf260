package webui

// The overview page: health, queue, the last hour, the charts, recent failures.

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/chart"
	"github.com/incidentfox/orchestrator-edge/server/provision"
	"github.com/incidentfox/orchestrator-edge/server/scoped"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

type failure struct {
	At                        time.Time
	What, Link, Status, Error string
}

// uiOverview shows each admin what the API would show it: health to every
// admin; queue depth, event counts and failed events only with
// admin:events:read, failed runs only with admin:provision:read — each of its
// org alone when the admin is bound to one (orgScope). Unrouted events belong
// to no org, so an org-bound admin never sees them.
func (u *UI) uiOverview(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, "", "overview")
	if a == nil {
		return
	}
	org, _ := scoped.OrgScope(a, "")
	ctx := r.Context()
	d := struct {
		DB, DBDetail, Cluster, ClusterDetail, Peers, PeersDetail string
		Org                                                      string
		Events, Runs, Samples                                    bool
		BackupFailure                                            string
		BackupFailedAt                                           time.Time
		QueueDepth                                               int
		PerSource                                                []store.SourceCount
		Failures                                                 []failure
		Sources                                                  []string
		Charts                                                   *charts
		Feedback                                                 *feedbackView
		// Saved: alert events noise control kept from the agent in the
		// last 24 h, by reason.
		Saved   int
		SavedBy []store.ReasonCount
		Volume  *volumeView
		// Answers: answers posted and failed since the UTC day began.
		Answers     *answerCounts
		ChartsError string
		StatsMaxAge time.Duration
	}{StatsMaxAge: u.o.StatsMaxAge, DB: "ready", Cluster: "ok", Peers: "ok", Org: org, Sources: webhook.Builtin[:],
		Events: u.o.Auth.Permits(a, auth.PermEventsRead), Runs: u.o.Auth.Permits(a, auth.PermProvisionRead),
		Samples: u.mayPostSamples(a)}
	if err := u.o.Store.Ready(ctx); err != nil {
		d.DB, d.DBDetail = "down", err.Error()
	}
	switch {
	case u.o.Cluster == nil:
		d.Cluster, d.ClusterDetail = "down", "no cluster configured"
	case u.o.Cluster.Ping(ctx) != nil:
		d.Cluster, d.ClusterDetail = "down", "the API server does not answer"
	case u.o.SimulatedCluster:
		d.Cluster, d.ClusterDetail = "simulated", "in-memory (dev mode)"
	}
	if _, err := u.o.Auth.Check(ctx, se.token, ""); err != nil {
		d.Peers, d.PeersDetail = "down", apperr.Message(err)
	}
	if u.o.Backups != nil && u.o.Auth.Permits(a, auth.PermBackup) && a.Identity.OrgID == "" {
		d.BackupFailure, d.BackupFailedAt = u.o.Backups.LastFailure()
	}
	if d.Events {
		d.Answers = u.answersToday(ctx, org)
		if db, ok := u.o.Store.(interface {
			QueueDepth(context.Context, string) (int, error)
			CountEventsSince(context.Context, time.Time, string) ([]store.SourceCount, error)
		}); ok {
			d.QueueDepth, _ = db.QueueDepth(ctx, org)
			d.PerSource, _ = db.CountEventsSince(ctx, u.now().Add(-time.Hour), org)
		}
		if u.o.Stats != nil {
			if st, err := u.stats(ctx, org); err != nil {
				d.ChartsError = "The charts could not be drawn: " + err.Error()
			} else {
				c := st.charts(u.sourceNames())
				d.Charts, d.Volume = &c, st.Volume
			}
		}
		if ss, ok := u.o.Events.(interface {
			SuppressedSince(context.Context, string, time.Time) ([]store.ReasonCount, error)
		}); ok {
			if counts, err := ss.SuppressedSince(ctx, org, u.now().Add(-24*time.Hour)); err == nil {
				byReason := map[string]int{}
				for _, c := range counts {
					byReason[c.Reason] = c.Count
					d.Saved += c.Count
				}
				for _, r := range store.SuppressedReasons {
					d.SavedBy = append(d.SavedBy, store.ReasonCount{Reason: r, Count: byReason[r]})
				}
			}
		}
		if fs, ok := u.o.Events.(interface {
			FeedbackSince(context.Context, string, time.Time) ([]store.TeamFeedback, error)
		}); ok {
			if teams, err := fs.FeedbackSince(ctx, org, u.now().Add(-7*24*time.Hour)); err == nil {
				d.Feedback = feedbackChart(teams)
			}
		}
		for _, st := range []string{store.EventDead, store.EventFailed, store.EventUnrouted} {
			evs, _, _ := u.o.Events.ListEvents(ctx, store.EventFilter{Status: st, OrgID: org, Limit: 5})
			for _, e := range evs {
				d.Failures = append(d.Failures, failure{At: e.ReceivedAt, What: e.Source + " event " + e.EventType, Link: "/ui/events/" + e.ID, Status: e.Status, Error: e.LastError})
			}
		}
	}
	if d.Runs {
		// A dry run that failed changed nothing: it is no failure to
		// show here (its team page and the runs list still have it).
		shown, cursor := 0, ""
		for pages := 0; shown < 5 && pages < 4; pages++ {
			runs, next, err := u.o.Runs.ListRuns(ctx, store.RunFilter{Status: store.RunFailed, OrgID: org, Limit: 50, Cursor: cursor})
			for _, run := range runs {
				if shown < 5 && err == nil && !provision.IsDryRun(run) {
					d.Failures = append(d.Failures, failure{At: run.CreatedAt, What: run.Kind + " " + run.OrgID + "/" + run.TeamNodeID,
						Link: "/ui/runs/" + run.ID, Status: run.Status, Error: run.Error})
					shown++
				}
			}
			if cursor = next; err != nil || next == "" {
				break
			}
		}
	}
	sort.Slice(d.Failures, func(i, j int) bool { return d.Failures[i].At.After(d.Failures[j].At) })
	u.render(w, r, http.StatusOK, "overview", page{Session: se, Nav: "overview", Data: d})
}

// feedbackView is the overview's chart of answers rated helpful and
// unhelpful per team over the last 7 days (Slack feedback buttons).
type feedbackView struct {
	Chart template.HTML
	Rows  []store.TeamFeedback
}

func feedbackChart(teams []store.TeamFeedback) *feedbackView {
	if len(teams) == 0 {
		return nil
	}
	var bars []chart.Bar
	most := 0
	desc := "Answers rated by people in Slack, per team, last 7 days:"
	for _, t := range teams {
		name := t.OrgID + "/" + t.TeamNodeID
		bars = append(bars, chart.Bar{Label: name + " helpful", Length: float64(t.Positive), Text: fmt.Sprint(t.Positive), Class: "o-delivered"},
			chart.Bar{Label: name + " unhelpful", Length: float64(t.Negative), Text: fmt.Sprint(t.Negative), Class: "o-dead"})
		most = max(most, t.Positive, t.Negative)
		desc += fmt.Sprintf(" %s %d helpful, %d unhelpful.", name, t.Positive, t.Negative)
	}
	return &feedbackView{Chart: chart.Bars("chart-feedback", "Answers rated helpful and unhelpful, last 7 days", desc, bars, countTicks(most)), Rows: teams}
}

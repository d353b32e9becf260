package webui

// The overview page: health, queue, the last hour, the charts, recent failures.

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
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
		Volume                                                   *volumeView
		ChartsError                                              string
		StatsMaxAge                                              time.Duration
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
		for _, st := range []string{store.EventDead, store.EventFailed, store.EventUnrouted} {
			evs, _, _ := u.o.Events.ListEvents(ctx, store.EventFilter{Status: st, OrgID: org, Limit: 5})
			for _, e := range evs {
				d.Failures = append(d.Failures, failure{At: e.ReceivedAt, What: e.Source + " event " + e.EventType, Link: "/ui/events/" + e.ID, Status: e.Status, Error: e.LastError})
			}
		}
	}
	if d.Runs {
		runs, _, _ := u.o.Runs.ListRuns(ctx, store.RunFilter{Status: store.RunFailed, OrgID: org, Limit: 5})
		for _, run := range runs {
			d.Failures = append(d.Failures, failure{At: run.CreatedAt, What: run.Kind + " " + run.OrgID + "/" + run.TeamNodeID, Link: "/ui/runs/" + run.ID, Status: run.Status, Error: run.Error})
		}
	}
	sort.Slice(d.Failures, func(i, j int) bool { return d.Failures[i].At.After(d.Failures[j].At) })
	u.render(w, r, http.StatusOK, "overview", page{Session: se, Nav: "overview", Data: d})
}

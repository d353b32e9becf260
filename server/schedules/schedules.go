// Package schedules keeps the pipeline schedule rows and the cluster's
// CronJobs in agreement: suspend/resume and rescheduling through the admin
// API, a reconciler that repairs drift (a CronJob deleted or edited by
// hand), sync of a team's CronJobs with its effective config, and the live
// pipeline and deployment status of a team.
package schedules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/kube"
	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/provision"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
)

// Cluster is what schedules need of Kubernetes (*kube.Client).
type Cluster interface {
	Ping(ctx context.Context) error
	GetCronJob(ctx context.Context, t kube.Team, name string) (*batchv1.CronJob, error)
	ApplyCronJob(ctx context.Context, cj *batchv1.CronJob) (bool, error)
	Delete(ctx context.Context, t kube.Team, o kube.Object) (bool, error)
	GetDeployment(ctx context.Context, t kube.Team, name string) (*appsv1.Deployment, error)
	ServiceURL(name string) string
}

// TeamConfig reads a team's effective config for an admin: an impersonation
// token minted with the admin's token, then /api/v1/config/me.
type TeamConfig interface {
	ImpersonationToken(ctx context.Context, token, org, team string) (peers.Impersonation, error)
	ConfigMe(ctx context.Context, teamToken string) (map[string]any, error)
}

// Options configure a Service.
type Options struct {
	Store      *store.DB
	Locks      *store.Locks
	Cluster    Cluster // nil: no cluster
	ClusterErr error
	Config     TeamConfig
	Workloads  provision.Workloads
	Logger     *slog.Logger
	Registry   prometheus.Registerer
	Now        func() time.Time
}

// Service manages schedules.
type Service struct {
	o     Options
	log   *slog.Logger
	drift *prometheus.CounterVec
}

// New returns a Service and registers orchestrator_schedule_drift_total.
func New(o Options) (*Service, error) {
	if o.Store == nil || o.Locks == nil {
		return nil, errors.New("schedules: store and locks are required")
	}
	if o.Now == nil {
		o.Now = wallclock.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{o: o, log: o.Logger.With("component", "schedules"),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orchestrator_schedule_drift_total",
			Help: "CronJobs found out of line with their schedule rows and repaired, by kind of drift (missing, schedule, suspend).",
		}, []string{"kind"})}
	for _, k := range []string{"missing", "schedule", "suspend"} {
		s.drift.WithLabelValues(k)
	}
	if o.Registry != nil {
		if err := o.Registry.Register(s.drift); err != nil {
			return nil, fmt.Errorf("schedules: register metrics: %w", err)
		}
	}
	return s, nil
}

func (s *Service) now() time.Time { return s.o.Now().UTC() }

func (s *Service) cluster(context.Context) (Cluster, error) {
	if s.o.Cluster == nil {
		return nil, provision.NoCluster(s.o.ClusterErr)
	}
	return s.o.Cluster, nil
}

// cronJobFor is the CronJob a schedule row stands for.
func (s *Service) cronJobFor(row store.Schedule) *batchv1.CronJob {
	w := s.o.Workloads
	spec := kube.PipelineCronJobSpec{
		Team: kube.Team{OrgID: row.OrgID, TeamNodeID: row.TeamNodeID}, Name: row.CronJobName,
		Schedule: row.CronExpression, Suspend: !row.Enabled, Image: w.PipelineImage,
		ServiceAccount: w.PipelineServiceAccount, ConfigServiceURL: w.ConfigServiceURL,
	}
	switch row.Type {
	case store.ScheduleDependencyDiscovery:
		spec.Component, spec.Command = "dependency-discovery", kube.DependencyDiscoveryCommand(row.OrgID, row.TeamNodeID)
	default:
		spec.Component, spec.Command = "scheduled-ingestion", kube.PipelineCommand(row.OrgID, row.TeamNodeID)
	}
	return kube.PipelineCronJob(spec)
}

// Live is a CronJob's state in the cluster.
type Live struct {
	Exists           bool       `json:"exists"`
	Schedule         string     `json:"schedule,omitempty"`
	Suspended        bool       `json:"suspended"`
	LastScheduleTime *time.Time `json:"last_schedule_time,omitempty"`
	ActiveJobs       int        `json:"active_jobs"`
}

func liveOf(cj *batchv1.CronJob) Live {
	if cj == nil {
		return Live{}
	}
	l := Live{Exists: cj.DeletionTimestamp == nil, Schedule: cj.Spec.Schedule,
		Suspended: cj.Spec.Suspend != nil && *cj.Spec.Suspend, ActiveJobs: len(cj.Status.Active)}
	if t := cj.Status.LastScheduleTime; t != nil {
		at := t.UTC()
		l.LastScheduleTime = &at
	}
	return l
}

// View is a schedule row with its CronJob's live state.
type View struct {
	ID             string     `json:"id"`
	OrgID          string     `json:"org_id"`
	TeamNodeID     string     `json:"team_node_id"`
	ScheduleType   string     `json:"schedule_type"`
	CronExpression string     `json:"cron_expression"`
	CronJobName    string     `json:"k8s_cronjob_name"`
	Enabled        bool       `json:"enabled"`
	LastRunAt      *time.Time `json:"last_run_at,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	CronJob        *Live      `json:"cronjob,omitempty"`
	ClusterError   string     `json:"cluster_error,omitempty"`
}

func (s *Service) view(ctx context.Context, row store.Schedule) View {
	v := View{ID: row.ID, OrgID: row.OrgID, TeamNodeID: row.TeamNodeID, ScheduleType: row.Type,
		CronExpression: row.CronExpression, CronJobName: row.CronJobName, Enabled: row.Enabled,
		LastRunAt: row.LastRunAt, CreatedAt: row.CreatedAt, UpdatedAt: row.UpdatedAt}
	c, err := s.cluster(ctx)
	if err == nil {
		var cj *batchv1.CronJob
		if cj, err = c.GetCronJob(ctx, kube.Team{OrgID: row.OrgID, TeamNodeID: row.TeamNodeID}, row.CronJobName); err == nil {
			live := liveOf(cj)
			v.CronJob = &live
		}
	}
	if err != nil {
		v.ClusterError = err.Error()
	}
	return v
}

// List returns the schedule rows (of one org/team if given) with live state.
func (s *Service) List(ctx context.Context, org, team string) ([]View, error) {
	rows, err := s.o.Store.ListSchedules(ctx, org, team)
	if err != nil {
		return nil, err
	}
	out := make([]View, 0, len(rows))
	for _, row := range rows {
		out = append(out, s.view(ctx, row))
	}
	return out, nil
}

// Get returns one schedule row (for scoping checks).
func (s *Service) Get(ctx context.Context, id string) (store.Schedule, error) {
	if _, err := uuid.Parse(id); err != nil {
		return store.Schedule{}, apperr.New(apperr.NotFound, "schedule_not_found", "no schedule %q", id)
	}
	row, err := s.o.Store.GetScheduleByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Schedule{}, apperr.New(apperr.NotFound, "schedule_not_found", "no schedule %q", id)
	}
	return row, err
}

// Patch suspends/resumes (enabled) and/or reschedules (cron) a schedule:
// the CronJob first, then the row, under the team's lock.
func (s *Service) Patch(ctx context.Context, row store.Schedule, enabled *bool, cron *string) (View, error) {
	if enabled == nil && cron == nil {
		return View{}, apperr.New(apperr.Invalid, "empty_patch", "send enabled and/or cron_expression")
	}
	if cron != nil {
		if err := provision.ValidateCron(*cron); err != nil {
			return View{}, err
		}
		row.CronExpression = *cron
	}
	if enabled != nil {
		row.Enabled = *enabled
	}
	c, err := s.cluster(ctx)
	if err != nil {
		return View{}, err
	}
	release, err := provision.LockTeam(ctx, s.o.Locks, row.OrgID, row.TeamNodeID)
	if err != nil {
		return View{}, err
	}
	defer release()
	if _, err := c.ApplyCronJob(ctx, s.cronJobFor(row)); err != nil {
		return View{}, provision.ClusterError(err)
	}
	if err := s.o.Store.UpdateSchedule(ctx, row.ID, row.CronExpression, row.Enabled, s.now()); err != nil {
		return View{}, err
	}
	s.log.Info("schedule changed", "schedule_id", row.ID, "cronjob", row.CronJobName, "enabled", row.Enabled, "cron", row.CronExpression)
	row, err = s.o.Store.GetScheduleByID(ctx, row.ID)
	if err != nil {
		return View{}, err
	}
	return s.view(ctx, row), nil
}

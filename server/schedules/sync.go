package schedules

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/kube"
	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/provision"
	"github.com/incidentfox/orchestrator-edge/store"
)

// SyncResult says what sync did to each of a team's CronJobs.
type SyncResult struct {
	OrgID      string       `json:"org_id"`
	TeamNodeID string       `json:"team_node_id"`
	CronJobs   []SyncAction `json:"cronjobs"`
}

// SyncAction is one CronJob's outcome: created, updated, deleted or absent.
type SyncAction struct {
	ScheduleType string `json:"schedule_type"`
	Name         string `json:"name"`
	Action       string `json:"action"`
	Schedule     string `json:"schedule,omitempty"`
}

// configured reads {enabled, schedule} of one section of the config.
func configured(cfg map[string]any, section string) (bool, string) {
	sec, _ := cfg[section].(map[string]any)
	enabled, _ := sec["enabled"].(bool)
	schedule, _ := sec["schedule"].(string)
	return enabled, schedule
}

// Sync makes the team's CronJobs follow its effective config:
// ai_pipeline.{enabled,schedule} for ingestion and
// dependency_discovery.{enabled,schedule} for dependency discovery.
// Enabled with a schedule → created or updated (and its row); otherwise →
// deleted (and its row disabled).
func (s *Service) Sync(ctx context.Context, adminToken, org, team string) (SyncResult, error) {
	res := SyncResult{OrgID: org, TeamNodeID: team, CronJobs: []SyncAction{}}
	c, err := s.cluster(ctx)
	if err != nil {
		return res, err
	}
	imp, err := s.o.Config.ImpersonationToken(ctx, adminToken, org, team)
	if err != nil {
		return res, err
	}
	cfg, err := s.o.Config.ConfigMe(ctx, imp.Token)
	if err != nil {
		return res, err
	}
	release, err := provision.LockTeam(ctx, s.o.Locks, org, team)
	if err != nil {
		return res, err
	}
	defer release()
	for _, sec := range []struct{ section, typ, name string }{
		{"ai_pipeline", store.ScheduleIngestion, kube.CronJobName(org, team)},
		{"dependency_discovery", store.ScheduleDependencyDiscovery, kube.DependencyDiscoveryCronJobName(org, team)},
	} {
		enabled, schedule := configured(cfg, sec.section)
		act := SyncAction{ScheduleType: sec.typ, Name: sec.name, Schedule: schedule}
		if enabled && schedule != "" {
			if err := provision.ValidateCron(schedule); err != nil {
				return res, apperr.New(apperr.BadGateway, "invalid_team_config", "%s.schedule in the team's config: %s", sec.section, apperr.Message(err))
			}
			row, err := s.o.Store.UpsertSchedule(ctx, store.Schedule{ID: uuid.NewString(), OrgID: org, TeamNodeID: team,
				Type: sec.typ, CronExpression: schedule, CronJobName: sec.name, Enabled: true, UpdatedAt: s.now()})
			if errors.Is(err, store.ErrConflict) {
				return res, provision.NameConflict(kube.KindCronJob, sec.name)
			}
			if err != nil {
				return res, err
			}
			created, err := c.ApplyCronJob(ctx, s.cronJobFor(row))
			if err != nil {
				return res, provision.ClusterError(err)
			}
			act.Action = "updated"
			if created {
				act.Action = "created"
			}
		} else {
			existed, err := c.Delete(ctx, kube.Team{OrgID: org, TeamNodeID: team}, kube.Object{Kind: kube.KindCronJob, Name: sec.name})
			if err != nil {
				return res, provision.ClusterError(err)
			}
			act.Action = "absent"
			if existed {
				act.Action = "deleted"
			}
			if err := s.o.Store.SetScheduleEnabled(ctx, org, team, sec.typ, false, s.now()); err != nil && !errors.Is(err, store.ErrNotFound) {
				return res, err
			}
		}
		res.CronJobs = append(res.CronJobs, act)
	}
	s.log.Info("team CronJobs synced with config", "org_id", org, "team_node_id", team, "result", res.CronJobs)
	return res, nil
}

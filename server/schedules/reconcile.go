package schedules

import (
	"context"
	"time"

	"github.com/incidentfox/orchestrator-edge/kube"
	"github.com/incidentfox/orchestrator-edge/store"
	batchv1 "k8s.io/api/batch/v1"
)

// Report says what one reconcile pass found and did.
type Report struct {
	Checked  int      `json:"checked"`
	Repaired []string `json:"repaired"` // "CronJob/name: missing|schedule|suspend"
	Skipped  []string `json:"skipped"`  // rows that could not be checked, with why
}

// Reconcile holds every schedule row against the cluster: a CronJob that is
// missing is recreated, one whose schedule or suspension differs is put
// back; each drift is logged and counted. last_run_at follows the CronJob's
// status.lastScheduleTime. A team being provisioned is skipped this pass.
func (s *Service) Reconcile(ctx context.Context) (Report, error) {
	rep := Report{Repaired: []string{}, Skipped: []string{}}
	c, err := s.cluster(ctx)
	if err != nil {
		return rep, err
	}
	rows, err := s.o.Store.ListSchedules(ctx, "", "")
	if err != nil {
		return rep, err
	}
	for _, row := range rows {
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		rep.Checked++
		if err := s.reconcileRow(ctx, c, row, &rep); err != nil {
			rep.Skipped = append(rep.Skipped, row.CronJobName+": "+err.Error())
		}
	}
	return rep, nil
}

func (s *Service) reconcileRow(ctx context.Context, c Cluster, row store.Schedule, rep *Report) error {
	lockCtx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	release, err := s.o.Locks.Acquire(lockCtx, store.TeamLockKey(row.OrgID, row.TeamNodeID))
	if err != nil {
		return err
	}
	defer release()
	cj, err := c.GetCronJob(ctx, kube.Team{OrgID: row.OrgID, TeamNodeID: row.TeamNodeID}, row.CronJobName)
	if err != nil {
		return err
	}
	var drift []string
	switch {
	case cj == nil || cj.DeletionTimestamp != nil:
		drift = append(drift, "missing")
	default:
		if cj.Spec.Schedule != row.CronExpression {
			drift = append(drift, "schedule")
		}
		if suspended(cj) != !row.Enabled {
			drift = append(drift, "suspend")
		}
		if t := cj.Status.LastScheduleTime; t != nil && (row.LastRunAt == nil || !row.LastRunAt.Equal(t.UTC().Truncate(time.Microsecond))) {
			if err := s.o.Store.SetLastRunAt(ctx, row.ID, t.UTC()); err != nil {
				return err
			}
		}
	}
	if len(drift) == 0 {
		return nil
	}
	if cj != nil && cj.DeletionTimestamp != nil {
		// Being deleted: it must go before it can be made again.
		return nil
	}
	if _, err := c.ApplyCronJob(ctx, s.cronJobFor(row)); err != nil {
		return err
	}
	for _, d := range drift {
		s.drift.WithLabelValues(d).Inc()
		rep.Repaired = append(rep.Repaired, "CronJob/"+row.CronJobName+": "+d)
	}
	s.log.Warn("CronJob drift repaired", "cronjob", row.CronJobName, "org_id", row.OrgID,
		"team_node_id", row.TeamNodeID, "drift", drift)
	return nil
}

func suspended(cj *batchv1.CronJob) bool { return cj.Spec.Suspend != nil && *cj.Spec.Suspend }

// RunReconciler reconciles at start and then every interval until ctx ends.
func (s *Service) RunReconciler(ctx context.Context, interval time.Duration) {
	for {
		rep, err := s.Reconcile(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("schedule reconcile did not run", "error", err.Error())
		case len(rep.Repaired) > 0 || len(rep.Skipped) > 0:
			s.log.Info("schedule reconcile", "checked", rep.Checked, "repaired", len(rep.Repaired), "skipped", len(rep.Skipped))
		case err == nil:
			s.log.Debug("schedule reconcile", "checked", rep.Checked, "repaired", 0, "skipped", 0)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

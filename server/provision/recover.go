package provision

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/incidentfox/orchestrator-edge/kube"
	"github.com/incidentfox/orchestrator-edge/store"
)

// Recover finishes runs that a crash left "running": each is marked failed
// ("interrupted"), and what a provisioning run had recorded as created is
// undone where possible (cluster objects and schedule rows always; issued
// tokens when a recovery admin token is configured). A run is settled only
// while nobody holds its team's lock: a live run holds it for its whole
// course, on this replica or another (SPEC §13), so only runs whose process
// died are touched. A run is taken for dead only once it has not moved for
// grace: a new run records itself a moment before it takes its team's lock,
// and may wait up to the lock bound for it. It runs at start (grace 0 on a
// database of one's own: every running run there was this process's) and
// then on the leader.
func (s *Service) Recover(ctx context.Context, grace time.Duration) (int, error) {
	runs, err := s.opts.Store.RunsWithStatus(ctx, store.RunRunning)
	if err != nil {
		return 0, fmt.Errorf("provision: find interrupted runs: %w", err)
	}
	settled := 0
	for _, r := range runs {
		if grace > 0 && r.UpdatedAt.After(s.now().Add(-grace)) {
			continue
		}
		held, err := s.opts.Locks.TryAcquire(ctx, store.TeamLockKey(r.OrgID, r.TeamNodeID))
		if err != nil {
			return settled, fmt.Errorf("provision: lock team of run %s: %w", r.ID, err)
		}
		if held == nil {
			continue // a live run holds the team
		}
		n, err := s.settle(ctx, r.ID)
		held.Release()
		settled += n
		if err != nil {
			return settled, err
		}
	}
	return settled, nil
}

// settle marks one interrupted run failed, undoing what it created, if it
// is still running (the lock was free, so nobody else is finishing it).
func (s *Service) settle(ctx context.Context, id string) (int, error) {
	r, err := s.opts.Store.GetRun(ctx, id)
	if err != nil || r.Status != store.RunRunning {
		return 0, err
	}
	var steps []Step
	if err := json.Unmarshal(r.Steps, &steps); err != nil {
		steps = nil
	}
	tl := &timeline{steps: steps, now: s.now}
	for i := range tl.steps {
		if tl.steps[i].Status == StepRunning {
			tl.steps[i].Status, tl.steps[i].Error = StepFailed, "interrupted: the orchestrator stopped during this step"
		}
	}
	if r.Kind == store.RunKindProvision {
		s.undoRecorded(ctx, r, tl)
	}
	tl.skipRest()
	body := Response{ProvisioningRunID: r.ID, Status: store.RunFailed, OrgID: r.OrgID, TeamNodeID: r.TeamNodeID,
		Steps: tl.steps, Error: "interrupted", Detail: "the orchestrator stopped while this run was in progress; send the request again to converge"}
	if err := s.finish(ctx, r, tl.steps, store.RunFailed, http.StatusInternalServerError, body,
		fmt.Errorf("interrupted: the orchestrator stopped while the run was in progress")); err != nil {
		return 0, err
	}
	s.log.Warn("marked interrupted run failed", "run_id", r.ID, "kind", r.Kind, "org_id", r.OrgID, "team_node_id", r.TeamNodeID)
	return 1, nil
}

// undoRecorded compensates what an interrupted run's steps say they created.
func (s *Service) undoRecorded(ctx context.Context, r store.Run, tl *timeline) {
	var undos []undo
	for _, st := range tl.steps {
		for _, what := range st.Created {
			undos = append(undos, undo{step: st.Name, what: what, fn: s.undoFor(r, what)})
		}
	}
	p := &provisionRun{s: s, record: r, tl: tl, undos: undos}
	p.compensate(ctx)
}

// undoFor turns a Created entry back into its compensation.
func (s *Service) undoFor(r store.Run, what string) func(context.Context) error {
	if id, ok := strings.CutPrefix(what, "token "); ok {
		return func(ctx context.Context) error {
			if s.opts.RecoveryToken == "" {
				return fmt.Errorf("no admin token to revoke it with (set ORCHESTRATOR_INTERNAL_ADMIN_TOKEN)")
			}
			return s.opts.Config.RevokeToken(ctx, s.opts.RecoveryToken, r.OrgID, r.TeamNodeID, id)
		}
	}
	if typ, ok := strings.CutPrefix(what, "schedule "); ok {
		return func(ctx context.Context) error { return s.opts.Store.DeleteSchedule(ctx, r.OrgID, r.TeamNodeID, typ) }
	}
	kind, name, _ := strings.Cut(what, "/")
	return func(ctx context.Context) error {
		if err := s.requireCluster(ctx); err != nil {
			return err
		}
		_, err := s.opts.Cluster.Delete(ctx, kube.Team{OrgID: r.OrgID, TeamNodeID: r.TeamNodeID}, kube.Object{Kind: kind, Name: name})
		return err
	}
}

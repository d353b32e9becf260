package provision

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/incidentfox/orchestrator-edge/kube"
	"github.com/incidentfox/orchestrator-edge/store"
)

// Recover finishes runs that a crash left "running": each is marked failed
// ("interrupted"), and what a provisioning run had recorded as created is
// undone where possible (cluster objects and schedule rows always; issued
// tokens when a recovery admin token is configured). It runs once at start,
// before the server takes requests.
func (s *Service) Recover(ctx context.Context) (int, error) {
	runs, err := s.opts.Store.RunsWithStatus(ctx, store.RunRunning)
	if err != nil {
		return 0, fmt.Errorf("provision: find interrupted runs: %w", err)
	}
	for _, r := range runs {
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
	}
	return len(runs), nil
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

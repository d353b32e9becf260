package provision

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	"github.com/incidentfox/orchestrator-edge/kube"
	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/store"
)

// Deprovisioning step names.
const (
	StepDiscover         = "discover"
	StepDeleteResources  = "delete_k8s_resources"
	StepRevokeTokens     = "revoke_tokens"
	StepClearRouting     = "clear_routing"
	StepDisableSchedules = "disable_schedules"
	StepRemoveSchedules  = "remove_schedules"
)

// DeprovisionRequest is the body of POST /api/v1/admin/deprovision/team.
type DeprovisionRequest struct {
	OrgID      string `json:"org_id"`
	TeamNodeID string `json:"team_node_id"`
	// DeleteK8sResources defaults to true.
	DeleteK8sResources *bool `json:"delete_k8s_resources,omitempty"`
	RevokeTokens       bool  `json:"revoke_tokens"`
	ClearRouting       bool  `json:"clear_routing"`
	DryRun             bool  `json:"dry_run"`
	// ExpectPlan, when set (the admin page's confirm of a plan it showed),
	// is the PlanDigest the plan made under the team lock must have: if the
	// plan changed since, nothing is carried out and the run is recorded as
	// the dry run of the new plan (PlanChanged) — one run either way, never
	// a dry run before the real one.
	ExpectPlan string `json:"-"`
}

// PlanDigest names a plan, so that a confirm carries out the plan the admin
// saw and not one that changed since.
func PlanDigest(plan []Action) string {
	b, _ := json.Marshal(plan)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// IsDryRun says whether a run only planned a deprovisioning (it changed
// nothing, and a failed one is no failure of the team's resources).
func IsDryRun(run store.Run) bool {
	if run.Kind != store.RunKindDeprovision {
		return false
	}
	var resp struct {
		DryRun bool `json:"dry_run"`
	}
	return json.Unmarshal(run.Response, &resp) == nil && resp.DryRun
}

// Normalize validates the request and fills defaults.
func (r *DeprovisionRequest) Normalize() error {
	if err := checkIDs(r.OrgID, r.TeamNodeID); err != nil {
		return err
	}
	if r.DeleteK8sResources == nil {
		t := true
		r.DeleteK8sResources = &t
	}
	return nil
}

// Action is one entry of a deprovisioning plan.
type Action struct {
	Action       string `json:"action"` // delete | revoke_token | clear_routing | disable_schedule | remove_schedule
	Kind         string `json:"kind,omitempty"`
	Name         string `json:"name,omitempty"`
	TokenID      string `json:"token_id,omitempty"`
	ScheduleType string `json:"schedule_type,omitempty"`
}

// DeprovisionResponse is the body of a deprovisioning answer (SPEC §5).
type DeprovisionResponse struct {
	ProvisioningRunID string   `json:"provisioning_run_id"`
	OK                bool     `json:"ok"`
	DryRun            bool     `json:"dry_run"`
	Plan              []Action `json:"plan"`
	// Deleted is what was carried out, in plan order.
	Deleted []Action `json:"deleted"`
	Errors  []string `json:"errors"`
	Steps   []Step   `json:"steps"`
	// PlanChanged: ExpectPlan was not the plan, so this run only planned.
	PlanChanged bool `json:"-"`
}

// Deprovision removes a team's resources, or with DryRun only plans it.
// Repeating it is harmless: what is gone is simply not in the next plan.
func (s *Service) Deprovision(ctx context.Context, caller Caller, req DeprovisionRequest) (Result, error) {
	now := s.now()
	record := store.Run{ID: newID(), Kind: store.RunKindDeprovision, OrgID: req.OrgID, TeamNodeID: req.TeamNodeID,
		Status: store.RunRunning, Actor: caller.Actor, CreatedAt: now, UpdatedAt: now}
	tl := newTimeline(s.now, StepDiscover, StepDeleteResources, StepRevokeTokens, StepClearRouting, StepDisableSchedules, StepRemoveSchedules)
	record.Steps, _ = json.Marshal(tl.steps)
	if _, err := s.opts.Store.StartRun(ctx, record, now); err != nil {
		return Result{}, err
	}
	resp := DeprovisionResponse{ProvisioningRunID: record.ID, DryRun: req.DryRun, Plan: []Action{}, Deleted: []Action{}, Errors: []string{}}
	var firstErr error
	fail := func(err error) {
		resp.Errors = append(resp.Errors, errorText(err))
		if firstErr == nil {
			firstErr = err
		}
	}

	release, err := s.lock(ctx, req.OrgID, req.TeamNodeID)
	if err != nil {
		fail(err)
	} else {
		defer release()
		step := tl.start(StepDiscover)
		resp.Plan, err = s.plan(ctx, caller, req)
		if err != nil {
			tl.fail(step, err)
			fail(err)
		} else {
			if req.ExpectPlan != "" && PlanDigest(resp.Plan) != req.ExpectPlan {
				req.DryRun, resp.DryRun, resp.PlanChanged = true, true, true
			}
			tl.finish(step, StepSucceeded, planSummary(resp.Plan, req.DryRun))
			if !req.DryRun {
				s.progress(ctx, record, tl.steps)
				s.carryOut(ctx, caller, req, resp.Plan, tl, &resp.Deleted, fail)
			}
		}
	}
	tl.skipRest()
	resp.Steps, resp.OK = tl.steps, firstErr == nil
	status, httpStatus := store.RunSucceeded, http.StatusOK
	if firstErr != nil {
		status, httpStatus = store.RunFailed, classify(firstErr).Kind.Status()
	}
	if err := s.finish(ctx, record, tl.steps, status, httpStatus, resp, firstErr); err != nil {
		return Result{}, err
	}
	return Result{HTTPStatus: httpStatus, RunID: record.ID, Body: resp}, nil
}

// plan lists what deprovisioning would do, found from the cluster (by
// label), the Config Service and the schedule rows.
func (s *Service) plan(ctx context.Context, caller Caller, req DeprovisionRequest) ([]Action, error) {
	plan := []Action{}
	if *req.DeleteK8sResources {
		if err := s.requireCluster(ctx); err != nil {
			return nil, err
		}
		objs, err := s.opts.Cluster.TeamObjects(ctx, req.OrgID, req.TeamNodeID)
		if err != nil {
			return nil, ClusterError(err)
		}
		for _, o := range objs {
			plan = append(plan, Action{Action: "delete", Kind: o.Kind, Name: o.Name})
		}
	}
	if req.RevokeTokens {
		tokens, err := s.opts.Config.ListTokens(ctx, caller.Token, req.OrgID, req.TeamNodeID)
		if err != nil {
			return nil, err
		}
		for _, t := range tokens {
			if t.Active() {
				plan = append(plan, Action{Action: "revoke_token", TokenID: t.TokenID})
			}
		}
	}
	if req.ClearRouting {
		plan = append(plan, Action{Action: "clear_routing"})
	}
	schedules, err := s.opts.Store.TeamSchedules(ctx, req.OrgID, req.TeamNodeID)
	if err != nil {
		return nil, err
	}
	for _, sc := range schedules {
		switch {
		case *req.DeleteK8sResources:
			// The CronJob goes, so its row goes too: a row left behind
			// would have the reconciler make the CronJob again as drift.
			plan = append(plan, Action{Action: "remove_schedule", ScheduleType: sc.Type, Name: sc.CronJobName})
		case sc.Enabled:
			// The CronJob stays: suspended, as an admin's suspend would.
			plan = append(plan, Action{Action: "disable_schedule", ScheduleType: sc.Type})
		}
	}
	return plan, nil
}

func planSummary(plan []Action, dry bool) string {
	verb := "planned"
	if dry {
		verb = "dry run: planned"
	}
	return verb + " " + itoa(len(plan)) + " action(s)"
}

func itoa(n int) string { return strconv.Itoa(n) }

// carryOut executes the plan, step by step, going on past errors so that
// as much as possible is removed; each error is reported.
func (s *Service) carryOut(ctx context.Context, caller Caller, req DeprovisionRequest, plan []Action, tl *timeline, done *[]Action, fail func(error)) {
	byStep := map[string][]Action{}
	for _, a := range plan {
		switch a.Action {
		case "delete":
			byStep[StepDeleteResources] = append(byStep[StepDeleteResources], a)
		case "revoke_token":
			byStep[StepRevokeTokens] = append(byStep[StepRevokeTokens], a)
		case "clear_routing":
			byStep[StepClearRouting] = append(byStep[StepClearRouting], a)
		case "disable_schedule":
			byStep[StepDisableSchedules] = append(byStep[StepDisableSchedules], a)
		case "remove_schedule":
			byStep[StepRemoveSchedules] = append(byStep[StepRemoveSchedules], a)
		}
	}
	for _, name := range []string{StepDeleteResources, StepRevokeTokens, StepClearRouting, StepDisableSchedules, StepRemoveSchedules} {
		actions := byStep[name]
		if len(actions) == 0 {
			continue
		}
		step := tl.start(name)
		var stepErr error
		for _, a := range actions {
			if a.Action == "remove_schedule" && !slices.ContainsFunc(*done, func(d Action) bool {
				return d.Action == "delete" && d.Kind == kube.KindCronJob && d.Name == a.Name
			}) && slices.ContainsFunc(plan, func(d Action) bool {
				return d.Action == "delete" && d.Kind == kube.KindCronJob && d.Name == a.Name
			}) {
				// Its CronJob could not be deleted: the row stays, disabled,
				// so the CronJob is still managed (suspended), and a repeat
				// of the request finishes the job.
				a = Action{Action: "disable_schedule", ScheduleType: a.ScheduleType}
				err := s.do(ctx, caller, req, a)
				if err == nil {
					err = apperr.New(apperr.BadGateway, "schedule_kept", "the %s schedule row was kept (disabled): its CronJob could not be deleted", a.ScheduleType)
				}
				fail(err)
				step.Error = joinErr(step.Error, errorText(err))
				stepErr = cmp.Or(stepErr, err)
				continue
			}
			if err := s.do(ctx, caller, req, a); err != nil {
				fail(err)
				step.Error = joinErr(step.Error, errorText(err))
				if stepErr == nil {
					stepErr = err
				}
				continue
			}
			*done = append(*done, a)
		}
		if stepErr != nil {
			tl.finish(step, StepFailed, "")
		} else {
			tl.finish(step, StepSucceeded, itoa(len(actions))+" done")
		}
	}
}

// do carries out one action.
func (s *Service) do(ctx context.Context, caller Caller, req DeprovisionRequest, a Action) error {
	switch a.Action {
	case "delete":
		if _, err := s.opts.Cluster.Delete(ctx, kube.Team{OrgID: req.OrgID, TeamNodeID: req.TeamNodeID}, kube.Object{Kind: a.Kind, Name: a.Name}); err != nil {
			return ClusterError(err)
		}
		return nil
	case "revoke_token":
		return s.opts.Config.RevokeToken(ctx, caller.Token, req.OrgID, req.TeamNodeID, a.TokenID)
	case "clear_routing":
		empty := &Routing{}
		for _, l := range empty.lists() {
			*l.list = []string{}
		}
		return s.opts.Config.PatchConfig(ctx, caller.Token, req.OrgID, req.TeamNodeID, map[string]any{"routing": empty.patch()})
	case "disable_schedule":
		return s.opts.Store.SetScheduleEnabled(ctx, req.OrgID, req.TeamNodeID, a.ScheduleType, false, s.now())
	case "remove_schedule":
		return s.opts.Store.DeleteSchedule(ctx, req.OrgID, req.TeamNodeID, a.ScheduleType)
	}
	return apperr.New(apperr.Internal, "internal_error", "unknown action %q", a.Action)
}

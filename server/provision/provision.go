package provision

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/incidentfox/orchestrator-edge/kube"
	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/store"
)

// Caller is the admin a workflow acts for.
type Caller struct {
	// Token is forwarded to the peers; never stored or logged.
	Token string
	Actor string
}

// undo is one compensation: what a run created and how to remove it.
type undo struct {
	step string
	what string // e.g. "token tok_1", "CronJob ai-pipeline-acme-sre"
	fn   func(ctx context.Context) error
}

// provisionRun is the state of one provisioning run while it executes.
type provisionRun struct {
	s      *Service
	req    Request
	caller Caller
	record store.Run
	tl     *timeline
	undos  []undo
	token  string // the team token issued by this run, if any
}

// compensationTimeout bounds the undoing of a failed run.
const compensationTimeout = time.Minute

// Provision runs the provisioning workflow for a normalized request.
func (s *Service) Provision(ctx context.Context, caller Caller, req Request) (Result, error) {
	now := s.now()
	record := store.Run{
		ID: newID(), Kind: store.RunKindProvision, OrgID: req.OrgID, TeamNodeID: req.TeamNodeID,
		IdempotencyKey: req.IdempotencyKey, Fingerprint: req.fingerprint(), Status: store.RunRunning,
		Actor: caller.Actor, CreatedAt: now, UpdatedAt: now,
	}
	tl := newTimeline(s.now, provisionSteps...)
	record.Steps, _ = json.Marshal(tl.steps)

	existing, err := s.opts.Store.StartRun(ctx, record, now.Add(-s.opts.KeyTTL))
	if err != nil {
		return Result{}, err
	}
	if existing != nil {
		return s.replay(*existing, record.Fingerprint)
	}

	p := &provisionRun{s: s, req: req, caller: caller, record: record, tl: tl}
	return p.execute(ctx), nil
}

// replay answers a request whose idempotency key was seen before.
func (s *Service) replay(old store.Run, fingerprint string) (Result, error) {
	switch {
	case old.Fingerprint != fingerprint:
		return Result{}, apperr.New(apperr.Unprocessable, "idempotency_key_reused",
			"this idempotency key was used for a different request (run %s)", old.ID)
	case old.Status == store.RunRunning:
		return Result{}, apperr.New(apperr.Conflict, "idempotency_key_in_use",
			"a request with this idempotency key is still running (run %s)", old.ID)
	}
	return Result{HTTPStatus: old.HTTPStatus, RunID: old.ID, Body: old.Response, Replayed: true}, nil
}

func (p *provisionRun) execute(ctx context.Context) Result {
	s := p.s
	err := p.run(ctx)
	status, httpStatus := store.RunSucceeded, http.StatusOK
	resp := Response{ProvisioningRunID: p.record.ID, OrgID: p.req.OrgID, TeamNodeID: p.req.TeamNodeID}
	if err != nil {
		e := classify(err)
		status, httpStatus = store.RunFailed, e.Kind.Status()
		resp.Error, resp.Detail = e.Code, e.Detail
		p.compensate(ctx)
		s.log.Warn("provisioning failed", "run_id", p.record.ID, "org_id", p.req.OrgID,
			"team_node_id", p.req.TeamNodeID, "code", e.Code, "error", err)
	}
	p.tl.skipRest()
	resp.Status, resp.Steps = status, p.tl.steps
	// The stored body never holds the token.
	if serr := s.finish(ctx, p.record, p.tl.steps, status, httpStatus, resp, err); serr != nil && err == nil {
		httpStatus = http.StatusInternalServerError
		resp.Status, resp.Error, resp.Detail = store.RunFailed, "internal_error", "the run succeeded but its record could not be stored"
	}
	if err == nil {
		resp.TeamToken = p.token
	}
	return Result{HTTPStatus: httpStatus, RunID: p.record.ID, Body: resp}
}

// classify maps any failure of a step to the product's vocabulary.
func classify(err error) *apperr.Error {
	if e, ok := apperr.As(err); ok {
		return e
	}
	if errors.Is(err, kube.ErrNotAvailable) {
		return ClusterError(err)
	}
	return apperr.Wrap(err, apperr.Internal, "internal_error", "%v", err)
}

func (p *provisionRun) needsCluster() bool {
	return p.req.CreatePipelineSchedule || p.req.DeploymentMode == ModeDedicated
}

// run executes the steps in order and stops at the first failure.
func (p *provisionRun) run(ctx context.Context) error {
	s := p.s
	release, err := s.lock(ctx, p.req.OrgID, p.req.TeamNodeID)
	if err != nil {
		return err
	}
	defer release()

	// Fail before touching the Config Service if the cluster is needed and
	// absent: no partial state is left behind.
	if p.needsCluster() {
		if err := s.requireCluster(ctx); err != nil {
			return err
		}
	}
	steps := []struct {
		name string
		fn   func(context.Context, *Step) error
	}{
		{StepRoutingCheck, p.routingCheck},
		{StepTeamNode, p.teamNode},
		{StepRoutingConfig, p.routingConfig},
		{StepTeamToken, p.teamToken},
		{StepPipelineCronJob, p.pipelineCronJob},
		{StepPipelineBootstrap, p.pipelineBootstrap},
		{StepDedicatedAgent, p.dedicatedAgent},
	}
	for _, st := range steps {
		step := p.tl.start(st.name)
		if err := st.fn(ctx, step); err != nil {
			p.tl.fail(step, err)
			s.progress(ctx, p.record, p.tl.steps)
			return err
		}
		if step.Status == StepRunning {
			p.tl.finish(step, StepSucceeded, step.Detail)
		}
		s.progress(ctx, p.record, p.tl.steps)
	}
	return nil
}

func (p *provisionRun) remember(step *Step, what string, fn func(context.Context) error) {
	step.Created = append(step.Created, what)
	p.undos = append(p.undos, undo{step: step.Name, what: what, fn: fn})
}

// maxConflictsNamed bounds how many conflicting identifiers one answer names.
const maxConflictsNamed = 10

// routingCheck refuses, before anything is written, any identifier of the
// request that the Config Service's routing lookup — the dispatcher's own
// call, one identifier at a time — already resolves to another team (SPEC
// §18): otherwise an admin of one org could take another org's Slack
// channel or PagerDuty service and read its events. The answer names the
// identifiers, never the team that owns them.
func (p *provisionRun) routingCheck(ctx context.Context, step *Step) error {
	if p.req.Routing == nil {
		p.tl.finish(step, StepSkipped, "no routing given")
		return nil
	}
	token := cmp.Or(p.s.opts.LookupToken, p.caller.Token)
	var taken []string
	checked := 0
	for _, l := range p.req.Routing.lists() {
		for _, v := range *l.list {
			r, err := p.s.opts.Config.RoutingLookup(ctx, token, map[string]string{l.identifier: v})
			if err != nil {
				return err
			}
			checked++
			if r.Found && (r.OrgID != p.req.OrgID || r.TeamNodeID != p.req.TeamNodeID) {
				taken = append(taken, l.identifier+" "+strconv.Quote(v))
			}
		}
	}
	if len(taken) > 0 {
		named := taken[:min(len(taken), maxConflictsNamed)]
		more := ""
		if len(taken) > len(named) {
			more = fmt.Sprintf(" and %d more", len(taken)-len(named))
		}
		return apperr.New(apperr.Conflict, "routing_conflict",
			"already routed to another team: %s%s; an identifier belongs to one team (remove it there first)",
			strings.Join(named, ", "), more)
	}
	step.Detail = fmt.Sprintf("%d identifiers checked: none routed to another team", checked)
	return nil
}

func (p *provisionRun) teamNode(ctx context.Context, step *Step) error {
	cs, tok, org, team := p.s.opts.Config, p.caller.Token, p.req.OrgID, p.req.TeamNodeID
	exists, err := cs.NodeExists(ctx, tok, org, team)
	if err != nil {
		return err
	}
	if exists {
		step.Detail = "team node exists"
		return nil
	}
	if err := cs.CreateNode(ctx, tok, org, team, org, "team"); err != nil {
		return err
	}
	step.Detail = "team node created"
	return nil
}

func (p *provisionRun) routingConfig(ctx context.Context, step *Step) error {
	patch := map[string]any{"ai_pipeline": map[string]any{"team_id": p.req.TeamNodeID}}
	if p.req.Routing != nil {
		if r := p.req.Routing.patch(); len(r) > 0 {
			patch["routing"] = r
		}
	}
	if err := p.s.opts.Config.PatchConfig(ctx, p.caller.Token, p.req.OrgID, p.req.TeamNodeID, patch); err != nil {
		return err
	}
	keys := make([]string, 0, len(patch))
	for k := range patch {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	step.Detail = "config patched: " + strings.Join(keys, ", ")
	return nil
}

func (p *provisionRun) teamToken(ctx context.Context, step *Step) error {
	cs, tok, org, team := p.s.opts.Config, p.caller.Token, p.req.OrgID, p.req.TeamNodeID
	list, err := cs.ListTokens(ctx, tok, org, team)
	if err != nil {
		return err
	}
	for _, t := range list {
		if t.Active() {
			step.Detail = fmt.Sprintf("team already has an active token (%s); none issued", t.TokenID)
			return nil
		}
	}
	issued, err := cs.IssueToken(ctx, tok, org, team)
	if err != nil {
		return err
	}
	p.token = issued.Token
	id := issued.TokenID()
	step.Detail = "issued token " + id
	p.remember(step, "token "+id, func(ctx context.Context) error {
		return cs.RevokeToken(ctx, tok, org, team, id)
	})
	return nil
}

func (p *provisionRun) pipelineCronJob(ctx context.Context, step *Step) error {
	if !p.req.CreatePipelineSchedule {
		p.tl.finish(step, StepSkipped, "no schedule asked for")
		return nil
	}
	s, org, team := p.s, p.req.OrgID, p.req.TeamNodeID
	owner := kube.Team{OrgID: org, TeamNodeID: team}
	name := kube.CronJobName(org, team)
	// The schedule row's name is unique: check it before any cluster write,
	// so a name another team's row holds is refused with nothing changed.
	if other, err := s.opts.Store.ScheduleByCronJobName(ctx, name); err == nil {
		if other.OrgID != org || other.TeamNodeID != team || other.Type != store.ScheduleIngestion {
			return NameConflict(kube.KindCronJob, name)
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	old, err := s.opts.Store.GetSchedule(ctx, org, team, store.ScheduleIngestion)
	rowExisted := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	w := s.opts.Workloads
	cj := kube.PipelineCronJob(kube.PipelineCronJobSpec{
		Team: owner, Name: name, Component: "scheduled-ingestion",
		Schedule: p.req.PipelineSchedule, Image: w.PipelineImage, ServiceAccount: w.PipelineServiceAccount,
		ConfigServiceURL: w.ConfigServiceURL, Command: kube.PipelineCommand(org, team),
	})
	created, err := s.opts.Cluster.ApplyCronJob(ctx, cj)
	if err != nil {
		return ClusterError(err)
	}
	if created {
		p.remember(step, kube.KindCronJob+"/"+name, func(ctx context.Context) error {
			_, err := s.opts.Cluster.Delete(ctx, owner, kube.Object{Kind: kube.KindCronJob, Name: name})
			return err
		})
	}
	if _, err := s.opts.Store.UpsertSchedule(ctx, store.Schedule{
		ID: newID(), OrgID: org, TeamNodeID: team, Type: store.ScheduleIngestion,
		CronExpression: p.req.PipelineSchedule, CronJobName: name, Enabled: true, UpdatedAt: s.now(),
	}); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return NameConflict(kube.KindCronJob, name)
		}
		return err
	}
	if !rowExisted {
		p.remember(step, "schedule "+store.ScheduleIngestion, func(ctx context.Context) error {
			return s.opts.Store.DeleteSchedule(ctx, org, team, store.ScheduleIngestion)
		})
	}
	verb := "updated"
	if created {
		verb = "created"
	}
	step.Detail = fmt.Sprintf("CronJob %s %s (%s)", name, verb, p.req.PipelineSchedule)
	// A CronJob named by an earlier release's naming rule is this team's
	// too: once the new one is in place, the old one goes.
	if rowExisted && old.CronJobName != name {
		if _, err := s.opts.Cluster.Delete(ctx, owner, kube.Object{Kind: kube.KindCronJob, Name: old.CronJobName}); err != nil {
			return ClusterError(err)
		}
		step.Detail += "; replaced " + old.CronJobName
	}
	return nil
}

func (p *provisionRun) pipelineBootstrap(ctx context.Context, step *Step) error {
	if err := p.s.opts.Pipeline.Bootstrap(ctx, p.caller.Token, p.req.TeamNodeID); err != nil {
		return err
	}
	step.Detail = "pipeline bootstrapped"
	return nil
}

func (p *provisionRun) dedicatedAgent(ctx context.Context, step *Step) error {
	if p.req.DeploymentMode != ModeDedicated {
		p.tl.finish(step, StepSkipped, "shared deployment mode")
		return nil
	}
	s, org, team := p.s, p.req.OrgID, p.req.TeamNodeID
	w := s.opts.Workloads
	owner := kube.Team{OrgID: org, TeamNodeID: team}
	name := kube.DedicatedAgentName(org, team)
	dep, svc := kube.DedicatedAgent(kube.AgentSpec{
		Team: owner, Name: name, Image: w.AgentImage,
		ServiceAccount: w.AgentServiceAccount, ConfigServiceURL: w.ConfigServiceURL,
	})
	for _, o := range []struct {
		kind  string
		apply func() (bool, error)
	}{
		{kube.KindDeployment, func() (bool, error) { return s.opts.Cluster.ApplyDeployment(ctx, dep) }},
		{kube.KindService, func() (bool, error) { return s.opts.Cluster.ApplyService(ctx, svc) }},
	} {
		created, err := o.apply()
		if err != nil {
			return ClusterError(err)
		}
		if created {
			obj := kube.Object{Kind: o.kind, Name: name}
			p.remember(step, o.kind+"/"+name, func(ctx context.Context) error {
				_, err := s.opts.Cluster.Delete(ctx, owner, obj)
				return err
			})
		}
	}
	url := s.opts.Cluster.ServiceURL(name)
	if err := s.opts.Config.PatchConfig(ctx, p.caller.Token, org, team,
		map[string]any{"agent": map[string]any{"dedicated_service_url": url}}); err != nil {
		return err
	}
	step.Detail = "dedicated agent at " + url
	return nil
}

// compensate undoes, newest first, what this run created, and records each
// compensation in the steps. It runs even if the caller has gone away.
func (p *provisionRun) compensate(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), compensationTimeout)
	defer cancel()
	failed := map[string][]string{}
	for i := len(p.undos) - 1; i >= 0; i-- {
		u := p.undos[i]
		step := p.tl.start("compensate_" + u.step)
		if err := u.fn(ctx); err != nil {
			failed[u.step] = append(failed[u.step], u.what)
			step.Error = joinErr(step.Error, fmt.Sprintf("could not undo %s: %s", u.what, errorText(err)))
			p.s.log.Error("compensation failed: orphan left behind", "run_id", p.record.ID, "what", u.what, "error", err)
		} else {
			step.Detail = joinErr(step.Detail, "undid "+u.what)
		}
		if step.Error != "" {
			p.tl.finish(step, StepFailed, step.Detail)
		} else {
			p.tl.finish(step, StepSucceeded, step.Detail)
		}
	}
	// A step whose creations are all undone is "compensated".
	for i := range p.tl.steps {
		st := &p.tl.steps[i]
		if len(st.Created) > 0 && len(failed[st.Name]) == 0 && st.Status == StepSucceeded {
			st.Status = StepCompensated
		}
	}
	p.token = ""
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

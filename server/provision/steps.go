package provision

import (
	"time"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
)

// Step statuses.
const (
	StepPending     = "pending"
	StepRunning     = "running"
	StepSucceeded   = "succeeded"
	StepFailed      = "failed"
	StepSkipped     = "skipped"
	StepCompensated = "compensated"
)

// Provisioning step names, in order (SPEC §4; routing_check is SPEC §18's
// ownership check, before anything is written).
const (
	StepRoutingCheck      = "routing_check"
	StepTeamNode          = "team_node"
	StepRoutingConfig     = "routing_config"
	StepTeamToken         = "team_token"
	StepPipelineCronJob   = "pipeline_cronjob"
	StepPipelineBootstrap = "pipeline_bootstrap"
	StepDedicatedAgent    = "dedicated_agent"
)

var provisionSteps = []string{StepRoutingCheck, StepTeamNode, StepRoutingConfig, StepTeamToken, StepPipelineCronJob, StepPipelineBootstrap, StepDedicatedAgent}

// Step is one entry of a run's timeline.
type Step struct {
	Name       string     `json:"name"`
	Status     string     `json:"status"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Detail     string     `json:"detail,omitempty"`
	Error      string     `json:"error,omitempty"`
	// Created names what this step created (token ids, Kind/name), so that
	// compensation, also after a crash, knows what to undo.
	Created []string `json:"created,omitempty"`
}

// timeline is the steps of a run being executed.
type timeline struct {
	steps []Step
	now   func() time.Time
}

func newTimeline(now func() time.Time, names ...string) *timeline {
	t := &timeline{now: now}
	for _, n := range names {
		t.steps = append(t.steps, Step{Name: n, Status: StepPending})
	}
	return t
}

func (t *timeline) step(name string) *Step {
	for i := range t.steps {
		if t.steps[i].Name == name {
			return &t.steps[i]
		}
	}
	t.steps = append(t.steps, Step{Name: name, Status: StepPending})
	return &t.steps[len(t.steps)-1]
}

func (t *timeline) start(name string) *Step {
	s := t.step(name)
	now := t.now()
	s.Status, s.StartedAt = StepRunning, &now
	return s
}

func (t *timeline) finish(s *Step, status, detail string) {
	now := t.now()
	s.Status, s.FinishedAt, s.Detail = status, &now, detail
}

func (t *timeline) fail(s *Step, err error) {
	now := t.now()
	s.Status, s.FinishedAt, s.Error = StepFailed, &now, errorText(err)
}

// skipRest marks every step not yet run as skipped.
func (t *timeline) skipRest() {
	for i := range t.steps {
		if t.steps[i].Status == StepPending {
			t.steps[i].Status = StepSkipped
		}
	}
}

// errorText is "code: detail" for product errors, the message otherwise.
func errorText(err error) string {
	if e, ok := apperr.As(err); ok {
		return e.Code + ": " + e.Detail
	}
	return err.Error()
}

package schedules

import (
	"context"

	"github.com/incidentfox/orchestrator-edge/kube"
	"github.com/incidentfox/orchestrator-edge/server/provision"
)

// DeploymentStatus is a team's agent deployment as the cluster has it.
type DeploymentStatus struct {
	OrgID         string `json:"org_id"`
	TeamNodeID    string `json:"team_node_id"`
	Mode          string `json:"mode"` // dedicated | shared
	Name          string `json:"name,omitempty"`
	Replicas      int32  `json:"replicas"`
	ReadyReplicas int32  `json:"ready_replicas"`
	ServiceURL    string `json:"service_url,omitempty"`
}

// Deployment reads the team's dedicated agent, if any.
func (s *Service) Deployment(ctx context.Context, org, team string) (DeploymentStatus, error) {
	st := DeploymentStatus{OrgID: org, TeamNodeID: team, Mode: "shared"}
	c, err := s.cluster(ctx)
	if err != nil {
		return st, err
	}
	name := kube.DedicatedAgentName(org, team)
	d, err := c.GetDeployment(ctx, kube.Team{OrgID: org, TeamNodeID: team}, name)
	if err != nil {
		return st, provision.ClusterError(err)
	}
	if d == nil || d.DeletionTimestamp != nil {
		return st, nil
	}
	st.Mode, st.Name, st.ReadyReplicas, st.ServiceURL = "dedicated", name, d.Status.ReadyReplicas, c.ServiceURL(name)
	if d.Spec.Replicas != nil {
		st.Replicas = *d.Spec.Replicas
	}
	return st, nil
}

// PipelineStatus is a team's pipeline schedules with their live state.
type PipelineStatus struct {
	OrgID      string `json:"org_id"`
	TeamNodeID string `json:"team_node_id"`
	Schedules  []View `json:"schedules"`
}

// Pipeline reads the team's schedules and their CronJobs.
func (s *Service) Pipeline(ctx context.Context, org, team string) (PipelineStatus, error) {
	st := PipelineStatus{OrgID: org, TeamNodeID: team, Schedules: []View{}}
	if _, err := s.cluster(ctx); err != nil {
		return st, err
	}
	rows, err := s.o.Store.ListSchedules(ctx, org, team)
	if err != nil {
		return st, err
	}
	for _, row := range rows {
		st.Schedules = append(st.Schedules, s.view(ctx, row))
	}
	return st, nil
}

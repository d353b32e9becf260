package kube

import (
	"context"
	"fmt"
	"maps"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var getOpts = metav1.GetOptions{}

// Team names the team an object belongs to.
type Team struct {
	OrgID      string
	TeamNodeID string
}

func (t Team) meta(name, app, component string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: name,
		Labels: map[string]string{
			LabelName:      app,
			LabelComponent: component,
			LabelManagedBy: ManagedBy,
			LabelTeamHash:  TeamHash(t.OrgID, t.TeamNodeID),
		},
		Annotations: map[string]string{AnnotationOrg: t.OrgID, AnnotationTeam: t.TeamNodeID},
	}
}

func (t Team) env(configServiceURL string) []corev1.EnvVar {
	return []corev1.EnvVar{
		{Name: "ORG_ID", Value: t.OrgID},
		{Name: "TEAM_NODE_ID", Value: t.TeamNodeID},
		{Name: "CONFIG_SERVICE_URL", Value: configServiceURL},
	}
}

// PipelineCronJobSpec is what a pipeline CronJob is made of.
type PipelineCronJobSpec struct {
	Team
	Name             string // CronJobName or DependencyDiscoveryCronJobName
	Component        string // e.g. "scheduled-ingestion"
	Schedule         string
	Suspend          bool
	Image            string
	ServiceAccount   string
	ConfigServiceURL string
	// Command is the container command; PipelineCommand gives the default.
	Command []string
}

// PipelineCommand is the scheduled ingestion command of SPEC §4.
func PipelineCommand(org, team string) []string {
	return []string{"python", "-m", "ai_learning_pipeline", "run-scheduled", "--team-id", team, "--org-id", org}
}

// PipelineCronJob builds the CronJob of SPEC §4.
func PipelineCronJob(s PipelineCronJobSpec) *batchv1.CronJob {
	meta := s.meta(s.Name, "ai-pipeline", s.Component)
	suspend := s.Suspend
	return &batchv1.CronJob{
		ObjectMeta: meta,
		Spec: batchv1.CronJobSpec{
			Schedule:                   s.Schedule,
			Suspend:                    &suspend,
			ConcurrencyPolicy:          batchv1.ForbidConcurrent,
			SuccessfulJobsHistoryLimit: ptr[int32](3),
			FailedJobsHistoryLimit:     ptr[int32](3),
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(meta.Labels), Annotations: maps.Clone(meta.Annotations)},
				Spec: batchv1.JobSpec{
					TTLSecondsAfterFinished: ptr[int32](86400),
					BackoffLimit:            ptr[int32](2),
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(meta.Labels), Annotations: maps.Clone(meta.Annotations)},
						Spec: corev1.PodSpec{
							RestartPolicy:      corev1.RestartPolicyNever,
							ServiceAccountName: s.ServiceAccount,
							Containers: []corev1.Container{{
								Name:    "ai-pipeline",
								Image:   s.Image,
								Command: s.Command,
								Env:     s.env(s.ConfigServiceURL),
								Resources: corev1.ResourceRequirements{
									Requests: corev1.ResourceList{
										corev1.ResourceCPU:    resource.MustParse("500m"),
										corev1.ResourceMemory: resource.MustParse("1Gi"),
									},
									Limits: corev1.ResourceList{
										corev1.ResourceCPU:    resource.MustParse("2"),
										corev1.ResourceMemory: resource.MustParse("4Gi"),
									},
								},
							}},
						},
					},
				},
			},
		},
	}
}

// AgentSpec is what a dedicated agent is made of.
type AgentSpec struct {
	Team
	Name             string
	Image            string
	ServiceAccount   string
	ConfigServiceURL string
}

// AgentPort is the dedicated agent's HTTP port.
const AgentPort = 8000

// DedicatedAgent builds the Deployment and Service of SPEC §4.
func DedicatedAgent(s AgentSpec) (*appsv1.Deployment, *corev1.Service) {
	meta := s.meta(s.Name, "agent", "dedicated-agent")
	selector := map[string]string{LabelName: "agent", LabelTeamHash: meta.Labels[LabelTeamHash]}
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: "/health", Port: intstr.FromInt32(AgentPort)}}}
	dep := &appsv1.Deployment{
		ObjectMeta: meta,
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(meta.Labels), Annotations: maps.Clone(meta.Annotations)},
				Spec: corev1.PodSpec{
					ServiceAccountName: s.ServiceAccount,
					Containers: []corev1.Container{{
						Name:           "agent",
						Image:          s.Image,
						Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: AgentPort}},
						Env:            append(s.env(s.ConfigServiceURL), corev1.EnvVar{Name: "DEPLOYMENT_MODE", Value: "dedicated"}),
						ReadinessProbe: probe,
						LivenessProbe:  probe,
					}},
				},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: s.meta(s.Name, "agent", "dedicated-agent"),
		Spec: corev1.ServiceSpec{
			Selector: selector,
			Ports:    []corev1.ServicePort{{Name: "http", Port: AgentPort, TargetPort: intstr.FromInt32(AgentPort)}},
		},
	}
	return dep, svc
}

// ServiceURL is the in-cluster URL of a Service in the client's namespace.
func (c *Client) ServiceURL(name string) string {
	return fmt.Sprintf("http://%s.%s.svc.cluster.local:%d", name, c.ns, AgentPort)
}

func ptr[T any](v T) *T { return &v }

// typedAPI is the part of a client-go typed client that apply needs.
type typedAPI[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*T, error)
	Create(ctx context.Context, obj *T, opts metav1.CreateOptions) (*T, error)
	Update(ctx context.Context, obj *T, opts metav1.UpdateOptions) (*T, error)
}

// apply creates want, or copies what the orchestrator owns of it onto the
// existing object (keeping what the API server assigned) and updates it. It
// reports whether it created the object.
func apply[T any](ctx context.Context, api typedAPI[T], name string, want *T, onto func(have, want *T)) (bool, error) {
	have, err := api.Get(ctx, name, getOpts)
	if apierrors.IsNotFound(err) {
		_, err = api.Create(ctx, want, metav1.CreateOptions{})
		return err == nil, wrap(err)
	}
	if err != nil {
		return false, wrap(err)
	}
	onto(have, want)
	_, err = api.Update(ctx, have, metav1.UpdateOptions{})
	return false, wrap(err)
}

// ApplyCronJob creates the CronJob or updates its spec, labels and
// annotations. It reports whether it created it.
func (c *Client) ApplyCronJob(ctx context.Context, want *batchv1.CronJob) (created bool, err error) {
	return apply(ctx, c.cs.BatchV1().CronJobs(c.ns), want.Name, want, func(have, want *batchv1.CronJob) {
		have.Labels, have.Annotations, have.Spec = want.Labels, want.Annotations, want.Spec
	})
}

// GetCronJob returns a CronJob, or (nil, nil) if it does not exist.
func (c *Client) GetCronJob(ctx context.Context, name string) (*batchv1.CronJob, error) {
	cj, err := c.cs.BatchV1().CronJobs(c.ns).Get(ctx, name, getOpts)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return cj, wrap(err)
}

// ApplyDeployment creates the Deployment or updates it.
func (c *Client) ApplyDeployment(ctx context.Context, want *appsv1.Deployment) (created bool, err error) {
	return apply(ctx, c.cs.AppsV1().Deployments(c.ns), want.Name, want, func(have, want *appsv1.Deployment) {
		have.Labels, have.Annotations, have.Spec = want.Labels, want.Annotations, want.Spec
	})
}

// ApplyService creates the Service or updates it, keeping the fields the
// API server assigns (cluster IP).
func (c *Client) ApplyService(ctx context.Context, want *corev1.Service) (created bool, err error) {
	return apply(ctx, c.cs.CoreV1().Services(c.ns), want.Name, want, func(have, want *corev1.Service) {
		have.Labels, have.Annotations = want.Labels, want.Annotations
		have.Spec.Selector, have.Spec.Ports = want.Spec.Selector, want.Spec.Ports
	})
}

// Object kinds the orchestrator manages.
const (
	KindCronJob    = "CronJob"
	KindDeployment = "Deployment"
	KindService    = "Service"
)

// Object names one managed object.
type Object struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// Delete removes an object with foreground propagation (its Jobs or Pods go
// first). It reports whether the object existed.
func (c *Client) Delete(ctx context.Context, o Object) (existed bool, err error) {
	policy := metav1.DeletePropagationForeground
	opts := metav1.DeleteOptions{PropagationPolicy: &policy}
	switch o.Kind {
	case KindCronJob:
		err = c.cs.BatchV1().CronJobs(c.ns).Delete(ctx, o.Name, opts)
	case KindDeployment:
		err = c.cs.AppsV1().Deployments(c.ns).Delete(ctx, o.Name, opts)
	case KindService:
		err = c.cs.CoreV1().Services(c.ns).Delete(ctx, o.Name, opts)
	default:
		return false, fmt.Errorf("kube: unknown kind %q", o.Kind)
	}
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, wrap(err)
}

// TeamObjects lists the team's CronJobs, Deployments and Services by label
// (not by computed names, so renamed or hand-made ones are found too).
// Objects already being deleted are left out. The order is stable.
func (c *Client) TeamObjects(ctx context.Context, org, team string) ([]Object, error) {
	sel := metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + ManagedBy + "," + LabelTeamHash + "=" + TeamHash(org, team)}
	var out []Object
	cjs, err := c.cs.BatchV1().CronJobs(c.ns).List(ctx, sel)
	if err != nil {
		return nil, wrap(err)
	}
	for _, o := range cjs.Items {
		if o.DeletionTimestamp == nil && owns(o.Annotations, org, team) {
			out = append(out, Object{KindCronJob, o.Name})
		}
	}
	deps, err := c.cs.AppsV1().Deployments(c.ns).List(ctx, sel)
	if err != nil {
		return nil, wrap(err)
	}
	for _, o := range deps.Items {
		if o.DeletionTimestamp == nil && owns(o.Annotations, org, team) {
			out = append(out, Object{KindDeployment, o.Name})
		}
	}
	svcs, err := c.cs.CoreV1().Services(c.ns).List(ctx, sel)
	if err != nil {
		return nil, wrap(err)
	}
	for _, o := range svcs.Items {
		if o.DeletionTimestamp == nil && owns(o.Annotations, org, team) {
			out = append(out, Object{KindService, o.Name})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// owns double-checks the exact ids behind the label's hash.
func owns(ann map[string]string, org, team string) bool {
	return ann[AnnotationOrg] == org && ann[AnnotationTeam] == team
}

// GetDeployment returns a Deployment, or (nil, nil) if it does not exist.
func (c *Client) GetDeployment(ctx context.Context, name string) (*appsv1.Deployment, error) {
	d, err := c.cs.AppsV1().Deployments(c.ns).Get(ctx, name, getOpts)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return d, wrap(err)
}

// DependencyDiscoveryCommand is the dependency discovery command.
func DependencyDiscoveryCommand(org, team string) []string {
	return []string{"python", "-m", "ai_learning_pipeline", "discover-dependencies", "--team-id", team, "--org-id", org}
}

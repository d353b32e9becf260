package kube

import (
	"context"
	"errors"
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

// typedAPI is the part of a client-go typed client that apply and remove
// need.
type typedAPI[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*T, error)
	Create(ctx context.Context, obj *T, opts metav1.CreateOptions) (*T, error)
	Update(ctx context.Context, obj *T, opts metav1.UpdateOptions) (*T, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// object is a pointer to a typed Kubernetes object.
type object[T any] interface {
	*T
	metav1.Object
}

// ErrNameConflict means an object of the name exists and is not the team's:
// the orchestrator neither updates nor deletes it.
var ErrNameConflict = errors.New("the name is taken by an object of another owner")

// ConflictError names the object whose name is taken. It never says whose it
// is: that may be another org's.
type ConflictError struct{ Kind, Name string }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s %s already exists and does not belong to this team", e.Kind, e.Name)
}

// Unwrap makes errors.Is(err, ErrNameConflict) hold.
func (e *ConflictError) Unwrap() error { return ErrNameConflict }

// Owns reports whether obj is the orchestrator's object of team t: the
// managed-by label and the exact ids in the annotations (the team-hash
// label alone could be copied onto anything).
func Owns(obj metav1.Object, t Team) bool {
	return obj.GetLabels()[LabelManagedBy] == ManagedBy && owns(obj.GetAnnotations(), t.OrgID, t.TeamNodeID)
}

// teamOf reads the team an object the orchestrator built belongs to.
func teamOf(obj metav1.Object) Team {
	a := obj.GetAnnotations()
	return Team{OrgID: a[AnnotationOrg], TeamNodeID: a[AnnotationTeam]}
}

// apply creates want, or — only if the existing object is the same team's —
// copies what the orchestrator owns of it onto that object (keeping what the
// API server assigned) and updates it. An object of the name that is not the
// team's is left alone: *ConflictError. It reports whether it created the
// object.
func apply[T any, P object[T]](ctx context.Context, api typedAPI[T], kind string, want P, onto func(have, want *T)) (bool, error) {
	name := want.GetName()
	have, err := api.Get(ctx, name, getOpts)
	if apierrors.IsNotFound(err) {
		_, err = api.Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) { // someone else was faster
			return false, &ConflictError{kind, name}
		}
		return err == nil, wrap(err)
	}
	if err != nil {
		return false, wrap(err)
	}
	if t := teamOf(want); t.OrgID == "" || !Owns(P(have), t) {
		return false, &ConflictError{kind, name}
	}
	onto(have, want)
	// The update carries have's resourceVersion: if the object changed since
	// the check, the API server refuses it instead of overwriting.
	_, err = api.Update(ctx, have, metav1.UpdateOptions{})
	return false, wrap(err)
}

// remove deletes the named object with foreground propagation, only if it
// is team t's, and only the very object checked (UID precondition). It
// reports whether the object existed.
func remove[T any, P object[T]](ctx context.Context, api typedAPI[T], t Team, kind, name string) (bool, error) {
	have, err := api.Get(ctx, name, getOpts)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, wrap(err)
	}
	if !Owns(P(have), t) {
		return false, &ConflictError{kind, name}
	}
	uid := P(have).GetUID()
	policy := metav1.DeletePropagationForeground
	err = api.Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: &uid}})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case apierrors.IsConflict(err): // replaced since the check
		return false, &ConflictError{kind, name}
	}
	return err == nil, wrap(err)
}

// ApplyCronJob creates the CronJob or updates its spec, labels and
// annotations if it is the same team's. It reports whether it created it.
func (c *Client) ApplyCronJob(ctx context.Context, want *batchv1.CronJob) (created bool, err error) {
	return apply(ctx, c.cs.BatchV1().CronJobs(c.ns), KindCronJob, want, func(have, want *batchv1.CronJob) {
		have.Labels, have.Annotations, have.Spec = want.Labels, want.Annotations, want.Spec
	})
}

// get reads team t's object: (nil, nil) if there is none, *ConflictError
// if an object of the name is not the team's (nothing of it is returned).
func get[T any, P object[T]](ctx context.Context, api typedAPI[T], t Team, kind, name string) (P, error) {
	have, err := api.Get(ctx, name, getOpts)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap(err)
	}
	if !Owns(P(have), t) {
		return nil, &ConflictError{kind, name}
	}
	return have, nil
}

// GetCronJob returns team t's CronJob, or (nil, nil) if it does not exist.
func (c *Client) GetCronJob(ctx context.Context, t Team, name string) (*batchv1.CronJob, error) {
	return get(ctx, c.cs.BatchV1().CronJobs(c.ns), t, KindCronJob, name)
}

// ApplyDeployment creates the Deployment or updates it if it is the same
// team's.
func (c *Client) ApplyDeployment(ctx context.Context, want *appsv1.Deployment) (created bool, err error) {
	return apply(ctx, c.cs.AppsV1().Deployments(c.ns), KindDeployment, want, func(have, want *appsv1.Deployment) {
		have.Labels, have.Annotations, have.Spec = want.Labels, want.Annotations, want.Spec
	})
}

// ApplyService creates the Service or updates it if it is the same team's,
// keeping the fields the API server assigns (cluster IP).
func (c *Client) ApplyService(ctx context.Context, want *corev1.Service) (created bool, err error) {
	return apply(ctx, c.cs.CoreV1().Services(c.ns), KindService, want, func(have, want *corev1.Service) {
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

// Delete removes team t's object with foreground propagation (its Jobs or
// Pods go first), never by name alone: an object of the name that is not the
// team's is left alone (*ConflictError). It reports whether the object
// existed.
func (c *Client) Delete(ctx context.Context, t Team, o Object) (existed bool, err error) {
	switch o.Kind {
	case KindCronJob:
		return remove(ctx, c.cs.BatchV1().CronJobs(c.ns), t, o.Kind, o.Name)
	case KindDeployment:
		return remove(ctx, c.cs.AppsV1().Deployments(c.ns), t, o.Kind, o.Name)
	case KindService:
		return remove(ctx, c.cs.CoreV1().Services(c.ns), t, o.Kind, o.Name)
	}
	return false, fmt.Errorf("kube: unknown kind %q", o.Kind)
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

// GetDeployment returns team t's Deployment, or (nil, nil) if it does not
// exist.
func (c *Client) GetDeployment(ctx context.Context, t Team, name string) (*appsv1.Deployment, error) {
	return get(ctx, c.cs.AppsV1().Deployments(c.ns), t, KindDeployment, name)
}

// DependencyDiscoveryCommand is the dependency discovery command.
func DependencyDiscoveryCommand(org, team string) []string {
	return []string{"python", "-m", "ai_learning_pipeline", "discover-dependencies", "--team-id", team, "--org-id", org}
}

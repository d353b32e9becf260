package provision

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/kube"
	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// ConfigService is what the workflows need of the Config Service.
type ConfigService interface {
	NodeExists(ctx context.Context, token, org, node string) (bool, error)
	CreateNode(ctx context.Context, token, org, node, parent, nodeType string) error
	PatchConfig(ctx context.Context, token, org, node string, patch map[string]any) error
	ListTokens(ctx context.Context, token, org, team string) ([]peers.TeamToken, error)
	IssueToken(ctx context.Context, token, org, team string) (peers.IssuedToken, error)
	RevokeToken(ctx context.Context, token, org, team, tokenID string) error
	RoutingLookup(ctx context.Context, token string, identifiers map[string]string) (peers.Route, error)
}

// Pipeline is what the workflows need of the AI Pipeline.
type Pipeline interface {
	Bootstrap(ctx context.Context, token, team string) error
}

// Cluster is what the workflows need of Kubernetes (*kube.Client).
type Cluster interface {
	Ping(ctx context.Context) error
	Namespace() string
	ServiceURL(name string) string
	ApplyCronJob(ctx context.Context, cj *batchv1.CronJob) (bool, error)
	ApplyDeployment(ctx context.Context, d *appsv1.Deployment) (bool, error)
	ApplyService(ctx context.Context, s *corev1.Service) (bool, error)
	Delete(ctx context.Context, t kube.Team, o kube.Object) (bool, error)
	TeamObjects(ctx context.Context, org, team string) ([]kube.Object, error)
}

// Workloads are the images and accounts of the objects provisioning creates.
type Workloads struct {
	PipelineImage          string
	PipelineServiceAccount string
	AgentImage             string
	AgentServiceAccount    string
	ConfigServiceURL       string
}

// Options configure a Service.
type Options struct {
	Store    *store.DB
	Locks    *store.Locks
	Config   ConfigService
	Pipeline Pipeline
	// Cluster is nil when no cluster is configured; ClusterErr says why.
	Cluster    Cluster
	ClusterErr error
	Workloads  Workloads
	// KeyTTL is how long an idempotency key holds (at least 24 h).
	KeyTTL time.Duration
	// RecoveryToken, if set, is the admin token used to revoke tokens that
	// runs interrupted by a crash had issued.
	RecoveryToken string
	// LookupToken is the token of the routing ownership check's lookups:
	// the dispatcher's own (ORCHESTRATOR_INTERNAL_ADMIN_TOKEN), so the check
	// sees what dispatch would see. Empty: the caller's token.
	LookupToken string
	Logger      *slog.Logger
	Registry    prometheus.Registerer
	Now         func() time.Time
}

// Service runs provisioning workflows.
type Service struct {
	opts Options
	log  *slog.Logger
	runs *prometheus.CounterVec
}

// New returns a Service and registers orchestrator_provisioning_runs_total.
func New(o Options) (*Service, error) {
	if o.Store == nil || o.Locks == nil || o.Config == nil || o.Pipeline == nil {
		return nil, errors.New("provision: store, locks, config service and pipeline are required")
	}
	if o.Now == nil {
		o.Now = wallclock.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.KeyTTL < 24*time.Hour {
		o.KeyTTL = 24 * time.Hour
	}
	runs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orchestrator_provisioning_runs_total",
		Help: "Provisioning and deprovisioning runs by kind and final status.",
	}, []string{"kind", "status"})
	for _, k := range []string{store.RunKindProvision, store.RunKindDeprovision} {
		for _, st := range []string{store.RunSucceeded, store.RunFailed} {
			runs.WithLabelValues(k, st)
		}
	}
	if o.Registry != nil {
		if err := o.Registry.Register(runs); err != nil {
			return nil, fmt.Errorf("provision: register metrics: %w", err)
		}
	}
	return &Service{opts: o, log: o.Logger.With("component", "provision"), runs: runs}, nil
}

// Result is the outcome of a workflow request as the HTTP layer sends it.
type Result struct {
	HTTPStatus int
	RunID      string
	Body       any
	// Replayed is true when Body is a stored response for a repeated key.
	Replayed bool
}

// Response is the body of a provisioning answer (SPEC §4).
type Response struct {
	ProvisioningRunID string `json:"provisioning_run_id"`
	Status            string `json:"status"`
	OrgID             string `json:"org_id"`
	TeamNodeID        string `json:"team_node_id"`
	// TeamToken is present once, in the live answer of the run that issued
	// it; it is never stored, so replays do not carry it.
	TeamToken string `json:"team_token,omitempty"`
	Steps     []Step `json:"steps"`
	Error     string `json:"error,omitempty"`
	Detail    string `json:"detail,omitempty"`
}

func (s *Service) now() time.Time { return s.opts.Now().UTC() }

func newID() string {
	id, err := uuid.NewRandom()
	if err != nil {
		var b [16]byte
		_, _ = rand.Read(b[:])
		id = uuid.UUID(b)
	}
	return id.String()
}

// ClusterError maps a Kubernetes failure to the product's vocabulary:
// unreachable → 503 kubernetes_not_available, a name another owner holds →
// 409 name_conflict, refused → 502 kubernetes_error.
func ClusterError(err error) *apperr.Error {
	if e, ok := apperr.As(err); ok {
		return e
	}
	var conflict *kube.ConflictError
	if errors.As(err, &conflict) {
		return NameConflict(conflict.Kind, conflict.Name)
	}
	if errors.Is(err, kube.ErrNotAvailable) {
		return apperr.Wrap(err, apperr.Unavailable, "kubernetes_not_available", "%v", err)
	}
	return apperr.Wrap(err, apperr.BadGateway, "kubernetes_error", "the Kubernetes API refused the change: %v", err)
}

// NameConflict is the error of a write refused because the object's name
// belongs to another owner. It names the object, never the owner.
func NameConflict(kind, name string) *apperr.Error {
	return apperr.Wrap(kube.ErrNameConflict, apperr.Conflict, "name_conflict",
		"%s %s already exists and does not belong to this team; nothing of it was changed", kind, name)
}

// NoCluster is the error of a step that needs a cluster when none is
// configured; reason says why (nil: not configured).
func NoCluster(reason error) *apperr.Error {
	if reason == nil {
		reason = kube.ErrNotAvailable
	}
	return apperr.Wrap(reason, apperr.Unavailable, "kubernetes_not_available", "no Kubernetes cluster is available: %v", reason)
}

// requireCluster answers whether the cluster can be used now.
func (s *Service) requireCluster(ctx context.Context) error {
	if s.opts.Cluster == nil {
		return NoCluster(s.opts.ClusterErr)
	}
	if err := s.opts.Cluster.Ping(ctx); err != nil {
		return ClusterError(err)
	}
	return nil
}

// finish stores a run's outcome and counts it.
func (s *Service) finish(ctx context.Context, run store.Run, steps []Step, status string, httpStatus int, body any, runErr error) error {
	run.Status, run.HTTPStatus, run.UpdatedAt = status, httpStatus, s.now()
	run.Steps, _ = json.Marshal(steps)
	run.Response, _ = json.Marshal(body)
	run.Error = ""
	if runErr != nil {
		run.Error = errorText(runErr)
	}
	// The outcome must be stored even if the caller has gone away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.opts.Store.SaveRun(ctx, run); err != nil {
		s.log.Error("cannot store run outcome", "run_id", run.ID, "error", err)
		return err
	}
	s.runs.WithLabelValues(run.Kind, status).Inc()
	return nil
}

// progress stores the steps so far, so that a crash leaves a readable record
// of what was done.
func (s *Service) progress(ctx context.Context, run store.Run, steps []Step) {
	run.Status, run.UpdatedAt = store.RunRunning, s.now()
	run.Steps, _ = json.Marshal(steps)
	if err := s.opts.Store.SaveRun(context.WithoutCancel(ctx), run); err != nil {
		s.log.Warn("cannot store run progress", "run_id", run.ID, "error", err)
	}
}

// lock takes the team's lock, bounded; a timeout is 409 team_busy.
func (s *Service) lock(ctx context.Context, org, team string) (func(), error) {
	return LockTeam(ctx, s.opts.Locks, org, team)
}

// LockTeam takes a team's lock within the configured bound; a timeout is
// 409 team_busy.
func LockTeam(ctx context.Context, locks *store.Locks, org, team string) (func(), error) {
	release, err := locks.Acquire(ctx, store.TeamLockKey(org, team))
	if errors.Is(err, store.ErrLockTimeout) {
		return nil, apperr.Wrap(err, apperr.Conflict, "team_busy", "another operation on team %s/%s is in progress; retry later", org, team)
	}
	return release, err
}

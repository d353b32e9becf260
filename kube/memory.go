package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// Memory is dev mode's simulated cluster: it keeps the CronJobs,
// Deployments and Services the orchestrator applies in memory, with the
// same methods as Client. Nothing is deployed anywhere. (client-go's fake
// clientset would do the same but doubles the binary.) With Persist it
// keeps them in a file too, so that a restart of dev mode finds the
// objects its database's schedules and teams refer to.
type Memory struct {
	ns   string
	mu   sync.Mutex
	cjs  map[string]*batchv1.CronJob
	deps map[string]*appsv1.Deployment
	svcs map[string]*corev1.Service
	// path, when set, is where the objects are kept (Persist).
	path string
}

// NewMemory returns an empty simulated cluster working in namespace ns.
func NewMemory(ns string) *Memory {
	return &Memory{ns: ns, cjs: map[string]*batchv1.CronJob{}, deps: map[string]*appsv1.Deployment{}, svcs: map[string]*corev1.Service{}}
}

// Ping always answers.
func (m *Memory) Ping(context.Context) error { return nil }

// Namespace is the simulated namespace.
func (m *Memory) Namespace() string { return m.ns }

// ServiceURL is the URL a real cluster would give the Service.
func (m *Memory) ServiceURL(name string) string {
	return fmt.Sprintf("http://%s.%s.svc.cluster.local:%d", name, m.ns, AgentPort)
}

func put[T any, P object[T]](m *Memory, store map[string]*T, kind string, obj P) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name := obj.GetName()
	have, existed := store[name]
	if t := teamOf(obj); existed && (t.OrgID == "" || !Owns(P(have), t)) {
		return false, &ConflictError{kind, name}
	}
	store[name] = (*T)(obj)
	return !existed, m.saveLocked()
}

// ApplyCronJob stores the CronJob unless the name is another team's; it
// reports whether it was new.
func (m *Memory) ApplyCronJob(_ context.Context, cj *batchv1.CronJob) (bool, error) {
	return put(m, m.cjs, KindCronJob, cj.DeepCopy())
}

// ApplyDeployment stores the Deployment unless the name is another team's;
// it reports whether it was new.
func (m *Memory) ApplyDeployment(_ context.Context, d *appsv1.Deployment) (bool, error) {
	return put(m, m.deps, KindDeployment, d.DeepCopy())
}

// ApplyService stores the Service unless the name is another team's; it
// reports whether it was new.
func (m *Memory) ApplyService(_ context.Context, s *corev1.Service) (bool, error) {
	return put(m, m.svcs, KindService, s.DeepCopy())
}

// GetCronJob returns team t's stored CronJob or nil, as Client does.
func (m *Memory) GetCronJob(_ context.Context, t Team, name string) (*batchv1.CronJob, error) {
	return memGet(m, m.cjs, t, KindCronJob, name)
}

// GetDeployment returns team t's stored Deployment or nil, as Client does.
func (m *Memory) GetDeployment(_ context.Context, t Team, name string) (*appsv1.Deployment, error) {
	return memGet(m, m.deps, t, KindDeployment, name)
}

// memGet reads team t's object: nil if none, *ConflictError if the name is
// another owner's. The caller gets a copy.
func memGet[T any, P interface {
	object[T]
	DeepCopy() P
}](m *Memory, store map[string]*T, t Team, kind, name string) (P, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	have, ok := store[name]
	if !ok {
		return nil, nil
	}
	if !Owns(P(have), t) {
		return nil, &ConflictError{kind, name}
	}
	return P(have).DeepCopy(), nil
}

// Delete removes team t's object, as Client does; it reports whether it
// existed.
func (m *Memory) Delete(_ context.Context, t Team, o Object) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var existed bool
	var err error
	switch o.Kind {
	case KindCronJob:
		existed, err = forget(m.cjs, t, o)
	case KindDeployment:
		existed, err = forget(m.deps, t, o)
	case KindService:
		existed, err = forget(m.svcs, t, o)
	default:
		return false, fmt.Errorf("kube: unknown kind %q", o.Kind)
	}
	if err == nil && existed {
		err = m.saveLocked()
	}
	return existed, err
}

func forget[T any, P object[T]](store map[string]*T, t Team, o Object) (bool, error) {
	have, existed := store[o.Name]
	if !existed {
		return false, nil
	}
	if !Owns(P(have), t) {
		return false, &ConflictError{o.Kind, o.Name}
	}
	delete(store, o.Name)
	return true, nil
}

// memoryState is the file Persist keeps: the objects as the API server
// would serve them.
type memoryState struct {
	CronJobs    []*batchv1.CronJob   `json:"cronJobs"`
	Deployments []*appsv1.Deployment `json:"deployments"`
	Services    []*corev1.Service    `json:"services"`
}

// Persist loads the objects kept at path, if there are any, and from then
// on writes them there after every change (atomically, mode 0600).
func (m *Memory) Persist(path string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("simulated cluster state: %w", err)
	default:
		var s memoryState
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("simulated cluster state %s: %w (delete the file to start afresh)", path, err)
		}
		for _, o := range s.CronJobs {
			m.cjs[o.Name] = o
		}
		for _, o := range s.Deployments {
			m.deps[o.Name] = o
		}
		for _, o := range s.Services {
			m.svcs[o.Name] = o
		}
	}
	m.path = path
	return m.saveLocked()
}

// saveLocked writes the objects where Persist keeps them (nothing without
// a path). The caller holds m.mu.
func (m *Memory) saveLocked() error {
	if m.path == "" {
		return nil
	}
	s := memoryState{CronJobs: sortedValues(m.cjs), Deployments: sortedValues(m.deps), Services: sortedValues(m.svcs)}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := m.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("simulated cluster state: %w", err)
	}
	if err := os.Rename(tmp, m.path); err != nil {
		return fmt.Errorf("simulated cluster state: %w", err)
	}
	return nil
}

func sortedValues[T any](m map[string]*T) []*T {
	out := make([]*T, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}

// TeamObjects lists the team's objects, as Client does, by label and ids.
func (m *Memory) TeamObjects(_ context.Context, org, team string) ([]Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	hash := TeamHash(org, team)
	var out []Object
	match := func(labels, ann map[string]string) bool {
		return labels[LabelManagedBy] == ManagedBy && labels[LabelTeamHash] == hash && owns(ann, org, team)
	}
	for n, o := range m.cjs {
		if match(o.Labels, o.Annotations) {
			out = append(out, Object{KindCronJob, n})
		}
	}
	for n, o := range m.deps {
		if match(o.Labels, o.Annotations) {
			out = append(out, Object{KindDeployment, n})
		}
	}
	for n, o := range m.svcs {
		if match(o.Labels, o.Annotations) {
			out = append(out, Object{KindService, n})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

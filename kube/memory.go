package kube

import (
	"context"
	"fmt"
	"sort"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// Memory is dev mode's simulated cluster: it keeps the CronJobs,
// Deployments and Services the orchestrator applies in memory, with the
// same methods as Client. Nothing is deployed anywhere. (client-go's fake
// clientset would do the same but doubles the binary.)
type Memory struct {
	ns   string
	mu   sync.Mutex
	cjs  map[string]*batchv1.CronJob
	deps map[string]*appsv1.Deployment
	svcs map[string]*corev1.Service
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
	return !existed, nil
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
	switch o.Kind {
	case KindCronJob:
		return forget(m.cjs, t, o)
	case KindDeployment:
		return forget(m.deps, t, o)
	case KindService:
		return forget(m.svcs, t, o)
	}
	return false, fmt.Errorf("kube: unknown kind %q", o.Kind)
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

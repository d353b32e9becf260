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

func put[T any](m *Memory, store map[string]*T, name string, obj *T) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, existed := store[name]
	store[name] = obj
	return !existed
}

// ApplyCronJob stores the CronJob; it reports whether it was new.
func (m *Memory) ApplyCronJob(_ context.Context, cj *batchv1.CronJob) (bool, error) {
	return put(m, m.cjs, cj.Name, cj.DeepCopy()), nil
}

// ApplyDeployment stores the Deployment; it reports whether it was new.
func (m *Memory) ApplyDeployment(_ context.Context, d *appsv1.Deployment) (bool, error) {
	return put(m, m.deps, d.Name, d.DeepCopy()), nil
}

// ApplyService stores the Service; it reports whether it was new.
func (m *Memory) ApplyService(_ context.Context, s *corev1.Service) (bool, error) {
	return put(m, m.svcs, s.Name, s.DeepCopy()), nil
}

// GetCronJob returns a stored CronJob or nil.
func (m *Memory) GetCronJob(_ context.Context, name string) (*batchv1.CronJob, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cj := m.cjs[name]; cj != nil {
		return cj.DeepCopy(), nil
	}
	return nil, nil
}

// GetDeployment returns a stored Deployment or nil.
func (m *Memory) GetDeployment(_ context.Context, name string) (*appsv1.Deployment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := m.deps[name]; d != nil {
		return d.DeepCopy(), nil
	}
	return nil, nil
}

// Delete removes an object; it reports whether it existed.
func (m *Memory) Delete(_ context.Context, o Object) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var existed bool
	switch o.Kind {
	case KindCronJob:
		_, existed = m.cjs[o.Name]
		delete(m.cjs, o.Name)
	case KindDeployment:
		_, existed = m.deps[o.Name]
		delete(m.deps, o.Name)
	case KindService:
		_, existed = m.svcs[o.Name]
		delete(m.svcs, o.Name)
	default:
		return false, fmt.Errorf("kube: unknown kind %q", o.Kind)
	}
	return existed, nil
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

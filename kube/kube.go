// Package kube is the orchestrator's only user of client-go: it builds the
// client, the CronJob/Deployment/Service objects of SPEC §4, and applies,
// lists and deletes them. It takes kubernetes.Interface, so the same code
// runs against client-go's fake in unit tests and a real API server in
// integration tests. It imports nothing of the product's own packages.
package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ErrNotAvailable means no cluster is configured or the API server cannot be
// reached.
var ErrNotAvailable = errors.New("kubernetes is not available")

// DefaultNamespace is used outside a pod when K8S_NAMESPACE is unset.
const DefaultNamespace = "incidentfox"

const serviceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Config finds a cluster: in-cluster first, then KUBECONFIG (or
// ~/.kube/config). It returns ErrNotAvailable when there is none.
func Config(getenv func(string) string) (*rest.Config, error) {
	if cfg, err := rest.InClusterConfig(); err == nil {
		return cfg, nil
	}
	path := getenv("KUBECONFIG")
	if path == "" {
		if home := getenv("HOME"); home != "" {
			path = filepath.Join(home, ".kube", "config")
		}
	}
	if path == "" {
		return nil, ErrNotAvailable
	}
	if _, err := os.Stat(strings.Split(path, string(os.PathListSeparator))[0]); err != nil {
		return nil, fmt.Errorf("%w: no in-cluster config and no kubeconfig at %s", ErrNotAvailable, path)
	}
	rules := &clientcmd.ClientConfigLoadingRules{Precedence: filepath.SplitList(path)}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("%w: kubeconfig %s: %v", ErrNotAvailable, path, err)
	}
	return cfg, nil
}

// Namespace resolves the namespace to work in: the configured one, else the
// pod's own, else DefaultNamespace.
func Namespace(configured string) string {
	if configured != "" {
		return configured
	}
	if b, err := os.ReadFile(serviceAccountNamespaceFile); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return DefaultNamespace
}

// Client applies and finds the orchestrator's objects in one namespace.
type Client struct {
	cs kubernetes.Interface
	ns string
}

// New returns a Client over cs working in namespace ns.
func New(cs kubernetes.Interface, ns string) *Client { return &Client{cs: cs, ns: ns} }

// NewForConfig builds a Client from a rest.Config.
func NewForConfig(cfg *rest.Config, ns string) (*Client, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return New(cs, ns), nil
}

// Namespace is the namespace the client works in.
func (c *Client) Namespace() string { return c.ns }

// Ping checks that the API server answers.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.cs.CoreV1().Namespaces().Get(ctx, c.ns, getOpts)
	if err == nil || apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
		// Answered: the server is there (RBAC may rightly forbid namespaces).
		return nil
	}
	return wrap(err)
}

// wrap marks errors that mean "the API server is not reachable".
func wrap(err error) error {
	if err == nil {
		return nil
	}
	var ue *url.Error
	var oe *net.OpError
	if errors.As(err, &ue) || errors.As(err, &oe) || errors.Is(err, context.DeadlineExceeded) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) {
		return fmt.Errorf("%w: %v", ErrNotAvailable, err)
	}
	return err
}

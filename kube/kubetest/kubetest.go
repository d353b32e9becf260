// Package kubetest runs a real kube-apiserver and etcd for integration tests,
// through controller-runtime's envtest. The binaries come from
// KUBEBUILDER_ASSETS, else from the folder hack/kube-apiserver.sh fills
// ($HOME/.cache/orchestrator-edge/k8s-VERSION); nothing is downloaded.
package kubetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// RequireEnv turns missing binaries from a skip into a failure; `make test`
// sets it.
const RequireEnv = "ORCHESTRATOR_TEST_REQUIRE_KUBE"

// Version is the kube-apiserver version the Makefile builds.
const Version = "1.37.2"

// Cluster is a running API server.
type Cluster struct {
	Config    *rest.Config
	Clientset kubernetes.Interface
	env       *envtest.Environment
}

// Start starts an API server, or returns (nil, reason) when its binaries are
// missing. Call Stop when done; a package's TestMain usually owns it.
func Start() (*Cluster, error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("no KUBEBUILDER_ASSETS and no cache dir: %w", err)
		}
		assets = filepath.Join(cache, "orchestrator-edge", "k8s-"+Version)
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			return nil, fmt.Errorf("%s not in %s (run hack/kube-apiserver.sh): %w", bin, assets, err)
		}
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start kube-apiserver: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &Cluster{Config: cfg, Clientset: cs, env: env}, nil
}

// Stop stops the API server and etcd.
func (c *Cluster) Stop() error { return c.env.Stop() }

// Namespace creates a fresh namespace for one test (deleted namespaces stay
// Terminating without a controller-manager, so none is reused).
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "test-" + hex.EncodeToString(b)
	_, err := c.Clientset.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return name
}

// Main is a TestMain helper: it starts a cluster for the package's tests
// (stored in *c), runs them and stops it. When the binaries are missing the
// tests that need the cluster skip, unless RequireEnv=1, which fails the run.
func Main(m *testing.M, c **Cluster) int {
	cl, err := Start()
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			fmt.Fprintf(os.Stderr, "kube-apiserver required (%s=1): %v\n", RequireEnv, err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "kube-apiserver not available, cluster tests skip: %v\n", err)
		return m.Run()
	}
	*c = cl
	code := m.Run()
	if err := cl.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stop kube-apiserver: %v\n", err)
	}
	return code
}

// Require skips (or, under RequireEnv, fails) a test when c is nil.
func Require(t testing.TB, c *Cluster) {
	t.Helper()
	if c == nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatal("kube-apiserver required but not started")
		}
		t.Skip("kube-apiserver not available (run hack/kube-apiserver.sh)")
	}
}

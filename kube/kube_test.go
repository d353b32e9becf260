package kube_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/incidentfox/orchestrator-edge/kube"
	"github.com/incidentfox/orchestrator-edge/kube/kubetest"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

var cluster *kubetest.Cluster

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m, &cluster)) }

func TestTeamObjectName_RulesAndUniqueness(t *testing.T) {
	long := strings.Repeat("Org.With_Chars-", 9)[:128]
	cases := []struct{ org, team, want string }{
		{"acme", "platform-sre", "ai-pipeline-acme-platform-sre"},
		{"acme", "sre", "ai-pipeline-acme-sre"},
	}
	for _, c := range cases {
		if got := kube.CronJobName(c.org, c.team); got != c.want {
			t.Errorf("CronJobName(%q,%q) = %q, want %q", c.org, c.team, got, c.want)
		}
	}
	seen := map[string][2]string{}
	pairs := [][2]string{
		{"acme", "platform-sre"}, {"Acme", "platform-sre"}, {"acme", "Platform-SRE"},
		{"a-b", "c"}, {"a", "b-c"}, {"a.b", "c"}, {"a_b", "c"}, {"a--b", "c"},
		{long, long}, {long, long[:127]}, {long[:127], long}, {long + "", long[:126] + "x"},
		{"0rg", "9"}, {"_", "."}, {"-", "-"},
	}
	for _, p := range pairs {
		for _, name := range []string{kube.CronJobName(p[0], p[1]), kube.DedicatedAgentName(p[0], p[1])} {
			max := kube.MaxServiceName
			if strings.HasPrefix(name, "ai-pipeline") {
				max = kube.MaxCronJobName
			}
			if len(name) > max {
				t.Errorf("%v: %q is %d chars, max %d", p, name, len(name), max)
			}
			if errs := validation.IsDNS1035Label(name); len(errs) > 0 {
				t.Errorf("%v: %q invalid: %v", p, name, errs)
			}
			if prev, dup := seen[name]; dup {
				t.Errorf("%q for both %v and %v", name, prev, p)
			}
			seen[name] = p
		}
	}
}

func TestCluster_ObjectsAcceptedAppliedListedDeleted(t *testing.T) {
	kubetest.Require(t, cluster)
	ctx := context.Background()
	ns := cluster.Namespace(t)
	c := kube.New(cluster.Clientset, ns)
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	org := strings.Repeat("o", 110) + "-Org"
	team := strings.Repeat("t", 110) + ".Team"
	name := kube.CronJobName(org, team)
	spec := kube.PipelineCronJobSpec{
		Team: kube.Team{OrgID: org, TeamNodeID: team}, Name: name, Component: "scheduled-ingestion",
		Schedule: "0 2 * * *", Image: "ai-pipeline:1", ServiceAccount: "ai-pipeline",
		ConfigServiceURL: "http://config:8080", Command: kube.PipelineCommand(org, team),
	}
	created, err := c.ApplyCronJob(ctx, kube.PipelineCronJob(spec))
	if err != nil || !created {
		t.Fatalf("create cronjob (%d-char name %q): created=%v err=%v", len(name), name, created, err)
	}
	spec.Schedule = "30 3 * * 1"
	created, err = c.ApplyCronJob(ctx, kube.PipelineCronJob(spec))
	if err != nil || created {
		t.Fatalf("update cronjob: created=%v err=%v", created, err)
	}
	cj, err := c.GetCronJob(ctx, spec.Team, name)
	if err != nil || cj.Spec.Schedule != "30 3 * * 1" || cj.Annotations[kube.AnnotationOrg] != org {
		t.Fatalf("cronjob after update: %v %+v", err, cj)
	}
	// The real server refuses what the fakes accept.
	bad := kube.PipelineCronJob(spec)
	bad.Name = "x" + strings.Repeat("a", 52)
	if _, err := c.ApplyCronJob(ctx, bad); !apierrors.IsInvalid(err) {
		t.Fatalf("53-char CronJob name: %v, want Invalid", err)
	}
	bad = kube.PipelineCronJob(spec)
	bad.Spec.Schedule = "not a cron"
	bad.Name = "bad-schedule"
	if _, err := c.ApplyCronJob(ctx, bad); !apierrors.IsInvalid(err) {
		t.Fatalf("bad schedule: %v, want Invalid", err)
	}

	agent := kube.DedicatedAgentName(org, team)
	dep, svc := kube.DedicatedAgent(kube.AgentSpec{Team: spec.Team, Name: agent, Image: "agent:1", ServiceAccount: "agent", ConfigServiceURL: "http://config:8080"})
	if created, err := c.ApplyDeployment(ctx, dep); err != nil || !created {
		t.Fatalf("deployment: %v %v", created, err)
	}
	if created, err := c.ApplyService(ctx, svc); err != nil || !created {
		t.Fatalf("service: %v %v", created, err)
	}
	if created, err := c.ApplyService(ctx, svc); err != nil || created {
		t.Fatalf("service update: %v %v", created, err)
	}

	// Another team's objects, and an object with a colliding label but other
	// ids, are not this team's.
	other := spec
	other.Team = kube.Team{OrgID: "acme", TeamNodeID: "other"}
	other.Name = kube.CronJobName("acme", "other")
	if _, err := c.ApplyCronJob(ctx, kube.PipelineCronJob(other)); err != nil {
		t.Fatal(err)
	}

	objs, err := c.TeamObjects(ctx, org, team)
	if err != nil {
		t.Fatal(err)
	}
	want := []kube.Object{{kube.KindCronJob, name}, {kube.KindDeployment, agent}, {kube.KindService, agent}}
	if len(objs) != 3 || objs[0] != want[0] || objs[1] != want[1] || objs[2] != want[2] {
		t.Fatalf("team objects = %v, want %v", objs, want)
	}
	for _, o := range objs {
		if existed, err := c.Delete(ctx, spec.Team, o); err != nil || !existed {
			t.Fatalf("delete %v: %v %v", o, existed, err)
		}
	}
	// Without a garbage collector, foreground deletion leaves a
	// deletionTimestamp; TeamObjects treats that as gone.
	if objs, err := c.TeamObjects(ctx, org, team); err != nil || len(objs) != 0 {
		t.Fatalf("after delete: %v %v", objs, err)
	}
	if existed, err := c.Delete(ctx, spec.Team, kube.Object{Kind: kube.KindCronJob, Name: "never-was"}); err != nil || existed {
		t.Fatalf("delete missing: %v %v", existed, err)
	}
}

func TestCluster_UnreachableIsNotAvailable(t *testing.T) {
	kubetest.Require(t, cluster)
	cfg := *cluster.Config
	cfg.Host = "https://127.0.0.1:1"
	c, err := kube.NewForConfig(&cfg, "default")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(context.Background()); !errors.Is(err, kube.ErrNotAvailable) {
		t.Fatalf("ping unreachable = %v", err)
	}
}

// No two teams share a name, whatever their ids: adversarial pairs built
// from every way of reading a hashed name as a plain one (the review's
// reproduction: org "big", team "corp-sre-<hash>" against org "big-corp",
// team "sre"), and a fixed-seed sweep of ids made of the characters that
// sanitizing folds together, at lengths around the truncation point.
func TestTeamObjectName_NoTwoTeamsShareAName(t *testing.T) {
	names := []struct {
		name string
		fn   func(org, team string) string
	}{{"CronJobName", kube.CronJobName}, {"DependencyDiscoveryCronJobName", kube.DependencyDiscoveryCronJobName}, {"DedicatedAgentName", kube.DedicatedAgentName}}
	prefixes := map[string]string{"CronJobName": "ai-pipeline-", "DependencyDiscoveryCronJobName": "dep-discovery-", "DedicatedAgentName": "agent-dedicated-"}

	rng := rand.New(rand.NewPCG(17, 42))
	const alphabet = "abcdef0123456789-._ABCxyz"
	randID := func() string {
		n := 1 + rng.IntN(48)
		if rng.IntN(8) == 0 {
			n = 100 + rng.IntN(29)
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	var ids [][2]string
	for range 4000 {
		ids = append(ids, [2]string{randID(), randID()})
	}
	ids = append(ids, [2]string{"big-corp", "sre"}, [2]string{"big", "corp-sre"}, [2]string{"acme", "platform-sre"})

	for _, nf := range names {
		t.Run(nf.name, func(t *testing.T) {
			pairs := append([][2]string{}, ids...)
			// Every reading of each hashed name as prefix + org + "-" + team
			// with a dash-free org: exactly the ids whose plain name it is.
			for _, p := range ids {
				rest := strings.TrimPrefix(nf.fn(p[0], p[1]), prefixes[nf.name])
				for i := 0; i < len(rest); i++ {
					if rest[i] == '-' {
						pairs = append(pairs, [2]string{rest[:i], rest[i+1:]})
						break // the org has no '-': only the first dash splits
					}
				}
			}
			seen := map[string][2]string{}
			for _, p := range pairs {
				name := nf.fn(p[0], p[1])
				if prev, dup := seen[name]; dup && prev != p {
					t.Fatalf("%q is the name of both %q and %q", name, prev, p)
				}
				seen[name] = p
			}
			t.Logf("%d id pairs, %d distinct names", len(pairs), len(seen))
		})
	}
}

// clusterAPI is what both the real client and dev mode's Memory offer.
type clusterAPI interface {
	ApplyCronJob(ctx context.Context, cj *batchv1.CronJob) (bool, error)
	ApplyDeployment(ctx context.Context, d *appsv1.Deployment) (bool, error)
	ApplyService(ctx context.Context, s *corev1.Service) (bool, error)
	GetCronJob(ctx context.Context, t kube.Team, name string) (*batchv1.CronJob, error)
	Delete(ctx context.Context, t kube.Team, o kube.Object) (bool, error)
}

// An object of the name that is another team's, or not the orchestrator's
// at all, is never updated, read or deleted for a team: the write answers a
// ConflictError naming the object and the object stays as it was. Same
// contract for the real API server and dev mode's simulated cluster.
func TestOwnership_ObjectsOfAnotherOwnerAreNeverChanged(t *testing.T) {
	ctx := context.Background()
	victim := kube.Team{OrgID: "big-corp", TeamNodeID: "sre"}
	attacker := kube.Team{OrgID: "big", TeamNodeID: "corp-sre"}
	for _, mode := range []string{"memory", "apiserver"} {
		t.Run(mode, func(t *testing.T) {
			var c clusterAPI = kube.NewMemory("default")
			if mode == "apiserver" {
				kubetest.Require(t, cluster)
				c = kube.New(cluster.Clientset, cluster.Namespace(t))
			}
			const name = "shared-name"
			spec := kube.PipelineCronJobSpec{Team: victim, Name: name, Component: "scheduled-ingestion", Schedule: "0 2 * * *",
				Image: "ai-pipeline:1", Command: kube.PipelineCommand(victim.OrgID, victim.TeamNodeID)}
			if created, err := c.ApplyCronJob(ctx, kube.PipelineCronJob(spec)); err != nil || !created {
				t.Fatalf("victim's CronJob: %v %v", created, err)
			}
			theirs := spec
			theirs.Team, theirs.Schedule = attacker, "* * * * *"
			var conflict *kube.ConflictError
			if _, err := c.ApplyCronJob(ctx, kube.PipelineCronJob(theirs)); !errors.As(err, &conflict) || conflict.Name != name || conflict.Kind != kube.KindCronJob {
				t.Fatalf("apply over another team's CronJob = %v, want a ConflictError naming it", err)
			}
			if _, err := c.GetCronJob(ctx, attacker, name); !errors.Is(err, kube.ErrNameConflict) {
				t.Fatalf("read of another team's CronJob = %v", err)
			}
			if _, err := c.Delete(ctx, attacker, kube.Object{Kind: kube.KindCronJob, Name: name}); !errors.Is(err, kube.ErrNameConflict) {
				t.Fatalf("delete of another team's CronJob = %v", err)
			}
			cj, err := c.GetCronJob(ctx, victim, name)
			if err != nil || cj == nil || cj.Spec.Schedule != "0 2 * * *" || cj.Annotations[kube.AnnotationOrg] != victim.OrgID {
				t.Fatalf("victim's CronJob afterwards: %v %+v", err, cj)
			}

			dep, svc := kube.DedicatedAgent(kube.AgentSpec{Team: victim, Name: name, Image: "agent:1"})
			if _, err := c.ApplyDeployment(ctx, dep); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ApplyService(ctx, svc); err != nil {
				t.Fatal(err)
			}
			dep2, svc2 := kube.DedicatedAgent(kube.AgentSpec{Team: attacker, Name: name, Image: "evil:1"})
			if _, err := c.ApplyDeployment(ctx, dep2); !errors.Is(err, kube.ErrNameConflict) {
				t.Fatalf("apply over another team's Deployment = %v", err)
			}
			if _, err := c.ApplyService(ctx, svc2); !errors.Is(err, kube.ErrNameConflict) {
				t.Fatalf("apply over another team's Service = %v", err)
			}
			for _, kind := range []string{kube.KindDeployment, kube.KindService} {
				if _, err := c.Delete(ctx, attacker, kube.Object{Kind: kind, Name: name}); !errors.Is(err, kube.ErrNameConflict) {
					t.Fatalf("delete of another team's %s = %v", kind, err)
				}
			}
			// The owner still deletes its own.
			for _, kind := range []string{kube.KindCronJob, kube.KindDeployment, kube.KindService} {
				if existed, err := c.Delete(ctx, victim, kube.Object{Kind: kind, Name: name}); err != nil || !existed {
					t.Fatalf("owner's delete of its %s: %v %v", kind, existed, err)
				}
			}
		})
	}
}

// An object the orchestrator did not make (no managed-by label), even with
// the team's annotations copied onto it, is not the team's.
func TestOwnership_HandMadeObjectIsNotTheTeams(t *testing.T) {
	kubetest.Require(t, cluster)
	ctx := context.Background()
	ns := cluster.Namespace(t)
	c := kube.New(cluster.Clientset, ns)
	team := kube.Team{OrgID: "acme", TeamNodeID: "sre"}
	hand := kube.PipelineCronJob(kube.PipelineCronJobSpec{Team: team, Name: kube.CronJobName("acme", "sre"), Schedule: "5 5 * * *", Image: "theirs:1"})
	delete(hand.Labels, kube.LabelManagedBy)
	if _, err := cluster.Clientset.BatchV1().CronJobs(ns).Create(ctx, hand, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mine := kube.PipelineCronJob(kube.PipelineCronJobSpec{Team: team, Name: hand.Name, Schedule: "0 2 * * *", Image: "ours:1"})
	if _, err := c.ApplyCronJob(ctx, mine); !errors.Is(err, kube.ErrNameConflict) {
		t.Fatalf("apply over a hand-made CronJob = %v", err)
	}
	if _, err := c.Delete(ctx, team, kube.Object{Kind: kube.KindCronJob, Name: hand.Name}); !errors.Is(err, kube.ErrNameConflict) {
		t.Fatalf("delete of a hand-made CronJob = %v", err)
	}
	got, err := cluster.Clientset.BatchV1().CronJobs(ns).Get(ctx, hand.Name, metav1.GetOptions{})
	if err != nil || got.Spec.Schedule != "5 5 * * *" || got.DeletionTimestamp != nil {
		t.Fatalf("hand-made CronJob afterwards: %v %+v", err, got)
	}
}

// Dev mode's simulated cluster with Persist: a second Memory on the same
// file holds what the first applied and not what it deleted, and a
// corrupt file is refused with what to do.
func TestMemory_PersistKeepsObjectsAcrossARestart(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir() + "/cluster.json"
	team := kube.Team{OrgID: "acme", TeamNodeID: "payments"}
	first := kube.NewMemory("default")
	if err := first.Persist(path); err != nil {
		t.Fatal(err)
	}
	spec := kube.PipelineCronJobSpec{Team: team, Name: kube.CronJobName("acme", "payments"), Component: "scheduled-ingestion",
		Schedule: "0 2 * * *", Image: "ai-pipeline:1", Command: kube.PipelineCommand("acme", "payments")}
	if _, err := first.ApplyCronJob(ctx, kube.PipelineCronJob(spec)); err != nil {
		t.Fatal(err)
	}
	other := spec
	other.Name, other.Component = "dep-discovery-acme-payments", "dependency-discovery"
	if _, err := first.ApplyCronJob(ctx, kube.PipelineCronJob(other)); err != nil {
		t.Fatal(err)
	}
	if gone, err := first.Delete(ctx, team, kube.Object{Kind: kube.KindCronJob, Name: other.Name}); err != nil || !gone {
		t.Fatalf("delete: %v %v", gone, err)
	}

	second := kube.NewMemory("default")
	if err := second.Persist(path); err != nil {
		t.Fatal(err)
	}
	cj, err := second.GetCronJob(ctx, team, spec.Name)
	if err != nil || cj == nil || cj.Spec.Schedule != "0 2 * * *" {
		t.Fatalf("the CronJob after a restart: %v %v", cj, err)
	}
	objs, _ := second.TeamObjects(ctx, "acme", "payments")
	if len(objs) != 1 || objs[0].Name != spec.Name {
		t.Fatalf("objects after a restart: %v", objs)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := kube.NewMemory("default").Persist(path); err == nil || !strings.Contains(err.Error(), "delete the file to start afresh") {
		t.Fatalf("a corrupt state file: %v", err)
	}
}

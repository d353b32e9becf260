package kube_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/incidentfox/orchestrator-edge/kube"
	"github.com/incidentfox/orchestrator-edge/kube/kubetest"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	cj, err := c.GetCronJob(ctx, name)
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
		if existed, err := c.Delete(ctx, o); err != nil || !existed {
			t.Fatalf("delete %v: %v %v", o, existed, err)
		}
	}
	// Without a garbage collector, foreground deletion leaves a
	// deletionTimestamp; TeamObjects treats that as gone.
	if objs, err := c.TeamObjects(ctx, org, team); err != nil || len(objs) != 0 {
		t.Fatalf("after delete: %v %v", objs, err)
	}
	if existed, err := c.Delete(ctx, kube.Object{Kind: kube.KindCronJob, Name: "never-was"}); err != nil || existed {
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

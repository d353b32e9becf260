package server_test

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/kube"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// bigToken is an admin with every permission, confined to org "big".
const bigToken = "admin-big-org-token"

func addBigOrg(e *env) {
	e.cs.AddOrg("big")
	e.cs.AddOrg("big-corp")
	e.cs.AddAdmin(bigToken, peers.Identity{Role: "admin", Permissions: []string{"admin:*"}, OrgID: "big"})
}

// The security review's reproduction: an admin of org "big" names its team
// so that its plain object names equal the hashed names of org "big-corp",
// team "sre". Before the fix it rescheduled the victim's CronJob and its
// deprovision deleted the victim's CronJob, Deployment and Service. Now the
// names differ, and nothing of the victim changes.
func TestIsolation_NameCollisionCannotTakeOverAnotherOrgsWorkloads(t *testing.T) {
	e := newEnv(t, envOptions{withCluster: true})
	addBigOrg(e)
	ctx := context.Background()
	if r := e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "big-corp", "team_node_id": "sre",
		"create_pipeline_schedule": true, "pipeline_schedule": "0 2 * * *", "deployment_mode": "dedicated"}); r.code != 200 {
		t.Fatalf("victim provisioning = %d %s", r.code, r.raw)
	}
	victim := kube.Team{OrgID: "big-corp", TeamNodeID: "sre"}
	victimCJ, victimAgent := kube.CronJobName("big-corp", "sre"), kube.DedicatedAgentName("big-corp", "sre")
	attackerTeam := strings.TrimPrefix(victimCJ, "ai-pipeline-big-")
	if !strings.HasPrefix(attackerTeam, "corp-sre-") || strings.TrimPrefix(victimAgent, "agent-dedicated-big-") != attackerTeam {
		t.Fatalf("names %q / %q do not have the reproduction's shape", victimCJ, victimAgent)
	}

	r := e.do("POST", provisionPath, bigToken, map[string]any{"org_id": "big", "team_node_id": attackerTeam,
		"create_pipeline_schedule": true, "pipeline_schedule": "* * * * *", "deployment_mode": "dedicated"})
	if r.code != 200 {
		t.Fatalf("attacker provisioning = %d %s", r.code, r.raw)
	}
	if got := kube.CronJobName("big", attackerTeam); got == victimCJ {
		t.Fatalf("the attacker's CronJob is named %q, the victim's name", got)
	}
	if r := e.do("POST", "/api/v1/admin/deprovision/team", bigToken, map[string]any{"org_id": "big", "team_node_id": attackerTeam}); r.code != 200 {
		t.Fatalf("attacker deprovisioning = %d %s", r.code, r.raw)
	}

	cj, err := e.kube.GetCronJob(ctx, victim, victimCJ)
	if err != nil || cj == nil || cj.DeletionTimestamp != nil || cj.Spec.Schedule != "0 2 * * *" {
		t.Fatalf("victim's CronJob after the attack: %v %+v", err, cj)
	}
	dep, err := e.kube.GetDeployment(ctx, victim, victimAgent)
	if err != nil || dep == nil || dep.DeletionTimestamp != nil {
		t.Fatalf("victim's Deployment after the attack: %v %+v", err, dep)
	}
	svc, err := cluster.Clientset.CoreV1().Services(e.kube.Namespace()).Get(ctx, victimAgent, metav1.GetOptions{})
	if err != nil || svc.DeletionTimestamp != nil || !kube.Owns(svc, victim) {
		t.Fatalf("victim's Service after the attack: %v %+v", err, svc)
	}
}

// A foreign object squatting the name a team's CronJob, Deployment or
// Service would get is never updated or deleted: provisioning fails with 409
// name_conflict naming the object, compensates what it did, and the squatter
// stays as it was; deprovisioning leaves it alone even when it carries the
// team's hash label.
func TestIsolation_ForeignObjectSquattingANameIsNeverChanged(t *testing.T) {
	e := newEnv(t, envOptions{withCluster: true})
	ctx := context.Background()
	ns := e.kube.Namespace()
	cs := cluster.Clientset

	// A hand-made CronJob with the name acme/squat would get.
	squatCJ := kube.PipelineCronJob(kube.PipelineCronJobSpec{Team: kube.Team{OrgID: "globex", TeamNodeID: "x"},
		Name: kube.CronJobName("acme", "squat"), Schedule: "5 5 * * *", Image: "theirs:1"})
	delete(squatCJ.Labels, kube.LabelManagedBy)
	if _, err := cs.BatchV1().CronJobs(ns).Create(ctx, squatCJ, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "acme", "team_node_id": "squat",
		"create_pipeline_schedule": true, "pipeline_schedule": "0 2 * * *"})
	if r.code != 409 || r.body["error"] != "name_conflict" || !strings.Contains(r.raw, "CronJob "+squatCJ.Name) {
		t.Fatalf("provisioning over a squatted CronJob = %d %s", r.code, r.raw)
	}
	if stepField(r.body, "team_token", "status") != "compensated" {
		t.Fatalf("the token issued by the failed run was not revoked: %s", r.raw)
	}
	if _, err := e.db.GetSchedule(ctx, "acme", "squat", store.ScheduleIngestion); err == nil {
		t.Fatal("a schedule row was left for the refused CronJob")
	}
	got, err := cs.BatchV1().CronJobs(ns).Get(ctx, squatCJ.Name, metav1.GetOptions{})
	if err != nil || got.Spec.Schedule != "5 5 * * *" || got.DeletionTimestamp != nil {
		t.Fatalf("squatter CronJob afterwards: %v %+v", err, got)
	}

	// Another team's Deployment and Service, labelled with this team's
	// hash, under the name acme/squat2's dedicated agent would get.
	name := kube.DedicatedAgentName("acme", "squat2")
	dep, svc := kube.DedicatedAgent(kube.AgentSpec{Team: kube.Team{OrgID: "globex", TeamNodeID: "x"}, Name: name, Image: "theirs:1"})
	for _, l := range []map[string]string{dep.Labels, svc.Labels} {
		l[kube.LabelTeamHash] = kube.TeamHash("acme", "squat2")
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r = e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "acme", "team_node_id": "squat2", "deployment_mode": "dedicated"})
	if r.code != 409 || r.body["error"] != "name_conflict" || !strings.Contains(r.raw, "Deployment "+name) {
		t.Fatalf("provisioning over a squatted Deployment = %d %s", r.code, r.raw)
	}
	dr := e.do("POST", "/api/v1/admin/deprovision/team", adminToken, map[string]any{"org_id": "acme", "team_node_id": "squat2"})
	if dr.code != 200 || strings.Contains(dr.raw, name) {
		t.Fatalf("deprovisioning planned the squatter: %d %s", dr.code, dr.raw)
	}
	gotDep, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil || gotDep.DeletionTimestamp != nil || gotDep.Spec.Template.Spec.Containers[0].Image != "theirs:1" {
		t.Fatalf("squatter Deployment afterwards: %v %+v", err, gotDep)
	}
	if gotSvc, err := cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{}); err != nil || gotSvc.DeletionTimestamp != nil {
		t.Fatalf("squatter Service afterwards: %v %+v", err, gotSvc)
	}
	// The live status endpoint does not read the squatter as the team's.
	if st := e.do("GET", "/api/v1/admin/teams/acme/squat2/deployment", adminToken, nil); st.code != 409 || st.body["error"] != "name_conflict" {
		t.Fatalf("status of a squatted name = %d %s", st.code, st.raw)
	}
}

// The schedule row's uniqueness is checked before any cluster write: a name
// another team's row holds is refused with no CronJob created at all.
func TestIsolation_ScheduleRowIsCheckedBeforeAnyClusterWrite(t *testing.T) {
	e := newEnv(t, envOptions{withCluster: true})
	ctx := context.Background()
	name := kube.CronJobName("acme", "rowclash")
	if _, err := e.db.UpsertSchedule(ctx, store.Schedule{ID: "00000000-0000-4000-8000-00000000beef", OrgID: "globex", TeamNodeID: "other",
		Type: store.ScheduleIngestion, CronExpression: "0 1 * * *", CronJobName: name, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	r := e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "acme", "team_node_id": "rowclash",
		"create_pipeline_schedule": true, "pipeline_schedule": "0 2 * * *"})
	if r.code != 409 || r.body["error"] != "name_conflict" {
		t.Fatalf("provisioning onto another row's name = %d %s", r.code, r.raw)
	}
	var cj *batchv1.CronJob
	cj, err := cluster.Clientset.BatchV1().CronJobs(e.kube.Namespace()).Get(ctx, name, metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("a CronJob was written before the row check: %v %+v", err, cj)
	}
}

// getPage fetches one page of the admin page with a logged-in client.
func getPage(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Every page shows an admin only what the API would: an admin bound to org
// "acme" sees nothing of org "globex" and no unrouted event (they belong to
// no org) on any page, the overview included; an admin without
// admin:events:read sees no event figures or failed events; an org-bound
// admin cannot send dev samples, which route into any org. Before the fix
// the overview listed every org's failures and unrouted events to both.
func TestIsolation_EveryPageShowsOnlyWhatTheAdminMayRead(t *testing.T) {
	e, base := uiEnv(t, envOptions{})
	// A failed run in each org.
	var globexRun string
	for _, team := range []string{"globex/hidden-team", "acme/own-team"} {
		org, tm, _ := strings.Cut(team, "/")
		e.pipe.Fail(peerstest.RouteBootstrap, peerstest.Fault{Status: 500, Times: 1})
		r := e.do("POST", provisionPath, adminToken, map[string]any{"org_id": org, "team_node_id": tm})
		if r.code != 502 {
			t.Fatalf("failed run for %s = %d %s", team, r.code, r.raw)
		}
		if org == "globex" {
			globexRun = r.body["provisioning_run_id"].(string)
		}
	}
	// An unrouted event, whose identifiers name a repository of nobody's.
	body := []byte(`{"action":"opened","repository":{"full_name":"secret-corp/unrouted-repo"}}`)
	h := webhook.Sign(webhook.GitHub, githubSecret, body, wallclock.Now(), "unrouted-1")
	unrouted := e.send(webhook.GitHub, body, h).body["event_id"].(string)
	e.waitStatus(unrouted, store.EventUnrouted)
	// And one of acme's own, delivered.
	b2, h2 := signed(webhook.Slack, "own", slackSecret, wallclock.Now())
	own := e.send(webhook.Slack, b2, h2).body["event_id"].(string)
	e.waitStatus(own, store.EventDelivered)

	// An event id is a number: what would leak is a link to it.
	foreign := []string{"globex", "hidden-team", "secret-corp", "unrouted-repo", "/ui/events/" + unrouted + `"`, globexRun}
	org := login(t, base, orgToken)
	for _, p := range []string{"/ui/overview", "/ui/teams", "/ui/teams/acme/own-team", "/ui/runs", "/ui/events", "/ui/events?status=unrouted",
		"/ui/schedules", "/ui/agents", "/ui/provision"} {
		code, page := getPage(t, org, base+p)
		if code != 200 {
			t.Fatalf("%s as the acme admin = %d", p, code)
		}
		for _, f := range foreign {
			if strings.Contains(page, f) {
				t.Errorf("%s shows the acme admin %q", p, f)
			}
		}
	}
	if _, page := getPage(t, org, base+"/ui/overview"); !strings.Contains(page, "own-team") {
		t.Error("the acme admin's overview lacks its own org's failed run")
	}
	// The charts count the admin's org alone: the unrouted event is in the
	// unbound admin's outcomes, not in the acme admin's.
	unroutedRow := regexp.MustCompile(`<th scope="row">unrouted</th><td>(\d+)</td>`)
	if _, page := getPage(t, org, base+"/ui/overview"); unroutedRow.FindStringSubmatch(page) == nil || unroutedRow.FindStringSubmatch(page)[1] != "0" ||
		strings.Contains(page, `<th scope="row">Ack</th>`) {
		t.Errorf("the acme admin's charts count other orgs' events or show ack figures: %v", unroutedRow.FindStringSubmatch(page))
	}
	star := login(t, base, adminToken)
	if _, page := getPage(t, star, base+"/ui/overview"); unroutedRow.FindStringSubmatch(page) == nil || unroutedRow.FindStringSubmatch(page)[1] != "1" {
		t.Errorf("the unbound admin's charts: unrouted %v", unroutedRow.FindStringSubmatch(page))
	}
	for _, p := range []string{"/ui/events/" + unrouted, "/ui/runs/" + globexRun, "/ui/teams/globex/hidden-team"} {
		if code, _ := getPage(t, org, base+p); code != 404 {
			t.Errorf("%s as the acme admin = %d, want 404", p, code)
		}
	}
	// Deprovisioning another org's team from the page: 404, and not even a
	// dry run is recorded.
	runsBefore, _, _ := e.db.ListRuns(context.Background(), store.RunFilter{OrgID: "globex", Limit: 100})
	for _, form := range []string{"delete_k8s_resources=1", "delete_k8s_resources=1&confirm=1&plan=x"} {
		req, _ := http.NewRequest("POST", base+"/ui/teams/globex/hidden-team/deprovision", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", base)
		if resp, err := org.Do(req); err != nil || resp.StatusCode != 404 {
			t.Fatalf("deprovisioning globex's team as the acme admin = %v %v", resp.StatusCode, err)
		}
	}
	if runsAfter, _, _ := e.db.ListRuns(context.Background(), store.RunFilter{OrgID: "globex", Limit: 100}); len(runsAfter) != len(runsBefore) {
		t.Fatalf("globex runs %d → %d after the acme admin's tries", len(runsBefore), len(runsAfter))
	}
	req, _ := http.NewRequest("POST", base+"/ui/dev/sample/slack", nil)
	req.Header.Set("Origin", base)
	if resp, err := org.Do(req); err != nil || resp.StatusCode != 403 {
		t.Fatalf("dev sample as the acme admin = %v %v", resp.StatusCode, err)
	}

	// admin:provision and admin:provision:read only: no event figures.
	scoped := login(t, base, scopedToken)
	code, page := getPage(t, scoped, base+"/ui/overview")
	if code != 200 || strings.Contains(page, "/ui/events/"+unrouted+`"`) || strings.Contains(page, "unrouted-repo") ||
		strings.Contains(page, `id="queue-depth"`) || !strings.Contains(page, `id="events-hidden"`) {
		t.Fatalf("overview without admin:events:read = %d %s", code, page)
	}
	if !strings.Contains(page, "hidden-team") {
		t.Error("an unbound admin with admin:provision:read does not see failed runs")
	}
	req, _ = http.NewRequest("POST", base+"/ui/dev/sample/slack", nil)
	req.Header.Set("Origin", base)
	if resp, err := scoped.Do(req); err != nil || resp.StatusCode != 403 {
		t.Fatalf("dev sample without admin:events:redrive = %v %v", resp.StatusCode, err)
	}
}

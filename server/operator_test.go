package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/kube"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/store"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// provisionWithSchedule provisions a team with a pipeline schedule and
// returns the schedule's id.
func provisionWithSchedule(t *testing.T, e *env, team string) string {
	t.Helper()
	r := e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "acme", "team_node_id": team,
		"create_pipeline_schedule": true, "pipeline_schedule": "0 2 * * *"})
	if r.code != 200 {
		t.Fatalf("provision = %d %s", r.code, r.raw)
	}
	row, err := e.db.GetSchedule(context.Background(), "acme", team, store.ScheduleIngestion)
	if err != nil {
		t.Fatal(err)
	}
	return row.ID
}

func TestSchedules_SuspendResumeAndRescheduleTheRealCronJob(t *testing.T) {
	e := newEnv(t, envOptions{withCluster: true})
	ctx := context.Background()
	id := provisionWithSchedule(t, e, "sched")
	name := kube.CronJobName("acme", "sched")

	list := e.do("GET", "/api/v1/admin/schedules?org_id=acme", adminToken, nil)
	if list.code != 200 || !strings.Contains(list.raw, `"exists":true`) || !strings.Contains(list.raw, name) {
		t.Fatalf("list = %d %s", list.code, list.raw)
	}
	r := e.do("PATCH", "/api/v1/admin/schedules/"+id, adminToken, map[string]any{"enabled": false})
	if cj, _ := e.kube.GetCronJob(ctx, kube.Team{OrgID: "acme", TeamNodeID: "sched"}, name); r.code != 200 || cj.Spec.Suspend == nil || !*cj.Spec.Suspend || r.body["enabled"] != false {
		t.Fatalf("suspend = %d %s", r.code, r.raw)
	}
	r = e.do("PATCH", "/api/v1/admin/schedules/"+id, adminToken, map[string]any{"enabled": true, "cron_expression": "*/15 * * * *"})
	cj, _ := e.kube.GetCronJob(ctx, kube.Team{OrgID: "acme", TeamNodeID: "sched"}, name)
	if r.code != 200 || *cj.Spec.Suspend || cj.Spec.Schedule != "*/15 * * * *" {
		t.Fatalf("resume+reschedule = %d %s (cronjob %v %s)", r.code, r.raw, *cj.Spec.Suspend, cj.Spec.Schedule)
	}
	if row, _ := e.db.GetScheduleByID(ctx, id); row.CronExpression != "*/15 * * * *" || !row.Enabled {
		t.Fatalf("row = %+v", row)
	}
	for _, c := range []struct {
		body   any
		status int
		code   string
	}{
		{map[string]any{"cron_expression": "every day"}, 400, "invalid_cron_expression"},
		{map[string]any{}, 400, "empty_patch"},
		{map[string]any{"enabled": "no"}, 400, "invalid_field_type"},
		{map[string]any{"suspend": true}, 400, "unknown_field"},
	} {
		if r := e.do("PATCH", "/api/v1/admin/schedules/"+id, adminToken, c.body); r.code != c.status || r.body["error"] != c.code {
			t.Errorf("%v = %d %s", c.body, r.code, r.raw)
		}
	}
	if r := e.do("PATCH", "/api/v1/admin/schedules/not-an-id", adminToken, map[string]any{"enabled": true}); r.code != 404 {
		t.Errorf("unknown id = %d", r.code)
	}
	if cj, _ := e.kube.GetCronJob(ctx, kube.Team{OrgID: "acme", TeamNodeID: "sched"}, name); cj.Spec.Schedule != "*/15 * * * *" {
		t.Fatal("a refused patch changed the CronJob")
	}
}

func TestReconcile_RepairsDeletedAndEditedCronJobs(t *testing.T) {
	e := newEnv(t, envOptions{withCluster: true})
	ctx := context.Background()
	provisionWithSchedule(t, e, "drift")
	name := kube.CronJobName("acme", "drift")
	cs := cluster.Clientset.BatchV1().CronJobs(e.kube.Namespace())

	// Edited by hand: schedule and suspension.
	cj, _ := cs.Get(ctx, name, metav1.GetOptions{})
	cj.Spec.Schedule = "5 5 * * *"
	yes := true
	cj.Spec.Suspend = &yes
	if _, err := cs.Update(ctx, cj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err := e.sched.Reconcile(ctx)
	if err != nil || len(rep.Repaired) != 2 {
		t.Fatalf("reconcile = %+v %v", rep, err)
	}
	cj, _ = cs.Get(ctx, name, metav1.GetOptions{})
	if cj.Spec.Schedule != "0 2 * * *" || *cj.Spec.Suspend {
		t.Fatalf("after reconcile: %s suspended=%v", cj.Spec.Schedule, *cj.Spec.Suspend)
	}

	// Deleted by hand (no garbage collector here: delete without finalizers).
	if err := cs.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.kube.GetCronJob(ctx, kube.Team{OrgID: "acme", TeamNodeID: "drift"}, name); got != nil {
		t.Fatal("CronJob still there")
	}
	rep, err = e.sched.Reconcile(ctx)
	if err != nil || len(rep.Repaired) != 1 || !strings.Contains(rep.Repaired[0], "missing") {
		t.Fatalf("reconcile after delete = %+v %v", rep, err)
	}
	if got, _ := e.kube.GetCronJob(ctx, kube.Team{OrgID: "acme", TeamNodeID: "drift"}, name); got == nil || got.Spec.Schedule != "0 2 * * *" {
		t.Fatal("deleted CronJob not recreated")
	}
	// In line: nothing to do; the drift metric counted the three repairs.
	if rep, _ := e.sched.Reconcile(ctx); len(rep.Repaired) != 0 {
		t.Fatalf("second pass repaired %v", rep.Repaired)
	}
	for _, line := range []string{`orchestrator_schedule_drift_total{kind="missing"} 1`, `orchestrator_schedule_drift_total{kind="schedule"} 1`, `orchestrator_schedule_drift_total{kind="suspend"} 1`} {
		if !e.metric(line) {
			t.Errorf("metrics lack %s", line)
		}
	}
	if !strings.Contains(e.logs.String(), "CronJob drift repaired") {
		t.Error("drift not logged")
	}

	// last_run_at follows status.lastScheduleTime.
	cj, _ = cs.Get(ctx, name, metav1.GetOptions{})
	at := metav1.NewTime(time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC))
	cj.Status.LastScheduleTime = &at
	if _, err := cs.UpdateStatus(ctx, cj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sched.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	row, _ := e.db.GetSchedule(ctx, "acme", "drift", store.ScheduleIngestion)
	if row.LastRunAt == nil || !row.LastRunAt.Equal(at.Time) {
		t.Fatalf("last_run_at = %v", row.LastRunAt)
	}
}

func TestSyncCronJobs_FollowsTheTeamConfigBothWays(t *testing.T) {
	e := newEnv(t, envOptions{withCluster: true})
	ctx := context.Background()
	e.cs.AddTeam("acme", "sync", map[string]any{
		"ai_pipeline":          map[string]any{"enabled": true, "schedule": "0 3 * * *"},
		"dependency_discovery": map[string]any{"enabled": true, "schedule": "30 4 * * 0"},
	})
	sync := func() response {
		return e.do("POST", "/api/v1/admin/teams/sync-cronjobs", adminToken, map[string]any{"org_id": "acme", "team_node_id": "sync"})
	}
	r := sync()
	if r.code != 200 || strings.Count(r.raw, `"action":"created"`) != 2 {
		t.Fatalf("sync = %d %s", r.code, r.raw)
	}
	ing, _ := e.kube.GetCronJob(ctx, kube.Team{OrgID: "acme", TeamNodeID: "sync"}, kube.CronJobName("acme", "sync"))
	dep, _ := e.kube.GetCronJob(ctx, kube.Team{OrgID: "acme", TeamNodeID: "sync"}, kube.DependencyDiscoveryCronJobName("acme", "sync"))
	if ing == nil || ing.Spec.Schedule != "0 3 * * *" || dep == nil || dep.Spec.Schedule != "30 4 * * 0" ||
		!strings.Contains(strings.Join(dep.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Command, " "), "discover-dependencies") {
		t.Fatalf("cronjobs after sync: %v %v", ing, dep)
	}
	// Config changes: new schedule for one, the other turned off.
	e.cs.AddTeam("acme", "sync", map[string]any{
		"ai_pipeline":          map[string]any{"enabled": true, "schedule": "0 6 * * *"},
		"dependency_discovery": map[string]any{"enabled": false},
	})
	r = sync()
	if r.code != 200 || !strings.Contains(r.raw, `"action":"updated"`) || !strings.Contains(r.raw, `"action":"deleted"`) {
		t.Fatalf("second sync = %d %s", r.code, r.raw)
	}
	if ing, _ := e.kube.GetCronJob(ctx, kube.Team{OrgID: "acme", TeamNodeID: "sync"}, kube.CronJobName("acme", "sync")); ing.Spec.Schedule != "0 6 * * *" {
		t.Fatalf("ingestion schedule = %s", ing.Spec.Schedule)
	}
	if objs, _ := e.kube.TeamObjects(ctx, "acme", "sync"); len(objs) != 1 {
		t.Fatalf("team objects = %v", objs)
	}
	if row, _ := e.db.GetSchedule(ctx, "acme", "sync", store.ScheduleDependencyDiscovery); row.Enabled {
		t.Fatal("dependency discovery row still enabled")
	}
	// A bad schedule in the config is refused, nothing changed.
	e.cs.AddTeam("acme", "sync", map[string]any{"ai_pipeline": map[string]any{"enabled": true, "schedule": "often"}})
	if r := sync(); r.code != 502 || r.body["error"] != "invalid_team_config" {
		t.Fatalf("bad config = %d %s", r.code, r.raw)
	}
}

func TestPipelineTriggerAndTeamStatus(t *testing.T) {
	e := newEnv(t, envOptions{withCluster: true})
	if r := e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "acme", "team_node_id": "stat",
		"create_pipeline_schedule": true, "deployment_mode": "dedicated"}); r.code != 200 {
		t.Fatal(r.raw)
	}
	r := e.do("POST", "/api/v1/admin/pipeline/trigger", adminToken, map[string]any{"org_id": "acme", "team_node_id": "stat"})
	runs := e.pipe.CallsTo(peerstest.RoutePipelineRun)
	if r.code != 202 || len(runs) != 1 || string(runs[0].Body) != `{"org_id":"acme","team_id":"stat"}` || runs[0].Auth != "Bearer "+adminToken {
		t.Fatalf("trigger = %d %s", r.code, r.raw)
	}
	e.pipe.Fail(peerstest.RoutePipelineRun, peerstest.Fault{Status: 500})
	if r := e.do("POST", "/api/v1/admin/pipeline/trigger", adminToken, map[string]any{"org_id": "acme", "team_node_id": "stat"}); r.code != 502 {
		t.Fatalf("pipeline down = %d", r.code)
	}
	d := e.do("GET", "/api/v1/admin/teams/acme/stat/deployment", adminToken, nil)
	if d.code != 200 || d.body["mode"] != "dedicated" || d.body["replicas"] != 1.0 || !strings.Contains(d.raw, ".svc.cluster.local:8000") {
		t.Fatalf("deployment = %d %s", d.code, d.raw)
	}
	p := e.do("GET", "/api/v1/admin/teams/acme/stat/pipeline", adminToken, nil)
	if p.code != 200 || !strings.Contains(p.raw, `"exists":true`) || !strings.Contains(p.raw, `"schedule":"0 2 * * *"`) || !strings.Contains(p.raw, `"active_jobs":0`) {
		t.Fatalf("pipeline = %d %s", p.code, p.raw)
	}
	if r := e.do("GET", "/api/v1/admin/teams/acme/nobody/deployment", adminToken, nil); r.code != 200 || r.body["mode"] != "shared" {
		t.Fatalf("shared team = %d %s", r.code, r.raw)
	}
	if r := e.do("GET", "/api/v1/admin/teams/globex/stat/deployment", orgToken, nil); r.code != 403 {
		t.Fatalf("other org = %d", r.code)
	}
}

func TestAgentRunProxy(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.cs.AddTeam("acme", "agents", nil)
	run := func(token string, body map[string]any) response {
		return e.do("POST", "/api/v1/admin/agents/run", token, body)
	}
	ok := map[string]any{"org_id": "acme", "team_node_id": "agents", "agent_name": "planner", "message": "why is p99 up?",
		"context": map[string]any{"service": "payments"}, "max_turns": 5}
	r := run(adminToken, ok)
	if r.code != 200 || r.body["agent_name"] != "planner" || r.body["agent_result"] == nil {
		t.Fatalf("run = %d %s", r.code, r.raw)
	}
	call := e.agent.CallsTo(peerstest.RouteAgentRun)[0]
	teamToken := call.Header.Get("X-IncidentFox-Team-Token")
	if teamToken == "" || !strings.Contains(string(call.Body), `"max_turns":5`) || !strings.Contains(string(call.Body), `"service":"payments"`) {
		t.Fatalf("agent call = %v %s", call.Header, call.Body)
	}
	// The impersonation token was minted with the caller's own token.
	if imp := e.cs.CallsTo(peerstest.RouteImpersonate); len(imp) != 1 || imp[0].Auth != "Bearer "+adminToken {
		t.Fatalf("impersonation calls = %v", imp)
	}

	e.agent.Fail(peerstest.RouteAgentRun, peerstest.Fault{Status: 500, Times: 1})
	if r := run(adminToken, ok); r.code != 502 || r.body["error"] != "agent_upstream_error" || r.body["upstream_status"] != 500.0 {
		t.Fatalf("upstream 500 = %d %s", r.code, r.raw)
	}
	e.agent.Fail(peerstest.RouteAgentRun, peerstest.Fault{Hang: true, Times: 1})
	slow := map[string]any{"org_id": "acme", "team_node_id": "agents", "agent_name": "planner", "message": "slow", "timeout": 1}
	if r := run(adminToken, slow); r.code != 504 || r.body["error"] != "agent_timeout" {
		t.Fatalf("slow agent = %d %s", r.code, r.raw)
	}
	big := map[string]any{"org_id": "acme", "team_node_id": "agents", "agent_name": "planner", "message": strings.Repeat("x", 20001)}
	if r := run(adminToken, big); r.code != 400 || r.body["error"] != "invalid_message" {
		t.Fatalf("oversize message = %d %s", r.code, r.raw)
	}
	for _, bad := range []map[string]any{
		{"org_id": "acme", "team_node_id": "agents", "agent_name": "", "message": "x"},
		{"org_id": "acme", "team_node_id": "agents", "agent_name": strings.Repeat("a", 65), "message": "x"},
		{"org_id": "acme", "team_node_id": "agents", "agent_name": "p", "message": "x", "timeout": 0},
	} {
		if r := run(adminToken, bad); r.code != 400 {
			t.Errorf("%v = %d", bad, r.code)
		}
	}
	// REQUIRE_ADMIN_STAR is off in this env: admin:agent:run (or admin:*) is needed.
	e.cs.AddAdmin("no-agent-token", peers.Identity{Role: "admin", Permissions: []string{"admin:provision"}})
	if r := run("no-agent-token", ok); r.code != 403 || r.body["error"] != "insufficient_permissions" {
		t.Fatalf("missing permission = %d %s", r.code, r.raw)
	}
	if r := run(orgToken, map[string]any{"org_id": "globex", "team_node_id": "agents", "agent_name": "p", "message": "x"}); r.code != 403 {
		t.Fatalf("other org = %d", r.code)
	}

	// Audited; the team token is in no answer and no log line.
	audited, err := e.db.TeamAgentRuns(context.Background(), "acme", "agents")
	if err != nil || len(audited) != 3 || audited[0].Actor != "alice" || audited[0].Status != "succeeded" ||
		audited[1].UpstreamStatus != 500 || audited[2].Status != "timeout" {
		t.Fatalf("audited runs = %+v %v", audited, err)
	}
	if strings.Contains(e.logs.String(), teamToken) || strings.Contains(r.raw, teamToken) {
		t.Fatal("the team token leaked into a response or the logs")
	}
	for _, c := range e.agent.Calls() {
		tok := c.Header.Get("X-IncidentFox-Team-Token")
		if strings.Contains(e.logs.String(), tok) {
			t.Fatal("a team token is in the logs")
		}
	}
}

// finishForegroundDelete does what a real cluster's garbage collector does
// after a foreground delete (the test API server has none, TESTING.md): it
// drops the foregroundDeletion finalizer, so the object is really gone.
func finishForegroundDelete(t *testing.T, e *env, name string) {
	t.Helper()
	ctx := context.Background()
	cs := cluster.Clientset.BatchV1().CronJobs(e.kube.Namespace())
	cj, err := cs.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("CronJob %s: %v", name, err)
	}
	if cj.DeletionTimestamp == nil {
		t.Fatalf("CronJob %s was not being deleted", name)
	}
	if _, err := cs.Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.kube.GetCronJob(ctx, kube.Team{OrgID: "acme"}, name); got != nil {
		t.Fatalf("CronJob %s still there after its finalizer went", name)
	}
}

// The newcomer's report: after deprovisioning a team (resources deleted),
// the reconciler re-created its CronJob (suspended) about a minute later as
// "missing" drift, a new dry run planned to delete it again, and the teams
// page showed a red "missing". Now the deprovisioned team's schedule row
// ends with its CronJob, so two reconcile passes after the cluster really
// removed it bring nothing back — while a schedule an admin merely
// suspended keeps its suspended CronJob, and is repaired as before.
func TestDeprovision_RemovedScheduleStaysRemovedAcrossReconciles(t *testing.T) {
	e := newEnv(t, envOptions{withCluster: true})
	ctx := context.Background()
	provisionWithSchedule(t, e, "leaving")
	pausedID := provisionWithSchedule(t, e, "paused")
	leaving, paused := kube.CronJobName("acme", "leaving"), kube.CronJobName("acme", "paused")
	if r := e.do("PATCH", "/api/v1/admin/schedules/"+pausedID, adminToken, map[string]any{"enabled": false}); r.code != 200 {
		t.Fatalf("suspend = %d %s", r.code, r.raw)
	}
	r := e.do("POST", "/api/v1/admin/deprovision/team", adminToken, map[string]any{"org_id": "acme", "team_node_id": "leaving",
		"revoke_tokens": true, "clear_routing": true})
	if r.code != 200 || r.body["ok"] != true {
		t.Fatalf("deprovision = %d %s", r.code, r.raw)
	}
	finishForegroundDelete(t, e, leaving)

	for pass := range 2 { // two reconcile intervals
		rep, err := e.sched.Reconcile(ctx)
		if err != nil || len(rep.Repaired) != 0 || len(rep.Skipped) != 0 {
			t.Fatalf("reconcile pass %d after deprovisioning = %+v %v", pass, rep, err)
		}
		if got, _ := e.kube.GetCronJob(ctx, kube.Team{OrgID: "acme", TeamNodeID: "leaving"}, leaving); got != nil {
			t.Fatalf("pass %d brought the deprovisioned team's CronJob back (suspended=%v)", pass, suspendedCJ(got))
		}
	}
	if strings.Contains(e.logs.String(), "CronJob drift repaired") || !e.metric(`orchestrator_schedule_drift_total{kind="missing"} 0`) {
		t.Fatal("drift repaired after deprovisioning")
	}
	if !strings.Contains(r.raw, `"action":"remove_schedule"`) {
		t.Fatalf("the run does not say the schedule row was removed: %s", r.raw)
	}
	// A new dry run has nothing of the cluster's to delete, and the
	// schedules list has no row of the team (the teams page's "missing"
	// came from that row).
	dry := e.do("POST", "/api/v1/admin/deprovision/team", adminToken, map[string]any{"org_id": "acme", "team_node_id": "leaving", "dry_run": true})
	if dry.code != 200 || len(dry.body["plan"].([]any)) != 0 {
		t.Fatalf("dry run after deprovisioning = %d %s", dry.code, dry.raw)
	}
	if list := e.do("GET", "/api/v1/admin/schedules?org_id=acme&team_node_id=leaving", adminToken, nil); list.code != 200 ||
		strings.Contains(list.raw, leaving) {
		t.Fatalf("schedules of the deprovisioned team = %d %s", list.code, list.raw)
	}

	// The suspended team: its CronJob stays, suspended, through both passes;
	// deleted by hand, it comes back suspended.
	if cj, _ := e.kube.GetCronJob(ctx, kube.Team{OrgID: "acme", TeamNodeID: "paused"}, paused); cj == nil || !suspendedCJ(cj) {
		t.Fatalf("the suspended team's CronJob = %+v", cj)
	}
	if err := cluster.Clientset.BatchV1().CronJobs(e.kube.Namespace()).Delete(ctx, paused, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err := e.sched.Reconcile(ctx)
	if err != nil || len(rep.Repaired) != 1 || !strings.Contains(rep.Repaired[0], paused+": missing") {
		t.Fatalf("reconcile after the suspended CronJob was deleted = %+v %v", rep, err)
	}
	if cj, _ := e.kube.GetCronJob(ctx, kube.Team{OrgID: "acme", TeamNodeID: "paused"}, paused); cj == nil || !suspendedCJ(cj) {
		t.Fatalf("the suspended team's CronJob was not made again suspended: %+v", cj)
	}
}

// Deprovisioning that keeps the cluster's resources only suspends: the row
// stays (disabled) and the reconciler keeps the CronJob suspended.
func TestDeprovision_KeepingResourcesSuspendsTheSchedule(t *testing.T) {
	e := newEnv(t, envOptions{withCluster: true})
	ctx := context.Background()
	provisionWithSchedule(t, e, "kept")
	name := kube.CronJobName("acme", "kept")
	r := e.do("POST", "/api/v1/admin/deprovision/team", adminToken, map[string]any{"org_id": "acme", "team_node_id": "kept",
		"delete_k8s_resources": false})
	if r.code != 200 || !strings.Contains(r.raw, `"action":"disable_schedule"`) || strings.Contains(r.raw, `"action":"remove_schedule"`) {
		t.Fatalf("deprovision keeping resources = %d %s", r.code, r.raw)
	}
	if rep, err := e.sched.Reconcile(ctx); err != nil || len(rep.Repaired) != 1 || !strings.Contains(rep.Repaired[0], "suspend") {
		t.Fatalf("reconcile = %+v %v", rep, err)
	}
	if cj, _ := e.kube.GetCronJob(ctx, kube.Team{OrgID: "acme", TeamNodeID: "kept"}, name); cj == nil || !suspendedCJ(cj) {
		t.Fatalf("CronJob after deprovisioning without deleting = %+v", cj)
	}
}

func suspendedCJ(cj *batchv1.CronJob) bool { return cj.Spec.Suspend != nil && *cj.Spec.Suspend }

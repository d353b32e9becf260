package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/kube"
	"github.com/incidentfox/orchestrator-edge/kube/kubetest"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/store"
	"k8s.io/apimachinery/pkg/util/validation"
)

const provisionPath = "/api/v1/admin/provision/team"

// fullRequest asks for everything; the team's routing identifiers are its
// own (an identifier belongs to one team, SPEC §18).
func fullRequest(org, team string) map[string]any {
	return map[string]any{
		"org_id": org, "team_node_id": team,
		"routing": map[string]any{
			"slack_channel_ids": []string{"C-" + team}, "github_repos": []string{org + "/" + team},
			"services": []string{team + "-svc"},
		},
		"slack_channel_ids":        []string{"C-" + team + "-extra", "C-" + team},
		"create_pipeline_schedule": true, "pipeline_schedule": "0 2 * * *",
		"deployment_mode": "dedicated",
	}
}

func TestProvision_FullRunCreatesEverythingInTheRealCluster(t *testing.T) {
	e := newEnv(t, envOptions{withCluster: true})
	ctx := context.Background()
	r := e.do("POST", provisionPath, adminToken, fullRequest("acme", "platform-sre"))
	if r.code != 200 || r.body["status"] != "succeeded" {
		t.Fatalf("provision = %d %s", r.code, r.raw)
	}
	runID := r.body["provisioning_run_id"].(string)
	if r.header.Get("X-Provisioning-Run-Id") != runID {
		t.Fatal("run id header missing")
	}
	for _, name := range []string{"team_node", "routing_config", "team_token", "pipeline_cronjob", "pipeline_bootstrap", "dedicated_agent"} {
		if got := steps(r.body)[name]; got != "succeeded" {
			t.Errorf("step %s = %q, want succeeded", name, got)
		}
	}

	// Config Service: node, routing (alias merged, de-duplicated), token,
	// dedicated URL.
	cfg, ok := e.cs.NodeConfig("acme", "platform-sre")
	if !ok {
		t.Fatal("team node not created")
	}
	routing := cfg["routing"].(map[string]any)
	if got := fmt.Sprint(routing["slack_channel_ids"]); got != "[C-platform-sre C-platform-sre-extra]" {
		t.Errorf("slack channels = %s", got)
	}
	if cfg["ai_pipeline"].(map[string]any)["team_id"] != "platform-sre" {
		t.Errorf("ai_pipeline.team_id = %v", cfg["ai_pipeline"])
	}
	agentName := kube.DedicatedAgentName("acme", "platform-sre")
	wantURL := fmt.Sprintf("http://%s.%s.svc.cluster.local:8000", agentName, e.kube.Namespace())
	if got := cfg["agent"].(map[string]any)["dedicated_service_url"]; got != wantURL {
		t.Errorf("dedicated url = %v, want %s", got, wantURL)
	}
	tokens := e.cs.Tokens("acme", "platform-sre")
	if len(tokens) != 1 || tokens[0].Revoked {
		t.Fatalf("tokens = %+v", tokens)
	}
	token, _ := r.body["team_token"].(string)
	if !strings.HasPrefix(token, tokens[0].ID+".") {
		t.Fatalf("team_token %q is not the issued token %s", token, tokens[0].ID)
	}

	// The real API server holds a valid CronJob, Deployment and Service.
	cj, err := e.kube.GetCronJob(ctx, kube.Team{OrgID: "acme", TeamNodeID: "platform-sre"}, "ai-pipeline-acme-platform-sre")
	if err != nil || cj == nil {
		t.Fatalf("cronjob: %v", err)
	}
	spec := cj.Spec.JobTemplate.Spec
	c := spec.Template.Spec.Containers[0]
	checks := map[string]bool{
		"schedule":        cj.Spec.Schedule == "0 2 * * *",
		"forbid":          cj.Spec.ConcurrencyPolicy == "Forbid",
		"history":         *cj.Spec.SuccessfulJobsHistoryLimit == 3 && *cj.Spec.FailedJobsHistoryLimit == 3,
		"ttl":             *spec.TTLSecondsAfterFinished == 86400,
		"backoff":         *spec.BackoffLimit == 2,
		"restart":         spec.Template.Spec.RestartPolicy == "Never",
		"image":           c.Image == "registry.local/ai-pipeline:1",
		"service account": spec.Template.Spec.ServiceAccountName == "ai-pipeline",
		"command":         strings.Join(c.Command, " ") == "python -m ai_learning_pipeline run-scheduled --team-id platform-sre --org-id acme",
		"requests":        c.Resources.Requests.Cpu().String() == "500m" && c.Resources.Requests.Memory().String() == "1Gi",
		"limits":          c.Resources.Limits.Cpu().String() == "2" && c.Resources.Limits.Memory().String() == "4Gi",
		"labels":          cj.Labels["app.kubernetes.io/managed-by"] == "incidentfox-orchestrator" && cj.Labels["app.kubernetes.io/component"] == "scheduled-ingestion",
		"annotations":     cj.Annotations[kube.AnnotationOrg] == "acme" && cj.Annotations[kube.AnnotationTeam] == "platform-sre",
		"env":             len(c.Env) == 3 && c.Env[0].Name == "ORG_ID" && c.Env[2].Value == "http://config-service:8080",
	}
	for name, ok := range checks {
		if !ok {
			t.Errorf("cronjob %s wrong", name)
		}
	}
	objs, err := e.kube.TeamObjects(ctx, "acme", "platform-sre")
	if err != nil || len(objs) != 3 {
		t.Fatalf("team objects = %v %v", objs, err)
	}

	// The schedule row, and the run record with six succeeded steps and no token.
	sched, err := e.db.GetSchedule(ctx, "acme", "platform-sre", store.ScheduleIngestion)
	if err != nil || sched.CronJobName != cj.Name || !sched.Enabled {
		t.Fatalf("schedule row = %+v %v", sched, err)
	}
	run := e.do("GET", "/api/v1/admin/provision/runs/"+runID, adminToken, nil)
	if run.code != 200 || run.body["status"] != "succeeded" || run.body["actor"] != "alice" {
		t.Fatalf("run = %d %s", run.code, run.raw)
	}
	succeeded := 0
	for _, st := range steps(run.body) {
		if st == "succeeded" {
			succeeded++
		}
	}
	if succeeded != 7 {
		t.Fatalf("run record has %d succeeded steps, want 7: %s", succeeded, run.raw)
	}
	// The token appears once: in that answer, nowhere stored or logged.
	if strings.Contains(run.raw, token) || strings.Contains(e.logs.String(), token) {
		t.Fatal("the team token was stored or logged")
	}
	stored, _ := e.db.GetRun(ctx, runID)
	if strings.Contains(string(stored.Response), token) || strings.Contains(string(stored.Steps), token) {
		t.Fatal("the team token is in the database")
	}

	// A second request converges: nothing new is created, no new token.
	again := e.do("POST", provisionPath, adminToken, fullRequest("acme", "platform-sre"))
	if again.code != 200 || again.body["team_token"] != nil || len(e.cs.Tokens("acme", "platform-sre")) != 1 {
		t.Fatalf("second provision = %d %s", again.code, again.raw)
	}
	if !strings.Contains(stepField(again.body, "team_token", "detail"), "already has an active token") {
		t.Fatalf("second run token step: %s", again.raw)
	}
}

func TestProvision_LongIDsGiveValidUniqueNames(t *testing.T) {
	e := newEnv(t, envOptions{withCluster: true})
	org := "acme"
	e.cs.AddOrg(strings.Repeat("o", 120))
	long1, long2 := strings.Repeat("t", 127)+"a", strings.Repeat("t", 127)+"b"
	names := map[string]bool{}
	for _, req := range []map[string]any{
		{"org_id": org, "team_node_id": long1, "create_pipeline_schedule": true, "deployment_mode": "dedicated"},
		{"org_id": org, "team_node_id": long2, "create_pipeline_schedule": true, "deployment_mode": "dedicated"},
		{"org_id": strings.Repeat("o", 120), "team_node_id": "Team.With_Odd-Chars", "create_pipeline_schedule": true},
	} {
		r := e.do("POST", provisionPath, adminToken, req)
		if r.code != 200 {
			t.Fatalf("provision %v = %d %s", req["team_node_id"], r.code, r.raw)
		}
		name := kube.CronJobName(req["org_id"].(string), req["team_node_id"].(string))
		if len(name) > 52 || len(validation.IsDNS1123Subdomain(name)) > 0 || names[name] {
			t.Fatalf("cronjob name %q (%d chars) invalid or reused", name, len(name))
		}
		names[name] = true
		if cj, err := e.kube.GetCronJob(context.Background(), kube.Team{OrgID: req["org_id"].(string), TeamNodeID: req["team_node_id"].(string)}, name); err != nil || cj == nil {
			t.Fatalf("cronjob %s not in the cluster: %v", name, err)
		}
	}
}

// Each step, made to fail, leaves nothing this run created behind.
func TestProvision_FailureAtEachStepLeavesNoOrphan(t *testing.T) {
	cases := []struct {
		step   string
		inject func(e *env)
		status int
		code   string
	}{
		{"team_node", func(e *env) { e.cs.Fail(peerstest.RouteGetNode, peerstest.Fault{Status: 500}) }, 502, "peer_unavailable"},
		{"routing_config", func(e *env) { e.cs.Fail(peerstest.RoutePatchConfig, peerstest.Fault{Status: 422}) }, 502, "peer_rejected"},
		{"team_token", func(e *env) { e.cs.Fail(peerstest.RouteIssueToken, peerstest.Fault{Close: true}) }, 502, "peer_unavailable"},
		{"pipeline_cronjob", func(e *env) { e.faulty.failOn("ApplyCronJob", fmt.Errorf("%w: injected", kube.ErrNotAvailable)) }, 503, "kubernetes_not_available"},
		{"pipeline_bootstrap", func(e *env) { e.pipe.Fail(peerstest.RouteBootstrap, peerstest.Fault{Status: 503}) }, 502, "peer_unavailable"},
		{"dedicated_agent", func(e *env) { e.faulty.failOn("ApplyService", errors.New("injected: service refused")) }, 502, "kubernetes_error"},
		{"dedicated_agent (config patch)", func(e *env) {
			// The routing patch passes; the dedicated URL patch, made after
			// the Deployment and Service exist, is refused.
			e.cs.Fail(peerstest.RoutePatchConfig, peerstest.Fault{Status: 403, Skip: 1})
		}, 403, "peer_forbidden"},
	}
	for _, tc := range cases {
		t.Run(tc.step, func(t *testing.T) {
			e := newEnv(t, envOptions{withCluster: true})
			team := "team-" + strings.ReplaceAll(strings.Fields(tc.step)[0], "_", "-")
			tc.inject(e)
			r := e.do("POST", provisionPath, adminToken, fullRequest("acme", team))
			if r.code != tc.status || r.body["error"] != tc.code || r.body["status"] != "failed" {
				t.Fatalf("provision = %d %s, want %d %s", r.code, r.raw, tc.status, tc.code)
			}
			stepName := strings.Fields(tc.step)[0]
			if got := steps(r.body)[stepName]; got != "failed" || stepField(r.body, stepName, "error") == "" {
				t.Fatalf("step %s = %q: %s", stepName, got, r.raw)
			}
			assertNoOrphans(t, e, "acme", team)
			run, err := e.db.GetRun(context.Background(), r.body["provisioning_run_id"].(string))
			if err != nil || run.Status != "failed" || !strings.Contains(run.Error, tc.code) {
				t.Fatalf("stored run = %+v %v", run, err)
			}
		})
	}
}

// assertNoOrphans checks that a failed run left no cluster object, no
// active token and no schedule row of the team.
func assertNoOrphans(t *testing.T, e *env, org, team string) {
	t.Helper()
	objs, err := e.kube.TeamObjects(context.Background(), org, team)
	if err != nil || len(objs) != 0 {
		t.Errorf("orphaned cluster objects: %v %v", objs, err)
	}
	for _, tok := range e.cs.Tokens(org, team) {
		if !tok.Revoked {
			t.Errorf("token %s left active", tok.ID)
		}
	}
	if _, err := e.db.GetSchedule(context.Background(), org, team, store.ScheduleIngestion); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("schedule row left behind: %v", err)
	}
}

func TestProvision_CompensationIsRecordedInTheSteps(t *testing.T) {
	e := newEnv(t, envOptions{withCluster: true})
	e.pipe.Fail(peerstest.RouteBootstrap, peerstest.Fault{Status: 500})
	r := e.do("POST", provisionPath, adminToken, fullRequest("acme", "comp"))
	st := steps(r.body)
	if st["team_token"] != "compensated" || st["pipeline_cronjob"] != "compensated" || st["pipeline_bootstrap"] != "failed" || st["dedicated_agent"] != "skipped" {
		t.Fatalf("steps = %v", st)
	}
	if st["compensate_team_token"] != "succeeded" || st["compensate_pipeline_cronjob"] != "succeeded" {
		t.Fatalf("compensation entries = %v", st)
	}
	if !strings.Contains(stepField(r.body, "compensate_pipeline_cronjob", "detail"), "undid CronJob/ai-pipeline-acme-comp") {
		t.Fatalf("compensation detail: %s", r.raw)
	}
	if r.body["team_token"] != nil {
		t.Fatal("a failed run returned the (revoked) token")
	}
}

func TestProvision_ClusterUnreachableIs503BeforeAnyPeerCall(t *testing.T) {
	kubetest.Require(t, cluster)
	cfg := *cluster.Config
	cfg.Host = "https://127.0.0.1:1"
	cfg.Timeout = 2 * time.Second
	down, err := kube.NewForConfig(&cfg, "default")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{cluster: down})
	r := e.do("POST", provisionPath, adminToken, fullRequest("acme", "unreachable"))
	if r.code != 503 || r.body["error"] != "kubernetes_not_available" {
		t.Fatalf("provision = %d %s", r.code, r.raw)
	}
	for _, c := range e.cs.Calls() {
		if c.Route != peerstest.RouteAuthMe {
			t.Errorf("Config Service called: %s", c.Route)
		}
	}
	if e.cs.HasNode("acme", "unreachable") || len(e.pipe.Calls()) != 0 {
		t.Fatal("partial state left behind")
	}
	runs, _, _ := e.db.ListRuns(context.Background(), store.RunFilter{Limit: 10})
	if len(runs) != 1 || runs[0].Status != "failed" || !strings.Contains(runs[0].Error, "kubernetes_not_available") {
		t.Fatalf("run not recorded as failed: %+v", runs)
	}
	// Without any cluster configured, the same.
	e = newEnv(t, envOptions{})
	if r := e.do("POST", provisionPath, adminToken, fullRequest("acme", "none")); r.code != 503 || r.body["error"] != "kubernetes_not_available" {
		t.Fatalf("no cluster = %d %s", r.code, r.raw)
	}
	// A team that needs no cluster is still provisioned.
	if r := e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "acme", "team_node_id": "shared"}); r.code != 200 {
		t.Fatalf("shared team without cluster = %d %s", r.code, r.raw)
	}
}

func TestProvision_IdempotencyReplayReuseAndInUse(t *testing.T) {
	e := newEnv(t, envOptions{})
	req := map[string]any{"org_id": "acme", "team_node_id": "idem", "idempotency_key": "key-1"}
	first := e.do("POST", provisionPath, adminToken, req)
	if first.code != 200 || first.body["team_token"] == nil {
		t.Fatalf("first = %d %s", first.code, first.raw)
	}
	calls := len(e.cs.Calls())
	// Same key (as header this time) and same body: the stored answer.
	sameBody := map[string]any{"org_id": "acme", "team_node_id": "idem"}
	replay := e.do("POST", provisionPath, adminToken, sameBody, "Idempotency-Key", "key-1")
	if replay.code != 200 || replay.header.Get("Idempotent-Replayed") != "true" ||
		replay.body["provisioning_run_id"] != first.body["provisioning_run_id"] || replay.body["team_token"] != nil {
		t.Fatalf("replay = %d %v %s", replay.code, replay.header, replay.raw)
	}
	if got := len(e.cs.Calls()); got != calls+1 { // only /auth/me
		t.Fatalf("replay made %d peer calls", got-calls-1)
	}
	// Same key, other body: 422.
	other := map[string]any{"org_id": "acme", "team_node_id": "idem", "deployment_mode": "shared", "routing": map[string]any{"services": []string{"x"}}, "idempotency_key": "key-1"}
	if r := e.do("POST", provisionPath, adminToken, other); r.code != 422 || r.body["error"] != "idempotency_key_reused" {
		t.Fatalf("reuse = %d %s", r.code, r.raw)
	}
	// Header and body keys that differ: 400.
	if r := e.do("POST", provisionPath, adminToken, req, "Idempotency-Key", "key-2"); r.code != 400 || r.body["error"] != "idempotency_key_mismatch" {
		t.Fatalf("mismatch = %d %s", r.code, r.raw)
	}
	// A failed run replays its failure too.
	e.pipe.Fail(peerstest.RouteBootstrap, peerstest.Fault{Status: 500, Times: 1})
	failReq := map[string]any{"org_id": "acme", "team_node_id": "idem2", "idempotency_key": "key-f"}
	f1 := e.do("POST", provisionPath, adminToken, failReq)
	f2 := e.do("POST", provisionPath, adminToken, failReq)
	if f1.code != 502 || f2.code != 502 || f2.header.Get("Idempotent-Replayed") != "true" || f2.body["error"] != "peer_unavailable" {
		t.Fatalf("failed replay = %d/%d %s", f1.code, f2.code, f2.raw)
	}
}

func TestProvision_TwoRequestsWithOneKeyGiveOne409(t *testing.T) {
	e := newEnv(t, envOptions{})
	hold := make(chan struct{})
	e.pipe.Fail(peerstest.RouteBootstrap, peerstest.Fault{Until: hold})
	req := map[string]any{"org_id": "acme", "team_node_id": "busy", "idempotency_key": "same"}
	first := make(chan response, 1)
	go func() { first <- e.do("POST", provisionPath, adminToken, req) }()
	waitFor(t, "the bootstrap call", func() bool { return len(e.pipe.CallsTo(peerstest.RouteBootstrap)) > 0 })
	second := e.do("POST", provisionPath, adminToken, req)
	if second.code != 409 || second.body["error"] != "idempotency_key_in_use" {
		t.Fatalf("second = %d %s", second.code, second.raw)
	}
	close(hold)
	if r := <-first; r.code != 200 {
		t.Fatalf("first = %d %s", r.code, r.raw)
	}
	// Once it is done, the same request is a replay.
	if r := e.do("POST", provisionPath, adminToken, req); r.code != 200 || r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("after completion = %d %s", r.code, r.raw)
	}
}

// Two requests for one team with different keys: the second waits for the
// team lock, so its first step starts only after the first run's last step.
func TestProvision_ConcurrentRequestsForOneTeamSerialize(t *testing.T) {
	e := newEnv(t, envOptions{lockWait: time.Minute})
	hold := make(chan struct{})
	e.pipe.Fail(peerstest.RouteBootstrap, peerstest.Fault{Until: hold, Times: 1})
	results := make(chan response, 2)
	go func() {
		results <- e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "acme", "team_node_id": "ser", "idempotency_key": "a"})
	}()
	waitFor(t, "the bootstrap call", func() bool { return len(e.pipe.CallsTo(peerstest.RouteBootstrap)) > 0 })
	go func() {
		results <- e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "acme", "team_node_id": "ser", "idempotency_key": "b"})
	}()
	// Wait until the second run is recorded (it then waits on the lock), and
	// give a broken lock a moment to show itself before releasing the first.
	waitFor(t, "the second run's record", func() bool {
		runs, _, _ := e.db.ListRuns(context.Background(), store.RunFilter{TeamNodeID: "ser", Limit: 5})
		return len(runs) == 2
	})
	time.Sleep(50 * time.Millisecond)
	close(hold)
	r1, r2 := <-results, <-results
	if r1.code != 200 || r2.code != 200 {
		t.Fatalf("results = %d %s / %d %s", r1.code, r1.raw, r2.code, r2.raw)
	}
	first, second := r1.body, r2.body
	if first["team_token"] == nil { // the first to finish issued the token
		first, second = second, first
	}
	firstEnd, _ := time.Parse(time.RFC3339Nano, stepField(first, "pipeline_bootstrap", "finished_at"))
	secondStart, _ := time.Parse(time.RFC3339Nano, stepField(second, "team_node", "started_at"))
	if secondStart.Before(firstEnd) {
		t.Fatalf("second run started %v before the first finished %v: the team lock did not serialize them", secondStart, firstEnd)
	}
}

func TestProvision_LockTimeoutIs409TeamBusy(t *testing.T) {
	e := newEnv(t, envOptions{lockWait: 100 * time.Millisecond})
	locks, _ := store.NewLocks(e.dataDir, time.Minute)
	unlock, err := locks.Acquire(context.Background(), store.TeamLockKey("acme", "held"))
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	r := e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "acme", "team_node_id": "held"})
	if r.code != 409 || r.body["error"] != "team_busy" {
		t.Fatalf("provision while locked = %d %s", r.code, r.raw)
	}
	if e.cs.HasNode("acme", "held") {
		t.Fatal("steps ran without the lock")
	}
}

func TestProvision_BadInputIsRefusedBeforeAnything(t *testing.T) {
	e := newEnv(t, envOptions{withCluster: true})
	huge := `{"org_id":"acme","team_node_id":"x","routing":{"services":["` + strings.Repeat("a", 2<<20) + `"]}}`
	cases := []struct {
		name   string
		body   any
		header []string
		status int
		code   string
	}{
		{"unknown field", `{"org_id":"acme","team_node_id":"t","colour":"blue"}`, nil, 400, "unknown_field"},
		{"bad org id", map[string]any{"org_id": "acme/../x", "team_node_id": "t"}, nil, 400, "invalid_org_id"},
		{"empty team", map[string]any{"org_id": "acme", "team_node_id": ""}, nil, 400, "invalid_team_node_id"},
		{"long team", map[string]any{"org_id": "acme", "team_node_id": strings.Repeat("t", 129)}, nil, 400, "invalid_team_node_id"},
		{"bad cron", map[string]any{"org_id": "acme", "team_node_id": "t", "create_pipeline_schedule": true, "pipeline_schedule": "not a cron"}, nil, 400, "invalid_cron_expression"},
		{"six-field cron", map[string]any{"org_id": "acme", "team_node_id": "t", "create_pipeline_schedule": true, "pipeline_schedule": "0 0 2 * * *"}, nil, 400, "invalid_cron_expression"},
		{"cron with zone", map[string]any{"org_id": "acme", "team_node_id": "t", "create_pipeline_schedule": true, "pipeline_schedule": "CRON_TZ=UTC 0 2 * * *"}, nil, 400, "invalid_cron_expression"},
		{"wrong type", `{"org_id":"acme","team_node_id":"t","create_pipeline_schedule":"yes"}`, nil, 400, "invalid_field_type"},
		{"routing not object", `{"org_id":"acme","team_node_id":"t","routing":["C1"]}`, nil, 400, "invalid_field_type"},
		{"bad mode", map[string]any{"org_id": "acme", "team_node_id": "t", "deployment_mode": "exclusive"}, nil, 400, "invalid_deployment_mode"},
		{"empty routing entry", map[string]any{"org_id": "acme", "team_node_id": "t", "routing": map[string]any{"github_repos": []string{""}}}, nil, 400, "invalid_routing"},
		{"malformed json", `{"org_id":"acme",`, nil, 400, "invalid_json"},
		{"not an object", `["acme"]`, nil, 400, "invalid_json"},
		{"duplicate key", `{"org_id":"acme","org_id":"globex","team_node_id":"t"}`, nil, 400, "duplicate_key"},
		{"empty body", ``, nil, 400, "empty_body"},
		{"trailing data", `{"org_id":"acme","team_node_id":"t"} {}`, nil, 400, "invalid_json"},
		{"deep nesting", `{"org_id":"acme","team_node_id":"t","routing":` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `}`, nil, 400, "invalid_json"},
		{"invalid utf-8", "{\"org_id\":\"acme\xff\",\"team_node_id\":\"t\"}", nil, 400, "invalid_json"},
		{"huge body", huge, nil, 413, "body_too_large"},
		{"form content type", `org_id=acme`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"},
		{"bad idempotency key", map[string]any{"org_id": "acme", "team_node_id": "t", "idempotency_key": "has space"}, nil, 400, "invalid_idempotency_key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.cs.Calls())
			r := e.do("POST", provisionPath, adminToken, tc.body, tc.header...)
			if r.code != tc.status || r.body["error"] != tc.code {
				t.Fatalf("= %d %s, want %d %s", r.code, r.raw, tc.status, tc.code)
			}
			for _, c := range e.cs.Calls()[before:] {
				if c.Route != peerstest.RouteAuthMe {
					t.Errorf("peer called: %s", c.Route)
				}
			}
		})
	}
	runs, _, _ := e.db.ListRuns(context.Background(), store.RunFilter{Limit: 10})
	objs, _ := e.kube.TeamObjects(context.Background(), "acme", "t")
	if len(runs) != 0 || len(objs) != 0 || len(e.pipe.Calls()) != 0 {
		t.Fatalf("bad input left runs %d, objects %v, pipeline calls %d", len(runs), objs, len(e.pipe.Calls()))
	}
}

func TestDeprovision_DryRunPlansExactlyWhatIsThenDeleted(t *testing.T) {
	e := newEnv(t, envOptions{withCluster: true})
	ctx := context.Background()
	if r := e.do("POST", provisionPath, adminToken, fullRequest("acme", "leaving")); r.code != 200 {
		t.Fatalf("provision = %d %s", r.code, r.raw)
	}
	// A hand-made object with the team's labels is found too; another team's is not.
	if r := e.do("POST", provisionPath, adminToken, fullRequest("acme", "staying")); r.code != 200 {
		t.Fatal(r.raw)
	}
	req := map[string]any{"org_id": "acme", "team_node_id": "leaving", "revoke_tokens": true, "clear_routing": true, "dry_run": true}
	dry := e.do("POST", "/api/v1/admin/deprovision/team", adminToken, req)
	if dry.code != 200 || dry.body["ok"] != true || dry.body["dry_run"] != true || len(dry.body["deleted"].([]any)) != 0 {
		t.Fatalf("dry run = %d %s", dry.code, dry.raw)
	}
	plan, _ := json.Marshal(dry.body["plan"])
	for _, want := range []string{`"kind":"CronJob"`, `"kind":"Deployment"`, `"kind":"Service"`, `"action":"revoke_token"`, `"action":"clear_routing"`, `"action":"remove_schedule"`} {
		if !strings.Contains(string(plan), want) {
			t.Errorf("plan lacks %s: %s", want, plan)
		}
	}
	if objs, _ := e.kube.TeamObjects(ctx, "acme", "leaving"); len(objs) != 3 {
		t.Fatalf("dry run changed the cluster: %v", objs)
	}
	if e.cs.Tokens("acme", "leaving")[0].Revoked {
		t.Fatal("dry run revoked a token")
	}

	req["dry_run"] = false
	real := e.do("POST", "/api/v1/admin/deprovision/team", adminToken, req)
	deleted, _ := json.Marshal(real.body["deleted"])
	if real.code != 200 || real.body["ok"] != true || string(deleted) != string(plan) {
		t.Fatalf("deprovision = %d\nplan    %s\ndeleted %s\n%s", real.code, plan, deleted, real.raw)
	}
	if objs, _ := e.kube.TeamObjects(ctx, "acme", "leaving"); len(objs) != 0 {
		t.Fatalf("objects left: %v", objs)
	}
	if objs, _ := e.kube.TeamObjects(ctx, "acme", "staying"); len(objs) != 3 {
		t.Fatalf("another team's objects touched: %v", objs)
	}
	if !e.cs.Tokens("acme", "leaving")[0].Revoked {
		t.Fatal("token not revoked")
	}
	cfg, _ := e.cs.NodeConfig("acme", "leaving")
	if got := fmt.Sprint(cfg["routing"].(map[string]any)["slack_channel_ids"]); got != "[]" {
		t.Fatalf("routing not cleared: %s", got)
	}
	if _, err := e.db.GetSchedule(ctx, "acme", "leaving", store.ScheduleIngestion); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the schedule row of the deleted CronJob is still there: %v", err)
	}

	// Again: harmless, nothing to do.
	again := e.do("POST", "/api/v1/admin/deprovision/team", adminToken, req)
	if again.code != 200 || again.body["ok"] != true || len(again.body["plan"].([]any)) != 1 { // clear_routing is always planned
		t.Fatalf("second deprovision = %d %s", again.code, again.raw)
	}
	runs := e.do("GET", "/api/v1/admin/provision/runs?kind=deprovision&team_node_id=leaving", adminToken, nil)
	if n := len(runs.body["runs"].([]any)); n != 3 {
		t.Fatalf("%d deprovision runs recorded, want 3 (dry, real, again): %s", n, runs.raw)
	}
}

func TestRecover_InterruptedRunIsFailedAndItsCreationsUndone(t *testing.T) {
	e := newEnv(t, envOptions{withCluster: true})
	ctx := context.Background()
	// What a crash after the cronjob step leaves: a running run whose steps
	// record a token and a CronJob.
	if r := e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "acme", "team_node_id": "crash"}); r.code != 200 {
		t.Fatal(r.raw)
	}
	tokenID := e.cs.Tokens("acme", "crash")[0].ID
	name := kube.CronJobName("acme", "crash")
	cj := kube.PipelineCronJob(kube.PipelineCronJobSpec{Team: kube.Team{OrgID: "acme", TeamNodeID: "crash"}, Name: name,
		Component: "scheduled-ingestion", Schedule: "0 2 * * *", Image: "x", Command: []string{"x"}})
	if _, err := e.kube.ApplyCronJob(ctx, cj); err != nil {
		t.Fatal(err)
	}
	recorded := fmt.Sprintf(`[{"name":"team_node","status":"succeeded"},{"name":"routing_config","status":"succeeded"},
		{"name":"team_token","status":"succeeded","created":["token %s"]},
		{"name":"pipeline_cronjob","status":"running","created":["CronJob/%s"]},
		{"name":"pipeline_bootstrap","status":"pending"},{"name":"dedicated_agent","status":"pending"}]`, tokenID, name)
	now := wallclock.Now()
	if _, err := e.db.StartRun(ctx, store.Run{ID: "0b8a4f0e-5d0c-4b8e-9a51-3c1d2e3f4a5b", Kind: "provision", OrgID: "acme",
		TeamNodeID: "crash", Status: "running", Steps: json.RawMessage(recorded), CreatedAt: now, UpdatedAt: now}, now); err != nil {
		t.Fatal(err)
	}
	n, err := e.prov.Recover(ctx, 0)
	if err != nil || n != 1 {
		t.Fatalf("recover = %d %v", n, err)
	}
	run := e.do("GET", "/api/v1/admin/provision/runs/0b8a4f0e-5d0c-4b8e-9a51-3c1d2e3f4a5b", adminToken, nil)
	st := steps(run.body)
	if run.body["status"] != "failed" || !strings.Contains(run.body["error"].(string), "interrupted") ||
		st["pipeline_cronjob"] != "failed" || st["team_token"] != "compensated" || st["pipeline_bootstrap"] != "skipped" {
		t.Fatalf("recovered run = %s", run.raw)
	}
	if objs, _ := e.kube.TeamObjects(ctx, "acme", "crash"); len(objs) != 0 {
		t.Fatalf("interrupted run's CronJob left: %v", objs)
	}
	if !e.cs.Tokens("acme", "crash")[0].Revoked {
		t.Fatal("interrupted run's token left active")
	}
	if n, _ := e.prov.Recover(ctx, 0); n != 0 {
		t.Fatal("recover found the run again")
	}
}

func TestRuns_ListFiltersPaginationAndNotFound(t *testing.T) {
	e := newEnv(t, envOptions{})
	for i := range 5 {
		if r := e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "acme", "team_node_id": fmt.Sprintf("t%d", i)}); r.code != 200 {
			t.Fatal(r.raw)
		}
	}
	e.cs.AddTeam("globex", "g1", nil)
	if r := e.do("POST", provisionPath, adminToken, map[string]any{"org_id": "globex", "team_node_id": "g1"}); r.code != 200 {
		t.Fatal(r.raw)
	}
	var ids []string
	cursor := ""
	for page := 0; page < 5; page++ {
		r := e.do("GET", "/api/v1/admin/provision/runs?org_id=acme&limit=2&cursor="+cursor, adminToken, nil)
		if r.code != 200 {
			t.Fatalf("list = %d %s", r.code, r.raw)
		}
		for _, run := range r.body["runs"].([]any) {
			ids = append(ids, run.(map[string]any)["team_node_id"].(string))
		}
		cursor, _ = r.body["next_cursor"].(string)
		if cursor == "" {
			break
		}
	}
	if strings.Join(ids, ",") != "t4,t3,t2,t1,t0" {
		t.Fatalf("paged runs = %v", ids)
	}
	for _, q := range []string{"limit=0", "limit=500", "status=done", "kind=x", "org_id=a/b", "cursor=zzz"} {
		if r := e.do("GET", "/api/v1/admin/provision/runs?"+q, adminToken, nil); r.code != 400 || r.body["error"] != "invalid_query" {
			t.Errorf("%s = %d %s", q, r.code, r.raw)
		}
	}
	if r := e.do("GET", "/api/v1/admin/provision/runs/../../etc/passwd", adminToken, nil); r.code != 404 {
		t.Errorf("traversal = %d %s", r.code, r.raw)
	}
	for _, id := range []string{"nope", "..", "0b8a4f0e-5d0c-4b8e-9a51-3c1d2e3f4a5b", "0b8a4f0e5d0c4b8e9a513c1d2e3f4a5b", "%00"} {
		if r := e.do("GET", "/api/v1/admin/provision/runs/"+id, adminToken, nil); r.code != 404 || r.body["error"] != "run_not_found" {
			t.Errorf("run %s = %d %s", id, r.code, r.raw)
		}
	}
	// An org-scoped admin sees its org only.
	if r := e.do("GET", "/api/v1/admin/provision/runs", orgToken, nil); r.code != 200 || len(r.body["runs"].([]any)) != 5 {
		t.Fatalf("org admin list = %d %s", r.code, r.raw)
	}
	if r := e.do("GET", "/api/v1/admin/provision/runs?org_id=globex", orgToken, nil); r.code != 403 {
		t.Fatalf("org admin listing another org = %d", r.code)
	}
}

func TestAdminAuth(t *testing.T) {
	e := newEnv(t, envOptions{requireStar: true, authTTL: time.Minute})
	body := map[string]any{"org_id": "acme", "team_node_id": "auth"}
	cases := []struct {
		name   string
		token  string
		header []string
		status int
		code   string
	}{
		{"missing", "", nil, 401, "missing_admin_token"},
		{"unknown", "nope", nil, 401, "invalid_admin_token"},
		{"not admin role", viewerToken, nil, 403, "insufficient_permissions"},
		{"scoped under REQUIRE_ADMIN_STAR", scopedToken, nil, 403, "insufficient_permissions"},
		{"other org", orgToken, nil, 0, ""},
	}
	for _, tc := range cases {
		r := e.do("POST", provisionPath, tc.token, body, tc.header...)
		if tc.status != 0 && (r.code != tc.status || r.body["error"] != tc.code) {
			t.Errorf("%s = %d %s", tc.name, r.code, r.raw)
		}
	}
	if r := e.do("POST", provisionPath, orgToken, map[string]any{"org_id": "globex", "team_node_id": "x"}); r.code != 403 {
		t.Errorf("org-scoped admin on another org = %d %s", r.code, r.raw)
	}
	if r := e.do("POST", provisionPath, "", body, "X-Admin-Token", adminToken); r.code != 200 {
		t.Errorf("X-Admin-Token = %d %s", r.code, r.raw)
	}
	// Successes are cached (one /auth/me for many requests); a refused
	// token is remembered briefly too (SPEC §18), so each new bad token costs
	// one call and a repeated one none.
	before := len(e.cs.CallsTo(peerstest.RouteAuthMe))
	for i := range 3 {
		e.do("GET", "/api/v1/admin/provision/runs", adminToken, nil)
		e.do("GET", "/api/v1/admin/provision/runs", fmt.Sprintf("nope-%d", i), nil)
		e.do("GET", "/api/v1/admin/provision/runs", fmt.Sprintf("nope-%d", i), nil)
	}
	if got := len(e.cs.CallsTo(peerstest.RouteAuthMe)) - before; got != 3 {
		t.Errorf("/auth/me calls = %d, want 3 (0 for the cached admin, 1 for each new bad token)", got)
	}
	// Config Service down: 503, and the bad state is not cached.
	e.cs.AddAdmin("fresh-token", peers.Identity{Role: "admin", Permissions: []string{"admin:*"}})
	e.cs.Fail(peerstest.RouteAuthMe, peerstest.Fault{Status: 500})
	if r := e.do("GET", "/api/v1/admin/provision/runs", "fresh-token", nil); r.code != 503 || r.body["error"] != "config_service_unavailable" {
		t.Errorf("config service down = %d %s", r.code, r.raw)
	}
	e.cs.Clear()
	if r := e.do("GET", "/api/v1/admin/provision/runs", "fresh-token", nil); r.code != 200 {
		t.Errorf("after the Config Service recovers = %d %s", r.code, r.raw)
	}

	// With REQUIRE_ADMIN_STAR=0 the scoped permission suffices, and only it.
	e2 := newEnv(t, envOptions{requireStar: false})
	if r := e2.do("POST", provisionPath, scopedToken, body); r.code != 200 {
		t.Errorf("scoped provision = %d %s", r.code, r.raw)
	}
	if r := e2.do("POST", "/api/v1/admin/deprovision/team", scopedToken, map[string]any{"org_id": "acme", "team_node_id": "auth", "delete_k8s_resources": false}); r.code != 403 {
		t.Errorf("scoped deprovision = %d %s", r.code, r.raw)
	}
	if !strings.Contains(e.logs.String(), "request") || strings.Contains(e.logs.String(), adminToken) {
		t.Error("an admin token reached the logs")
	}
}

package server_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/kube"
	"github.com/incidentfox/orchestrator-edge/kube/kubetest"
	"github.com/incidentfox/orchestrator-edge/migrations"
	"github.com/incidentfox/orchestrator-edge/server"
	"github.com/incidentfox/orchestrator-edge/server/agentrun"
	"github.com/incidentfox/orchestrator-edge/server/answers"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/backups"
	"github.com/incidentfox/orchestrator-edge/server/dispatch"
	"github.com/incidentfox/orchestrator-edge/server/ingest"
	"github.com/incidentfox/orchestrator-edge/server/noise"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/policy"
	"github.com/incidentfox/orchestrator-edge/server/provision"
	"github.com/incidentfox/orchestrator-edge/server/queue"
	"github.com/incidentfox/orchestrator-edge/server/routing"
	"github.com/incidentfox/orchestrator-edge/server/schedules"
	"github.com/incidentfox/orchestrator-edge/server/tracing"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/incidentfox/orchestrator-edge/webui"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

var cluster *kubetest.Cluster

func TestMain(m *testing.M) {
	// A fuzz run (FuzzDoorToStore) needs no cluster: each of its worker
	// processes would start one.
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		code := m.Run()
		pgtest.StopShared()
		os.Exit(code)
	}
	code := kubetest.Main(m, &cluster)
	if n := apiAnswers.Load(); n > 0 {
		fmt.Printf("openapi: %d answers and %d accepted requests checked against the document\n", n, apiRequests.Load())
	}
	pgtest.StopShared()
	os.Exit(code)
}

// The admin tokens every harness knows.
const (
	adminToken  = "admin-star-token"
	scopedToken = "admin-scoped-token" // admin:provision only
	orgToken    = "admin-org-token"    // admin:* but confined to org "acme"
	viewerToken = "viewer-token"       // role viewer
)

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a whole orchestrator on a real SQLite file, the peer fakes, and —
// when the test asks for it — a fresh namespace of the real API server.
type env struct {
	// rules are the routing rules in force (setRoutes).
	rules atomic.Pointer[routing.Rules]
	// intervals are the time intervals in force (a sources file's
	// time_intervals:, set with setRoutes).
	intervals atomic.Pointer[noise.Intervals]
	// inhibits are the inhibit rules in force (setInhibits).
	inhibits atomic.Pointer[noise.InhibitRules]
	t        testing.TB
	srv      *server.Server
	db       *store.DB
	cs       *peerstest.ConfigService
	pipe     *peerstest.AIPipeline
	kube     *kube.Client
	faulty   *faultyCluster
	prov     *provision.Service
	sources  *webhook.Registry
	// servedDoc is the API description the server serves (with the routes
	// its sources file adds).
	servedDoc  []byte
	servedOnce sync.Once
	logs       *lockedBuffer
	dataDir    string
	reg        *prometheus.Registry
	agent      *peerstest.Agent
	agentURL   string
	// answers holds every response body the test saw, with its path, for
	// the secret scan at the end.
	answersMu sync.Mutex
	answers   []response
	sched     *schedules.Service
	disp      *dispatch.Dispatcher
	// slack is the fake Slack Web API and outbox the answers' poster
	// (envOptions.answers).
	slack  *peerstest.Slack
	outbox *answers.Outbox
	// progress shows streamed runs' progress in the fake Slack.
	progress *answers.ProgressPoster
	// github and pagerduty are the GitHub REST and PagerDuty REST stand-ins
	// the answers post to (GITHUB_TOKEN githubAPIToken; PAGERDUTY_API_TOKEN
	// pagerdutyAPIToken, PAGERDUTY_FROM_EMAIL pagerdutyFrom).
	github    *peerstest.GitHub
	pagerduty *peerstest.PagerDuty
	clock     *clock
	backups   *backups.Manager
}

// clock is a test clock that only moves when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Webhook secrets every harness configures.
const (
	slackSecret      = "slack-test-secret"
	githubSecret     = "github-test-secret"
	pagerdutySecret  = "pagerduty-test-secret"
	incidentioSecret = "whsec_aW5jaWRlbnRpby10ZXN0LXNlY3JldA=="
	coralogixToken   = "coralogix-test-token"
	alertmanagerTok  = "alertmanager-test-token"
	internalToken    = "internal-test-token"
	// The answers' vendor credentials (envOptions.answers).
	githubAPIToken    = "ghp_edgeTest0123456789abcdef"
	pagerdutyAPIToken = "u+edgeTestPDkey42"
	pagerdutyFrom     = "oncall-bot@acme.example"
)

var secrets = map[string]string{
	webhook.Slack: slackSecret, webhook.GitHub: githubSecret, webhook.PagerDuty: pagerdutySecret,
	webhook.IncidentIO: incidentioSecret, webhook.Coralogix: coralogixToken, webhook.Alertmanager: alertmanagerTok,
}

type envOptions struct {
	// databaseURL, when set, is a PostgreSQL database to run on instead of
	// a SQLite file.
	databaseURL string
	withCluster bool
	cluster     provision.Cluster // overrides the real one (e.g. unreachable)
	requireStar bool
	lockWait    time.Duration
	peerTimeout time.Duration
	authTTL     time.Duration
	// authNow is the admin-token checker's clock; trustedProxies the
	// proxies whose X-Forwarded-For it believes.
	authNow        func() time.Time
	trustedProxies []netip.Prefix

	// webhooks turns on ingest and dispatch (dispatch started unless noDispatch).
	webhooks      bool
	noDispatch    bool
	rate          float64
	burst         int
	bytesPerSec   int64 // the door's byte limit per source (0: none)
	maxAttempts   int
	teamPerMinute int
	fakeClock     bool
	// coalesce folds these sources into digests; routingTTL caches routing
	// lookups; workers bounds concurrent agent calls (default 4).
	coalesce     []string
	routingTTL   time.Duration
	workers      int
	poll         time.Duration     // default 5 ms; benchmarks use production's 1 s
	extraSecrets map[string]string // a second secret per source (rotation)
	noInternal   bool
	// sourcesFile is a sources file (YAML) and sourceEnv the environment
	// its secret_env names read; amLabels map Alertmanager labels.
	sourcesFile string
	sourceEnv   map[string]string
	amLabels    map[string]string
	// routes is a sources file's routes: section (YAML, with its key):
	// the operator's routing rules the dispatcher reads.
	routes string
	// sourceOrgs bind built-in sources to orgs (ORCHESTRATOR_SOURCE_ORGS).
	sourceOrgs map[string][]string
	// Noise control: the repeat window (0: off), the group wait, the
	// daily budget of alert-triggered calls per team (0: none).
	alertRepeat time.Duration
	groupWait   time.Duration
	callsPerDay int
	// answers posts the agent's answers (a fake Slack with the bot token
	// slackBot and the dev channel; ORCHESTRATOR_POST_ANSWERS postAnswers;
	// publicURL links the runs).
	answers     bool
	postAnswers string
	// agentProtocol is ORCHESTRATOR_AGENT_PROTOCOL ("": run);
	// progressTick drives the progress updater (nil: a real ticker).
	agentProtocol string
	progressTick  func() (<-chan time.Time, func())
	publicURL     string
	// ui turns on the admin page (dev mode, with the sample buttons).
	ui      bool
	uiClock func() time.Time
	// dataDir, if set, holds the database (a small tmpfs in fault tests).
	dataDir string
	// statsMaxAge is how long the page reuses its figures (0: never).
	statsMaxAge time.Duration
	// cookieSecure is the page's ORCHESTRATOR_COOKIE_SECURE ("": auto).
	cookieSecure string
	// backups turns on the backup endpoints (and page), keeping backupKeep
	// scheduled ones; snapshot, if set, replaces the real snapshot.
	backups    bool
	backupKeep int
	// backupKeepManual bounds manual backups; statfs replaces the volume
	// reading (where no small file system can be mounted).
	backupKeepManual int
	statfs           func(dir string) (backups.Volume, error)
	snapshot         func(ctx context.Context, dest string) (store.SnapshotInfo, error)
	backupNow        func() time.Time
	// tracing traces the door, dispatch and the answers' posts (nil: the
	// door runs no tracing code, dispatch the no-op tracer).
	tracing *tracing.Tracing
	// traceURL is the event page's ORCHESTRATOR_TRACE_URL_TEMPLATE.
	traceURL string
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	if o.lockWait == 0 {
		o.lockWait = 30 * time.Second
	}
	if o.peerTimeout == 0 {
		o.peerTimeout = 10 * time.Second
	}
	e := &env{t: t, logs: &lockedBuffer{}, dataDir: o.dataDir, reg: prometheus.NewRegistry()}
	if e.dataDir == "" {
		e.dataDir = t.TempDir()
	}
	t.Cleanup(e.scanForSecrets)
	var err error
	e.db, err = store.Open(context.Background(), store.Options{URL: o.databaseURL, Path: filepath.Join(e.dataDir, "orchestrator.db"), Migrations: migrations.FS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.db.Close() })
	if _, err := e.db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}

	e.cs = peerstest.NewConfigService()
	e.cs.AddAdmin(adminToken, peers.Identity{Role: "admin", Permissions: []string{"admin:*"}, Subject: "alice"})
	e.cs.AddAdmin(scopedToken, peers.Identity{Role: "admin", Permissions: []string{"admin:provision", "admin:provision:read"}})
	e.cs.AddAdmin(orgToken, peers.Identity{Role: "admin", Permissions: []string{"admin:*"}, OrgID: "acme"})
	e.cs.AddAdmin(viewerToken, peers.Identity{Role: "viewer", Permissions: []string{"admin:*"}})
	e.cs.AddOrg("acme")
	e.cs.AddOrg("globex")
	e.pipe = peerstest.NewAIPipeline()
	csSrv, pipeSrv := httptest.NewServer(e.cs), httptest.NewServer(e.pipe)
	t.Cleanup(csSrv.Close)
	t.Cleanup(pipeSrv.Close)

	logger := slog.New(tracing.LogHandler(slog.NewJSONHandler(e.logs, nil)))
	cs := peers.NewConfigService(peers.Options{BaseURL: csSrv.URL, Timeout: o.peerTimeout})
	pipe := peers.NewAIPipeline(peers.Options{BaseURL: pipeSrv.URL, Timeout: o.peerTimeout})

	var cl provision.Cluster
	if o.withCluster {
		kubetest.Require(t, cluster)
		e.kube = kube.New(cluster.Clientset, cluster.Namespace(t))
		e.faulty = &faultyCluster{Client: e.kube, fail: map[string]error{}}
		cl = e.faulty
	}
	if o.cluster != nil {
		cl = o.cluster
	}
	locks, err := store.NewLocks(e.dataDir, o.lockWait)
	if err != nil {
		t.Fatal(err)
	}
	e.prov, err = provision.New(provision.Options{
		Store: e.db, Locks: locks, Config: cs, Pipeline: pipe, Cluster: cl,
		Workloads: provision.Workloads{PipelineImage: "registry.local/ai-pipeline:1", PipelineServiceAccount: "ai-pipeline",
			AgentImage: "registry.local/agent:1", AgentServiceAccount: "agent", ConfigServiceURL: "http://config-service:8080"},
		RecoveryToken: adminToken, LookupToken: adminToken, Logger: logger, Registry: e.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.agent = peerstest.NewAgent()
	agentSrv := httptest.NewServer(e.agent)
	t.Cleanup(agentSrv.Close)
	e.agentURL = agentSrv.URL
	var sc schedules.Cluster
	if cl != nil {
		sc = cl.(schedules.Cluster)
	}
	e.sched, err = schedules.New(schedules.Options{Store: e.db, Locks: locks, Cluster: sc, Config: cs,
		Workloads: provision.Workloads{PipelineImage: "registry.local/ai-pipeline:1", PipelineServiceAccount: "ai-pipeline",
			ConfigServiceURL: "http://config-service:8080"},
		Logger: logger, Registry: e.reg})
	if err != nil {
		t.Fatal(err)
	}
	opts := server.Options{
		Logger: logger, Registry: e.reg, Store: e.db, Stats: e.db,
		Auth: auth.New(auth.Options{Checker: cs, TTL: o.authTTL, RequireStar: o.requireStar, Now: o.authNow,
			TrustedProxies: o.trustedProxies}),
		Runs:           e.db,
		Provision:      e.prov,
		Schedules:      e.sched,
		PipelineRunner: pipe,
		Agents: &agentrun.Proxy{Config: cs,
			Agent: peers.NewAgent(peers.Options{BaseURL: agentSrv.URL}), Audit: e.db, Logger: logger},
	}
	if o.webhooks {
		e.setupWebhooks(&opts, o, logger, csSrv.URL)
	}
	if o.backups {
		e.backups, err = backups.New(backups.Options{DB: e.db, Dir: filepath.Join(e.dataDir, "backups"), Keep: o.backupKeep,
			KeepManual: o.backupKeepManual, Statfs: o.statfs,
			Logger: logger, Registry: e.reg, Now: o.backupNow, Snapshot: o.snapshot})
		if err != nil {
			t.Fatal(err)
		}
		opts.Backups = e.backups
	}
	if o.ui {
		opts.Dev, opts.Addr = true, "127.0.0.1:0"
		opts.UI = &webui.Settings{DevSecrets: secrets, Now: o.uiClock, Sessions: e.db, StatsMaxAge: o.statsMaxAge,
			EventRetention: 30 * 24 * time.Hour, BodyRetention: 7 * 24 * time.Hour, CookieSecure: o.cookieSecure,
			TrustedProxies: o.trustedProxies, TraceURLTemplate: o.traceURL}
		if e.kube != nil {
			opts.UI.Cluster = e.kube
		}
	}
	e.srv, err = server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.SetServing(true)
	if e.disp != nil && !o.noDispatch {
		if e.outbox != nil {
			if err := e.outbox.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.outbox.Stop(context.Background()) })
		}
		if err := e.disp.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.disp.Stop(context.Background()) })
	}
	return e
}

// setupWebhooks adds the verifiers, the event store, the agent fake and a
// dispatcher, with the dev team's routing in the Config Service fake.
func (e *env) setupWebhooks(opts *server.Options, o envOptions, logger *slog.Logger, csURL string) {
	e.cs.AddTeam(peerstest.DevOrg, peerstest.DevTeam, map[string]any{"routing": peerstest.DevRouting})
	list := map[string][]string{}
	for src, sec := range secrets {
		list[src] = []string{sec}
		if extra := o.extraSecrets[src]; extra != "" {
			list[src] = []string{extra, sec}
		}
	}
	now := wallclock.Now
	if o.fakeClock {
		e.clock = &clock{t: wallclock.Now().UTC()}
		now = e.clock.Now
	}
	file := &webhook.SourcesFile{}
	if o.sourcesFile != "" {
		var err error
		if file, err = webhook.ParseSourcesFile([]byte(o.sourcesFile), func(k string) string { return o.sourceEnv[k] }); err != nil {
			e.t.Fatal(err)
		}
	}
	builtins, err := webhook.Builtins(webhook.BuiltinOptions{Secrets: list, SlackApps: file.SlackApps,
		AlertmanagerLabels: o.amLabels, Coalesce: o.coalesce, Orgs: o.sourceOrgs})
	if err != nil {
		e.t.Fatal(err)
	}
	reg, err := webhook.NewRegistry(append(builtins, file.Sources...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.sources = reg
	coalesce := o.coalesce
	if len(coalesce) > 0 {
		coalesce = reg.Coalescing()
	}
	if o.routes != "" {
		e.setRoutes(o.routes)
	}
	resolver := answers.Resolver{Mode: o.postAnswers}
	var outbox dispatch.Outbox
	if o.answers {
		e.slack = peerstest.NewDevSlack()
		slackSrv := httptest.NewServer(e.slack)
		e.t.Cleanup(slackSrv.Close)
		e.github = peerstest.NewGitHub("")
		e.github.AddToken(githubAPIToken)
		githubSrv := httptest.NewServer(e.github)
		e.t.Cleanup(githubSrv.Close)
		gh, err := answers.NewGitHub(answers.GitHubOptions{BaseURL: githubSrv.URL, Token: githubAPIToken})
		if err != nil {
			e.t.Fatal(err)
		}
		e.pagerduty = peerstest.NewPagerDuty()
		e.pagerduty.AddToken(pagerdutyAPIToken, false)
		e.pagerduty.AddUser(pagerdutyFrom)
		pagerdutySrv := httptest.NewServer(e.pagerduty)
		e.t.Cleanup(pagerdutySrv.Close)
		pd, err := answers.NewPagerDuty(answers.PagerDutyOptions{BaseURL: pagerdutySrv.URL, Token: pagerdutyAPIToken, From: pagerdutyFrom})
		if err != nil {
			e.t.Fatal(err)
		}
		// The sources file's webhook destinations, as the policy reads them.
		var hooks []answers.WebhookDestination
		if o.sourcesFile != "" {
			sections, err := webhook.SplitSourcesFile([]byte(o.sourcesFile))
			if err == nil {
				hooks, err = answers.ParseWebhookDestinations(sections["destinations"], func(k string) string { return o.sourceEnv[k] })
			}
			if err != nil {
				e.t.Fatal(err)
			}
		}
		slackNotifier := answers.NewSlack(answers.SlackOptions{APIURL: slackSrv.URL,
			Tokens: map[string]string{"": peerstest.DevSlackToken}, TokenEnv: map[string]string{"": "SLACK_BOT_TOKEN"}})
		e.progress = &answers.ProgressPoster{Slack: slackNotifier, PublicURL: o.publicURL, Now: now, Logger: logger, Tick: o.progressTick}
		notifiers := map[string]answers.Notifier{answers.TypeSlack: slackNotifier,
			answers.TypeGitHubIssueComment: gh, answers.TypeGitHubPRComment: gh, answers.TypePagerDutyNote: pd,
			answers.TypeWebhook: answers.NewWebhook(answers.WebhookOptions{Destinations: func() []answers.WebhookDestination { return hooks }})}
		resolver.Notifiers = notifiers
		e.outbox, err = answers.NewOutbox(answers.OutboxOptions{Store: e.db, Notifiers: notifiers, PublicURL: o.publicURL,
			Retry: queue.Policy{Base: time.Millisecond, Max: 5 * time.Millisecond}, Poll: 5 * time.Millisecond,
			Logger: logger, Registry: e.reg, Now: now, Tracer: o.tracing.Posts(), EventTrace: e.db.EventTrace})
		if err != nil {
			e.t.Fatal(err)
		}
		outbox = e.outbox
		opts.Answers, opts.Redelivered = e.db, e.outbox.Notify
	}
	e.disp, err = dispatch.New(dispatch.Options{
		Rules:              e.rules.Load,
		Intervals:          e.intervals.Load,
		Inhibits:           e.inhibits.Load,
		Answers:            resolver,
		Outbox:             outbox,
		AgentProtocol:      o.agentProtocol,
		Progress:           e.progress,
		Store:              e.db,
		Sources:            reg,
		Config:             peers.NewConfigService(peers.Options{BaseURL: csURL}),
		Agent:              peers.NewAgent(peers.Options{BaseURL: e.agentURL}),
		InternalAdminToken: adminToken,
		Workers:            cmp.Or(o.workers, 4),
		TeamPerMinute:      o.teamPerMinute,
		SharedBudget:       e.db.Shared(),
		// A fake clock jumps: no claim may expire under a test's feet.
		Lease:           48 * time.Hour,
		CoalesceSources: coalesce,
		AlertRepeat:     o.alertRepeat,
		CallsPerDay:     o.callsPerDay,
		RoutingCacheTTL: o.routingTTL,
		MaxAttempts:     o.maxAttempts,
		BaseBackoff:     time.Millisecond,
		MaxBackoff:      5 * time.Millisecond,
		Poll:            cmp.Or(o.poll, 5*time.Millisecond),
		Limits:          map[string]dispatch.Limits{webhook.Slack: {Timeout: 30 * time.Second, MaxTurns: 7}},
		Logger:          logger,
		Registry:        e.reg,
		Now:             now,
		Tracer:          o.tracing.Tracer(),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	door := ingest.Options{Sources: reg, Events: e.db, Notify: e.disp.Notify,
		AlertGroupWait: o.groupWait, Settled: e.disp.CountSettled,
		CachedRoute: e.disp.CachedRoute, Rate: o.rate, Burst: o.burst, BytesPerSecond: o.bytesPerSec, Acks: e.db,
		TrustedProxies: o.trustedProxies, Registry: e.reg,
		LowDisk: func() bool { return e.backups != nil && e.backups.IntakeLow() }, Logger: logger, Now: now}
	if o.tracing != nil {
		door.Tracer = o.tracing.Tracer()
	}
	if !o.noInternal {
		door.InternalToken = internalToken
	}
	if opts.Door, err = ingest.New(door); err != nil {
		e.t.Fatal(err)
	}
	opts.Events = e.db
	opts.Notify = e.disp.Notify
	opts.RouteTest = e.disp.Decide
	opts.Noise = &noise.Service{Store: e.db, Sources: reg, Changed: e.disp.ForgetSilences, Redriven: e.disp.Rescan, Nodes: peers.NewConfigService(peers.Options{BaseURL: csURL}),
		CallsToday: e.disp.CallsToday, Now: now, Intervals: e.intervals.Load}
	opts.Now = now
}

// setRoutes puts routing rules in force (a sources file's routes: section,
// with its key), as a reload would.
func (e *env) setRoutes(text string) {
	e.t.Helper()
	p, err := policy.Parse([]byte(text), func(string) string { return "" }, e.sources.IdentifierTypes()...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.rules.Store(p.Routes)
	e.intervals.Store(p.Intervals)
}

// send posts a signed sample (or body) of a source; headers override.
func (e *env) send(source string, body []byte, header http.Header) response {
	e.t.Helper()
	path := webhook.BuiltinPath(source)
	if path == "" {
		path = "/webhooks/" + source
	}
	return e.sendTo(path, body, header)
}

// sendTo posts a body to a webhook path; headers as given.
func (e *env) sendTo(path string, body []byte, header http.Header) response {
	e.t.Helper()
	req := httptest.NewRequest("POST", path, bytes.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	e.checkAPI(req, body, rec)
	r := response{code: rec.Code, header: rec.Header(), raw: rec.Body.String(), path: path}
	_ = json.Unmarshal(rec.Body.Bytes(), &r.body)
	e.record(r)
	return r
}

// waitStatus waits until the event reaches one of the statuses. The bound
// is generous: it only stops a broken build from hanging.
func (e *env) waitStatus(id string, want ...string) store.Event {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ev, err := e.db.GetEvent(context.Background(), id)
		if err == nil {
			for _, w := range want {
				if ev.Status == w {
					return ev
				}
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("event %s is %q (err %v), want one of %v", id, ev.Status, err, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// response is a recorded answer with its JSON decoded.
type response struct {
	code   int
	header http.Header
	raw    string
	body   map[string]any
	path   string
}

func (e *env) do(method, path, token string, body any, header ...string) response {
	e.t.Helper()
	var rd io.Reader
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
		rd = strings.NewReader(b)
	default:
		raw, _ = json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	e.checkAPI(req, raw, rec)
	r := response{code: rec.Code, header: rec.Header(), raw: rec.Body.String(), path: path}
	_ = json.Unmarshal(rec.Body.Bytes(), &r.body)
	e.record(r)
	return r
}

func (e *env) record(r response) {
	e.answersMu.Lock()
	defer e.answersMu.Unlock()
	e.answers = append(e.answers, r)
}

// scanForSecrets fails the test if any configured secret or issued token
// appears in a log line, or in an answer other than the one provisioning
// answer that hands a new team token out.
func (e *env) scanForSecrets() {
	secretsList := []string{adminToken, scopedToken, orgToken, viewerToken, "fresh-token", "no-agent-token",
		slackSecret, githubSecret, pagerdutySecret, incidentioSecret, coralogixToken, internalToken}
	issued := e.cs.IssuedSecrets()
	logs := e.logs.String()
	for _, s := range append(secretsList, issued...) {
		if strings.Contains(logs, s) {
			e.t.Errorf("a secret (%.6s…) appears in the logs", s)
		}
	}
	e.answersMu.Lock()
	defer e.answersMu.Unlock()
	for _, r := range e.answers {
		check := secretsList
		if r.path != "/api/v1/admin/provision/team" {
			check = append(append([]string{}, secretsList...), issued...)
		}
		for _, s := range check {
			if strings.Contains(r.raw, s) {
				e.t.Errorf("a secret (%.6s…) appears in the answer to %s", s, r.path)
			}
		}
	}
}

// steps returns name → status of a run body's steps.
func steps(body map[string]any) map[string]string {
	out := map[string]string{}
	list, _ := body["steps"].([]any)
	for _, s := range list {
		m := s.(map[string]any)
		out[m["name"].(string)] = m["status"].(string)
	}
	return out
}

func stepField(body map[string]any, name, field string) string {
	list, _ := body["steps"].([]any)
	for _, s := range list {
		m := s.(map[string]any)
		if m["name"] == name {
			v, _ := m[field].(string)
			return v
		}
	}
	return ""
}

// faultyCluster is the real API server with one operation made to fail.
type faultyCluster struct {
	*kube.Client
	mu   sync.Mutex
	fail map[string]error
}

func (f *faultyCluster) failOn(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[op] = err
}

func (f *faultyCluster) err(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail[op]
}

func (f *faultyCluster) ApplyCronJob(ctx context.Context, cj *batchv1.CronJob) (bool, error) {
	if err := f.err("ApplyCronJob"); err != nil {
		return false, err
	}
	return f.Client.ApplyCronJob(ctx, cj)
}

func (f *faultyCluster) ApplyDeployment(ctx context.Context, d *appsv1.Deployment) (bool, error) {
	if err := f.err("ApplyDeployment"); err != nil {
		return false, err
	}
	return f.Client.ApplyDeployment(ctx, d)
}

func (f *faultyCluster) ApplyService(ctx context.Context, s *corev1.Service) (bool, error) {
	if err := f.err("ApplyService"); err != nil {
		return false, err
	}
	return f.Client.ApplyService(ctx, s)
}

// waitFor polls cond until it holds. The 3-minute bound only keeps a
// broken build from hanging the suite (under -race on a busy 2-core
// machine a 3,000-alert storm took over 30 s); passing never depends on it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/incidentfox/orchestrator-edge/kube"
	"github.com/incidentfox/orchestrator-edge/server/agentrun"
	"github.com/incidentfox/orchestrator-edge/server/answers"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/backups"
	"github.com/incidentfox/orchestrator-edge/server/config"
	"github.com/incidentfox/orchestrator-edge/server/dispatch"
	"github.com/incidentfox/orchestrator-edge/server/ingest"
	"github.com/incidentfox/orchestrator-edge/server/leader"
	"github.com/incidentfox/orchestrator-edge/server/noise"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/policy"
	"github.com/incidentfox/orchestrator-edge/server/provision"
	"github.com/incidentfox/orchestrator-edge/server/routing"
	"github.com/incidentfox/orchestrator-edge/server/schedules"
	"github.com/incidentfox/orchestrator-edge/server/tracing"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/incidentfox/orchestrator-edge/webui"
	"github.com/prometheus/client_golang/prometheus"
)

// deps are the parts the server is built from.
type deps struct {
	auth       *auth.Authenticator
	provision  *provision.Service
	dispatcher *dispatch.Dispatcher
	// outbox posts the agents' answers where the questions were asked.
	outbox    *answers.Outbox
	schedules *schedules.Service
	pipeline  *peers.AIPipeline
	agents    *agentrun.Proxy
	ui        *webui.Settings
	door      *ingest.Door
	backups   *backups.Manager
	elector   *leader.Elector
	// policy is the reloadable part of the sources file (routing rules,
	// time intervals, inhibit rules, destinations).
	policy *policy.Holder
	// config is the Config Service client (silences ask it about orgs).
	config *peers.ConfigService
	// tracing is the OpenTelemetry export (off unless OTEL_* ask).
	tracing *tracing.Tracing
	closers []func()
	// fakeAgent: the agent is dev mode's built-in fake.
	fakeAgent bool
	// devSlack is dev mode's built-in fake Slack (nil: a real one), served
	// at devSlackURL.
	devSlack    *peerstest.Slack
	devSlackURL string
}

func (d *deps) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// wire builds the peer clients (or, in dev mode, the built-in fakes), the
// cluster client and the workflows.
func wire(ctx context.Context, cfg *config.Config, db *store.DB, reg *prometheus.Registry, logger *slog.Logger,
	getenv func(string) string, stdout io.Writer) (*deps, error) {
	d := &deps{}
	var err error
	d.tracing, err = tracing.New(ctx, tracing.Options{Config: cfg.Tracing, Version: version, Registry: reg})
	if err != nil {
		return nil, err
	}
	if d.tracing.Enabled {
		logger.Info("tracing on", "endpoint", cfg.Tracing.Endpoint, "protocol", cfg.Tracing.Protocol,
			"service", cfg.Tracing.ServiceName, "sampler", cfg.Tracing.Sampler)
	}
	// Spans still queued go out at the stop, within a bound of their own.
	d.closers = append(d.closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.tracing.Shutdown(sctx); err != nil {
			logger.Warn("exporting the last spans failed", "error", err)
		}
	})
	if cfg.Dev {
		if err := d.startDevPeers(cfg, logger, stdout); err != nil {
			return nil, err
		}
		if err := d.startDevSlack(cfg, logger); err != nil {
			return nil, err
		}
	}
	peerMetric, err := peers.NewRequestsMetric(reg)
	if err != nil {
		return nil, err
	}
	cs := peers.NewConfigService(peers.Options{BaseURL: cfg.ConfigServiceURL, Requests: peerMetric})
	pipeline := peers.NewAIPipeline(peers.Options{BaseURL: cfg.AIPipelineURL, Requests: peerMetric})
	agent := peers.NewAgent(peers.Options{BaseURL: cfg.AgentURL, Requests: peerMetric})

	secrets := map[string][]string{}
	for src, list := range cfg.WebhookSecrets {
		for _, sec := range list {
			secrets[src] = append(secrets[src], sec.Reveal())
		}
		if len(list) == 0 {
			logger.Warn("no webhook secret configured: this source answers 401", "source", src)
		}
	}
	sources, slackApps, err := buildSources(cfg, secrets, getenv)
	if err != nil {
		return nil, err
	}
	d.policy, err = policy.New(policy.Options{Path: cfg.SourcesFile, Every: cfg.SourcesReload, Getenv: getenv, Logger: logger, Registry: reg,
		Identifiers: sources.IdentifierTypes()})
	if err != nil {
		return nil, err
	}
	for _, src := range sources.Sources() {
		if src.Kind == "configured" {
			logger.Info("configured webhook source", "source", src.Name, "route", src.Routes[0].Path, "verify", src.Scheme)
		}
	}
	limits := map[string]dispatch.Limits{}
	for src, l := range cfg.AgentLimits {
		limits[src] = dispatch.Limits{Timeout: l.Timeout, MaxTurns: l.MaxTurns}
	}
	if cfg.InternalAdminToken == "" {
		logger.Warn("ORCHESTRATOR_INTERNAL_ADMIN_TOKEN is not set: webhook events are stored but not dispatched")
	}
	d.backups, err = backups.New(backups.Options{DB: db, Dir: filepath.Join(cfg.DataDir, "backups"), Keep: cfg.BackupKeep,
		KeepManual: cfg.BackupKeepManual, ReservePercent: cfg.DiskReservePercent,
		Schedule: cfg.BackupSchedule, Logger: logger, Registry: reg})
	if err != nil {
		return nil, err
	}
	notifiers, err := answerNotifiers(cfg, slackApps, func() []answers.WebhookDestination { return d.policy.Current().Destinations })
	if err != nil {
		return nil, err
	}
	d.outbox, err = answers.NewOutbox(answers.OutboxOptions{Store: db, Notifiers: notifiers, Lease: cfg.AnswerLease,
		PublicURL: cfg.PublicURL, Logger: logger, Registry: reg, Tracer: d.tracing.Posts(), EventTrace: db.EventTrace})
	if err != nil {
		return nil, err
	}
	d.dispatcher, err = dispatch.New(dispatch.Options{
		Store: db, Config: cs, Agent: agent, InternalAdminToken: cfg.InternalAdminToken.Reveal(), Sources: sources,
		Workers: cfg.DispatchWorkers, TeamPerMinute: cfg.TeamDispatchPerMinute, Limits: limits,
		RoutingCacheTTL: cfg.RoutingCacheTTL, CoalesceSources: coalescing(cfg, sources), CoalesceMax: cfg.CoalesceMax,
		AlertRepeat: cfg.AlertRepeat, CallsPerDay: cfg.TeamCallsPerDay, Tracer: d.tracing.Tracer(),
		Lease: cfg.DispatchLease, SharedBudget: db.Shared(),
		Rules:     func() *routing.Rules { return d.policy.Current().Routes },
		Intervals: func() *noise.Intervals { return d.policy.Current().Intervals },
		Inhibits:  func() *noise.InhibitRules { return d.policy.Current().Inhibits },
		Answers:   answers.Resolver{Mode: cfg.PostAnswers, Notifiers: notifiers}, Outbox: d.outbox,
		AgentProtocol: cfg.AgentProtocol,
		Progress:      progressPoster(notifiers, cfg.PublicURL, logger),
		Logger:        logger, Registry: reg,
	})
	if err != nil {
		return nil, err
	}

	d.door, err = ingest.New(ingest.Options{Sources: sources, Events: db, Notify: d.dispatcher.Notify,
		CachedRoute: d.dispatcher.CachedRoute, Rate: cfg.WebhookRateLimit, Burst: cfg.WebhookBurst,
		MaxBodyBytes: cfg.MaxBodyBytes, BytesPerSecond: cfg.IngestBytesPerSecond, TrustedProxies: cfg.TrustedProxies, LowDisk: d.backups.IntakeLow, InternalToken: cfg.InternalToken.Reveal(), Acks: db,
		AlertGroupWait: cfg.AlertGroupWait, Settled: d.dispatcher.CountSettled,
		Registry: reg, Logger: logger, Tracer: d.tracing.Tracer()})
	if err != nil {
		return nil, err
	}

	// Both interfaces stay nil (not a typed nil) without a cluster.
	var cluster provision.Cluster
	var schedCluster schedules.Cluster
	ns := kube.Namespace(cfg.Namespace)
	restCfg, clusterErr := kube.Config(getenv)
	if clusterErr == nil {
		restCfg.Timeout = 30 * time.Second
		c, err := kube.NewForConfig(restCfg, ns)
		if err != nil {
			clusterErr = err
		} else {
			cluster, schedCluster = c, c
		}
	}
	var pinger interface{ Ping(context.Context) error }
	if cluster != nil {
		pinger = cluster
	}
	simulated := false
	if clusterErr != nil && cfg.Dev {
		// Dev mode without a cluster: a simulated one, and every page says
		// so. Its objects are kept in the data directory beside the
		// schedules and runs that refer to them.
		mem := kube.NewMemory(ns)
		if err := mem.Persist(filepath.Join(cfg.DataDir, devClusterState)); err != nil {
			return nil, err
		}
		cluster, schedCluster, pinger, simulated, clusterErr = mem, mem, mem, true, nil
		logger.Warn("dev mode: no cluster answered; using a simulated cluster kept in the data directory (nothing is really deployed)")
		if d.fakeAgent {
			// A simulated dedicated agent is served by the built-in fake.
			agent.ServeDedicatedFromShared()
		}
	}
	if clusterErr != nil {
		logger.Warn("no Kubernetes cluster: provisioning steps that need one answer 503 kubernetes_not_available",
			"reason", clusterErr.Error())
	} else if !simulated {
		logger.Info("kubernetes", "host", restCfg.Host, "namespace", ns)
	}

	locks, err := db.NewLocks(cfg.DataDir, cfg.TeamLockTimeout)
	if err != nil {
		return nil, err
	}
	d.elector, err = leader.New(leader.Options{Locks: locks, Every: min(10*time.Second, cfg.ReconcileInterval),
		Logger: logger, Registry: reg})
	if err != nil {
		return nil, err
	}
	d.auth = auth.New(auth.Options{Checker: cs, TTL: cfg.AdminAuthCacheTTL, RequireStar: cfg.RequireAdminStar,
		TrustedProxies: cfg.TrustedProxies})
	d.provision, err = provision.New(provision.Options{
		Store: db, Locks: locks, Config: cs, Pipeline: pipeline,
		Cluster: cluster, ClusterErr: clusterErr,
		Workloads: provision.Workloads{
			PipelineImage: cfg.AIPipelineImage, PipelineServiceAccount: cfg.AIPipelineServiceAccount,
			AgentImage: cfg.AgentImage, AgentServiceAccount: cfg.AgentServiceAccount,
			ConfigServiceURL: cfg.ConfigServiceURL,
		},
		KeyTTL:        cfg.IdempotencyKeyTTL,
		RecoveryToken: cfg.InternalAdminToken.Reveal(),
		LookupToken:   cfg.InternalAdminToken.Reveal(),
		Logger:        logger,
		Registry:      reg,
	})
	if err != nil {
		return nil, err
	}
	d.schedules, err = schedules.New(schedules.Options{
		Store: db, Locks: locks, Cluster: schedCluster, ClusterErr: clusterErr, Config: cs,
		Workloads: provision.Workloads{
			PipelineImage: cfg.AIPipelineImage, PipelineServiceAccount: cfg.AIPipelineServiceAccount,
			ConfigServiceURL: cfg.ConfigServiceURL,
		},
		Logger: logger, Registry: reg,
	})
	if err != nil {
		return nil, err
	}
	d.pipeline, d.config = pipeline, cs
	d.agents = &agentrun.Proxy{Config: cs, Agent: agent, Audit: db, Logger: logger}
	d.ui = &webui.Settings{CookieSecure: cfg.CookieSecure, TrustedProxies: cfg.TrustedProxies, SimulatedCluster: simulated, Sessions: db,
		StatsMaxAge: webui.DefaultStatsMaxAge, EventRetention: cfg.EventRetention, BodyRetention: cfg.EventBodyRetention,
		TraceURLTemplate: cfg.Tracing.URLTemplate}
	d.ui.Cluster = pinger
	if cfg.Dev {
		d.ui.DevSecrets = map[string]string{}
		for src, list := range cfg.WebhookSecrets {
			if len(list) > 0 {
				d.ui.DevSecrets[src] = list[0].Reveal()
			}
		}
	}
	return d, nil
}

// Dev mode's state files in the data directory: the fake Config Service's
// orgs, teams and tokens, and the simulated cluster's objects.
const (
	devConfigServiceState = "dev-config-service.json"
	devClusterState       = "dev-cluster.json"
)

// startDevPeers serves the built-in fakes on loopback for every peer URL
// left unset, seeded with org acme and team platform-sre, and prints the
// dev admin token.
func (d *deps) startDevPeers(cfg *config.Config, logger *slog.Logger, stdout io.Writer) error {
	token := cfg.DevAdminToken.Reveal()
	if token == "" {
		token = "dev-admin-" + randomHex(12)
	}
	fakeConfig := cfg.ConfigServiceURL == ""
	d.fakeAgent = cfg.AgentURL == ""
	allFakes := fakeConfig && cfg.AIPipelineURL == "" && cfg.AgentURL == ""
	// Webhook dispatch needs an admin token; with the fake Config Service
	// it is the seeded one.
	if cfg.InternalAdminToken == "" && fakeConfig {
		cfg.InternalAdminToken = config.Secret(token)
	}
	// The fake Config Service keeps its state in the data directory, so a
	// restart finds the teams provisioned before it (docs/configuration.md).
	var configService http.Handler
	if fakeConfig {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("dev peers: %w", err)
		}
		cs, err := peerstest.NewDevConfigService(token, filepath.Join(cfg.DataDir, devConfigServiceState))
		if err != nil {
			return err
		}
		configService = cs
	}
	fakes := []struct {
		url *string
		h   http.Handler
		env string
	}{
		{&cfg.ConfigServiceURL, configService, "CONFIG_SERVICE_URL"},
		{&cfg.AIPipelineURL, peerstest.NewAIPipeline(), "AI_PIPELINE_API_URL"},
		{&cfg.AgentURL, devAgent(), "AGENT_API_URL"},
	}
	for _, f := range fakes {
		if *f.url != "" {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("dev peers: %w", err)
		}
		srv := &http.Server{Handler: f.h, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("dev peer stopped", "error", err)
			}
		}()
		d.closers = append(d.closers, func() { srv.Close() })
		*f.url = "http://" + ln.Addr().String()
		logger.Info("dev mode: built-in fake", "peer", f.env, "url", *f.url)
	}
	if fakeConfig {
		fmt.Fprintf(stdout, "dev mode: admin token %s (org %s, team %s)\n", token, peerstest.DevOrg, peerstest.DevTeam)
	}
	// Unset webhook secrets get printed dev values, so samples can be sent —
	// only while every peer is a built-in fake: the dev secrets are public,
	// and with a real peer the events they admit would reach it (SPEC §18).
	if !allFakes {
		logger.Warn("dev mode with a real peer URL: no dev webhook secrets; unset sources answer 401")
		return nil
	}
	for _, src := range config.Sources {
		if len(cfg.WebhookSecrets[src]) > 0 {
			continue
		}
		secret := devSecret(src)
		cfg.WebhookSecrets[src] = []config.Secret{config.Secret(secret)}
		fmt.Fprintf(stdout, "dev mode: %s webhook secret %s\n", src, secret)
	}
	return nil
}

// devSecret is the fixed dev-mode secret of a source (incident.io wants the
// Standard Webhooks form).
func devSecret(source string) string {
	if source == webhook.IncidentIO {
		return "whsec_" + base64.StdEncoding.EncodeToString([]byte("dev-incidentio-secret"))
	}
	return "dev-" + source + "-secret"
}

// buildSources is the source registry: the built-in sources, the Slack apps
// and configured sources of the sources file (SPEC §6). A mistake in the
// file stops start-up with one line naming the source and the field.
func buildSources(cfg *config.Config, secrets map[string][]string, getenv func(string) string) (*webhook.Registry, []webhook.SlackApp, error) {
	file := &webhook.SourcesFile{}
	if cfg.SourcesFile != "" {
		data, err := webhook.ReadSourcesFile(cfg.SourcesFile)
		if err != nil {
			return nil, nil, fmt.Errorf("config: ORCHESTRATOR_SOURCES_FILE: %v", err)
		}
		if file, err = webhook.ParseSourcesFile(data, getenv); err != nil {
			return nil, nil, fmt.Errorf("sources file %s: %v", cfg.SourcesFile, err)
		}
	}
	builtins, err := webhook.Builtins(webhook.BuiltinOptions{Secrets: secrets, SlackApps: file.SlackApps,
		AlertmanagerLabels: cfg.AlertmanagerLabels, Coalesce: cfg.CoalesceSources, Orgs: cfg.SourceOrgs})
	if err != nil {
		return nil, nil, fmt.Errorf("sources file %s: %v", cfg.SourcesFile, err)
	}
	reg, err := webhook.NewRegistry(append(builtins, file.Sources...)...)
	return reg, file.SlackApps, err
}

// answerNotifiers are the destinations the appliance can post answers to,
// with their credentials: Slack, with a bot token per Slack app
// (SLACK_BOT_TOKEN for the default app, bot_token_env for the others);
// GitHub issue and pull request comments (GITHUB_TOKEN or a GitHub App);
// PagerDuty incident notes (PAGERDUTY_API_TOKEN and PAGERDUTY_FROM_EMAIL);
// the webhook destinations of the sources file, read again on each reload.
// A notifier without its credential still answers Check, which says what is
// missing, so the delivery is recorded failed with that reason.
func answerNotifiers(cfg *config.Config, apps []webhook.SlackApp, hooks func() []answers.WebhookDestination) (map[string]answers.Notifier, error) {
	tokens := map[string]string{"": cfg.SlackBotToken.Reveal()}
	env := map[string]string{"": "SLACK_BOT_TOKEN"}
	for _, app := range apps {
		tokens[app.Slug], env[app.Slug] = app.BotToken, app.BotTokenEnv
	}
	gh, err := answers.NewGitHub(answers.GitHubOptions{BaseURL: cfg.GitHub.APIURL, Token: cfg.GitHub.Token.Reveal(),
		AppID: cfg.GitHub.AppID, AppKeyFile: cfg.GitHub.AppKeyFile})
	if err != nil {
		return nil, err
	}
	pd, err := answers.NewPagerDuty(answers.PagerDutyOptions{BaseURL: cfg.PagerDuty.APIURL, Token: cfg.PagerDuty.Token.Reveal(),
		From: cfg.PagerDuty.FromEmail})
	if err != nil {
		return nil, err
	}
	return map[string]answers.Notifier{
		answers.TypeSlack:              answers.NewSlack(answers.SlackOptions{APIURL: cfg.SlackAPIURL, Tokens: tokens, TokenEnv: env}),
		answers.TypeGitHubIssueComment: gh,
		answers.TypeGitHubPRComment:    gh,
		answers.TypePagerDutyNote:      pd,
		answers.TypeWebhook:            answers.NewWebhook(answers.WebhookOptions{Destinations: hooks}),
	}, nil
}

// startDevSlack serves the built-in fake Slack Web API on loopback when dev
// mode has neither SLACK_API_URL nor SLACK_BOT_TOKEN, so that answers to
// sample mentions are seen "posted" without a Slack workspace. With a token
// set, answers go to the real Slack.
func (d *deps) startDevSlack(cfg *config.Config, logger *slog.Logger) error {
	if cfg.SlackAPIURL != "" || cfg.SlackBotToken != "" {
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("dev slack: %w", err)
	}
	d.devSlack = peerstest.NewDevSlack()
	srv := &http.Server{Handler: d.devSlack, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("dev fake Slack stopped", "error", err)
		}
	}()
	d.closers = append(d.closers, func() { srv.Close() })
	d.devSlackURL = "http://" + ln.Addr().String()
	cfg.SlackAPIURL, cfg.SlackBotToken = d.devSlackURL+"/", config.Secret(peerstest.DevSlackToken)
	logger.Info("dev mode: built-in fake", "peer", "SLACK_API_URL", "url", cfg.SlackAPIURL)
	return nil
}

// coalescing lists the sources folded into digests: the built-in ones
// ORCHESTRATOR_COALESCE_SOURCES names and the configured ones marked
// coalesce: true, unless coalescing is off ("none").
func coalescing(cfg *config.Config, sources *webhook.Registry) []string {
	if len(cfg.CoalesceSources) == 0 {
		return nil
	}
	return sources.Coalescing()
}

// devAgentPace is the pause between the steps of dev mode's streamed
// investigation: slow enough to watch in the fake Slack's channel.
var devAgentPace = 2500 * time.Millisecond

// devAgent is dev mode's fake agent: a streamed investigation is the
// whole conversation (peerstest.DevScript), at devAgentPace.
func devAgent() *peerstest.Agent {
	a := peerstest.NewAgent()
	a.SetScript(peerstest.DevScript(devAgentPace))
	return a
}

// startDevClicks makes dev mode's fake Slack send its people's clicks to
// the appliance's interactions door at base, signed with the Slack signing
// secret in force (dev mode's, or SLACK_SIGNING_SECRET), and says where
// its channel page is.
func (d *deps) startDevClicks(cfg *config.Config, base string, stdout io.Writer) {
	if d.devSlack == nil {
		return
	}
	secret := ""
	if list := cfg.WebhookSecrets[webhook.Slack]; len(list) > 0 {
		secret = list[0].Reveal()
	}
	d.devSlack.SetInteractions(base+"/webhooks/slack/interactions", secret)
	fmt.Fprintf(stdout, "dev mode: fake Slack channel %s/archives/C0A4967KRBM (its buttons click as a person)\n", d.devSlackURL)
}

// progressPoster shows streamed runs' progress through the Slack notifier.
func progressPoster(notifiers map[string]answers.Notifier, publicURL string, logger *slog.Logger) *answers.ProgressPoster {
	s, _ := notifiers[answers.TypeSlack].(*answers.Slack)
	if s == nil {
		return nil
	}
	return &answers.ProgressPoster{Slack: s, PublicURL: publicURL, Logger: logger}
}

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/migrations"
	"github.com/incidentfox/orchestrator-edge/server"
	"github.com/incidentfox/orchestrator-edge/server/config"
	"github.com/incidentfox/orchestrator-edge/server/noise"
	"github.com/incidentfox/orchestrator-edge/server/retention"
	"github.com/incidentfox/orchestrator-edge/server/tracing"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/incidentfox/orchestrator-edge/webui"
	"github.com/prometheus/client_golang/prometheus"
)

// serve runs the server until ctx ends (SIGTERM/SIGINT in production), then
// shuts down within the configured bound.
func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	start := time.Now()
	fs := newFlagSet("serve", "serve [--dev] [--addr ADDR] [--data-dir DIR]", stdout)
	dev := fs.Bool("dev", false, "dev mode: built-in peer fakes and seeded demo data (also ORCHESTRATOR_DEV=1)")
	addr := fs.String("addr", "", "listen address (ORCHESTRATOR_LISTEN_ADDR, default :8070)")
	dataDir := fs.String("data-dir", "", "data directory (ORCHESTRATOR_DATA_DIR, default ./data)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	flags := map[string]string{}
	if *dev {
		flags["ORCHESTRATOR_DEV"] = "1"
	}
	if *addr != "" {
		flags["ORCHESTRATOR_LISTEN_ADDR"] = *addr
	}
	if *dataDir != "" {
		flags["ORCHESTRATOR_DATA_DIR"] = *dataDir
	}
	// Flags override the environment; every name asked for is remembered.
	reads := config.NewReads(overlay(getenv, flags))
	cfg, err := config.Load(reads.Getenv)
	if err != nil {
		return err
	}
	// The sources file is configuration too: a mistake stops start-up
	// before anything else runs (wire reads it again with the secrets).
	if _, _, err := buildSources(cfg, nil, reads.Getenv); err != nil {
		return err
	}
	// Each log line about an event names its trace (trace_id, span_id).
	logger := slog.New(tracing.LogHandler(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel})))
	// A misspelt variable would be ignored without a word.
	for _, m := range config.Misspelt(environNames(getenv), reads.Names()) {
		if m.Closest != "" {
			logger.Warn("unknown environment variable, ignored: did you mean "+m.Closest+"?", "variable", m.Name, "closest", m.Closest)
		} else {
			logger.Warn("unknown environment variable, ignored", "variable", m.Name)
		}
	}
	// An appliance's footprint: collect at 60 % heap growth rather than Go's
	// 100 % unless the operator chose (GOGC). In the storm benchmark this
	// took peak RSS from 62-65 MiB to 54 MiB at the same ack latency and
	// ingest rate.
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}

	// On SQLite the data directory is this process's alone; on PostgreSQL
	// several replicas share the database and there is no instance lock
	// (SPEC §13).
	lockPath := "none (PostgreSQL)"
	if cfg.DatabaseURL == "" {
		lock, err := store.AcquireInstanceLock(cfg.DataDir)
		if err != nil {
			return err
		}
		defer lock.Release()
		lockPath = lock.Path()
	}

	db, err := store.Open(ctx, store.Options{URL: cfg.DatabaseURL.Reveal(), Path: cfg.DatabasePath, Migrations: migrations.FS, Logger: logger})
	if err != nil {
		return err
	}
	defer db.Close()
	// A database a newer build migrated: stop before touching anything.
	if err := db.CheckSchema(ctx); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	deps, err := wire(ctx, cfg, db, reg, logger, getenv, stdout)
	if err != nil {
		return err
	}
	defer deps.close()

	srv, err := server.New(server.Options{
		Addr:         cfg.ListenAddr,
		Logger:       logger,
		Registry:     reg,
		Store:        db,
		Version:      version,
		Dev:          cfg.Dev,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Auth:         deps.auth,
		Runs:         db,
		Provision:    deps.provision,
		Door:         deps.door,
		Events:       db,
		Stats:        db,
		Notify:       deps.dispatcher.Notify,
		RouteTest:    deps.dispatcher.Decide,
		Answers:      db,
		Redelivered:  deps.outbox.Notify,
		Noise: &noise.Service{Store: db, Sources: deps.door.Registry(), Changed: deps.dispatcher.ForgetSilences, Nodes: deps.config,
			Redriven: deps.dispatcher.Rescan, CallsToday: deps.dispatcher.CallsToday,
			Intervals: func() *noise.Intervals { return deps.policy.Current().Intervals }},
		Schedules:      deps.schedules,
		PipelineRunner: deps.pipeline,
		Agents:         deps.agents,
		UI:             deps.ui,
		Backups:        deps.backups,
	})
	if err != nil {
		return err
	}
	// Listen before migrating: /health answers at once, /ready says 503
	// until the schema is in place.
	if err := srv.Open(); err != nil {
		return err
	}
	logger.Info("listening", "addr", srv.Addr(), "version", version, "data_dir", cfg.DataDir,
		"database", databaseName(cfg, db), "lock", lockPath, "dev", cfg.Dev)
	if cfg.Dev {
		logger.Warn("dev mode: not for production")
		fmt.Fprintf(stdout, "dev mode: admin page %s/ui/ (log in with the admin token above)\n", pageURL(srv.Addr()))
		deps.startDevClicks(cfg, pageURL(srv.Addr()), stdout)
	}

	if cfg.AutoCreateTables {
		// A copy to go back to if the migration goes wrong.
		if snap, err := deps.backups.BeforeMigrate(ctx); err != nil {
			shutdown(srv, cfg.ShutdownTimeout, logger)
			return fmt.Errorf("%w: nothing was migrated", err)
		} else if snap != nil {
			logger.Info("snapshot taken before migrating", "name", snap.Name, "dir", deps.backups.Dir())
		}
		applied, err := db.Migrate(ctx)
		if err != nil {
			shutdown(srv, cfg.ShutdownTimeout, logger)
			return err
		}
		logger.Info("migrations applied", "versions", fmt.Sprint(applied))
	} else if err := db.Ready(ctx); err != nil {
		// Nothing can run on an old schema, and `migrate` needs the data
		// directory to itself: say what to do and stop.
		shutdown(srv, cfg.ShutdownTimeout, logger)
		return fmt.Errorf("%w: with ORCHESTRATOR_AUTO_CREATE_TABLES=0 run `orchestrator migrate up` first", err)
	}
	// Runs a crash left running: on a database of its own every one was this
	// process's; on a shared one, only those idle past the lock bound whose
	// team lock is free (the leader looks again every reconcile interval).
	recoverGrace := time.Duration(0)
	if db.Shared() {
		recoverGrace = cfg.TeamLockTimeout + time.Minute
	}
	recoverRuns := func(ctx context.Context) {
		if n, err := deps.provision.Recover(ctx, recoverGrace); err != nil && ctx.Err() == nil {
			logger.Error("recovering interrupted runs failed", "error", err)
		} else if n > 0 {
			logger.Warn("runs interrupted by a stop were marked failed", "count", n)
		}
	}
	recoverRuns(ctx)
	deps.policy.Start(ctx)
	defer deps.policy.Stop()
	if err := deps.outbox.Start(ctx); err != nil {
		shutdown(srv, cfg.ShutdownTimeout, logger)
		return err
	}
	if err := deps.dispatcher.Start(ctx); err != nil {
		shutdown(srv, cfg.ShutdownTimeout, logger)
		deps.outbox.Stop(ctx)
		return err
	}
	// The once-only work runs on the leader (SPEC §13): on SQLite that is
	// always this process.
	keeper, err := retention.New(retention.Options{Store: db, Bodies: cfg.EventBodyRetention, Events: cfg.EventRetention,
		Audit: cfg.AuditRetention, Keys: cfg.IdempotencyKeyTTL, Logger: logger})
	if err != nil {
		shutdown(srv, cfg.ShutdownTimeout, logger)
		return err
	}
	chores := []func(context.Context){
		keeper.Run,
		func(ctx context.Context) { deps.schedules.RunReconciler(ctx, cfg.ReconcileInterval) },
		func(ctx context.Context) { sweepSessions(ctx, db, logger) },
	}
	if db.Shared() {
		chores = append(chores, func(ctx context.Context) {
			t := time.NewTicker(cfg.ReconcileInterval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					recoverRuns(ctx)
				}
			}
		})
	} else if cfg.BackupSchedule != "" {
		sched, _ := config.CronParser.Parse(cfg.BackupSchedule) // validated by config.Load
		chores = append(chores, func(ctx context.Context) { deps.backups.Run(ctx, sched) })
	}
	leading, stopLeading := context.WithCancel(context.WithoutCancel(ctx))
	leaderDone := make(chan struct{})
	go func() { defer close(leaderDone); deps.elector.Run(leading, chores...) }()
	defer func() { stopLeading(); <-leaderDone }()
	srv.SetServing(true)
	logger.Info("started", "startup_ms", strconv.FormatInt(time.Since(start).Milliseconds(), 10))

	<-ctx.Done()
	logger.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	// Stop intake first, then let in-flight dispatches finish (or return
	// them to the queue), within one bound.
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("shutdown cut in-flight requests", "error", err)
	}
	deps.dispatcher.Stop(sctx)
	// After the dispatcher: its last outcomes hand their answers over.
	deps.outbox.Stop(sctx)
	logger.Info("stopped")
	return nil
}

func shutdown(srv *server.Server, timeout time.Duration, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("shutdown cut in-flight requests", "error", err)
	}
}

// databaseName is the database for the log: the SQLite file, or
// PostgreSQL's host and database without the password.
func databaseName(cfg *config.Config, db *store.DB) string {
	if db.Shared() {
		return "postgres " + store.RedactURL(cfg.DatabaseURL.Reveal())
	}
	return cfg.DatabasePath
}

// sweepSessions drops expired admin page logins every few minutes.
func sweepSessions(ctx context.Context, db *store.DB, logger *slog.Logger) {
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		now := wallclock.Now()
		if _, err := db.DeleteExpiredSessions(ctx, now.Add(-webui.SessionIdle), now.Add(-webui.SessionMax)); err != nil && ctx.Err() == nil {
			logger.Warn("dropping expired sessions failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// defaultGCPercent is the server's GOGC when none is set.
const defaultGCPercent = 60

// pageURL is how a browser on this machine reaches the listener: a wildcard
// or empty host becomes localhost.
func pageURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// environNames lists the variables set in the process environment that
// getenv sees: all of them in production (getenv is os.Getenv); a test's
// own getenv sees only what it sets.
func environNames(getenv func(string) string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if name, _, ok := strings.Cut(kv, "="); ok && getenv(name) != "" {
			out = append(out, name)
		}
	}
	return out
}

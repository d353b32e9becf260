// Package server is the product: its HTTP face and the workflows behind it.
// Every route is registered in routes.go; every error becomes a status in
// writeError (http.go).
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/agentrun"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/backups"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/incidentfox/orchestrator-edge/server/ingest"
	"github.com/incidentfox/orchestrator-edge/server/noise"
	"github.com/incidentfox/orchestrator-edge/server/provision"
	"github.com/incidentfox/orchestrator-edge/server/schedules"
	"github.com/incidentfox/orchestrator-edge/server/scoped"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/incidentfox/orchestrator-edge/webui"
	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Readier reports whether the database can take writes with the schema
// applied (store.DB implements it).
type Readier interface {
	Ready(ctx context.Context) error
}

// Options configure a Server. Logger, Registry and Store are required.
type Options struct {
	// Addr is the listen address; ":0" picks a free port (see Server.Addr).
	Addr     string
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Store    Readier
	Version  string
	Dev      bool
	// MaxBodyBytes caps request bodies (default 1 MiB).
	MaxBodyBytes int64

	// Auth checks admin tokens; admin routes answer 503 without it.
	Auth *auth.Authenticator
	// Runs reads provisioning runs for the admin API.
	Runs RunReader
	// Provision runs the provisioning workflows.
	Provision *provision.Service

	// Door is the webhook door (server/ingest): mounted at /webhooks/* and,
	// with its internal token, /api/v1/internal/slack/trigger.
	Door *ingest.Door
	// Events enables the events API (and is what the page reads).
	Events EventStore
	// Notify wakes the dispatcher after an event is redriven, naming its
	// team when known ("" otherwise).
	Notify func(org, team string)
	// RouteTest enables POST /api/v1/admin/routes/test (with Door).
	RouteTest RouteTester
	// Answers enables the answer deliveries in the events API and their
	// redelivery (store.DB implements it); Redelivered wakes the outbox
	// after one is queued again.
	Answers     AnswerStore
	Redelivered func()
	// Noise enables the silences and the bulk redrive (SPEC §6 Noise).
	Noise *noise.Service
	// Schedules enables the schedule, sync and team status routes.
	Schedules *schedules.Service
	// PipelineRunner enables the pipeline trigger.
	PipelineRunner PipelineRunner
	// Agents enables the agent run proxy when set.
	Agents *agentrun.Proxy
	// Backups enables the backup endpoints and the backups page.
	Backups *backups.Manager
	// UI enables the admin page under /ui/ when set (needs Auth, Runs,
	// Provision and Events).
	UI *webui.Settings
	// Stats keeps the ack latency figures and serves the page's charts
	// and teams page (store.DB implements it); nil: neither.
	Stats StatsStore
	// AckFlushEvery is how often the door's ack latency figures are written
	// while the listener is open (default 10 s); FlushAckStats writes them
	// at once.
	AckFlushEvery time.Duration
	// Now is the clock (tests move it).
	Now func() time.Time
}

// StatsStore keeps the ack latencies the webhook door measures and serves
// the admin page's figures (store.DB implements it).
type StatsStore interface {
	ingest.AckStore
	webui.StatsStore
}

// RunReader reads provisioning runs (store.DB implements it).
type RunReader interface {
	GetRun(ctx context.Context, id string) (store.Run, error)
	ListRuns(ctx context.Context, f store.RunFilter) ([]store.Run, string, error)
}

func (o *Options) validate() error {
	switch {
	case o.Logger == nil:
		return errors.New("server: no logger")
	case o.Registry == nil:
		return errors.New("server: no metrics registry")
	case o.Store == nil:
		return errors.New("server: no store")
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.Now == nil {
		o.Now = wallclock.Now
	}
	if o.AckFlushEvery <= 0 {
		o.AckFlushEvery = 10 * time.Second
	}
	return nil
}

// Server serves the orchestrator's HTTP surface.
type Server struct {
	opts   Options
	logger *slog.Logger
	out    httpx.Writer
	reads  scoped.Reader
	router *httprouter.Router
	// routeList is every registered route (Routes).
	routeList []Route
	// openapi is the API description served: the written one, plus the
	// routes of configured sources and Slack apps.
	openapi []byte
	// queryParams are the query parameters of each GET route, read from
	// openapi (query.go).
	queryParams map[string][]string
	metrics     *httpMetrics
	// door is the webhook door (nil: no /webhooks/*).
	door     *ingest.Door
	ui       *webui.UI
	http     *http.Server
	listener net.Listener
	draining atomic.Bool
	// serving gates the API routes until start-up work (migrations, run
	// recovery) is done; /health, /ready and /metrics answer regardless.
	serving atomic.Bool
	done    sync.WaitGroup
	// stopFlush ends the door's ack latency writer.
	stopFlush chan struct{}
}

// New builds a Server and registers its metrics (with the Go and process
// collectors) on opts.Registry.
func New(opts Options) (*Server, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if err := opts.Registry.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("server: register go collector: %w", err)
	}
	if err := opts.Registry.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("server: register process collector: %w", err)
	}
	m, err := newHTTPMetrics(opts.Registry)
	if err != nil {
		return nil, err
	}
	logger := opts.Logger.With("component", "http")
	s := &Server{
		opts:    opts,
		logger:  logger,
		out:     httpx.Writer{Logger: logger},
		reads:   scoped.Reader{Events: opts.Events, Runs: opts.Runs, Deliveries: opts.Answers},
		metrics: m,
		router: &httprouter.Router{
			// Redirects would turn bad paths (traversal in ids, stray
			// slashes) into 3xx; a clear 404 is the answer instead.
			RedirectTrailingSlash:  false,
			RedirectFixedPath:      false,
			HandleMethodNotAllowed: true,
		},
	}
	s.door = opts.Door
	s.openapi = OpenAPI
	if s.door != nil {
		s.openapi = describeSources(s.door.Registry())
	}
	s.queryParams = queryParams(s.openapi)
	if opts.UI != nil {
		page := webui.Options{Settings: *opts.UI, Logger: opts.Logger, Auth: opts.Auth, Runs: opts.Runs, Provision: opts.Provision,
			Store: opts.Store, Schedules: opts.Schedules, Backups: opts.Backups, Agents: opts.Agents, Door: s.door,
			Sources: doorSources(s.door), Noise: opts.Noise,
			Notify: opts.Notify, RouteTest: webui.RouteTester(opts.RouteTest), Redelivered: opts.Redelivered, Dev: opts.Dev, MaxBodyBytes: opts.MaxBodyBytes, Now: opts.Now}
		if opts.Answers != nil {
			page.Answers, _ = opts.Answers.(webui.AnswerStore)
		}
		// Nil stays nil: an interface holding a nil pointer is not.
		if opts.Events != nil {
			page.Events = opts.Events
		}
		if opts.Stats != nil {
			page.Stats = opts.Stats
		}
		if s.ui, err = webui.New(page); err != nil {
			return nil, fmt.Errorf("server: admin page: %w", err)
		}
	}
	s.routes()
	s.http = &http.Server{
		Handler: s.router,
		// Slow clients may not hold connections open: headers must arrive
		// quickly, bodies (capped at 1 MiB) soon after.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Long routes (the agent proxy) extend their own write deadline.
		WriteTimeout:   60 * time.Second,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(opts.Logger.With("component", "http").Handler(), slog.LevelWarn),
	}
	return s, nil
}

func (s *Server) now() time.Time { return s.opts.Now().UTC() }

// SetServing opens (or closes) the API routes.
func (s *Server) SetServing(on bool) { s.serving.Store(on) }

// ServeHTTP lets tests drive the server without a listener.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// Open binds the listener (errors come back here) and serves in the
// background.
func (s *Server) Open() error {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.opts.Addr, err)
	}
	s.listener = ln
	if s.door != nil {
		stop := make(chan struct{})
		s.stopFlush = stop
		s.done.Add(1)
		go func() {
			defer s.done.Done()
			s.door.RunAckFlusher(s.opts.AckFlushEvery, stop)
		}()
	}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("serve failed", "error", err)
		}
	}()
	return nil
}

// Addr returns the bound address once Open has succeeded.
func (s *Server) Addr() string {
	if s.listener == nil {
		return ""
	}
	return s.listener.Addr().String()
}

// Shutdown stops intake: /ready turns 503 at once, the listener closes, and
// in-flight requests get until ctx ends to finish; then connections are cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	err := s.http.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.http.Close())
	}
	if s.stopFlush != nil {
		close(s.stopFlush)
		s.stopFlush = nil
	}
	s.done.Wait()
	return err
}

// FlushAckStats writes the ack latencies the webhook door gathered since
// its last write (tests and benchmarks call it; the door also writes them
// every AckFlushEvery).
func (s *Server) FlushAckStats(ctx context.Context) error {
	if s.door == nil {
		return nil
	}
	return s.door.FlushAckStats(ctx)
}

// ForgetStats drops the figures the admin page keeps: its next page
// computes them (benchmarks time both).
func (s *Server) ForgetStats() {
	if s.ui != nil {
		s.ui.ForgetStats()
	}
}

// pageRouter mounts the admin page's routes with the server's middleware.
type pageRouter struct{ s *Server }

func (p pageRouter) Handle(method, path string, h http.HandlerFunc) { p.s.handle(method, path, h) }
func (p pageRouter) HandleProbe(method, path string, h http.HandlerFunc) {
	p.s.handleProbe(method, path, h)
}

func doorSources(d *ingest.Door) *webhook.Registry {
	if d == nil {
		return nil
	}
	return d.Registry()
}

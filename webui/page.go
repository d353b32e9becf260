package webui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/agentrun"
	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/backups"
	"github.com/incidentfox/orchestrator-edge/server/clientlimit"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/incidentfox/orchestrator-edge/server/ingest"
	"github.com/incidentfox/orchestrator-edge/server/noise"
	"github.com/incidentfox/orchestrator-edge/server/provision"
	"github.com/incidentfox/orchestrator-edge/server/schedules"
	"github.com/incidentfox/orchestrator-edge/server/scoped"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/julienschmidt/httprouter"
)

// The admin page (SPEC §9): server-rendered forms, no script at all, a
// server-side session per login. The admin token stays on the server.

const sessionCookie = "orchestrator_session"

// SessionIdle and SessionMax bound an admin page login: idle time, and age.
const (
	SessionIdle = 30 * time.Minute
	SessionMax  = 12 * time.Hour
)

// Settings are the admin page's own knobs (the rest of Options is what
// it reads and acts through).
type Settings struct {
	// CookieSecure says when the page's cookies are Secure: "auto" (or
	// empty: the request came over TLS, or through a trusted proxy that
	// says X-Forwarded-Proto: https), "true" (always), "false" (never).
	CookieSecure string
	// TrustedProxies are the proxies whose X-Forwarded-Proto is believed.
	TrustedProxies []netip.Prefix
	// SimulatedCluster says the cluster is dev mode's in-memory one.
	SimulatedCluster bool
	// Cluster is pinged for the overview; nil means no cluster.
	Cluster interface {
		Ping(ctx context.Context) error
	}
	// DevSecrets signs the dev-mode sample events (source → secret).
	DevSecrets map[string]string
	// Sessions keeps the logins (store.DB implements it), so that a login
	// is valid on every replica and survives restarts (SPEC §13).
	Sessions SessionStore
	// Now is the session clock (tests move it).
	Now func() time.Time
	// StatsMaxAge is how long the charts' and teams page's figures of the
	// last day are reused (0: computed for every page).
	StatsMaxAge time.Duration
	// EventRetention is how long finished events are kept, BodyRetention
	// their bodies (the overview's "full in about N days" counts what
	// retention will remove).
	EventRetention, BodyRetention time.Duration
	// TraceURLTemplate links an event's trace from its page
	// (ORCHESTRATOR_TRACE_URL_TEMPLATE, {trace_id} replaced; "" = the id
	// is shown without a link).
	TraceURLTemplate string
}

// Options are what the page reads and acts through — the same domain
// services the JSON API uses — and its Settings.
type Options struct {
	Settings
	Logger    *slog.Logger
	Auth      *auth.Authenticator
	Runs      RunReader
	Provision *provision.Service
	Events    EventStore
	// Store answers the overview's health and counts (store.DB).
	Store Health
	// Stats serves the charts and the teams page; nil: neither.
	Stats     StatsStore
	Schedules *schedules.Service
	Backups   *backups.Manager
	Agents    *agentrun.Proxy
	// Door takes the dev-mode sample events.
	Door *ingest.Door
	// Sources are the webhook sources (the door's registry); nil: the
	// built-in ones, without their routes.
	Sources *webhook.Registry
	// Noise sets silences and redrives in bulk; nil: the page has neither.
	Noise *noise.Service
	// RouteTest enables the Sources page's routing test form (operators).
	RouteTest RouteTester
	// Notify wakes the dispatcher after a redrive.
	Notify func(org, team string)
	// Answers shows where answers went and redelivers them; nil: neither.
	// Redelivered wakes the outbox after a redelivery.
	Answers      AnswerStore
	Redelivered  func()
	Dev          bool
	MaxBodyBytes int64
	// Now is the clock of events and figures (tests move it).
	Now func() time.Time
}

// sourceNames lists the webhook sources' names, in the registry's order.
func (u *UI) sourceNames() []string {
	if u.o.Sources != nil {
		return u.o.Sources.Names()
	}
	return webhook.Builtin[:]
}

// describe is what the agent is told of an event.
func (u *UI) describe(e store.Event) string {
	if u.o.Sources != nil {
		msg, _ := u.o.Sources.Describe(e.Source, e.EventType, e.Body, e.Headers)
		return msg
	}
	msg, _ := webhook.Describe(e.Source, e.EventType, e.Body)
	return msg
}

// RunReader reads provisioning runs (store.DB implements it).
type RunReader interface {
	GetRun(ctx context.Context, id string) (store.Run, error)
	ListRuns(ctx context.Context, f store.RunFilter) ([]store.Run, string, error)
}

// EventStore is what the page reads and changes of the event log.
type EventStore interface {
	GetEvent(ctx context.Context, id string) (store.Event, error)
	ListEvents(ctx context.Context, f store.EventFilter) ([]store.Event, string, error)
	Redrive(ctx context.Context, id string, now time.Time) (store.Event, error)
	EventAgentRuns(ctx context.Context, eventID string) ([]store.AgentRun, error)
	RunFeedback(ctx context.Context, runIDs []string) (map[string][]store.Feedback, error)
	EventFeedback(ctx context.Context, eventID string) ([]store.Feedback, error)
}

// Health is the overview's view of the database.
type Health interface {
	Ready(ctx context.Context) error
}

// Router is where the page's routes are mounted: Handle for pages (which
// answer 503 until the server serves), HandleProbe for the static files.
type Router interface {
	Handle(method, path string, h http.HandlerFunc)
	HandleProbe(method, path string, h http.HandlerFunc)
}

type uiSession struct {
	id, hash, token, actor string
	created, seen          time.Time
	flash                  string
}

// Actor names the logged-in admin on the page.
func (s *uiSession) Actor() string { return s.actor }

// UI is the admin page, mounted by the server at /ui/.
type UI struct {
	o       Options
	log     *slog.Logger
	out     httpx.Writer
	reads   scoped.Reader
	pages   map[string]*template.Template
	figures statsCache
}

// New builds the page from its options.
func New(o Options) (*UI, error) {
	switch {
	case o.Sessions == nil:
		return nil, errors.New("webui: a session store is required")
	case o.Logger == nil || o.Auth == nil || o.Runs == nil || o.Provision == nil || o.Events == nil || o.Store == nil:
		return nil, errors.New("webui: the admin page needs a logger, Auth, Runs, Provision, Events and Store")
	}
	if o.Now == nil {
		o.Now = wallclock.Now
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	pages, err := Templates(template.FuncMap{
		"bytes": func(n int64) string {
			switch {
			case n >= 1<<30:
				return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
			case n >= 1<<20:
				return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
			case n >= 1<<10:
				return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
			}
			return fmt.Sprintf("%d B", n)
		},
		"join": strings.Join,
		// runKind is a run's kind as lists show it: a deprovisioning that
		// only planned says "(dry run)".
		"runKind": func(run store.Run) string {
			if provision.IsDryRun(run) {
				return run.Kind + " (dry run)"
			}
			return run.Kind
		},
		// firstLine is a long text's first line, cut short: the events list
		// shows that much of an error, its event page the whole.
		"firstLine": func(s string) string {
			line, _, more := strings.Cut(strings.TrimSpace(s), "\n")
			if r := []rune(line); len(r) > 120 {
				line, more = string(r[:119]), true
			}
			if more {
				line += "…"
			}
			return line
		},
		// sameAsAbove says whether an agent call's error repeats the one
		// listed before it (the event page writes it once).
		"sameAsAbove": func(runs []store.AgentRun, i int) bool {
			return i > 0 && i < len(runs) && runs[i].Error != "" && runs[i].Error == runs[i-1].Error
		},
		"time": func(v any) string {
			switch t := v.(type) {
			case time.Time:
				return t.UTC().Format("2006-01-02 15:04:05Z")
			case *time.Time:
				if t != nil {
					return t.UTC().Format("2006-01-02 15:04:05Z")
				}
			}
			return ""
		},
	})
	if err != nil {
		return nil, err
	}
	log := o.Logger.With("component", "webui")
	return &UI{o: o, log: log, out: httpx.Writer{Logger: log}, reads: scoped.Reader{Events: o.Events, Runs: o.Runs, Deliveries: o.Answers, AgentRuns: o.Answers}, pages: pages}, nil
}

func (u *UI) now() time.Time { return u.o.Now().UTC() }

// secure reports whether a cookie set in answer to r is Secure.
func (u *UI) secure(r *http.Request) bool {
	switch u.o.CookieSecure {
	case "true":
		return true
	case "false":
		return false
	}
	if r.TLS != nil {
		return true
	}
	if !clientlimit.FromTrustedProxy(r, u.o.TrustedProxies) {
		return false
	}
	// The nearest proxy's word: the last value of the last header.
	protos := strings.Split(strings.Join(r.Header.Values("X-Forwarded-Proto"), ","), ",")
	return strings.EqualFold(strings.TrimSpace(protos[len(protos)-1]), "https")
}

// sessionNow is the session clock (Settings.Now, else the wall clock).
func (u *UI) sessionNow() time.Time {
	if u.o.Settings.Now != nil {
		return u.o.Settings.Now()
	}
	return wallclock.Now()
}

// page is what every template gets.
type page struct {
	Session          *uiSession
	Nav              string
	Dev              bool
	SimulatedCluster bool
	Error, Notice    string
	// Result is what the last form's action answered, carried over its
	// redirect with the notice (the agent form's result).
	Result string
	Data   any
}

// Routes mounts every page under /ui/.
func (u *UI) Routes(rt Router) {
	static := Static()
	st := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	rt.HandleProbe(http.MethodGet, "/ui/static/*path", func(w http.ResponseWriter, r *http.Request) {
		// Files only: a folder is not listed (SPEC §18).
		name := strings.TrimPrefix(httprouter.ParamsFromContext(r.Context()).ByName("path"), "/")
		if fi, err := fs.Stat(static, name); err != nil || !fi.Mode().IsRegular() {
			u.out.Error(w, r, apperr.New(apperr.NotFound, "not_found", "no such file"))
			return
		}
		uiHeaders(w)
		w.Header().Set("Cache-Control", "public, max-age=3600")
		st.ServeHTTP(w, r)
	})
	get := func(path string, h func(http.ResponseWriter, *http.Request, *uiSession)) {
		rt.Handle(http.MethodGet, path, u.uiPage(h))
	}
	post := func(path string, h func(http.ResponseWriter, *http.Request, *uiSession)) {
		rt.Handle(http.MethodPost, path, u.uiPage(h))
	}
	rt.Handle(http.MethodGet, "/ui/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/overview", http.StatusSeeOther)
	})
	rt.Handle(http.MethodGet, "/ui/login", u.uiLoginForm)
	rt.Handle(http.MethodPost, "/ui/login", u.uiLogin)
	post("/ui/logout", u.uiLogout)
	get("/ui/overview", u.uiOverview)
	get("/ui/provision", func(w http.ResponseWriter, r *http.Request, se *uiSession) {
		u.render(w, r, http.StatusOK, "provision", page{Session: se, Nav: "provision", Data: provisionForm(provision.Request{})})
	})
	post("/ui/provision", u.uiProvision)
	get("/ui/teams", u.uiTeams)
	get("/ui/teams/:org/:team", u.uiTeam)
	post("/ui/teams/:org/:team/deprovision", u.uiDeprovision)
	get("/ui/runs", u.uiRuns)
	get("/ui/runs/:id", u.uiRun)
	get("/ui/events", u.uiEvents)
	get("/ui/events/:id", u.uiEvent)
	if u.o.Answers != nil {
		get("/ui/agent-runs/:id", u.uiAgentRun)
		post("/ui/answers/:id/redeliver", u.uiRedeliver)
	}
	get("/ui/sources", u.uiSources)
	post("/ui/sources/test", u.uiRouteTest)
	post("/ui/sources/send/:source", u.uiSendTestEvent)
	get("/ui/silences", u.uiSilences)
	post("/ui/silences", u.uiCreateSilence)
	post("/ui/silences/:id/expire", u.uiExpireSilence)
	post("/ui/redrive", u.uiBulkRedrive)
	post("/ui/events/:id/redrive", u.uiRedrive)
	get("/ui/schedules", u.uiSchedules)
	post("/ui/schedules/:id", u.uiSchedule)
	get("/ui/agents", func(w http.ResponseWriter, r *http.Request, se *uiSession) {
		q := r.URL.Query()
		u.render(w, r, http.StatusOK, "agents", page{Session: se, Nav: "agents",
			Data: agentPage{OrgID: q.Get("org_id"), TeamNodeID: q.Get("team_node_id"), AgentName: q.Get("agent_name")}})
	})
	post("/ui/agents", u.uiAgent)
	if u.o.Dev {
		post("/ui/dev/sample/:source", u.uiSample)
	}
	if u.o.Backups != nil {
		get("/ui/backups", u.uiBackups)
		post("/ui/backups", u.uiBackupNow)
		get("/ui/backups/:name", u.uiBackupDownload)
	}
}

// uiHeaders are the page's security headers: a strict CSP with no script
// at all, no framing, no referrer.
func uiHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}

func (u *UI) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.Dev, p.SimulatedCluster = u.o.Dev, u.o.SimulatedCluster
	if p.Session != nil && p.Session.flash != "" && p.Notice == "" {
		p.Notice, p.Result = decodeFlash(p.Session.flash)
		p.Session.flash = ""
		if err := u.o.Sessions.SetSessionFlash(r.Context(), p.Session.hash, ""); err != nil {
			u.log.Warn("cannot clear a page notice", "error", err)
		}
	}
	var buf bytes.Buffer
	if err := u.pages[name].Execute(&buf, p); err != nil {
		u.out.Error(w, r, err)
		return
	}
	uiHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// sameOrigin refuses cross-site form posts. Browsers say where a request
// comes from in Sec-Fetch-Site (with Referrer-Policy: no-referrer they send
// "Origin: null" on form posts); other clients must send a matching Origin
// (or Referer).
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin":
		return true
	case "":
	default:
		return false
	}
	src := r.Header.Get("Origin")
	if src == "" || src == "null" {
		src = r.Header.Get("Referer")
	}
	u, err := url.Parse(src)
	return src != "" && err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host == r.Host
}

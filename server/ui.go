package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/agentrun"
	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/incidentfox/orchestrator-edge/server/provision"
	"github.com/incidentfox/orchestrator-edge/server/scoped"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/incidentfox/orchestrator-edge/webui"
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

// UIOptions configure the admin page.
type UIOptions struct {
	// SecureCookie marks the session cookie Secure (behind TLS).
	SecureCookie bool
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
}

type uiSession struct {
	id, hash, token, actor string
	created, seen          time.Time
	flash                  string
}

// Actor names the logged-in admin on the page.
func (s *uiSession) Actor() string { return s.actor }

// ui is the page's state.
type ui struct {
	opts  UIOptions
	pages map[string]*template.Template
	stats statsCache
}

func newUI(o UIOptions) (*ui, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sessions == nil {
		return nil, errors.New("ui: a session store is required")
	}
	pages, err := webui.Templates(template.FuncMap{
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
	return &ui{opts: o, pages: pages}, nil
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

func (s *Server) uiRoutes() {
	static := webui.Static()
	st := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	s.handleProbe(http.MethodGet, "/ui/static/*path", func(w http.ResponseWriter, r *http.Request) {
		// Files only: a folder is not listed (SPEC §18).
		name := strings.TrimPrefix(httprouter.ParamsFromContext(r.Context()).ByName("path"), "/")
		if fi, err := fs.Stat(static, name); err != nil || !fi.Mode().IsRegular() {
			s.out.Error(w, r, apperr.New(apperr.NotFound, "not_found", "no such file"))
			return
		}
		uiHeaders(w)
		w.Header().Set("Cache-Control", "public, max-age=3600")
		st.ServeHTTP(w, r)
	})
	get := func(path string, h func(http.ResponseWriter, *http.Request, *uiSession)) {
		s.handle(http.MethodGet, path, s.uiPage(h))
	}
	post := func(path string, h func(http.ResponseWriter, *http.Request, *uiSession)) {
		s.handle(http.MethodPost, path, s.uiPage(h))
	}
	s.handle(http.MethodGet, "/ui/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/overview", http.StatusSeeOther)
	})
	s.handle(http.MethodGet, "/ui/login", s.uiLoginForm)
	s.handle(http.MethodPost, "/ui/login", s.uiLogin)
	post("/ui/logout", s.uiLogout)
	get("/ui/overview", s.uiOverview)
	get("/ui/provision", func(w http.ResponseWriter, r *http.Request, se *uiSession) {
		s.render(w, r, http.StatusOK, "provision", page{Session: se, Nav: "provision", Data: provisionForm(provision.Request{})})
	})
	post("/ui/provision", s.uiProvision)
	get("/ui/teams", s.uiTeams)
	get("/ui/teams/:org/:team", s.uiTeam)
	post("/ui/teams/:org/:team/deprovision", s.uiDeprovision)
	get("/ui/runs", s.uiRuns)
	get("/ui/runs/:id", s.uiRun)
	get("/ui/events", s.uiEvents)
	get("/ui/events/:id", s.uiEvent)
	post("/ui/events/:id/redrive", s.uiRedrive)
	get("/ui/schedules", s.uiSchedules)
	post("/ui/schedules/:id", s.uiSchedule)
	get("/ui/agents", func(w http.ResponseWriter, r *http.Request, se *uiSession) {
		q := r.URL.Query()
		s.render(w, r, http.StatusOK, "agents", page{Session: se, Nav: "agents",
			Data: agentPage{OrgID: q.Get("org_id"), TeamNodeID: q.Get("team_node_id"), AgentName: q.Get("agent_name")}})
	})
	post("/ui/agents", s.uiAgent)
	if s.opts.Dev {
		post("/ui/dev/sample/:source", s.uiSample)
	}
	if s.opts.Backups != nil {
		get("/ui/backups", s.uiBackups)
		post("/ui/backups", s.uiBackupNow)
		get("/ui/backups/:name", s.uiBackupDownload)
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

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.Dev, p.SimulatedCluster = s.opts.Dev, s.ui.opts.SimulatedCluster
	if p.Session != nil && p.Session.flash != "" && p.Notice == "" {
		p.Notice, p.Result = decodeFlash(p.Session.flash)
		p.Session.flash = ""
		if err := s.ui.opts.Sessions.SetSessionFlash(r.Context(), p.Session.hash, ""); err != nil {
			s.logger.Warn("cannot clear a page notice", "error", err)
		}
	}
	var buf bytes.Buffer
	if err := s.ui.pages[name].Execute(&buf, p); err != nil {
		s.out.Error(w, r, err)
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

// session finds the request's live session, touching it.
func (s *Server) session(r *http.Request) *uiSession {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil
	}
	ctx := r.Context()
	now := s.ui.opts.Now()
	hash := sessionHash(c.Value)
	row, err := s.ui.opts.Sessions.GetSession(ctx, hash)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.logger.Warn("cannot read a page session", "error", err)
		}
		return nil
	}
	if now.Sub(row.SeenAt) > SessionIdle || now.Sub(row.CreatedAt) > SessionMax {
		_ = s.ui.opts.Sessions.DeleteSession(ctx, hash)
		return nil
	}
	token, err := openToken(c.Value, row.Sealed)
	if err != nil {
		return nil
	}
	// The last-seen time moves at most once a minute: a page view is then
	// not a write.
	if now.Sub(row.SeenAt) > time.Minute {
		if err := s.ui.opts.Sessions.TouchSession(ctx, hash, now); err != nil {
			s.logger.Warn("cannot touch a page session", "error", err)
		}
	}
	return &uiSession{id: c.Value, hash: hash, token: token, actor: row.Actor, created: row.CreatedAt, seen: now, flash: row.Flash}
}

// setFlash keeps a notice for the session's next page.
func (s *Server) setFlash(r *http.Request, se *uiSession, msg string) {
	s.setFlashResult(r, se, msg, "")
}

// maxFlashResult bounds a result kept for the next page.
const maxFlashResult = 64 << 10

// setFlashResult keeps a notice and a result (the agent's answer) for the
// session's next page: the redirect after a POST carries them.
func (s *Server) setFlashResult(r *http.Request, se *uiSession, msg, result string) {
	if len(result) > maxFlashResult {
		result = strings.ToValidUTF8(result[:maxFlashResult], "") + "\n… (cut at 64 KiB)"
	}
	se.flash = encodeFlash(msg, result)
	if err := s.ui.opts.Sessions.SetSessionFlash(r.Context(), se.hash, se.flash); err != nil {
		s.logger.Warn("cannot keep a page notice", "error", err)
	}
}

// A flash is a notice, or a notice and a result kept as JSON.
func encodeFlash(notice, result string) string {
	if result == "" {
		return notice
	}
	b, _ := json.Marshal(struct{ Notice, Result string }{notice, result})
	return string(b)
}

func decodeFlash(flash string) (notice, result string) {
	var f struct{ Notice, Result string }
	if strings.HasPrefix(flash, "{") && json.Unmarshal([]byte(flash), &f) == nil && f.Result != "" {
		return f.Notice, f.Result
	}
	return flash, ""
}

// uiPage wraps a page handler: a live session is required (else the login
// page), and POSTs must come from this site.
func (s *Server) uiPage(h func(http.ResponseWriter, *http.Request, *uiSession)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && !sameOrigin(r) {
			s.render(w, r, http.StatusForbidden, "login", page{Error: "This form was not sent from this site."})
			return
		}
		se := s.session(r)
		if se == nil {
			http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
			return
		}
		h(w, r, se)
	}
}

// admin checks the session's token for one action, as the API does.
func (s *Server) uiAdmin(w http.ResponseWriter, r *http.Request, se *uiSession, perm, nav string) *auth.Admin {
	a, err := s.opts.Auth.Check(r.Context(), se.token, perm)
	if err != nil {
		s.render(w, r, httpx.Classify(err).Kind.Status(), "notfound", page{Session: se, Nav: nav, Error: apperr.Message(err)})
		return nil
	}
	return a
}

func (s *Server) uiLoginForm(w http.ResponseWriter, r *http.Request) {
	if s.session(r) != nil {
		http.Redirect(w, r, "/ui/overview", http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, "login", page{})
}

func (s *Server) uiLogin(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		s.render(w, r, http.StatusForbidden, "login", page{Error: "This form was not sent from this site."})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	token := strings.TrimSpace(r.PostFormValue("token"))
	a, err := s.opts.Auth.CheckFrom(r.Context(), s.opts.Auth.ClientAddr(r), token, "")
	if err != nil {
		s.render(w, r, httpx.Classify(err).Kind.Status(), "login", page{Error: "Login refused: " + apperr.Message(err)})
		return
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	now := s.ui.opts.Now()
	id := base64.RawURLEncoding.EncodeToString(b[:])
	sealed, err := sealToken(id, a.Token)
	if err == nil {
		err = s.ui.opts.Sessions.CreateSession(r.Context(), store.Session{IDHash: sessionHash(id), Actor: a.Actor, Sealed: sealed,
			CreatedAt: now, SeenAt: now})
	}
	if err != nil {
		s.logger.Error("cannot store a page session", "error", err)
		s.render(w, r, http.StatusServiceUnavailable, "login", page{Error: "Login failed: the session could not be stored; try again."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/ui/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.ui.opts.SecureCookie, MaxAge: int(SessionMax / time.Second)})
	s.logger.Info("admin page login", "actor", a.Actor)
	http.Redirect(w, r, "/ui/overview", http.StatusSeeOther)
}

func (s *Server) uiLogout(w http.ResponseWriter, r *http.Request, se *uiSession) {
	if err := s.ui.opts.Sessions.DeleteSession(r.Context(), se.hash); err != nil {
		s.logger.Warn("cannot end a page session", "error", err)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/ui/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.ui.opts.SecureCookie, MaxAge: -1})
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

type failure struct {
	At                        time.Time
	What, Link, Status, Error string
}

// uiOverview shows each admin what the API would show it: health to every
// admin; queue depth, event counts and failed events only with
// admin:events:read, failed runs only with admin:provision:read — each of its
// org alone when the admin is bound to one (orgScope). Unrouted events belong
// to no org, so an org-bound admin never sees them.
func (s *Server) uiOverview(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := s.uiAdmin(w, r, se, "", "overview")
	if a == nil {
		return
	}
	org, _ := scoped.OrgScope(a, "")
	ctx := r.Context()
	d := struct {
		DB, DBDetail, Cluster, ClusterDetail, Peers, PeersDetail string
		Org                                                      string
		Events, Runs, Samples                                    bool
		BackupFailure                                            string
		BackupFailedAt                                           time.Time
		QueueDepth                                               int
		PerSource                                                []store.SourceCount
		Failures                                                 []failure
		Sources                                                  []string
		Charts                                                   *charts
		ChartsError                                              string
		StatsMaxAge                                              time.Duration
	}{StatsMaxAge: s.ui.opts.StatsMaxAge, DB: "ready", Cluster: "ok", Peers: "ok", Org: org, Sources: webhook.Sources[:],
		Events: s.opts.Auth.Permits(a, auth.PermEventsRead), Runs: s.opts.Auth.Permits(a, auth.PermProvisionRead),
		Samples: s.mayPostSamples(a)}
	if err := s.opts.Store.Ready(ctx); err != nil {
		d.DB, d.DBDetail = "down", err.Error()
	}
	switch {
	case s.ui.opts.Cluster == nil:
		d.Cluster, d.ClusterDetail = "down", "no cluster configured"
	case s.ui.opts.Cluster.Ping(ctx) != nil:
		d.Cluster, d.ClusterDetail = "down", "the API server does not answer"
	case s.ui.opts.SimulatedCluster:
		d.Cluster, d.ClusterDetail = "simulated", "in-memory (dev mode)"
	}
	if _, err := s.opts.Auth.Check(ctx, se.token, ""); err != nil {
		d.Peers, d.PeersDetail = "down", apperr.Message(err)
	}
	if s.opts.Backups != nil && s.opts.Auth.Permits(a, auth.PermBackup) && a.Identity.OrgID == "" {
		d.BackupFailure, d.BackupFailedAt = s.opts.Backups.LastFailure()
	}
	if d.Events {
		if db, ok := s.opts.Store.(interface {
			QueueDepth(context.Context, string) (int, error)
			CountEventsSince(context.Context, time.Time, string) ([]store.SourceCount, error)
		}); ok {
			d.QueueDepth, _ = db.QueueDepth(ctx, org)
			d.PerSource, _ = db.CountEventsSince(ctx, s.now().Add(-time.Hour), org)
		}
		if s.opts.Stats != nil {
			if st, err := s.stats(ctx, org); err != nil {
				d.ChartsError = "The charts could not be drawn: " + err.Error()
			} else {
				c := st.charts()
				d.Charts = &c
			}
		}
		for _, st := range []string{store.EventDead, store.EventFailed, store.EventUnrouted} {
			evs, _, _ := s.opts.Events.ListEvents(ctx, store.EventFilter{Status: st, OrgID: org, Limit: 5})
			for _, e := range evs {
				d.Failures = append(d.Failures, failure{At: e.ReceivedAt, What: e.Source + " event " + e.EventType, Link: "/ui/events/" + e.ID, Status: e.Status, Error: e.LastError})
			}
		}
	}
	if d.Runs {
		runs, _, _ := s.opts.Runs.ListRuns(ctx, store.RunFilter{Status: store.RunFailed, OrgID: org, Limit: 5})
		for _, run := range runs {
			d.Failures = append(d.Failures, failure{At: run.CreatedAt, What: run.Kind + " " + run.OrgID + "/" + run.TeamNodeID, Link: "/ui/runs/" + run.ID, Status: run.Status, Error: run.Error})
		}
	}
	sort.Slice(d.Failures, func(i, j int) bool { return d.Failures[i].At.After(d.Failures[j].At) })
	s.render(w, r, http.StatusOK, "overview", page{Session: se, Nav: "overview", Data: d})
}

// provisionFormData is the provision form: the request so far and every
// routing field.
type provisionFormData struct {
	provision.Request
	Routing []provision.RoutingField
}

func provisionForm(req provision.Request) provisionFormData {
	routing := req.Routing
	if routing == nil {
		routing = &provision.Routing{}
	}
	return provisionFormData{Request: req, Routing: routing.Fields()}
}

// splitList reads a comma-separated form field; empty means "leave as is".
func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

type runPage struct {
	Run   store.Run
	Steps []provision.Step
	Token string
}

func (s *Server) uiProvision(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := s.uiAdmin(w, r, se, auth.PermProvision, "provision")
	if a == nil {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	req := provision.Request{OrgID: strings.TrimSpace(r.PostFormValue("org_id")), TeamNodeID: strings.TrimSpace(r.PostFormValue("team_node_id")),
		CreatePipelineSchedule: r.PostFormValue("create_pipeline_schedule") == "1",
		PipelineSchedule:       strings.TrimSpace(r.PostFormValue("pipeline_schedule")), DeploymentMode: r.PostFormValue("deployment_mode")}
	routing := &provision.Routing{}
	for _, f := range routing.Fields() {
		if v := splitList(r.PostFormValue(f.Key)); v != nil {
			routing.Set(f.Key, v)
			req.Routing = routing
		}
	}
	if !req.CreatePipelineSchedule {
		req.PipelineSchedule = ""
	}
	err := req.Normalize("")
	if err == nil {
		err = a.CanActOn(req.OrgID)
	}
	if err != nil {
		s.render(w, r, httpx.Classify(err).Kind.Status(), "provision", page{Session: se, Nav: "provision", Error: apperr.Message(err), Data: provisionForm(req)})
		return
	}
	res, err := s.opts.Provision.Provision(r.Context(), provision.Caller{Token: a.Token, Actor: a.Actor}, req)
	if err != nil {
		s.render(w, r, httpx.Classify(err).Kind.Status(), "provision", page{Session: se, Nav: "provision", Error: apperr.Message(err), Data: provisionForm(req)})
		return
	}
	// Redirect after POST: a reload shows the run, never provisions again.
	// The new token rides along once, sealed for this browser.
	if resp, ok := res.Body.(provision.Response); ok && resp.TeamToken != "" {
		if v, err := sealNewToken(se.id, res.RunID, resp.TeamToken); err == nil {
			http.SetCookie(w, &http.Cookie{Name: newTokenCookie, Value: v, Path: "/ui/runs/", HttpOnly: true,
				SameSite: http.SameSiteStrictMode, Secure: s.ui.opts.SecureCookie, MaxAge: int(newTokenTTL.Seconds())})
		}
	}
	http.Redirect(w, r, "/ui/runs/"+url.PathEscape(res.RunID), http.StatusSeeOther)
}

func (s *Server) uiRuns(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := s.uiAdmin(w, r, se, auth.PermProvisionRead, "runs")
	if a == nil {
		return
	}
	org, _ := scoped.OrgScope(a, "")
	runs, next, err := s.opts.Runs.ListRuns(r.Context(), store.RunFilter{OrgID: org, Limit: 50, Cursor: r.URL.Query().Get("cursor")})
	if err != nil {
		s.render(w, r, http.StatusBadRequest, "notfound", page{Session: se, Nav: "runs", Error: apperr.Message(httpx.CursorError(err))})
		return
	}
	s.render(w, r, http.StatusOK, "runs", page{Session: se, Nav: "runs", Data: struct {
		Runs []store.Run
		Next string
	}{runs, next}})
}

func (s *Server) uiRun(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := s.uiAdmin(w, r, se, auth.PermProvisionRead, "runs")
	if a == nil {
		return
	}
	run, err := s.reads.Run(r.Context(), a, httprouter.ParamsFromContext(r.Context()).ByName("id"))
	if err != nil {
		s.render(w, r, httpx.Classify(err).Kind.Status(), "notfound", page{Session: se, Nav: "runs", Error: apperr.Message(err)})
		return
	}
	p := runPage{Run: run}
	_ = json.Unmarshal(run.Steps, &p.Steps)
	// A token this session's provisioning just issued is shown here once.
	if c, err := r.Cookie(newTokenCookie); err == nil {
		if p.Token = openNewToken(se.id, run.ID, c.Value); p.Token != "" {
			http.SetCookie(w, &http.Cookie{Name: newTokenCookie, Value: "", Path: "/ui/runs/", HttpOnly: true,
				SameSite: http.SameSiteStrictMode, Secure: s.ui.opts.SecureCookie, MaxAge: -1})
		}
	}
	s.render(w, r, http.StatusOK, "run", page{Session: se, Nav: "runs", Data: p})
}

// uiEvents lists events with the API's filters (source, status, team, time
// range) and a search box: an event id opens that event, anything else is
// looked up as a delivery id.
func (s *Server) uiEvents(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := s.uiAdmin(w, r, se, auth.PermEventsRead, "events")
	if a == nil {
		return
	}
	q := r.URL.Query()
	find := strings.TrimSpace(q.Get("q"))
	if find != "" {
		if e, err := s.reads.Event(r.Context(), a, find); err == nil {
			http.Redirect(w, r, "/ui/events/"+e.ID, http.StatusSeeOther)
			return
		}
		q.Set("delivery_id", find)
	}
	// The page's time fields are datetime-local (no zone): read them as UTC.
	for _, k := range []string{"since", "until"} {
		if v := q.Get(k); len(v) == len("2006-01-02T15:04") {
			q.Set(k, v+":00Z")
		}
	}
	f, err := scoped.EventFilter(q)
	if err == nil {
		f.OrgID, err = scoped.OrgScope(a, f.OrgID)
	}
	f.Limit, f.Before = 50, q.Get("before")
	if f.Before != "" && f.Cursor != "" {
		err = httpx.QueryError("before", "give cursor or before, not both")
	}
	var events []store.Event
	var more string
	switch {
	case err != nil:
	case f.DeliveryID != "" && f.Source == "":
		// A delivery id is unique per source: one indexed lookup each.
		for _, src := range webhook.Sources[:] {
			f.Source = src
			got, _, lerr := s.opts.Events.ListEvents(r.Context(), f)
			events, err = append(events, got...), lerr
			if err != nil {
				break
			}
		}
		f.Source = ""
	default:
		events, more, err = s.opts.Events.ListEvents(r.Context(), f)
		err = httpx.CursorError(err)
	}
	if err != nil {
		s.render(w, r, httpx.Classify(err).Kind.Status(), "notfound", page{Session: se, Nav: "events", Error: apperr.Message(err)})
		return
	}
	filters := url.Values{}
	for _, k := range []string{"source", "status", "org_id", "team_node_id", "since", "until", "q"} {
		if v := r.URL.Query().Get(k); v != "" {
			filters.Set(k, v)
		}
	}
	link := func(key, cursor string) template.URL {
		o := url.Values{}
		for k, v := range filters {
			o[k] = v
		}
		o.Set(key, cursor)
		return template.URL(o.Encode())
	}
	// Older follows the last row, Newer goes back from the first.
	var older, newer template.URL
	switch {
	case f.Before != "":
		if len(events) > 0 {
			older = link("cursor", store.EventCursor(events[len(events)-1]))
		}
		if more != "" {
			newer = link("before", more)
		}
	default:
		if more != "" {
			older = link("cursor", more)
		}
		if f.Cursor != "" && len(events) > 0 {
			newer = link("before", store.EventCursor(events[0]))
		}
	}
	s.render(w, r, http.StatusOK, "events", page{Session: se, Nav: "events", Data: struct {
		Events                                        []store.Event
		Older, Newer, Newest                          template.URL // encoded query strings, not to be escaped again
		Paged                                         bool
		Source, Status, Org, Team, Since, Until, Find string
		Sources, Statuses                             []string
	}{events, older, newer, template.URL(filters.Encode()), f.Cursor != "" || f.Before != "", f.Source, f.Status, r.URL.Query().Get("org_id"), f.TeamNodeID,
		r.URL.Query().Get("since"), r.URL.Query().Get("until"), find, webhook.Sources[:], store.EventStatuses}})
}

// uiEventFor loads the path's event for the session's admin.
func (s *Server) uiEventFor(w http.ResponseWriter, r *http.Request, se *uiSession, a *auth.Admin) (store.Event, bool) {
	e, err := s.reads.Event(r.Context(), a, httprouter.ParamsFromContext(r.Context()).ByName("id"))
	if err != nil {
		s.render(w, r, httpx.Classify(err).Kind.Status(), "notfound", page{Session: se, Nav: "events", Error: apperr.Message(err)})
		return store.Event{}, false
	}
	return e, true
}

func (s *Server) uiEvent(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := s.uiAdmin(w, r, se, auth.PermEventsRead, "events")
	if a == nil {
		return
	}
	e, ok := s.uiEventFor(w, r, se, a)
	if !ok {
		return
	}
	runs, _ := s.opts.Events.EventAgentRuns(r.Context(), e.ID)
	redrivable := e.Redrivable() && e.BodyPurgedAt == nil
	// What the agent is told of this event (alone, or as its line of a
	// digest), and the body as indented JSON when it is JSON.
	message, body := "", string(e.Body)
	if e.BodyPurgedAt == nil && len(e.Body) > 0 {
		message, _ = webhook.Describe(e.Source, e.EventType, e.Body)
		var pretty bytes.Buffer
		if json.Indent(&pretty, e.Body, "", "  ") == nil {
			body = pretty.String()
		}
	}
	s.render(w, r, http.StatusOK, "event", page{Session: se, Nav: "events", Data: struct {
		Event         store.Event
		Runs          []store.AgentRun
		Redrivable    bool
		Message, Body string
	}{e, runs, redrivable, message, body}})
}

func (s *Server) uiRedrive(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := s.uiAdmin(w, r, se, auth.PermEventsRedrive, "events")
	if a == nil {
		return
	}
	e, ok := s.uiEventFor(w, r, se, a)
	if !ok {
		return
	}
	if _, err := s.opts.Events.Redrive(r.Context(), e.ID, s.now()); err != nil {
		s.setFlash(r, se, "Not redriven: "+err.Error())
	} else {
		s.setFlash(r, se, "Event queued again.")
		s.logger.Info("event redriven", "event_id", e.ID, "actor", a.Actor)
		if s.opts.Notify != nil {
			s.opts.Notify(e.OrgID, e.TeamNodeID)
		}
	}
	http.Redirect(w, r, "/ui/events/"+e.ID, http.StatusSeeOther)
}

func (s *Server) uiSchedules(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := s.uiAdmin(w, r, se, auth.PermPipelineRead, "schedules")
	if a == nil {
		return
	}
	var views any = nil
	errText := ""
	if s.opts.Schedules != nil {
		org, _ := scoped.OrgScope(a, "")
		v, err := s.opts.Schedules.List(r.Context(), org, "")
		if err != nil {
			errText = apperr.Message(err)
		}
		views = v
	}
	s.render(w, r, http.StatusOK, "schedules", page{Session: se, Nav: "schedules", Error: errText, Data: struct{ Schedules any }{views}})
}

func (s *Server) uiSchedule(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := s.uiAdmin(w, r, se, auth.PermCronJobsSync, "schedules")
	if a == nil {
		return
	}
	row, err := s.opts.Schedules.Get(r.Context(), httprouter.ParamsFromContext(r.Context()).ByName("id"))
	if err == nil && a.CanActOn(row.OrgID) != nil {
		err = apperr.New(apperr.NotFound, "schedule_not_found", "no such schedule")
	}
	if err == nil {
		enabled := r.PostFormValue("enabled") == "1"
		_, err = s.opts.Schedules.Patch(r.Context(), row, &enabled, nil)
		if err == nil {
			s.setFlash(r, se, row.CronJobName+map[bool]string{true: " resumed.", false: " suspended."}[enabled])
		}
	}
	if err != nil {
		s.setFlash(r, se, "Not changed: "+apperr.Message(err))
	}
	http.Redirect(w, r, "/ui/schedules", http.StatusSeeOther)
}

func (s *Server) uiAgent(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := s.uiAdmin(w, r, se, auth.PermAgentRun, "agents")
	if a == nil {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	req := agentrun.Request{OrgID: strings.TrimSpace(r.PostFormValue("org_id")), TeamNodeID: strings.TrimSpace(r.PostFormValue("team_node_id")),
		AgentName: strings.TrimSpace(r.PostFormValue("agent_name")), Message: r.PostFormValue("message")}
	err := req.Validate()
	if err == nil {
		err = a.CanActOn(req.OrgID)
	}
	data := agentPage{OrgID: req.OrgID, TeamNodeID: req.TeamNodeID, AgentName: req.AgentName, Message: req.Message}
	if err != nil {
		// Nothing was called: the form comes back with what was typed.
		s.render(w, r, httpx.Classify(err).Kind.Status(), "agents", page{Session: se, Nav: "agents", Error: apperr.Message(err), Data: data})
		return
	}
	// The agent was called (and the call audited): redirect after POST, so
	// a reload never calls it again; the answer rides along once.
	out, err := s.opts.Agents.Run(r.Context(), a, req)
	back := "/ui/agents?" + url.Values{"org_id": {req.OrgID}, "team_node_id": {req.TeamNodeID}, "agent_name": {req.AgentName}}.Encode()
	if err != nil {
		s.setFlash(r, se, "The agent run failed: "+apperr.Message(err))
		http.Redirect(w, r, back, http.StatusSeeOther)
		return
	}
	var pretty bytes.Buffer
	result := string(out.Result)
	if json.Indent(&pretty, out.Result, "", "  ") == nil {
		result = pretty.String()
	}
	s.setFlashResult(r, se, "Agent run "+out.CorrelationID+" finished.", result)
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// agentPage is the agent form, filled from the query after a run.
type agentPage struct {
	OrgID, TeamNodeID, AgentName, Message string
}

// mayPostSamples: a dev sample routes to whichever team its identifiers
// match, in any org, and starts an agent run there; only an admin that may
// redrive events and is bound to no org may send one.
func (s *Server) mayPostSamples(a *auth.Admin) bool {
	return s.opts.Dev && a.Identity.OrgID == "" && s.opts.Auth.Permits(a, auth.PermEventsRedrive)
}

// uiSample (dev mode only) signs a sample event with the dev secret and
// hands it to the webhook door, as the vendor's delivery would be.
func (s *Server) uiSample(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := s.uiAdmin(w, r, se, auth.PermEventsRedrive, "overview")
	if a == nil {
		return
	}
	if !s.mayPostSamples(a) {
		s.render(w, r, http.StatusForbidden, "notfound", page{Session: se, Nav: "overview",
			Error: "Samples route to any org's team: sending one needs an admin bound to no org."})
		return
	}
	source := httprouter.ParamsFromContext(r.Context()).ByName("source")
	secret := s.ui.opts.DevSecrets[source]
	if s.door == nil || !slices.Contains(s.door.Sources(), source) || secret == "" {
		s.setFlash(r, se, "No such source, or no dev secret for it.")
		http.Redirect(w, r, "/ui/overview", http.StatusSeeOther)
		return
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := strings.ToLower(base64.RawURLEncoding.EncodeToString(b[:]))
	now := time.Now()
	body := webhook.Sample(source, id, now)
	ack := s.door.Accept(r.Context(), source, body, webhook.Sign(source, secret, body, now, "sample-"+id))
	if ack.Err != nil || ack.EventID == "" {
		s.setFlash(r, se, "The sample was refused: "+apperr.Message(ack.Err))
		http.Redirect(w, r, "/ui/overview", http.StatusSeeOther)
		return
	}
	s.setFlash(r, se, "Sample "+source+" event accepted.")
	http.Redirect(w, r, "/ui/events/"+ack.EventID, http.StatusSeeOther)
}

var errNoUI = errors.New("server: the admin page needs Auth, Runs, Provision and Events")

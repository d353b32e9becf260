package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/migrations"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/prometheus/client_golang/prometheus"
)

// syncBuffer collects log lines written from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testServer is a Server on a real SQLite file, migrated unless told not to.
func testServer(t *testing.T, migrate bool) (*Server, *store.DB, *syncBuffer) {
	t.Helper()
	db, err := store.Open(context.Background(), store.Options{
		Path: filepath.Join(t.TempDir(), "orchestrator.db"), Migrations: migrations.FS,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if migrate {
		if _, err := db.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	logs := &syncBuffer{}
	s, err := New(Options{
		Addr:     "127.0.0.1:0",
		Logger:   slog.New(slog.NewJSONHandler(logs, nil)),
		Registry: prometheus.NewRegistry(),
		Store:    db,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.SetServing(true)
	return s, db, logs
}

func do(t *testing.T, h http.Handler, method, path string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func decodeError(t *testing.T, rec *httptest.ResponseRecorder) httpx.ErrorBody {
	t.Helper()
	var e httpx.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q: %v", rec.Body.String(), err)
	}
	return e
}

func TestHealth(t *testing.T) {
	s, _, _ := testServer(t, false)
	rec := do(t, s, "GET", "/health", nil)
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"status":"ok"}` {
		t.Fatalf("health = %d %s", rec.Code, rec.Body)
	}
	if rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("content type %q", rec.Header().Get("Content-Type"))
	}
}

func TestReady_503UntilMigrated(t *testing.T) {
	s, db, _ := testServer(t, false)
	rec := do(t, s, "GET", "/ready", nil)
	if rec.Code != 503 || decodeError(t, rec).Error != "not_ready" {
		t.Fatalf("ready before migrations = %d %s", rec.Code, rec.Body)
	}
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rec := do(t, s, "GET", "/ready", nil); rec.Code != 200 {
		t.Fatalf("ready after migrations = %d %s", rec.Code, rec.Body)
	}
}

func TestReady_503WhenDatabaseUnwritable(t *testing.T) {
	s, db, _ := testServer(t, true)
	db.Close() // stands for a database that no longer takes writes
	rec := do(t, s, "GET", "/ready", nil)
	if rec.Code != 503 {
		t.Fatalf("ready with a closed database = %d %s", rec.Code, rec.Body)
	}
}

func TestAPIRoutesWaitForStartup(t *testing.T) {
	s, _, _ := testServer(t, true)
	s.SetServing(false)
	s.handle("GET", "/api/thing", func(w http.ResponseWriter, r *http.Request) { s.out.JSON(w, r, 200, "ok") })
	if rec := do(t, s, "GET", "/api/thing", nil); rec.Code != 503 || decodeError(t, rec).Error != "not_ready" {
		t.Fatalf("API before serving = %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, s, "GET", "/ready", nil); rec.Code != 503 {
		t.Fatalf("ready before serving = %d", rec.Code)
	}
	if rec := do(t, s, "GET", "/health", nil); rec.Code != 200 {
		t.Fatalf("health before serving = %d", rec.Code)
	}
	s.SetServing(true)
	if rec := do(t, s, "GET", "/api/thing", nil); rec.Code != 200 {
		t.Fatalf("API when serving = %d", rec.Code)
	}
}

func TestRequestID_EchoedOrMade(t *testing.T) {
	s, _, logs := testServer(t, true)
	rec := do(t, s, "GET", "/health", http.Header{"X-Request-Id": {"abc-123"}})
	if got := rec.Header().Get("X-Request-Id"); got != "abc-123" {
		t.Fatalf("request id = %q, want the caller's", got)
	}
	for _, bad := range []string{"", "has space", "new\nline", strings.Repeat("x", 129), "<script>"} {
		rec := do(t, s, "GET", "/health", http.Header{"X-Request-Id": {bad}})
		got := rec.Header().Get("X-Request-Id")
		if got == bad || len(got) != 24 {
			t.Errorf("caller id %q: got %q, want a fresh 24-char id", bad, got)
		}
	}
	if !strings.Contains(logs.String(), `"request_id":"abc-123"`) {
		t.Fatal("access log lacks the request id")
	}
}

func TestAccessLog_OneJSONLinePerRequest(t *testing.T) {
	s, _, logs := testServer(t, true)
	do(t, s, "GET", "/health", nil)
	do(t, s, "GET", "/nope/../etc/passwd", nil)
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		if m["msg"] == "request" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("%d access lines, want 2", len(lines))
	}
	for _, k := range []string{"request_id", "method", "route", "path", "status", "duration_ms"} {
		if _, ok := lines[0][k]; !ok {
			t.Errorf("access line lacks %q: %v", k, lines[0])
		}
	}
	if lines[0]["route"] != "/health" || lines[1]["route"] != "unmatched" || lines[1]["status"] != 404.0 {
		t.Fatalf("routes/status = %v/%v %v", lines[0]["route"], lines[1]["route"], lines[1]["status"])
	}
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	s, _, _ := testServer(t, true)
	for _, path := range []string{"/nope", "/health/", "/HEALTH", "/api/v1/admin/provision/runs/../../../etc/passwd"} {
		rec := do(t, s, "GET", path, nil)
		if rec.Code != 404 || decodeError(t, rec).Error != "not_found" {
			t.Errorf("GET %s = %d %s, want 404 not_found", path, rec.Code, rec.Body)
		}
	}
	rec := do(t, s, "POST", "/health", nil)
	if rec.Code != 405 || decodeError(t, rec).Error != "method_not_allowed" || rec.Header().Get("Allow") == "" {
		t.Fatalf("POST /health = %d %s allow=%q", rec.Code, rec.Body, rec.Header().Get("Allow"))
	}
}

func TestPanic_500AndTheProcessSurvives(t *testing.T) {
	s, _, logs := testServer(t, true)
	s.handle("GET", "/boom", func(http.ResponseWriter, *http.Request) { panic("kaboom") })
	rec := do(t, s, "GET", "/boom", http.Header{"X-Request-Id": {"req-1"}})
	if rec.Code != 500 {
		t.Fatalf("panic = %d", rec.Code)
	}
	e := decodeError(t, rec)
	if e.Error != "internal_error" || !strings.Contains(e.Detail, "req-1") || strings.Contains(e.Detail, "kaboom") {
		t.Fatalf("panic body = %+v", e)
	}
	if !strings.Contains(logs.String(), "kaboom") || !strings.Contains(logs.String(), "goroutine") {
		t.Fatal("panic and stack not logged")
	}
	if rec := do(t, s, "GET", "/health", nil); rec.Code != 200 {
		t.Fatal("server broken after a panic")
	}
}

func TestMetrics_LabelledByRouteTemplate(t *testing.T) {
	s, _, _ := testServer(t, true)
	do(t, s, "GET", "/health", nil)
	do(t, s, "GET", "/secret-path-1", nil)
	do(t, s, "GET", "/secret-path-2", nil)
	do(t, s, "BREW", "/health", nil)
	body := do(t, s, "GET", "/metrics", nil).Body.String()
	for _, want := range []string{
		`orchestrator_http_requests_total{code="200",method="GET",route="/health"} 1`,
		`orchestrator_http_requests_total{code="404",method="GET",route="unmatched"} 2`,
		`orchestrator_http_requests_total{code="405",method="OTHER",route="unmatched"} 1`,
		`orchestrator_http_request_duration_seconds_count{method="GET",route="/health"} 1`,
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, "secret-path") {
		t.Error("raw paths leaked into metric labels")
	}
}

// Shutdown flips /ready to 503 at once, lets the in-flight request finish,
// and refuses new connections.
func TestShutdown_DrainsInFlightRequests(t *testing.T) {
	s, _, _ := testServer(t, true)
	entered, finish := make(chan struct{}), make(chan struct{})
	s.handle("GET", "/slow", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-finish
		s.out.JSON(w, r, 200, map[string]string{"status": "done"})
	})
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.Addr()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}()
	<-entered

	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	for !s.draining.Load() {
		time.Sleep(time.Millisecond)
	}
	if rec := do(t, s, "GET", "/ready", nil); rec.Code != 503 || decodeError(t, rec).Error != "shutting_down" {
		t.Fatalf("ready while draining = %d %s", rec.Code, rec.Body)
	}
	close(finish)
	if r := <-got; r != `200 {"status":"done"}` {
		t.Fatalf("in-flight request = %q", r)
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := http.Get(base + "/health"); err == nil {
		t.Fatal("server still accepts connections after shutdown")
	}
}

// Past its deadline Shutdown cuts what is left rather than hang.
func TestShutdown_BoundedByDeadline(t *testing.T) {
	s, _, _ := testServer(t, true)
	entered := make(chan struct{})
	s.handle("GET", "/stuck", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
	})
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	go func() {
		if resp, err := http.Get("http://" + s.Addr() + "/stuck"); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown = %v, want deadline exceeded", err)
	}
}

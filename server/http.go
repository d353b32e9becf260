package server

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
)

// handle registers an API route: h with the middleware every route gets,
// answering 503 not_ready until the server is serving. The route template
// is the metrics label.
func (s *Server) handle(method, route string, h http.HandlerFunc) {
	s.addRoute(method, route)
	h = s.knownQuery(method, route, h)
	s.router.Handler(method, route, s.instrument(route, func(w http.ResponseWriter, r *http.Request) {
		if !s.serving.Load() {
			s.out.Error(w, r, apperr.New(apperr.Unavailable, "not_ready", "the server is still starting"))
			return
		}
		h(w, r)
	}))
}

// handleAs registers h under the router's path, listed (and described) as
// the path it serves: a static route the router cannot hold beside a
// parameter at the same place.
func (s *Server) handleAs(method, route, listed string, h http.HandlerFunc) {
	s.addRoute(method, listed)
	want := strings.Split(listed, "/")
	s.router.Handler(method, route, s.instrument(listed, func(w http.ResponseWriter, r *http.Request) {
		if got := strings.Split(r.URL.Path, "/"); len(got) != len(want) || got[len(got)-1] != want[len(want)-1] {
			s.out.Error(w, r, apperr.New(apperr.NotFound, "not_found", "no route for %s", r.URL.Path))
			return
		}
		if !s.serving.Load() {
			s.out.Error(w, r, apperr.New(apperr.Unavailable, "not_ready", "the server is still starting"))
			return
		}
		h(w, r)
	}))
}

// handleProbe registers a route that answers even while starting.
func (s *Server) handleProbe(method, route string, h http.HandlerFunc) {
	s.addRoute(method, route)
	h = s.knownQuery(method, route, h)
	s.router.Handler(method, route, s.instrument(route, h))
}

// instrument wraps h with, from the outside in: request id, access log and
// metrics, panic recovery.
func (s *Server) instrument(route string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		r = r.WithContext(httpx.WithRequestID(r.Context(), id))
		rec := &recorder{ResponseWriter: w}

		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.logger.Error("panic in handler", "request_id", id, "route", route,
					"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if !rec.wroteHeader {
					s.out.Error(rec, r, apperr.New(apperr.Internal, "internal_error", "internal error (request id %s)", id))
				}
			}
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			elapsed := time.Since(start)
			method := metricMethod(r.Method)
			s.metrics.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
			s.metrics.duration.WithLabelValues(route, method).Observe(elapsed.Seconds())
			s.logger.Info("request",
				"request_id", id,
				"method", r.Method,
				"route", route,
				"path", r.URL.Path,
				"status", status,
				"duration_ms", float64(elapsed.Microseconds())/1000,
				"bytes", rec.bytes,
				"remote", r.RemoteAddr,
			)
		}()
		// A query string that does not parse is refused on every route,
		// never silently dropped (SPEC §3).
		if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
			s.out.Error(rec, r, httpx.QueryError("query", "does not parse: %v", err))
			return
		}
		h.ServeHTTP(rec, r)
	})
}

// validRequestID accepts a caller's id only if it is short and plain, so it
// cannot inject into headers or logs.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// metricMethod keeps the method label bounded: unknown verbs become "OTHER".
func metricMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// recorder remembers the status and size of a response.
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

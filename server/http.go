package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/store"
)

type ctxKey int

const requestIDKey ctxKey = iota

// RequestID returns the id of the request ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// handle registers an API route: h with the middleware every route gets,
// answering 503 not_ready until the server is serving. The route template
// is the metrics label.
func (s *Server) handle(method, route string, h http.HandlerFunc) {
	s.addRoute(method, route)
	s.router.Handler(method, route, s.instrument(route, func(w http.ResponseWriter, r *http.Request) {
		if !s.serving.Load() {
			s.writeError(w, r, apperr.New(apperr.Unavailable, "not_ready", "the server is still starting"))
			return
		}
		h(w, r)
	}))
}

// handleProbe registers a route that answers even while starting.
func (s *Server) handleProbe(method, route string, h http.HandlerFunc) {
	s.addRoute(method, route)
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
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
		rec := &recorder{ResponseWriter: w}

		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.logger.Error("panic in handler", "request_id", id, "route", route,
					"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if !rec.wroteHeader {
					s.writeError(rec, r, apperr.New(apperr.Internal, "internal_error", "internal error (request id %s)", id))
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
			s.writeError(rec, r, queryError("query", "does not parse: %v", err))
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

// errorBody is the JSON of every error response.
type errorBody struct {
	Error  string `json:"error"`
	Detail string `json:"detail"`
}

// writeJSON writes v as the JSON body with the status.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("encode response: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// classify turns any error into the product's vocabulary.
func classify(err error) *apperr.Error {
	if e, ok := apperr.As(err); ok {
		return e
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return apperr.Wrap(err, apperr.TooLarge, "body_too_large", "request body exceeds %d bytes", tooLarge.Limit)
	case errors.Is(err, store.ErrNotFound):
		return apperr.Wrap(err, apperr.NotFound, "not_found", "not found")
	case errors.Is(err, store.ErrConflict):
		return apperr.Wrap(err, apperr.Conflict, "conflict", "conflicts with existing state")
	case errors.Is(err, store.ErrInvalid):
		return apperr.Wrap(err, apperr.Invalid, "invalid_request", "%s", err.Error())
	case errors.Is(err, store.ErrLockTimeout):
		return apperr.Wrap(err, apperr.Conflict, "team_busy", "another operation on this team is in progress; retry later")
	case errors.Is(err, store.ErrNotMigrated):
		return apperr.Wrap(err, apperr.Unavailable, "not_ready", "database migrations are pending")
	}
	return apperr.Wrap(err, apperr.Internal, "internal_error", "internal error")
}

// writeError writes err as {"error","detail"} with its status. Only server
// errors (5xx) are logged: client errors are the client's business and are
// already in the access log.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := classify(err)
	status := e.Kind.Status()
	detail := e.Detail
	if status >= 500 {
		id := RequestID(r.Context())
		s.logger.Error("request failed", "request_id", id, "code", e.Code, "error", err)
		if e.Kind == apperr.Internal {
			detail = "internal error (request id " + id + ")"
		}
	}
	if e.RetryAfterSeconds > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfterSeconds))
	}
	s.writeJSON(w, r, status, errorBody{Error: e.Code, Detail: detail})
}

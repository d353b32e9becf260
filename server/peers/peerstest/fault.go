// Package peerstest holds in-process fakes of the peer services — the Config
// Service, the AI Pipeline and the Agent — that follow the contracts of
// docs/peers.md (paths, bodies, status codes, token format
// <token_id>.<secret>). Tests use them, and so does dev mode. Each can be told to fail a given route: a
// status, a delay, a hang until the caller gives up, or a closed connection.
package peerstest

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Fault is an injected failure of one route.
type Fault struct {
	Status int           // answer with this status (and an error body)
	Delay  time.Duration // wait this long first (then answer normally unless Status is set)
	Hang   bool          // wait until the caller gives up
	// Until, if set, holds the call until the channel is closed (then the
	// call goes on normally unless Status or Close say otherwise).
	Until <-chan struct{}
	Close bool // close the connection without an answer
	// RedirectTo, if set, answers 307 to this base URL plus the request's
	// path (a peer trying to send the caller elsewhere).
	RedirectTo string
	// Skip lets this many calls through before the fault applies.
	Skip int
	// Times is how many calls fail; 0 means every call until cleared.
	Times int
	// Header and Body, with Status, replace the generic error answer: a
	// vendor's own error shape and headers (GitHub's secondary rate limit
	// and its Retry-After, PagerDuty's {error:{…}}).
	Header http.Header
	Body   any
}

// Call is one request a fake received.
type Call struct {
	Route  string // the route pattern, e.g. "POST /api/v1/teams/{team}/bootstrap"
	Path   string
	Query  url.Values // the query string's parameters
	Auth   string     // the Authorization header
	Header http.Header
	Body   []byte
	At     time.Time // when the call arrived
}

// faults is the fault table and call log every fake shares.
type faults struct {
	mu    sync.Mutex
	byOp  map[string]*Fault
	calls []Call
}

// Fail makes route fail as f says (replacing any fault set before).
func (fs *faults) Fail(route string, f Fault) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.byOp == nil {
		fs.byOp = map[string]*Fault{}
	}
	fs.byOp[route] = &f
}

// Clear removes every injected fault.
func (fs *faults) Clear() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.byOp = nil
}

// Calls returns the requests received so far, in order.
func (fs *faults) Calls() []Call {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]Call(nil), fs.calls...)
}

// CallsTo returns the requests received on one route.
func (fs *faults) CallsTo(route string) []Call {
	var out []Call
	for _, c := range fs.Calls() {
		if c.Route == route {
			out = append(out, c)
		}
	}
	return out
}

// record logs the call and returns the fault to apply, if any.
func (fs *faults) record(c Call) *Fault {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.calls = append(fs.calls, c)
	f := fs.byOp[c.Route]
	if f == nil {
		return nil
	}
	if f.Skip > 0 {
		f.Skip--
		return nil
	}
	applied := *f
	if f.Times > 0 {
		if f.Times--; f.Times == 0 {
			delete(fs.byOp, c.Route)
		}
	}
	return &applied
}

// apply carries out a fault; it reports whether the request is answered.
func apply(f *Fault, w http.ResponseWriter, r *http.Request) bool {
	if f == nil {
		return false
	}
	if f.Hang {
		<-r.Context().Done()
		return true
	}
	if f.Until != nil {
		select {
		case <-f.Until:
		case <-r.Context().Done():
			return true
		}
	}
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return true
		}
	}
	if f.Close {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return true
			}
		}
		panic(http.ErrAbortHandler)
	}
	if f.RedirectTo != "" {
		w.Header().Set("Location", f.RedirectTo+r.URL.Path)
		w.WriteHeader(http.StatusTemporaryRedirect)
		return true
	}
	if f.Status != 0 {
		for k, v := range f.Header {
			w.Header()[http.CanonicalHeaderKey(k)] = v
		}
		var body any = map[string]string{"detail": "injected failure"}
		if f.Body != nil {
			body = f.Body
		}
		writeJSON(w, f.Status, body)
		return true
	}
	return false
}

// wrap records each call of route and applies its fault before h runs.
func (fs *faults) wrap(route string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		fault := fs.record(Call{Route: route, Path: r.URL.Path, Query: r.URL.Query(), Auth: r.Header.Get("Authorization"), Header: r.Header.Clone(), Body: body, At: time.Now()})
		if apply(fault, w, r) {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h(w, r)
	}
}

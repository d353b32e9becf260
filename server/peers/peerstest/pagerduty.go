package peerstest

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PagerDuty REST routes the fake serves, usable with Fail and CallsTo.
const (
	RoutePagerDutyCreateNote = "POST /incidents/{id}/notes"
	RoutePagerDutyListNotes  = "GET /incidents/{id}/notes"
)

// PagerDutyAccept is the media type PagerDuty's REST API v2 asks for.
const PagerDutyAccept = "application/vnd.pagerduty+json;version=2"

// PagerDuty is a strict stand-in for PagerDuty's REST API v2 incident
// notes, following its published reference: Authorization: Token
// token=KEY, the v2 Accept header, a From header naming a user of the
// account on writes, the body {"note":{"content":…}}, and errors in
// PagerDuty's shape {"error":{"message","code","errors"}}. A 429 is
// injected with PagerDutyRateLimited.
type PagerDuty struct {
	faults
	mux *http.ServeMux
	// Now stamps the notes (default time.Now).
	Now func() time.Time

	mu        sync.Mutex
	tokens    map[string]bool // REST API keys; false = read-only
	users     map[string]bool // emails of the account's users
	incidents map[string][]PagerDutyNote
}

// PagerDutyNote is a note the fake holds.
type PagerDutyNote struct {
	ID, Content, From string
}

// NewPagerDuty returns the fake.
func NewPagerDuty() *PagerDuty {
	p := &PagerDuty{mux: http.NewServeMux(), Now: time.Now,
		tokens: map[string]bool{}, users: map[string]bool{}, incidents: map[string][]PagerDutyNote{}}
	p.mux.HandleFunc(RoutePagerDutyCreateNote, p.wrap(RoutePagerDutyCreateNote, p.createNote))
	p.mux.HandleFunc(RoutePagerDutyListNotes, p.wrap(RoutePagerDutyListNotes, p.listNotes))
	p.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		pdError(w, http.StatusNotFound, "Not Found", 2100)
	})
	return p
}

// ServeHTTP serves the fake's API.
func (p *PagerDuty) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.mux.ServeHTTP(w, r) }

// AddToken accepts a REST API key; a read-only key may not write.
func (p *PagerDuty) AddToken(token string, readOnly bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokens[token] = !readOnly
}

// AddUser adds a user of the account, by email (a valid From).
func (p *PagerDuty) AddUser(email string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users[strings.ToLower(email)] = true
}

// AddIncident creates an incident.
func (p *PagerDuty) AddIncident(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.incidents[id] = []PagerDutyNote{}
}

// Notes returns an incident's notes, oldest first.
func (p *PagerDuty) Notes(id string) []PagerDutyNote {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]PagerDutyNote(nil), p.incidents[id]...)
}

// PagerDutyRateLimited is PagerDuty's 429 with its rate-limit headers
// (ratelimit-reset: seconds to wait).
func PagerDutyRateLimited(reset time.Duration) Fault {
	return Fault{Status: http.StatusTooManyRequests,
		Header: http.Header{
			"Ratelimit-Limit":     {"960"},
			"Ratelimit-Remaining": {"0"},
			"Ratelimit-Reset":     {strconv.Itoa(int(reset / time.Second))},
		},
		Body: pdErrorBody("Rate Limit Exceeded", 2020)}
}

// PagerDutyError is an error of status in PagerDuty's shape.
func PagerDutyError(status int, message string, code int) Fault {
	return Fault{Status: status, Body: pdErrorBody(message, code)}
}

func pdErrorBody(message string, code int, errs ...string) map[string]any {
	e := map[string]any{"message": message, "code": code}
	if len(errs) > 0 {
		e["errors"] = errs
	}
	return map[string]any{"error": e}
}

func pdError(w http.ResponseWriter, status int, message string, code int, errs ...string) {
	writeJSON(w, status, pdErrorBody(message, code, errs...))
}

// auth checks the API key and the Accept header; it reports whether the
// key may write (having answered when it may not even read).
func (p *PagerDuty) auth(w http.ResponseWriter, r *http.Request) (canWrite, ok bool) {
	tok, found := strings.CutPrefix(r.Header.Get("Authorization"), "Token token=")
	p.mu.Lock()
	write, known := p.tokens[tok]
	p.mu.Unlock()
	if !found || !known {
		pdError(w, http.StatusUnauthorized, "Authentication failed", 2006)
		return false, false
	}
	if r.Header.Get("Accept") != PagerDutyAccept {
		pdError(w, http.StatusBadRequest, "Invalid Input Provided", 2001, "Accept must be "+PagerDutyAccept)
		return false, false
	}
	return write, true
}

func (p *PagerDuty) createNote(w http.ResponseWriter, r *http.Request) {
	write, ok := p.auth(w, r)
	if !ok {
		return
	}
	if !write {
		pdError(w, http.StatusForbidden, "Access Denied", 2010, "read-only API keys cannot write")
		return
	}
	from := r.Header.Get("From")
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case from == "":
		pdError(w, http.StatusBadRequest, "Invalid Input Provided", 2001, "You must specify a user's email address in the \"From\" header to perform this action")
		return
	case !p.users[strings.ToLower(from)]:
		pdError(w, http.StatusBadRequest, "Invalid Input Provided", 2001, "Requester User Not Found")
		return
	}
	notes, exists := p.incidents[r.PathValue("id")]
	if !exists {
		pdError(w, http.StatusNotFound, "Not Found", 2100)
		return
	}
	var in struct {
		Note *struct {
			Content *string `json:"content"`
		} `json:"note"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Note == nil || in.Note.Content == nil || *in.Note.Content == "" {
		pdError(w, http.StatusBadRequest, "Invalid Input Provided", 2001, "note.content is required")
		return
	}
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	n := PagerDutyNote{ID: "P" + strings.ToUpper(fmt.Sprintf("%x", b))[:6], Content: *in.Note.Content, From: from}
	p.incidents[r.PathValue("id")] = append(notes, n)
	writeJSON(w, http.StatusOK, map[string]any{"note": p.noteJSON(n)})
}

func (p *PagerDuty) noteJSON(n PagerDutyNote) map[string]any {
	return map[string]any{"id": n.ID, "content": n.Content,
		"user":       map[string]any{"id": "PXPGF42", "type": "user_reference", "summary": n.From},
		"channel":    map[string]any{"summary": "The PagerDuty website or APIs"},
		"created_at": p.Now().UTC().Format(time.RFC3339), "updated_at": p.Now().UTC().Format(time.RFC3339)}
}

func (p *PagerDuty) listNotes(w http.ResponseWriter, r *http.Request) {
	if _, ok := p.auth(w, r); !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	notes, exists := p.incidents[r.PathValue("id")]
	if !exists {
		pdError(w, http.StatusNotFound, "Not Found", 2100)
		return
	}
	out := []map[string]any{}
	for _, n := range notes {
		out = append(out, p.noteJSON(n))
	}
	writeJSON(w, http.StatusOK, map[string]any{"notes": out})
}

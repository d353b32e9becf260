package webhook

import (
	"fmt"
	"net/http"
	"slices"
	"time"
)

// A Source is everything the orchestrator knows about one webhook source:
// its routes and their verifiers, what it routes by, whether its events are
// alerts, whether they fold into digests, and how its events are described
// to the agent. Ingest, dispatch, the page, the metrics and the OpenAPI
// document all read sources from one Registry (SPEC §6); nothing else lists
// source names.
type Source struct {
	// Name is the source's name: its events' source, its metric label.
	Name string
	// Kind is "built-in" or "configured".
	Kind string
	// Scheme says how a delivery is authenticated, in a few words (for the
	// page and the API description; never a secret).
	Scheme string
	// Description is one line about the source.
	Description string
	// Routing lists the routing identifier types its events can carry.
	Routing []string
	// Alerts: its events carry an alert identity (key and state).
	Alerts bool
	// People: a person triggered its events (Slack): never coalesced.
	People bool
	// Coalesce: folded into digests unless the operator says otherwise.
	Coalesce bool
	// Routes are its webhook routes, each with its verifier.
	Routes []Route
	// VerifyHeaders are the headers its verification reads (signature,
	// token, timestamp, delivery id, basic auth), in lower case: what
	// verified a request is never stored, whatever the header's name.
	VerifyHeaders []string
	// Orgs bind the source (for Slack, its default app) to orgs: its
	// events route only to their teams (nil: any org; see BoundOrgs).
	Orgs []string

	// appOrgs bind each further Slack app, by slug (an app without orgs
	// is absent: any org).
	appOrgs map[string][]string

	describe func(eventType string, body []byte, headers map[string]string) (string, map[string]any)
}

// A Route is one webhook path and the verifier that checks what arrives on it.
type Route struct {
	Path     string
	Summary  string
	Verifier Verifier
}

// Describe gives the agent's message and metadata for one of the source's
// stored events. It never fails: an odd body still gives a message. What
// the sender wrote in it is escaped (EscapeText): the message is one line
// (a Slack mention keeps its own line breaks).
func (s *Source) Describe(eventType string, body []byte, headers map[string]string) (string, map[string]any) {
	if s == nil || s.describe == nil {
		name := "unknown"
		if s != nil {
			name = s.Name
		}
		return EscapeText(name + " event " + eventType), map[string]any{"event_type": eventType}
	}
	msg, meta := s.describe(eventType, body, headers)
	if s.Name == Slack {
		return msg, meta // describeSlack escapes what it takes
	}
	return EscapeText(msg), meta
}

// Reader reads an event as its verifier would, without checking the
// signature: for an authenticated admin trying a payload against the
// routing rules (nothing read this way is stored or dispatched).
type Reader interface {
	Read(body []byte, h http.Header) (Event, error)
}

// Read reads a payload of the source as its first route's verifier would,
// without checking a signature (see Reader).
func (s *Source) Read(body []byte, h http.Header) (Event, error) {
	if s == nil || len(s.Routes) == 0 {
		return Event{}, fmt.Errorf("%w: no such source", ErrPayload)
	}
	rd, ok := s.Routes[0].Verifier.(Reader)
	if !ok {
		return Event{}, fmt.Errorf("%w: %s payloads cannot be read without their signature", ErrPayload, s.Name)
	}
	if h == nil {
		h = http.Header{}
	}
	return rd.Read(body, h)
}

// Registry holds every source, built-in and configured, in order: the
// built-in ones as SPEC §6 lists them, then the configured ones as the
// sources file lists them.
type Registry struct {
	list   []*Source
	byName map[string]*Source
	paths  map[string]bool
}

// NewRegistry checks that names and paths are unique.
func NewRegistry(sources ...*Source) (*Registry, error) {
	r := &Registry{byName: map[string]*Source{}, paths: map[string]bool{}}
	for _, s := range sources {
		if s == nil || s.Name == "" {
			return nil, fmt.Errorf("webhook: a source without a name")
		}
		if r.byName[s.Name] != nil {
			return nil, fmt.Errorf("webhook: source %q is defined twice", s.Name)
		}
		for _, rt := range s.Routes {
			if r.paths[rt.Path] {
				return nil, fmt.Errorf("webhook: source %q: route %s is taken", s.Name, rt.Path)
			}
			r.paths[rt.Path] = true
		}
		r.byName[s.Name] = s
		r.list = append(r.list, s)
	}
	return r, nil
}

// Sources lists the sources in order.
func (r *Registry) Sources() []*Source { return slices.Clone(r.list) }

// Names lists the source names in order.
func (r *Registry) Names() []string {
	out := make([]string, len(r.list))
	for i, s := range r.list {
		out[i] = s.Name
	}
	return out
}

// Get returns the named source, or nil.
func (r *Registry) Get(name string) *Source {
	if r == nil {
		return nil
	}
	return r.byName[name]
}

// Has reports whether name is a source.
func (r *Registry) Has(name string) bool { return r.Get(name) != nil }

// Describe describes an event of the named source (see Source.Describe).
func (r *Registry) Describe(source, eventType string, body []byte, headers map[string]string) (string, map[string]any) {
	if s := r.Get(source); s != nil {
		return s.Describe(eventType, body, headers)
	}
	return EscapeText(source + " event " + eventType), map[string]any{"event_type": eventType}
}

// Coalescing lists the sources whose events fold into digests by default.
func (r *Registry) Coalescing() []string {
	var out []string
	for _, s := range r.list {
		if s.Coalesce && !s.People {
			out = append(out, s.Name)
		}
	}
	return out
}

// verifierFunc adapts a function to Verifier (and Reader).
type verifierFunc struct {
	source string
	verify func(body []byte, h http.Header, now time.Time) (Event, error)
	read   func(body []byte, h http.Header) (Event, error)
}

func (v verifierFunc) Read(body []byte, h http.Header) (Event, error) { return v.read(body, h) }

func (v verifierFunc) Source() string { return v.source }
func (v verifierFunc) Verify(body []byte, h http.Header, now time.Time) (Event, error) {
	return v.verify(body, h, now)
}

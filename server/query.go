package server

import (
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/nearest"
)

// A GET that names a query parameter its route does not take is refused
// (400 unknown_parameter), as a JSON body's unknown field is: `?sorce=slack`
// would otherwise answer every event as if it had not been asked. The
// parameters each route takes are read from the API description the server
// serves, so the document and the check cannot disagree.

// queryParams maps each GET path of an OpenAPI document (/runs/{id}) to
// the query parameters its operation lists, sorted.
func queryParams(doc []byte) map[string][]string {
	var d struct {
		Paths map[string]struct {
			Get *struct {
				Parameters []json.RawMessage `json:"parameters"`
			} `json:"get"`
		} `json:"paths"`
		Components struct {
			Parameters map[string]json.RawMessage `json:"parameters"`
		} `json:"components"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil
	}
	type param struct {
		Ref  string `json:"$ref"`
		Name string `json:"name"`
		In   string `json:"in"`
	}
	out := map[string][]string{}
	for path, item := range d.Paths {
		if item.Get == nil {
			continue
		}
		names := []string{}
		for _, raw := range item.Get.Parameters {
			var p param
			_ = json.Unmarshal(raw, &p)
			if ref, ok := strings.CutPrefix(p.Ref, "#/components/parameters/"); ok {
				_ = json.Unmarshal(d.Components.Parameters[ref], &p)
			}
			if p.In == "query" {
				names = append(names, p.Name)
			}
		}
		sort.Strings(names)
		out[path] = names
	}
	return out
}

// knownQuery wraps a GET route's handler with the check; other methods,
// and routes the document does not describe (the admin page's), pass as
// they are.
func (s *Server) knownQuery(method, route string, h http.HandlerFunc) http.HandlerFunc {
	if method != http.MethodGet {
		return h
	}
	known, ok := s.queryParams[openapiPath(route)]
	if !ok {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		names := make([]string, 0, len(r.URL.Query()))
		for name := range r.URL.Query() {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if slices.Contains(known, name) {
				continue
			}
			detail := name + ": not a parameter of GET " + openapiPath(route)
			if guess, ok := nearest.Name(name, known); ok {
				detail += " (did you mean " + guess + "?)"
			}
			if len(known) == 0 {
				detail += ", which takes none"
			} else {
				detail += "; it takes " + strings.Join(known, ", ")
			}
			s.out.Error(w, r, apperr.New(apperr.Invalid, "unknown_parameter", "%s", detail))
			return
		}
		h(w, r)
	}
}

// openapiPath turns a router template (/runs/:id) into the document's form
// (/runs/{id}).
func openapiPath(route string) string {
	parts := strings.Split(route, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, ":") || strings.HasPrefix(p, "*") {
			parts[i] = "{" + p[1:] + "}"
		}
	}
	return strings.Join(parts, "/")
}

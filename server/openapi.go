package server

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"sigs.k8s.io/yaml"
)

// openapiYAML is the API's description (SPEC §15), written next to the
// routes; see openapi.yaml.
//
//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPI is the description as the JSON GET /api/v1/openapi.json serves.
var OpenAPI = mustJSON(openapiYAML)

func mustJSON(y []byte) []byte {
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		panic(fmt.Sprintf("server: openapi.yaml does not parse: %v", err))
	}
	return append(j, '\n')
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(s.openapi)
}

// sourceNames lists the webhook sources (the door's registry; the built-in
// ones without a door).
func (s *Server) sourceNames() []string {
	if s.door != nil {
		return s.door.Sources()
	}
	return webhook.Builtin[:]
}

// describeSources is the API description this server serves: the written
// one, plus an operation for each webhook route the source registry adds
// (a configured source, a Slack app), described from the registry.
func describeSources(reg *webhook.Registry) []byte {
	if reg == nil {
		return OpenAPI
	}
	var doc map[string]any
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		return OpenAPI
	}
	paths, _ := doc["paths"].(map[string]any)
	added := false
	if names := reg.Names(); !slices.Equal(names, webhook.Builtin[:]) {
		comps, _ := doc["components"].(map[string]any)
		schemas, _ := comps["schemas"].(map[string]any)
		if src, ok := schemas["Source"].(map[string]any); ok {
			src["enum"], added = names, true
		}
	}
	for _, src := range reg.Sources() {
		for _, rt := range src.Routes {
			if _, ok := paths[rt.Path]; ok {
				continue
			}
			// The same answers as the built-in route it is like.
			like := "/webhooks/github"
			if src.Name == webhook.Slack {
				like = "/webhooks/slack/events"
				if strings.HasSuffix(rt.Path, "/interactions") {
					like = "/webhooks/slack/interactions"
				}
			}
			base, _ := paths[like].(map[string]any)
			post, _ := base["post"].(map[string]any)
			op := map[string]any{}
			for k, v := range post {
				op[k] = v
			}
			op["summary"] = rt.Summary
			op["description"] = src.Description + ". Authenticated by " + src.Scheme + "."
			op["operationId"] = "webhook_" + strings.NewReplacer("/", "_", "-", "_").Replace(strings.TrimPrefix(rt.Path, "/webhooks/"))
			if src.Kind == "configured" {
				// Its own scheme (src.Scheme), not one of the document's.
				delete(op, "parameters")
				op["security"] = []any{}
			}
			paths[rt.Path] = map[string]any{"post": op}
			added = true
		}
	}
	if !added {
		return OpenAPI
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return OpenAPI
	}
	return append(out, '\n')
}

// Route is a registered method and path template, in OpenAPI's form
// (/runs/{id}, not /runs/:id).
type Route struct{ Method, Path string }

// Routes lists every route registered on this server (with its options:
// routes of absent parts are not registered).
func (s *Server) Routes() []Route { return s.routeList }

func (s *Server) addRoute(method, route string) {
	s.routeList = append(s.routeList, Route{Method: method, Path: openapiPath(route)})
}

package server

import (
	_ "embed"
	"fmt"
	"net/http"
	"strings"

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
	_, _ = w.Write(OpenAPI)
}

// Route is a registered method and path template, in OpenAPI's form
// (/runs/{id}, not /runs/:id).
type Route struct{ Method, Path string }

// Routes lists every route registered on this server (with its options:
// routes of absent parts are not registered).
func (s *Server) Routes() []Route { return s.routeList }

func (s *Server) addRoute(method, route string) {
	parts := strings.Split(route, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, ":") || strings.HasPrefix(p, "*") {
			parts[i] = "{" + p[1:] + "}"
		}
	}
	s.routeList = append(s.routeList, Route{Method: method, Path: strings.Join(parts, "/")})
}

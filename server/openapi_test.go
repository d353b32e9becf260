package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/incidentfox/orchestrator-edge/server"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
)

// The document every answer of the suite is checked against (SPEC §15).
var (
	apiOnce sync.Once
	apiMu   sync.Mutex // the validator is not documented as safe for concurrent use
	apiDoc  libopenapi.Document
	apiVal  validator.Validator
	apiOps  []server.Route // the document's operations, method and path template
	apiErr  error
	// How many answers and accepted requests were checked (printed at the end).
	apiAnswers, apiRequests atomic.Int64
)

func apiValidator(t testing.TB) validator.Validator {
	t.Helper()
	apiOnce.Do(func() {
		apiDoc, apiErr = libopenapi.NewDocument(server.OpenAPI)
		if apiErr != nil {
			return
		}
		var errs []error
		if apiVal, errs = validator.NewValidator(apiDoc); len(errs) > 0 {
			apiErr = fmt.Errorf("%v", errs)
			return
		}
		var doc struct {
			Paths map[string]map[string]json.RawMessage `json:"paths"`
		}
		if apiErr = json.Unmarshal(server.OpenAPI, &doc); apiErr != nil {
			return
		}
		methods := []string{"get", "put", "post", "delete", "patch", "head", "options", "trace"}
		for path, item := range doc.Paths {
			for m := range item {
				if slices.Contains(methods, m) {
					apiOps = append(apiOps, server.Route{Method: strings.ToUpper(m), Path: path})
				}
			}
		}
	})
	if apiErr != nil {
		t.Fatalf("openapi.yaml: %v", apiErr)
	}
	return apiVal
}

// checkAPI checks one exchange against the document: the answer always
// (status documented for the operation, headers, body against its schema);
// the request too when the server accepted it (2xx), so the document is
// never stricter than the server. The admin page is not described.
func (e *env) checkAPI(req *http.Request, reqBody []byte, rec *httptest.ResponseRecorder) {
	e.t.Helper()
	if isPage(req.URL.Path) {
		return
	}
	v := e.validatorFor(req)
	resp := rec.Result()
	body := rec.Body.Bytes()
	fresh := func() *http.Request {
		r := req.Clone(req.Context())
		r.Body = io.NopCloser(bytes.NewReader(reqBody))
		return r
	}
	apiMu.Lock()
	defer apiMu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	apiAnswers.Add(1)
	ok, errs := v.ValidateHttpResponse(fresh(), resp)
	if !ok && (rec.Code == http.StatusNotFound || rec.Code == http.StatusMethodNotAllowed) && !described(req) {
		// No route (or not this method): the router's answer, still the error shape.
		var eb struct{ Error, Detail string }
		if json.Unmarshal(body, &eb) != nil || eb.Error == "" || eb.Detail == "" || rec.Header().Get("X-Request-Id") == "" {
			e.t.Errorf("%s %s → %d without the error shape: %s", req.Method, req.URL, rec.Code, body)
		}
		return
	}
	for _, err := range errs {
		e.t.Errorf("OpenAPI: the answer to %s %s (%d) does not match the document: %s %s\n%.400s", req.Method, req.URL, rec.Code, err.Message, reasons(err.Reason, err.SchemaValidationErrors), body)
	}
	if rec.Code >= 200 && rec.Code < 300 {
		apiRequests.Add(1)
		if ok, errs := v.ValidateHttpRequest(fresh()); !ok {
			for _, err := range errs {
				e.t.Errorf("OpenAPI: %s %s was accepted (%d) but the document refuses it: %s %s", req.Method, req.URL, rec.Code, err.Message, reasons(err.Reason, err.SchemaValidationErrors))
			}
		}
	}
}

// servedValidators check the routes a server adds to the document from its
// source registry (configured sources, Slack apps), by the document it serves.
var servedValidators sync.Map

// validatorFor is the written document's validator, or, for a route only
// the served document describes, that document's.
func (e *env) validatorFor(req *http.Request) validator.Validator {
	v := apiValidator(e.t)
	if e.sources == nil {
		return v
	}
	e.servedOnce.Do(func() {
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/openapi.json", nil))
		e.servedDoc = rec.Body.Bytes()
	})
	doc := e.servedDoc
	if string(doc) == string(server.OpenAPI) {
		return v
	}
	if cached, ok := servedValidators.Load(string(doc)); ok {
		return cached.(validator.Validator)
	}
	d, err := libopenapi.NewDocument(doc)
	if err != nil {
		e.t.Fatalf("the served document: %v", err)
	}
	served, errs := validator.NewValidator(d)
	if len(errs) > 0 {
		e.t.Fatalf("the served document: %v", errs)
	}
	if ok, verrs := served.ValidateDocument(); !ok {
		for _, err := range verrs {
			e.t.Errorf("the served document: %s %s", err.Message, reasons(err.Reason, err.SchemaValidationErrors))
		}
	}
	servedValidators.Store(string(doc), served)
	return served
}

// described reports whether the document has an operation for the request's
// method on a path template that matches it.
func described(req *http.Request) bool {
	for _, op := range apiOps {
		if op.Method == req.Method && matchTemplate(op.Path, req.URL.Path) {
			return true
		}
	}
	return false
}

// isPage reports whether a path is the admin page's, which the document
// does not describe.
func isPage(path string) bool { return path == "/ui" || strings.HasPrefix(path, "/ui/") }

func matchTemplate(tmpl, path string) bool {
	a, b := strings.Split(tmpl, "/"), strings.Split(path, "/")
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && !(strings.HasPrefix(a[i], "{") && b[i] != "") {
			return false
		}
	}
	return true
}

func reasons(reason string, errs any) string {
	s := reason
	if errs != nil {
		s += fmt.Sprintf(" %v", errs)
	}
	return s
}

// TestOpenAPI_DocumentValidates checks the document against the OpenAPI
// 3.1 schema, and that the binary serves it.
func TestOpenAPI_DocumentValidates(t *testing.T) {
	v := apiValidator(t)
	if ok, errs := v.ValidateDocument(); !ok {
		for _, err := range errs {
			t.Errorf("openapi.yaml: %s %s (line %d)", err.Message, reasons(err.Reason, err.SchemaValidationErrors), err.SpecLine)
		}
	}
	var doc map[string]any
	if err := json.Unmarshal(server.OpenAPI, &doc); err != nil || doc["openapi"] != "3.1.0" {
		t.Fatalf("document: %v %v", err, doc["openapi"])
	}
	e := newEnv(t, envOptions{})
	r := e.do("GET", "/api/v1/openapi.json", "", nil)
	if r.code != 200 || r.header.Get("Content-Type") != "application/json" || r.raw != string(server.OpenAPI) {
		t.Fatalf("GET /api/v1/openapi.json = %d %s", r.code, r.header.Get("Content-Type"))
	}
}

// TestOpenAPI_EveryRouteIsDescribed compares the routes a server with every
// part switched on registers with the document's operations, both ways: a
// new route without a description fails here, and so does a description of
// a route that is gone. The admin page (/ui/, SPEC §9) is for browsers and
// not part of the API description (SPEC §15 covers §3–§7 and §13–§14).
func TestOpenAPI_EveryRouteIsDescribed(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, backups: true, ui: true, answers: true})
	apiValidator(t)
	var described []string
	for _, op := range apiOps {
		described = append(described, op.Method+" "+op.Path)
	}
	var registered []string
	for _, r := range e.srv.Routes() {
		if isPage(r.Path) {
			continue
		}
		registered = append(registered, r.Method+" "+r.Path)
	}
	slices.Sort(described)
	slices.Sort(registered)
	for _, r := range registered {
		if !slices.Contains(described, r) {
			t.Errorf("route %s has no operation in server/openapi.yaml", r)
		}
	}
	for _, d := range described {
		if !slices.Contains(registered, d) {
			t.Errorf("server/openapi.yaml describes %s, which no route serves", d)
		}
	}
	t.Logf("%d routes, each described", len(registered))
}

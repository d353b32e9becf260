package server_test

import (
	"strings"
	"testing"
)

// A GET that names a query parameter its route does not take answers 400
// unknown_parameter naming it (and the likely intended one), on every GET
// route, instead of ignoring it and answering as if nothing had been asked
// (`?sorce=slack` used to list every source's events). The parameters a
// route takes still work.
func TestQuery_UnknownParametersAreRefusedOnEveryGET(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, noDispatch: true})
	fill := strings.NewReplacer("{id}", "x", "{name}", "x", "{org}", "acme", "{team}", "t")
	gets := 0
	for _, rt := range e.srv.Routes() {
		if rt.Method != "GET" {
			continue
		}
		gets++
		path := fill.Replace(rt.Path)
		r := e.do("GET", path+"?sorce=slack", adminToken, nil)
		detail, _ := r.body["detail"].(string)
		if r.code != 400 || r.body["error"] != "unknown_parameter" || !strings.HasPrefix(detail, "sorce: not a parameter of GET "+rt.Path) {
			t.Errorf("GET %s?sorce=slack = %d %s", path, r.code, truncate(r.raw))
		}
	}
	if gets < 12 {
		t.Fatalf("only %d GET routes", gets)
	}

	r := e.do("GET", "/api/v1/admin/events?sorce=slack", adminToken, nil)
	if want := "sorce: not a parameter of GET /api/v1/admin/events (did you mean source?); it takes cursor, delivery_id, limit, org_id, rule, since, source, status, suppressed_reason, team_node_id, until"; r.body["detail"] != want {
		t.Errorf("detail %q\nwant   %q", r.body["detail"], want)
	}
	r = e.do("GET", "/health?verbose=1", "", nil)
	if r.code != 400 || !strings.Contains(r.raw, "which takes none") {
		t.Errorf("GET /health?verbose=1 = %d %s", r.code, r.raw)
	}
	for _, ok := range []string{"/api/v1/admin/events?source=slack&limit=5", "/api/v1/admin/provision/runs?kind=provision&status=failed",
		"/api/v1/admin/silences?state=active", "/api/v1/admin/schedules?org_id=acme", "/health"} {
		if r := e.do("GET", ok, adminToken, nil); r.code != 200 {
			t.Errorf("GET %s = %d %s", ok, r.code, truncate(r.raw))
		}
	}
	// A POST's query is not the GET rule's business (its body is checked).
	if r := e.do("POST", "/api/v1/admin/provision/team?x=1", adminToken, `{"org_id":`); r.body["error"] != "invalid_json" {
		t.Errorf("POST with a query: %s", r.raw)
	}
}

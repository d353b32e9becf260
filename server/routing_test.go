package server_test

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/server/routing"
	"github.com/incidentfox/orchestrator-edge/store"
)

const k8sRoutes = `routes:
  - name: drop-info
    when: always
    match: ['label.severity="info"']
    ignore: true
  - name: k8s-namespace
    match: ['label.namespace="payments"', 'label.severity=~"critical|page"']
    route_to: {org_id: ` + peerstest.DevOrg + `, team_node_id: payments}
  - name: to-nowhere
    match: ['label.cluster="gone"']
    route_to: {org_id: ` + peerstest.DevOrg + `, team_node_id: ghost}
  - name: fallback
    route_to: {org_id: ` + peerstest.DevOrg + `, team_node_id: ` + peerstest.DevTeam + `}
`

// TestRouting_ARealAlertmanagersGroupsGoWhereTheRulesSay: a real
// Alertmanager sends groups whose alerts carry namespace and severity
// labels but no service: the namespace rule takes the critical payments
// group to its team, an info group is ignored before any lookup, the rest
// falls to the fallback; a rule naming a team the Config Service does not
// have is passed over, and each event keeps its decision in words.
func TestRouting_ARealAlertmanagersGroupsGoWhereTheRulesSay(t *testing.T) {
	e, base := uiEnv(t, envOptions{routes: k8sRoutes})
	e.cs.AddTeam(peerstest.DevOrg, "payments", map[string]any{})
	am := startAlertmanager(t, base, alertmanagerTok, time.Hour)

	later := time.Now().Add(time.Hour)
	pushAlerts(t, am, later,
		map[string]string{"alertname": "PaymentsDown", "namespace": "payments", "severity": "critical", "pod": "pay-a"},
		map[string]string{"alertname": "PaymentsDown", "namespace": "payments", "severity": "critical", "pod": "pay-b"})
	pushAlerts(t, am, later, map[string]string{"alertname": "DiskFillingSlowly", "namespace": "payments", "severity": "info"})
	pushAlerts(t, am, later, map[string]string{"alertname": "WebSlow", "namespace": "web", "severity": "warning"})
	pushAlerts(t, am, later, map[string]string{"alertname": "GoneAway", "namespace": "web", "severity": "warning", "cluster": "gone"})

	body := func(s string) func(store.Event) bool {
		return func(ev store.Event) bool { return strings.Contains(string(ev.Body), s) }
	}
	pay := waitAlertmanagerEvent(t, e, "alertmanager.firing", body("PaymentsDown"))
	if pay.OrgID != peerstest.DevOrg || pay.TeamNodeID != "payments" || pay.MatchedBy != "rule:k8s-namespace" {
		t.Fatalf("payments group routed to %s/%s by %s", pay.OrgID, pay.TeamNodeID, pay.MatchedBy)
	}
	dec := routing.DecodeDecision(pay.Decision)
	want := `routed to ` + peerstest.DevOrg + `/payments by rule k8s-namespace: label.namespace="payments", label.severity=~"critical|page"`
	if got := dec.Sentence(); got != want {
		t.Fatalf("decision says %q, want %q", got, want)
	}
	if last := dec.Steps[len(dec.Steps)-1]; last.Kind != routing.KindAgent || last.Agent == "" {
		t.Fatalf("the decision's last step is %+v, want the agent chosen", last)
	}

	info := waitAlertmanagerStored(t, e, "alertmanager.firing", []string{store.EventIgnored}, body("DiskFillingSlowly"))
	if info.MatchedBy != "rule:drop-info" || info.LastError != "ignored by routing rule drop-info" {
		t.Fatalf("info group: %s by %q (%q)", info.Status, info.MatchedBy, info.LastError)
	}
	web := waitAlertmanagerEvent(t, e, "alertmanager.firing", body("WebSlow"))
	if web.TeamNodeID != peerstest.DevTeam || web.MatchedBy != "rule:fallback" {
		t.Fatalf("web group routed to %s by %s", web.TeamNodeID, web.MatchedBy)
	}
	gone := waitAlertmanagerEvent(t, e, "alertmanager.firing", body("GoneAway"))
	gd := routing.DecodeDecision(gone.Decision)
	if gone.MatchedBy != "rule:fallback" || len(gd.Steps) < 2 || gd.Steps[0].Rule != "to-nowhere" ||
		gd.Steps[0].Detail != "team "+peerstest.DevOrg+"/ghost does not exist in the Config Service" {
		t.Fatalf("a rule to a missing team: %s, decision %s", gone.MatchedBy, gone.Decision)
	}

	// The events list filters by rule.
	evs, _, err := e.db.ListEvents(context.Background(), store.EventFilter{MatchedBy: routing.RuleMatchedBy("fallback"), Limit: 10})
	if err != nil || len(evs) != 2 {
		t.Fatalf("events routed by the fallback: %d (%v)", len(evs), err)
	}
	// The API's detail has the decision and its sentence; the list filters
	// by rule. Another org's admin sees neither; an outsider is refused.
	r := e.do("GET", "/api/v1/admin/events/"+pay.ID, adminToken, nil)
	steps, _ := r.body["decision"].([]any)
	if r.code != 200 || r.body["decision_summary"] != want || len(steps) < 2 {
		t.Fatalf("detail: %d %s", r.code, r.raw)
	}
	if first, _ := steps[0].(map[string]any); first["kind"] != "rule" || first["rule"] != "k8s-namespace" || first["action"] != "route_to" {
		t.Fatalf("first step %v", steps[0])
	}
	r = e.do("GET", "/api/v1/admin/events?rule=fallback", adminToken, nil)
	if items, _ := r.body["events"].([]any); r.code != 200 || len(items) != 2 {
		t.Fatalf("?rule=fallback: %d %s", r.code, r.raw)
	}
	if r = e.do("GET", "/api/v1/admin/events?rule=bad%20name", adminToken, nil); r.code != 400 || !strings.Contains(r.raw, "rule") {
		t.Fatalf("?rule= with a bad name: %d %s", r.code, r.raw)
	}
	e.cs.AddAdmin("globex-admin", peers.Identity{Role: "admin", Permissions: []string{"admin:*"}, OrgID: "globex"})
	if r = e.do("GET", "/api/v1/admin/events/"+pay.ID, "globex-admin", nil); r.code != 404 {
		t.Fatalf("another org's admin read the event: %d %s", r.code, r.raw)
	}
	if r = e.do("GET", "/api/v1/admin/events?rule=fallback", "globex-admin", nil); r.code != 200 || strings.Contains(r.raw, web.ID) {
		t.Fatalf("another org's admin listed acme's events: %d %s", r.code, r.raw)
	}
	if r = e.do("GET", "/api/v1/admin/events/"+pay.ID, "", nil); r.code != 401 {
		t.Fatalf("an outsider: %d", r.code)
	}
	// The event page says it in words, step by step; the events page
	// filters by rule.
	c := login(t, base, adminToken)
	code, page := getPage(t, c, base+"/ui/events/"+pay.ID)
	if code != 200 || !strings.Contains(html.UnescapeString(page), `<td id="event-decision">`+want+`</td>`) ||
		!strings.Contains(html.UnescapeString(page), `<li>rule k8s-namespace matched (label.namespace="payments", label.severity=~"critical|page"): route to acme/payments</li>`) {
		t.Fatalf("the event page does not say why: %d\n%s", code, page)
	}
	code, page = getPage(t, c, base+"/ui/events/"+gone.ID)
	if code != 200 || !strings.Contains(html.UnescapeString(page), "<li>rule to-nowhere matched (label.cluster=\"gone\"): route to acme/ghost — not taken: team acme/ghost does not exist in the Config Service</li>") {
		t.Fatalf("the page does not say the rule to a missing team was passed over:\n%s", page)
	}
	code, page = getPage(t, c, base+"/ui/events?rule=drop-info")
	if code != 200 || !strings.Contains(page, "/ui/events/"+info.ID+`"`) || strings.Contains(page, "/ui/events/"+pay.ID+`"`) {
		t.Fatalf("the events page filtered by rule: %d", code)
	}
	for _, m := range e.agentMessages() {
		if strings.Contains(m, "DiskFillingSlowly") {
			t.Fatalf("the ignored group reached the agent: %s", m)
		}
	}
}

// TestRouting_TheTestEndpointSaysWhereAPayloadWouldGo: an operator's
// admin:* token tries payloads (no signature) and is told the decision;
// nothing is stored. An org-bound admin, a viewer and an outsider are
// refused; a bad payload or source is a clear 400.
func TestRouting_TheTestEndpointSaysWhereAPayloadWouldGo(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, routes: k8sRoutes})
	e.cs.AddTeam(peerstest.DevOrg, "payments", map[string]any{})
	payload := map[string]any{"version": "4", "groupKey": "{}:{alertname=\"PaymentsDown\"}", "status": "firing", "receiver": "orchestrator",
		"groupLabels": map[string]string{"alertname": "PaymentsDown"}, "commonLabels": map[string]string{"alertname": "PaymentsDown", "namespace": "payments", "severity": "critical"},
		"alerts": []map[string]any{{"status": "firing", "labels": map[string]string{"alertname": "PaymentsDown", "namespace": "payments", "severity": "critical"}, "fingerprint": "a1"}}}
	r := e.do("POST", "/api/v1/admin/routes/test", adminToken, map[string]any{"source": "alertmanager", "body": payload})
	want := `routed to acme/payments by rule k8s-namespace: label.namespace="payments", label.severity=~"critical|page"`
	if r.code != 200 || r.body["status"] != "routed" || r.body["team_node_id"] != "payments" || r.body["rule"] != "k8s-namespace" || r.body["decision_summary"] != want {
		t.Fatalf("routes/test: %d %s", r.code, r.raw)
	}
	// An identifier the Config Service knows wins over the namespace rule.
	payload["commonLabels"] = map[string]string{"namespace": "payments", "severity": "critical", "service": "checkout"}
	r = e.do("POST", "/api/v1/admin/routes/test", adminToken, map[string]any{"source": "alertmanager", "body": payload})
	if r.code != 200 || r.body["team_node_id"] != peerstest.DevTeam || r.body["matched_by"] != "service" {
		t.Fatalf("routes/test by identifier: %d %s", r.code, r.raw)
	}
	evs, _, _ := e.db.ListEvents(context.Background(), store.EventFilter{Limit: 10})
	if len(evs) != 0 || len(e.agentMessages()) != 0 {
		t.Fatalf("a test stored %d events or called the agent", len(evs))
	}
	for _, c := range []struct {
		token string
		code  int
		body  map[string]any
		want  string
	}{
		{orgToken, 403, map[string]any{"source": "alertmanager", "body": payload}, "operator_only"},
		{viewerToken, 403, map[string]any{"source": "alertmanager", "body": payload}, "insufficient_permissions"},
		{scopedToken, 403, map[string]any{"source": "alertmanager", "body": payload}, "insufficient_permissions"},
		{"", 401, map[string]any{"source": "alertmanager", "body": payload}, ""},
		{adminToken, 400, map[string]any{"source": "nope", "body": payload}, "invalid_source"},
		{adminToken, 400, map[string]any{"source": "alertmanager", "body": map[string]any{"version": "3"}}, "unreadable_payload"},
		{adminToken, 400, map[string]any{"source": "alertmanager"}, "invalid_body"},
	} {
		if r := e.do("POST", "/api/v1/admin/routes/test", c.token, c.body); r.code != c.code || !strings.Contains(r.raw, c.want) {
			t.Errorf("token %q: %d %s, want %d %s", c.token, r.code, r.raw, c.code, c.want)
		}
	}
}

// TestRouting_FixingARuleAndRedrivingUnroutedEventsMovesThem: alerts no
// identifier routes end unrouted, saying so; once a rule takes their
// namespace, a bulk redrive of the unrouted events routes them again,
// through the rule, and the decision says so.
func TestRouting_FixingARuleAndRedrivingUnroutedEventsMovesThem(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true})
	am := func(name string) string {
		body := fmt.Appendf(nil, `{"version":"4","groupKey":"{}:{alertname=\"%[1]s\"}","status":"firing","receiver":"orchestrator",
			"groupLabels":{"alertname":"%[1]s"},"commonLabels":{"alertname":"%[1]s","namespace":"ledger","severity":"critical"},
			"alerts":[{"status":"firing","labels":{"alertname":"%[1]s","namespace":"ledger"},"fingerprint":"%[1]s"}]}`, name)
		r := e.send("alertmanager", body, http.Header{"Authorization": {"Bearer " + alertmanagerTok}, "Content-Type": {"application/json"}})
		if r.code != 200 {
			t.Fatalf("ack %d %s", r.code, r.raw)
		}
		return r.body["event_id"].(string)
	}
	ids := []string{am("LedgerSlow"), am("LedgerDown")}
	for _, id := range ids {
		ev := e.waitStatus(id, store.EventUnrouted)
		if ev.LastError != "the event carries no routing identifier" || routing.DecodeDecision(ev.Decision).Sentence() != "unrouted: the event carries no routing identifier" {
			t.Fatalf("unrouted: %q %s", ev.LastError, ev.Decision)
		}
	}
	e.setRoutes(`routes:
  - name: ledger
    match: ['label.namespace="ledger"']
    route_to: {org_id: ` + peerstest.DevOrg + `, team_node_id: ` + peerstest.DevTeam + `}
`)
	r := e.do("POST", "/api/v1/admin/events/redrive", adminToken, map[string]any{"status": "unrouted", "source": "alertmanager"})
	if r.code != 200 || r.body["redriven"] != float64(2) {
		t.Fatalf("bulk redrive: %d %s", r.code, r.raw)
	}
	for _, id := range ids {
		ev := e.waitStatus(id, store.EventDelivered)
		if ev.MatchedBy != "rule:ledger" || !strings.HasPrefix(routing.DecodeDecision(ev.Decision).Sentence(), "routed to "+peerstest.DevOrg+"/"+peerstest.DevTeam+" by rule ledger") {
			t.Fatalf("redriven: %s by %s, %s", ev.Status, ev.MatchedBy, ev.Decision)
		}
	}
}

// TestRouting_ACachedRouteNeitherSkipsAlwaysRulesNorTheDecision: in a
// storm an event may take its team at ingest from the routing cache; an
// always rule must still see it, and a delivered event so routed still
// says how it was routed.
func TestRouting_ACachedRouteNeitherSkipsAlwaysRulesNorTheDecision(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, routingTTL: time.Hour})
	send := func(name, severity string) string {
		body := fmt.Appendf(nil, `{"version":"4","groupKey":"{}:{alertname=\"%[1]s\"}","status":"firing","receiver":"orchestrator",
			"groupLabels":{"alertname":"%[1]s"},"commonLabels":{"alertname":"%[1]s","service":"checkout","severity":"%[2]s"},
			"alerts":[{"status":"firing","labels":{"alertname":"%[1]s","service":"checkout"},"fingerprint":"%[1]s"}]}`, name, severity)
		r := e.send("alertmanager", body, http.Header{"Authorization": {"Bearer " + alertmanagerTok}, "Content-Type": {"application/json"}})
		if r.code != 200 {
			t.Fatalf("ack %d %s", r.code, r.raw)
		}
		return r.body["event_id"].(string)
	}
	first := e.waitStatus(send("CheckoutSlow", "critical"), store.EventDelivered)
	second := e.waitStatus(send("CheckoutSlower", "critical"), store.EventDelivered)
	if first.MatchedBy != "service" || second.MatchedBy != "service" {
		t.Fatalf("matched by %s, %s", first.MatchedBy, second.MatchedBy)
	}
	for _, ev := range []store.Event{first, second} {
		want := "routed to " + peerstest.DevOrg + "/" + peerstest.DevTeam + " by its identifiers (service=checkout matched by service)"
		if got := routing.DecodeDecision(ev.Decision).Sentence(); got != want {
			t.Fatalf("event %s: %q, want %q (%s)", ev.ID, got, want, ev.Decision)
		}
	}
	e.setRoutes(`routes:
  - name: drop-info
    when: always
    match: ['label.severity="info"']
    ignore: true
`)
	info := e.waitStatus(send("CheckoutInfo", "info"), store.EventIgnored)
	if info.MatchedBy != "rule:drop-info" {
		t.Fatalf("an info alert with a cached route: %s by %s", info.Status, info.MatchedBy)
	}
}

// TestRouting_TheSourcesPageTriesAPayload: an operator tries a payload on
// the Sources page (prefilled with the source's last real payload) and is
// told where it would go, step by step; an org-bound admin has no form and
// is refused; an outsider is sent to the login.
func TestRouting_TheSourcesPageTriesAPayload(t *testing.T) {
	e, base := uiEnv(t, envOptions{routes: k8sRoutes})
	e.cs.AddTeam(peerstest.DevOrg, "payments", map[string]any{})
	body := `{"version":"4","groupKey":"{}:{alertname=\"PaymentsDown\"}","status":"firing","receiver":"orchestrator","groupLabels":{"alertname":"PaymentsDown"},"commonLabels":{"alertname":"PaymentsDown","namespace":"payments","severity":"critical"},"alerts":[{"status":"firing","labels":{"alertname":"PaymentsDown"},"fingerprint":"p1"}]}`
	r := e.send("alertmanager", []byte(body), http.Header{"Authorization": {"Bearer " + alertmanagerTok}, "Content-Type": {"application/json"}})
	e.waitStatus(r.body["event_id"].(string), store.EventDelivered)
	stored := len(e.agentMessages())

	c := login(t, base, adminToken)
	code, page := getPage(t, c, base+"/ui/sources?try=alertmanager")
	if code != 200 || !strings.Contains(html.UnescapeString(page), `"namespace":"payments"`) || !strings.Contains(page, `id="route-test-body"`) {
		t.Fatalf("the form is not prefilled with the last payload: %d", code)
	}
	code, page = postPage(t, c, base, "/ui/sources/test", url.Values{"source": {"alertmanager"}, "body": {body}})
	want := `routed to acme/payments by rule k8s-namespace: label.namespace="payments", label.severity=~"critical|page"`
	if code != 200 || !strings.Contains(html.UnescapeString(page), `<p id="route-test-summary"><strong>`+want+`</strong></p>`) ||
		!strings.Contains(page, `id="route-test-steps"`) {
		t.Fatalf("the answer: %d\n%s", code, page)
	}
	if code, page = postPage(t, c, base, "/ui/sources/test", url.Values{"source": {"alertmanager"}, "body": {`{"version":"3"}`}}); code != 400 ||
		!strings.Contains(html.UnescapeString(page), "Payload: alertmanager cannot read it") {
		t.Fatalf("a bad payload: %d", code)
	}
	evs, _, _ := e.db.ListEvents(context.Background(), store.EventFilter{Limit: 10})
	if len(evs) != 1 || len(e.agentMessages()) != stored {
		t.Fatalf("trying stored %d events or called the agent", len(evs))
	}

	org := login(t, base, orgToken)
	if code, page = getPage(t, org, base+"/ui/sources?try=alertmanager"); code != 200 || strings.Contains(page, "route-test") || strings.Contains(page, "PaymentsDown") {
		t.Fatalf("an org-bound admin sees the form or a payload: %d", code)
	}
	if code, _ = postPage(t, org, base, "/ui/sources/test", url.Values{"source": {"alertmanager"}, "body": {body}}); code != 403 {
		t.Fatalf("an org-bound admin tried a payload: %d", code)
	}
	if code, _ = postPage(t, &http.Client{}, base, "/ui/sources/test", url.Values{"source": {"alertmanager"}, "body": {body}}); code != http.StatusSeeOther && code != 401 && code != 403 {
		t.Fatalf("an outsider: %d", code)
	}
}

// TestRouting_TheBulkRedrivesDryRunSaysWhatEachRuleWouldTake: alerts end
// unrouted; once rules are in force, the bulk redrive's dry run (API and
// the Events page's count) says how many of the unrouted events each rule
// would now take, which stay unrouted, storing and calling nothing; it is
// org-scoped like the redrive (another org's admin is told of none). The
// real redrive then moves them as it said.
func TestRouting_TheBulkRedrivesDryRunSaysWhatEachRuleWouldTake(t *testing.T) {
	e, base := uiEnv(t, envOptions{})
	am := func(name, namespace, severity string) string {
		body := fmt.Appendf(nil, `{"version":"4","groupKey":"{}:{alertname=\"%[1]s\"}","status":"firing","receiver":"orchestrator",
			"groupLabels":{"alertname":"%[1]s"},"commonLabels":{"alertname":"%[1]s","namespace":"%[2]s","severity":"%[3]s"},
			"alerts":[{"status":"firing","labels":{"alertname":"%[1]s","namespace":"%[2]s"},"fingerprint":"%[1]s"}]}`, name, namespace, severity)
		r := e.send("alertmanager", body, http.Header{"Authorization": {"Bearer " + alertmanagerTok}, "Content-Type": {"application/json"}})
		if r.code != 200 {
			t.Fatalf("ack %d %s", r.code, r.raw)
		}
		return r.body["event_id"].(string)
	}
	ids := []string{am("LedgerSlow", "ledger", "critical"), am("LedgerDown", "ledger", "critical"), am("LedgerChatty", "ledger", "info"), am("WebSlow", "web", "warning")}
	for _, id := range ids {
		e.waitStatus(id, store.EventUnrouted)
	}
	calls := len(e.agentMessages())
	e.setRoutes(`routes:
  - name: drop-info
    match: ['label.severity="info"']
    ignore: true
  - name: ledger
    match: ['label.namespace="ledger"']
    route_to: {org_id: ` + peerstest.DevOrg + `, team_node_id: ` + peerstest.DevTeam + `}
  - name: nowhere
    match: ['label.namespace="gone"']
    route_to: {org_id: ` + peerstest.DevOrg + `, team_node_id: ghost}
`)
	r := e.do("POST", "/api/v1/admin/events/redrive", adminToken, map[string]any{"source": "alertmanager", "dry_run": true})
	want := map[string]any{"evaluated": float64(4), "limit": float64(200), "more": false, "identifiers": float64(0), "unrouted": float64(1), "failed": float64(0),
		"rules": []any{map[string]any{"rule": "ledger", "action": "route_to", "count": float64(2)}, map[string]any{"rule": "drop-info", "action": "ignore", "count": float64(1)}}}
	if r.code != 200 || r.body["matched"] != float64(4) || fmt.Sprint(r.body["reroute"]) != fmt.Sprint(want) {
		t.Fatalf("dry run: %d %s", r.code, r.raw)
	}
	// A filter of failed events names no unrouted one: nothing to say.
	if r = e.do("POST", "/api/v1/admin/events/redrive", adminToken, map[string]any{"status": "failed", "dry_run": true}); r.code != 200 || r.body["reroute"] != nil {
		t.Fatalf("dry run of failed events: %d %s", r.code, r.raw)
	}
	// Org-scoped: unrouted events belong to no org, so an org's admin is
	// told of none (and cannot name another org).
	e.cs.AddAdmin("globex-admin", peers.Identity{Role: "admin", Permissions: []string{"admin:*"}, OrgID: "globex"})
	for _, tok := range []string{orgToken, "globex-admin"} {
		r = e.do("POST", "/api/v1/admin/events/redrive", tok, map[string]any{"status": "unrouted", "dry_run": true})
		if rr, _ := r.body["reroute"].(map[string]any); r.code != 200 || r.body["matched"] != float64(0) || rr["evaluated"] != float64(0) || len(rr["rules"].([]any)) != 0 {
			t.Fatalf("%s's dry run: %d %s", tok, r.code, r.raw)
		}
	}
	if r = e.do("POST", "/api/v1/admin/events/redrive", "globex-admin", map[string]any{"org_id": peerstest.DevOrg, "dry_run": true}); r.code != 403 {
		t.Fatalf("another org's admin named acme: %d %s", r.code, r.raw)
	}

	// The Events page's count says the same.
	c := login(t, base, adminToken)
	code, _ := postPage(t, c, base, "/ui/redrive", url.Values{"status": {"unrouted"}})
	if code != http.StatusSeeOther {
		t.Fatalf("count: %d", code)
	}
	code, page := getPage(t, c, base+"/ui/events?status=unrouted&redrive_matched=4&redrive_purged=0")
	page = html.UnescapeString(page)
	for _, s := range []string{`<div id="redrive-reroute">`, "the 4 unrouted events among them would go:",
		`<li class="reroute-rule">rule <code>ledger</code> (route_to): 2</li>`, `<li class="reroute-rule">rule <code>drop-info</code> (ignored): 1</li>`, "<li>still unrouted: 1</li>"} {
		if code != 200 || !strings.Contains(page, s) {
			t.Fatalf("the events page's count lacks %q: %d\n%s", s, code, page)
		}
	}
	for _, id := range ids {
		if ev, _ := e.db.GetEvent(context.Background(), id); ev.Status != store.EventUnrouted {
			t.Fatalf("a dry run moved %s: %s", id, ev.Status)
		}
	}
	if len(e.agentMessages()) != calls {
		t.Fatal("a dry run called the agent")
	}

	r = e.do("POST", "/api/v1/admin/events/redrive", adminToken, map[string]any{"status": "unrouted"})
	if r.code != 200 || r.body["redriven"] != float64(4) || r.body["reroute"] != nil {
		t.Fatalf("redrive: %d %s", r.code, r.raw)
	}
	got := map[string]string{}
	for _, id := range ids {
		ev := e.waitStatus(id, store.EventDelivered, store.EventIgnored, store.EventUnrouted)
		got[ev.Status+" "+ev.MatchedBy] += "x"
	}
	if fmt.Sprint(got) != "map[delivered rule:ledger:xx ignored rule:drop-info:x unrouted :x]" {
		t.Fatalf("after the redrive: %v", got)
	}
}

// TestRouting_TheSourcesPageSendsATestEvent: the operator's "send a test
// event" button signs a sample with the source's own configured secret
// (GitHub's first is a rotated one the dev secrets do not have), the real
// door takes it, and the Sources page says where it went once routed. An
// org's admin (its own org or another's) has no button and is refused,
// storing nothing: a sample can route to any org's team.
func TestRouting_TheSourcesPageSendsATestEvent(t *testing.T) {
	e, base := uiEnv(t, envOptions{routes: k8sRoutes, extraSecrets: map[string]string{"github": "github-rotated-secret"}})
	c := login(t, base, adminToken)
	code, page := getPage(t, c, base+"/ui/sources")
	if code != 200 || !strings.Contains(page, `id="send-test-alertmanager"`) || !strings.Contains(page, `action="/ui/sources/send/github"`) {
		t.Fatalf("the operator has no button: %d", code)
	}
	for _, src := range []string{"github", "alertmanager"} {
		resp := formPost(t, noFollow(c), base, "/ui/sources/send/"+src, url.Values{})
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/ui/sources?sent=") {
			t.Fatalf("%s: %d to %q", src, resp.StatusCode, loc)
		}
		id := strings.TrimSuffix(strings.TrimPrefix(loc, "/ui/sources?sent="), "#sent-event")
		ev := e.waitStatus(id, store.EventDelivered)
		if ev.Source != src || ev.TeamNodeID != peerstest.DevTeam {
			t.Fatalf("%s's test event: %s %s to %s", src, ev.Source, ev.Status, ev.TeamNodeID)
		}
		want := routing.DecodeDecision(ev.Decision).Sentence()
		code, page = getPage(t, c, base+loc)
		page = html.UnescapeString(page)
		if code != 200 || want == "" || !strings.Contains(page, `<a href="/ui/events/`+id+`" id="sent-event-link">`) ||
			!strings.Contains(page, `<strong id="sent-event-decision">`+want+`</strong>`) || !strings.Contains(page, "(team "+peerstest.DevOrg+"/"+peerstest.DevTeam+")") {
			t.Fatalf("%s: the page does not say where it went (%q): %d\n%s", src, want, code, page)
		}
	}
	stored, _, _ := e.db.ListEvents(context.Background(), store.EventFilter{Limit: 50})

	e.cs.AddAdmin("globex-admin", peers.Identity{Role: "admin", Permissions: []string{"admin:*"}, OrgID: "globex"})
	for _, tok := range []string{orgToken, "globex-admin"} {
		org := login(t, base, tok)
		if code, page = getPage(t, org, base+"/ui/sources?sent="+stored[0].ID); code != 200 || strings.Contains(page, "send-test") || strings.Contains(page, "sent-event") {
			t.Fatalf("%s sees the buttons or the sent event: %d", tok, code)
		}
		if code, _ = postPage(t, org, base, "/ui/sources/send/alertmanager", url.Values{}); code != 403 {
			t.Fatalf("%s sent a test event: %d", tok, code)
		}
	}
	if code, _ = postPage(t, &http.Client{}, base, "/ui/sources/send/alertmanager", url.Values{}); code != http.StatusSeeOther && code != 401 && code != 403 {
		t.Fatalf("an outsider: %d", code)
	}
	// Cross-site, the form is refused like every other.
	req, _ := http.NewRequest("POST", base+"/ui/sources/send/alertmanager", nil)
	req.Header.Set("Origin", "https://evil.example")
	if resp, err := noFollow(c).Do(req); err != nil || resp.StatusCode != 403 {
		t.Fatalf("cross-site: %v %v", resp, err)
	}
	// No such source: said, nothing sent.
	resp := formPost(t, noFollow(c), base, "/ui/sources/send/nope", url.Values{})
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/sources" {
		t.Fatalf("an unknown source: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if after, _, _ := e.db.ListEvents(context.Background(), store.EventFilter{Limit: 50}); len(after) != len(stored) || len(stored) != 2 {
		t.Fatalf("%d events before, %d after the refused ones", len(stored), len(after))
	}
}

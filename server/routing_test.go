package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

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
	e := newEnv(t, envOptions{webhooks: true, routes: k8sRoutes})
	e.cs.AddTeam(peerstest.DevOrg, "payments", map[string]any{})
	if err := e.srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.srv.Shutdown(context.Background()) })
	am := startAlertmanager(t, "http://"+e.srv.Addr(), alertmanagerTok, time.Hour)

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
	for _, m := range e.agentMessages() {
		if strings.Contains(m, "DiskFillingSlowly") {
			t.Fatalf("the ignored group reached the agent: %s", m)
		}
	}
}

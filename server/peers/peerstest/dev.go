package peerstest

import "github.com/incidentfox/orchestrator-edge/server/peers"

// Dev seeds (docs/configuration.md, Dev mode): org acme with team platform-sre whose
// routing matches every sample event.
const (
	DevOrg  = "acme"
	DevTeam = "platform-sre"
)

// DevRouting is the seeded team's routing.
var DevRouting = map[string]any{
	"slack_channel_ids":           []any{"C0A4967KRBM"},
	"github_repos":                []any{"acme/payments"},
	"pagerduty_service_ids":       []any{"PF9KMXH"},
	"incidentio_alert_source_ids": []any{"01GW2G3V0S59R238FAHPDS1R66"},
	"coralogix_team_names":        []any{"acme"},
	// Alertmanager's sample (and any alert labelled service="checkout").
	"services": []any{"checkout"},
}

// NewDevConfigService returns a Config Service fake seeded for dev mode,
// with adminToken as an admin:* token. With a statePath the fake keeps its
// orgs, teams and team tokens there (Persist), so dev mode's restart finds
// what was provisioned before it; the seeded org and team are added only
// when the state lacks them.
func NewDevConfigService(adminToken, statePath string) (*ConfigService, error) {
	cs := NewConfigService()
	if statePath != "" {
		if err := cs.Persist(statePath); err != nil {
			return nil, err
		}
	}
	cs.AddAdmin(adminToken, peers.Identity{Role: "admin", Permissions: []string{"admin:*"}, Subject: "dev-admin"})
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.addOrgLocked(DevOrg)
	if cs.nodes[DevOrg][DevTeam] == nil {
		cs.nodes[DevOrg][DevTeam] = &node{ID: DevTeam, Parent: DevOrg, Type: "team", Config: map[string]any{
			"routing":        clone(DevRouting),
			"entrance_agent": "planner",
			// The fake Slack's DevApprover may approve what a streaming
			// agent asks (SPEC §19).
			"approvals": map[string]any{"approvers": []any{DevApprover}},
		}}
	}
	return cs, cs.saveLocked()
}

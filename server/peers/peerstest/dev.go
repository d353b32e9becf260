package peerstest

import "github.com/incidentfox/orchestrator-edge/server/peers"

// Dev seeds, as SPEC §11 describes: org acme with team platform-sre whose
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
// with adminToken as an admin:* token.
func NewDevConfigService(adminToken string) *ConfigService {
	cs := NewConfigService()
	cs.AddAdmin(adminToken, peers.Identity{Role: "admin", Permissions: []string{"admin:*"}, Subject: "dev-admin"})
	cs.AddOrg(DevOrg)
	cs.AddTeam(DevOrg, DevTeam, map[string]any{
		"routing":        DevRouting,
		"entrance_agent": "planner",
	})
	return cs
}

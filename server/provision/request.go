// Package provision runs the provisioning and deprovisioning workflows of
// SPEC §4 and §5: named steps recorded as they go, compensation of what a
// failed run created, idempotency keys, the per-team lock, and recovery of
// runs a crash interrupted.
package provision

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/config"
	"github.com/incidentfox/orchestrator-edge/server/ids"
)

func checkIDs(org, team string) error {
	if !ids.Valid(org) {
		return apperr.New(apperr.Invalid, "invalid_org_id", "org_id must be 1-128 characters of [A-Za-z0-9._-]")
	}
	if !ids.Valid(team) {
		return apperr.New(apperr.Invalid, "invalid_team_node_id", "team_node_id must be 1-128 characters of [A-Za-z0-9._-]")
	}
	return nil
}

// Routing is the team's routing identifiers. A nil list is left as it is in
// the Config Service; an empty list clears it.
type Routing struct {
	SlackChannelIDs          []string `json:"slack_channel_ids,omitempty"`
	GitHubRepos              []string `json:"github_repos,omitempty"`
	PagerDutyServiceIDs      []string `json:"pagerduty_service_ids,omitempty"`
	IncidentIOAlertSourceIDs []string `json:"incidentio_alert_source_ids,omitempty"`
	CoralogixTeamNames       []string `json:"coralogix_team_names,omitempty"`
	Services                 []string `json:"services,omitempty"`
}

// routingList is one routing list: its config key, the identifier type a
// routing lookup knows its entries by, and the list.
type routingList struct {
	key, identifier string
	list            *[]string
}

// lists pairs each routing key with its list, in a fixed order.
func (r *Routing) lists() []routingList {
	return []routingList{
		{"slack_channel_ids", "slack_channel_id", &r.SlackChannelIDs},
		{"github_repos", "github_repo", &r.GitHubRepos},
		{"pagerduty_service_ids", "pagerduty_service_id", &r.PagerDutyServiceIDs},
		{"incidentio_alert_source_ids", "incidentio_alert_source_id", &r.IncidentIOAlertSourceIDs},
		{"coralogix_team_names", "coralogix_team_name", &r.CoralogixTeamNames},
		{"services", "service", &r.Services},
	}
}

// RoutingField is one routing list as a form shows it.
type RoutingField struct {
	Key, Label string
	Values     []string
}

// routingLabels name each routing list for people.
var routingLabels = map[string]string{
	"slack_channel_ids":           "Slack channel ids",
	"github_repos":                "GitHub repos (owner/name)",
	"pagerduty_service_ids":       "PagerDuty service ids",
	"incidentio_alert_source_ids": "incident.io alert source ids",
	"coralogix_team_names":        "Coralogix team names",
	"services":                    "Services",
}

// Fields lists every routing list of SPEC §4 with its key, a label and its
// values, in a fixed order (the admin page's provision form is built from
// it, so it always has every field).
func (r *Routing) Fields() []RoutingField {
	var out []RoutingField
	for _, l := range r.lists() {
		out = append(out, RoutingField{Key: l.key, Label: routingLabels[l.key], Values: *l.list})
	}
	return out
}

// Set fills the list named key; it reports whether key is a routing list.
func (r *Routing) Set(key string, values []string) bool {
	for _, l := range r.lists() {
		if l.key == key {
			*l.list = values
			return true
		}
	}
	return false
}

// patch is the routing part of the config patch: only the lists given.
func (r *Routing) patch() map[string]any {
	out := map[string]any{}
	for _, l := range r.lists() {
		if *l.list != nil {
			out[l.key] = *l.list
		}
	}
	return out
}

// Deployment modes.
const (
	ModeShared    = "shared"
	ModeDedicated = "dedicated"
)

// DefaultSchedule is used when a schedule is asked for without an expression.
const DefaultSchedule = "0 2 * * *"

// Request is the body of POST /api/v1/admin/provision/team.
type Request struct {
	OrgID      string   `json:"org_id"`
	TeamNodeID string   `json:"team_node_id"`
	Routing    *Routing `json:"routing,omitempty"`
	// SlackChannelIDs is an accepted alias, merged into Routing.
	SlackChannelIDs        []string `json:"slack_channel_ids,omitempty"`
	CreatePipelineSchedule bool     `json:"create_pipeline_schedule"`
	PipelineSchedule       string   `json:"pipeline_schedule,omitempty"`
	DeploymentMode         string   `json:"deployment_mode,omitempty"`
	IdempotencyKey         string   `json:"idempotency_key,omitempty"`
}

// Normalize validates the request and puts it in canonical form (alias
// merged, lists de-duplicated, defaults filled). headerKey is the
// Idempotency-Key header, if any.
func (r *Request) Normalize(headerKey string) error {
	if err := checkIDs(r.OrgID, r.TeamNodeID); err != nil {
		return err
	}
	switch {
	case headerKey != "" && r.IdempotencyKey != "" && headerKey != r.IdempotencyKey:
		return apperr.New(apperr.Invalid, "idempotency_key_mismatch", "the Idempotency-Key header and idempotency_key differ")
	case headerKey != "":
		r.IdempotencyKey = headerKey
	}
	if err := checkKey(r.IdempotencyKey); err != nil {
		return err
	}
	if r.SlackChannelIDs != nil {
		if r.Routing == nil {
			r.Routing = &Routing{}
		}
		r.Routing.SlackChannelIDs = append(r.Routing.SlackChannelIDs, r.SlackChannelIDs...)
		r.SlackChannelIDs = nil
	}
	if r.Routing != nil {
		for _, l := range r.Routing.lists() {
			clean, err := cleanList(l.key, *l.list)
			if err != nil {
				return err
			}
			*l.list = clean
		}
	}
	switch r.DeploymentMode {
	case "":
		r.DeploymentMode = ModeShared
	case ModeShared, ModeDedicated:
	default:
		return apperr.New(apperr.Invalid, "invalid_deployment_mode", "deployment_mode must be %q or %q", ModeShared, ModeDedicated)
	}
	if r.CreatePipelineSchedule {
		if r.PipelineSchedule == "" {
			r.PipelineSchedule = DefaultSchedule
		}
		if err := ValidateCron(r.PipelineSchedule); err != nil {
			return err
		}
	} else if r.PipelineSchedule != "" {
		if err := ValidateCron(r.PipelineSchedule); err != nil {
			return err
		}
	}
	return nil
}

func checkKey(k string) error {
	if len(k) > 255 {
		return apperr.New(apperr.Invalid, "invalid_idempotency_key", "idempotency keys are at most 255 characters")
	}
	for _, c := range []byte(k) {
		if c < 0x21 || c > 0x7e {
			return apperr.New(apperr.Invalid, "invalid_idempotency_key", "idempotency keys are printable ASCII without spaces")
		}
	}
	return nil
}

// cleanList trims, drops duplicates (keeping order) and bounds a routing list.
func cleanList(key string, in []string) ([]string, error) {
	if in == nil {
		return nil, nil
	}
	if len(in) > 200 {
		return nil, apperr.New(apperr.Invalid, "invalid_routing", "routing.%s has more than 200 entries", key)
	}
	out := make([]string, 0, len(in))
	seen := map[string]bool{}
	for _, v := range in {
		v = strings.TrimSpace(v)
		if v == "" || len(v) > 256 || strings.ContainsAny(v, "\x00\r\n") {
			return nil, apperr.New(apperr.Invalid, "invalid_routing", "routing.%s entries must be 1-256 characters on one line", key)
		}
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out, nil
}

// ValidateCron checks a CronJob schedule before anything is called.
func ValidateCron(expr string) error {
	if len(expr) > 255 || strings.ContainsAny(expr, "\r\n") {
		return apperr.New(apperr.Invalid, "invalid_cron_expression", "the cron expression is too long or spans lines")
	}
	if strings.Contains(expr, "TZ=") {
		return apperr.New(apperr.Invalid, "invalid_cron_expression", "time zones are not allowed in the schedule (CronJobs run in the cluster's zone)")
	}
	if _, err := config.CronParser.Parse(expr); err != nil {
		return apperr.New(apperr.Invalid, "invalid_cron_expression", "%q is not a cron expression: %v", expr, err)
	}
	return nil
}

// fingerprint is the SHA-256 of the canonical request without its key: the
// same body (after normalization) always gives the same fingerprint.
func (r Request) fingerprint() string {
	r.IdempotencyKey = ""
	b, _ := json.Marshal(r)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

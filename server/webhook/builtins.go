package webhook

import (
	"fmt"
	"regexp"
	"slices"
	"time"
)

// SlackApp is one more Slack app (one per workspace or bot), with a signing
// secret of its own (SPEC §6 Slack apps).
type SlackApp struct {
	Slug    string
	Secrets []string
	// Orgs bind the app to orgs (nil: any org).
	Orgs []string
	// BotToken posts the answers to the app's mentions (from BotTokenEnv
	// in the sources file; "" = none).
	BotToken, BotTokenEnv string
}

// slugPattern is what a Slack app's slug and a configured source's name
// look like.
var slugPattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// standardWebhooksHeaders are the headers Standard Webhooks signs with.
func standardWebhooksHeaders() []string {
	return []string{"webhook-id", "webhook-timestamp", "webhook-signature"}
}

// BuiltinOptions configure the six built-in sources.
type BuiltinOptions struct {
	// Secrets are each built-in source's accepted secrets or tokens.
	Secrets map[string][]string
	// SlackApps are the Slack apps beside the default one.
	SlackApps []SlackApp
	// AlertmanagerLabels map Alertmanager labels to routing identifier
	// types, beside service → service.
	AlertmanagerLabels map[string]string
	// Coalesce lists the built-in sources folded into digests.
	Coalesce []string
	// Orgs bind built-in sources to orgs (ORCHESTRATOR_SOURCE_ORGS; slack
	// is the default Slack app); a source absent routes to any org.
	Orgs map[string][]string
}

// Builtins returns the built-in sources, in SPEC §6's order.
func Builtins(o BuiltinOptions) ([]*Source, error) {
	sec := func(name string) []string { return o.Secrets[name] }
	slack := &Source{Name: Slack, Kind: "built-in", People: true,
		Scheme:      "HMAC-SHA256 of v0:timestamp:body in X-Slack-Signature, ±5 min",
		Description: "Slack Events API mentions and interactions (feedback buttons), per Slack app",
		Routing:     []string{"slack_channel_id"}, describe: describeSlack,
		VerifyHeaders: []string{"x-slack-signature", "x-slack-request-timestamp"},
		Routes: []Route{
			{Path: "/webhooks/slack/events", Summary: "Slack Events API (default app)", Verifier: &SlackVerifier{Secrets: sec(Slack)}},
			{Path: "/webhooks/slack/interactions", Summary: "Slack interactions (default app)",
				Verifier: &SlackVerifier{Secrets: sec(Slack), Interactions: true}},
		}}
	seen := map[string]bool{}
	for _, app := range o.SlackApps {
		switch {
		case !slugPattern.MatchString(app.Slug) || app.Slug == "events" || app.Slug == "interactions":
			return nil, fmt.Errorf("slack_apps: slug %q must match [a-z][a-z0-9-]{0,31} and not be events or interactions", app.Slug)
		case seen[app.Slug]:
			return nil, fmt.Errorf("slack_apps: slug %q is listed twice", app.Slug)
		}
		seen[app.Slug] = true
		if app.Orgs != nil {
			if slack.appOrgs == nil {
				slack.appOrgs = map[string][]string{}
			}
			slack.appOrgs[app.Slug] = app.Orgs
		}
		slack.Routes = append(slack.Routes,
			Route{Path: "/webhooks/slack/" + app.Slug + "/events", Summary: "Slack Events API (app " + app.Slug + ")",
				Verifier: &SlackVerifier{Secrets: app.Secrets, App: app.Slug}},
			Route{Path: "/webhooks/slack/" + app.Slug + "/interactions", Summary: "Slack interactions (app " + app.Slug + ")",
				Verifier: &SlackVerifier{Secrets: app.Secrets, App: app.Slug, Interactions: true}})
	}
	labels := []string{"service"}
	for _, typ := range o.AlertmanagerLabels {
		if !slices.Contains(labels, typ) {
			labels = append(labels, typ)
		}
	}
	slices.Sort(labels[1:])
	co := func(name string) bool { return slices.Contains(o.Coalesce, name) }
	all := []*Source{
		slack,
		{Name: GitHub, Kind: "built-in", Coalesce: co(GitHub),
			Scheme:      "HMAC-SHA256 of the body in X-Hub-Signature-256",
			Description: "GitHub repository webhooks", Routing: []string{"github_repo"}, describe: builtinDescribe[GitHub],
			// X-Hub-Signature (SHA-1) is GitHub's legacy copy of the signature.
			VerifyHeaders: []string{"x-hub-signature-256", "x-hub-signature", "x-github-delivery"},
			Routes:        []Route{{Path: "/webhooks/github", Summary: "GitHub webhooks", Verifier: &GitHubVerifier{Secrets: sec(GitHub)}}}},
		{Name: PagerDuty, Kind: "built-in", Alerts: true, Coalesce: co(PagerDuty),
			Scheme:      "HMAC-SHA256 of the body in X-PagerDuty-Signature (v1=…, any of several)",
			Description: "PagerDuty v3 webhook subscriptions (and the older messages[] body)",
			Routing:     []string{"pagerduty_service_id"}, describe: builtinDescribe[PagerDuty],
			VerifyHeaders: []string{"x-pagerduty-signature"},
			Routes:        []Route{{Path: "/webhooks/pagerduty", Summary: "PagerDuty v3 webhooks", Verifier: &PagerDutyVerifier{Secrets: sec(PagerDuty)}}}},
		{Name: IncidentIO, Kind: "built-in", Alerts: true, Coalesce: co(IncidentIO),
			Scheme:      "Standard Webhooks (webhook-signature v1, ±5 min)",
			Description: "incident.io incident and alert webhooks",
			Routing:     []string{"incidentio_alert_source_id", "slack_channel_id"}, describe: builtinDescribe[IncidentIO],
			VerifyHeaders: standardWebhooksHeaders(),
			Routes: []Route{{Path: "/webhooks/incidentio", Summary: "incident.io webhooks (Standard Webhooks)",
				Verifier: &IncidentIOVerifier{Secrets: sec(IncidentIO)}}}},
		{Name: Coralogix, Kind: "built-in", Alerts: true, Coalesce: co(Coralogix),
			Scheme:      "shared token (Authorization: Bearer or X-Webhook-Token)",
			Description: "Coralogix alert webhooks", Routing: []string{"coralogix_team_name", "service"},
			describe: builtinDescribe[Coralogix], VerifyHeaders: []string{"authorization", "x-webhook-token"},
			Routes: []Route{{Path: "/webhooks/coralogix", Summary: "Coralogix webhooks", Verifier: &CoralogixVerifier{Tokens: sec(Coralogix)}}}},
		{Name: Alertmanager, Kind: "built-in", Alerts: true, Coalesce: co(Alertmanager),
			Scheme:      "shared token (Authorization: Bearer, or basic auth with the token as password)",
			Description: "Prometheus Alertmanager webhook receiver (payload version 4)", Routing: labels,
			describe: describeAlertmanager, VerifyHeaders: []string{"authorization"},
			Routes: []Route{{Path: "/webhooks/alertmanager", Summary: "Prometheus Alertmanager webhook receiver",
				Verifier: &AlertmanagerVerifier{Tokens: sec(Alertmanager), Labels: o.AlertmanagerLabels}}}},
	}
	for name, orgs := range o.Orgs {
		i := slices.IndexFunc(all, func(s *Source) bool { return s.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("source orgs: %q is not a built-in source", name)
		}
		if err := CheckOrgs(orgs); err != nil {
			return nil, fmt.Errorf("source orgs: %s: %v", name, err)
		}
		all[i].Orgs = orgs
	}
	return all, nil
}

// Sample returns a realistic body for a built-in source, shaped as the
// vendor documents it, routed to the dev team of SPEC §11. id makes it
// unique.
func Sample(source, id string, now time.Time) []byte {
	if source == Alertmanager {
		return alertmanagerSample(id, now)
	}
	return sample(source, id, now)
}

// BuiltinPath is a built-in source's main route ("" for another name).
func BuiltinPath(source string) string {
	all, _ := Builtins(BuiltinOptions{})
	for _, s := range all {
		if s.Name == source {
			return s.Routes[0].Path
		}
	}
	return ""
}

package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// sample returns a realistic body for a source, shaped as the vendor
// documents it, routed to the dev team of SPEC §11. id makes it unique.
func sample(source, id string, now time.Time) []byte {
	ts := now.Unix()
	switch source {
	case Slack:
		return fmt.Appendf(nil, `{"token":"unused","team_id":"T0A1B2C3D","api_app_id":"A0A1B2C3D","event":{"type":"app_mention","user":"U0A1B2C3D","text":"<@U0BOT> why is checkout latency up?","ts":"%d.000100","channel":"C0A4967KRBM","event_ts":"%d.000100"},"type":"event_callback","event_id":"Ev%s","event_time":%d}`, ts, ts, id, ts)
	case GitHub:
		return fmt.Appendf(nil, `{"action":"opened","issue":{"number":42,"title":"Checkout returns 500 for EU cards (%s)","html_url":"https://github.com/acme/payments/issues/42"},"repository":{"id":1296269,"full_name":"acme/payments","private":true},"sender":{"login":"octocat"}}`, id)
	case PagerDuty:
		return fmt.Appendf(nil, `{"event":{"id":"01%s","event_type":"incident.triggered","resource_type":"incident","occurred_at":"%s","agent":{"type":"service_reference","id":"PF9KMXH"},"data":{"id":"Q1%s","type":"incident","html_url":"https://acme.pagerduty.com/incidents/Q1","number":7,"status":"triggered","title":"Checkout error rate above 5%%","service":{"id":"PF9KMXH","type":"service_reference","summary":"payments"},"urgency":"high"}}}`, id, now.UTC().Format(time.RFC3339), id)
	case IncidentIO:
		return fmt.Appendf(nil, `{"event_type":"public_alert.alert_created_v1","public_alert.alert_created_v1":{"id":"01%s","title":"High error rate on payments","status":"firing","alert_source_id":"01GW2G3V0S59R238FAHPDS1R66","incident":{"name":"Payments degraded","slack_channel_id":"C0A4967KRBM"}}}`, id)
	case Coralogix:
		return fmt.Appendf(nil, `{"alert_unique_identifier":"%s","alert_name":"payments 5xx rate","alert_severity":"critical","alert_action":"trigger","team_name":"acme","application":"payments","subsystem":"checkout","timestamp":"%s"}`, id, now.UTC().Format(time.RFC3339))
	}
	return nil
}

// ErrNoSample: the source has no sample to send (a configured source is
// sent by its vendor) or no secret to sign one with.
var ErrNoSample = errors.New("no sample")

// SignedSample is a realistic sample delivery of a built-in source, signed
// with the source's own configured secret (its first) as the vendor would
// sign it, for the Sources page's "send a test event" button: sent through
// the door, it proves the door takes what the vendor will send. The secret
// never leaves this function. id makes the delivery unique.
func (s *Source) SignedSample(id string, now time.Time) ([]byte, http.Header, error) {
	if s == nil || s.Kind != "built-in" || len(s.Routes) == 0 {
		return nil, nil, fmt.Errorf("%w: only a built-in source has a sample (a configured source is sent by its vendor)", ErrNoSample)
	}
	var secrets []string
	switch v := s.Routes[0].Verifier.(type) {
	case *SlackVerifier:
		secrets = v.Secrets
	case *GitHubVerifier:
		secrets = v.Secrets
	case *PagerDutyVerifier:
		secrets = v.Secrets
	case *IncidentIOVerifier:
		secrets = v.Secrets
	case *CoralogixVerifier:
		secrets = v.Tokens
	case *AlertmanagerVerifier:
		secrets = v.Tokens
	}
	body := Sample(s.Name, id, now)
	switch {
	case body == nil:
		return nil, nil, fmt.Errorf("%w: %s has no sample", ErrNoSample, s.Name)
	case len(secrets) == 0 || secrets[0] == "":
		return nil, nil, fmt.Errorf("%w: no %s secret is configured, so the door takes none of its deliveries", ErrNoSample, s.Name)
	}
	return body, Sign(s.Name, secrets[0], body, now, "sample-"+id), nil
}

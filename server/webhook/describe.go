package webhook

import (
	"regexp"
	"strings"
)

var slackMention = regexp.MustCompile(`^\s*<@[A-Z0-9]+>\s*`)

// Describe turns a stored body into the agent's message and the metadata
// passed along under context.metadata.<source>. It never fails: an odd body
// still gives a message.
func Describe(source string, eventType string, body []byte) (string, map[string]any) {
	m, err := parseJSON(body)
	if err != nil {
		return source + " event " + eventType, map[string]any{"event_type": eventType}
	}
	meta := map[string]any{"event_type": eventType}
	var msg string
	switch source {
	case Slack:
		e := obj(m, "event")
		msg = strings.TrimSpace(slackMention.ReplaceAllString(str(e, "text"), ""))
		for _, k := range []string{"channel", "user", "ts", "thread_ts", "team"} {
			if v := str(e, k); v != "" {
				meta[k] = v
			}
		}
		if msg == "" {
			msg = "(empty mention)"
		}
	case GitHub:
		repo := str(obj(m, "repository"), "full_name")
		title := first(obj(m, "pull_request"), "title")
		if title == "" {
			title = first(obj(m, "issue"), "title")
		}
		if title == "" {
			title = first(obj(m, "workflow_run"), "name")
		}
		meta["repo"], meta["action"], meta["sender"] = repo, str(m, "action"), str(obj(m, "sender"), "login")
		msg = "GitHub " + eventType + " on " + repo
		if title != "" {
			msg += ": " + title
		}
	case PagerDuty:
		data := obj(obj(m, "event"), "data")
		title, svc := str(data, "title"), str(obj(data, "service"), "id")
		if msgs, ok := m["messages"].([]any); ok && len(msgs) > 0 {
			inc := obj(msgs[0], "incident")
			title, svc = str(inc, "title"), str(obj(inc, "service"), "id")
		}
		meta["service_id"], meta["incident_id"], meta["html_url"] = svc, str(data, "id"), str(data, "html_url")
		msg = "PagerDuty " + eventType + ": " + title
	case IncidentIO:
		payload := obj(m, str(m, "event_type"))
		inc := obj(payload, "incident")
		if inc == nil {
			inc = payload
		}
		name := first(inc, "name", "title")
		meta["incident_id"], meta["severity"] = str(inc, "id"), str(obj(inc, "severity"), "name")
		msg = "incident.io " + eventType + ": " + name
	case Coralogix:
		if a := obj(m, "alert"); a != nil {
			for k, v := range a {
				if _, ok := m[k]; !ok {
					m[k] = v
				}
			}
		}
		name := first(m, "alert_name", "alertName", "name", "title")
		meta["severity"], meta["application"] = first(m, "alert_severity", "severity"), first(m, "application", "applicationName")
		msg = "Coralogix alert: " + name
	default:
		msg = source + " event " + eventType
	}
	return msg, meta
}

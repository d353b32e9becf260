package webhook

import (
	"regexp"
	"strconv"
	"strings"
)

var slackMention = regexp.MustCompile(`^\s*<@[A-Z0-9]+>\s*`)

// AppHeader is the stored header that names the Slack app an event came
// through; the door sets it (and drops any a sender set).
const AppHeader = "x-orchestrator-slack-app"

// DefaultApp is the slug the default Slack app's events carry to the agent.
const DefaultApp = "default"

// Describe describes an event of a built-in source (see Source.Describe).
func Describe(source string, eventType string, body []byte) (string, map[string]any) {
	if d := builtinDescribe[source]; d != nil {
		msg, meta := d(eventType, body, nil)
		if source != Slack {
			msg = EscapeText(msg) // describeSlack escapes what it takes
		}
		return msg, meta
	}
	return EscapeText(source + " event " + eventType), map[string]any{"event_type": eventType}
}

type describeFunc func(eventType string, body []byte, headers map[string]string) (string, map[string]any)

var builtinDescribe = map[string]describeFunc{
	Slack: describeSlack, GitHub: jsonDescribe(GitHub, describeGitHub), PagerDuty: jsonDescribe(PagerDuty, describePagerDuty),
	IncidentIO: jsonDescribe(IncidentIO, describeIncidentIO), Coralogix: jsonDescribe(Coralogix, describeCoralogix),
	Alertmanager: describeAlertmanager,
}

// jsonDescribe runs a describer on a JSON object body, and gives a plain
// line for a body that is not one.
func jsonDescribe(source string, f func(eventType string, m map[string]any, meta map[string]any) string) describeFunc {
	return func(eventType string, body []byte, _ map[string]string) (string, map[string]any) {
		meta := map[string]any{"event_type": eventType}
		m, err := parseJSON(body)
		if err != nil {
			return source + " event " + eventType, meta
		}
		return f(eventType, m, meta), meta
	}
}

func describeSlack(eventType string, body []byte, headers map[string]string) (string, map[string]any) {
	meta := map[string]any{"event_type": eventType, "app": DefaultApp}
	if app := headers[AppHeader]; app != "" {
		meta["app"] = app
	}
	if strings.HasPrefix(string(body), "payload=") {
		return EscapeText(describeSlackInteraction(eventType, body, meta)), meta
	}
	m, err := parseJSON(body)
	if err != nil {
		return EscapeText("slack event " + eventType), meta
	}
	e := obj(m, "event")
	msg := strings.TrimSpace(slackMention.ReplaceAllString(str(e, "text"), ""))
	for _, k := range []string{"channel", "user", "ts", "thread_ts", "team"} {
		if v := str(e, k); v != "" {
			meta[k] = v
		}
	}
	if msg == "" {
		msg = "(empty mention)"
	}
	// A person's own question, sent alone: its line breaks stay.
	return escapeText(msg, true), meta
}

func describeGitHub(eventType string, m map[string]any, meta map[string]any) string {
	repo := str(obj(m, "repository"), "full_name")
	title := first(obj(m, "pull_request"), "title")
	if title == "" {
		title = first(obj(m, "issue"), "title")
	}
	if title == "" {
		title = first(obj(m, "workflow_run"), "name")
	}
	meta["repo"], meta["action"], meta["sender"] = repo, str(m, "action"), str(obj(m, "sender"), "login")
	// The issue or pull request the event is on, where an answer is posted
	// back: a comment on an issue that is a pull request is the PR's.
	if pr := obj(m, "pull_request"); pr != nil {
		meta["pr_number"] = number(pr, "number")
	} else if is := obj(m, "issue"); is != nil {
		if obj(is, "pull_request") != nil {
			meta["pr_number"] = number(is, "number")
		} else {
			meta["issue_number"] = number(is, "number")
		}
	}
	for _, k := range []string{"pr_number", "issue_number"} {
		if meta[k] == 0 {
			delete(meta, k)
		}
	}
	msg := "GitHub " + eventType + " on " + repo
	if title != "" {
		msg += ": " + title
	}
	return msg
}

func describePagerDuty(eventType string, m map[string]any, meta map[string]any) string {
	data := obj(obj(m, "event"), "data")
	title, svc := str(data, "title"), str(obj(data, "service"), "id")
	// The incident an answer's note goes on: the data itself for incident
	// events, the incident it references otherwise.
	incident, link := str(data, "id"), str(data, "html_url")
	if t := str(data, "type"); t != "" && t != "incident" {
		incident = str(obj(data, "incident"), "id")
	}
	if msgs, ok := m["messages"].([]any); ok && len(msgs) > 0 {
		inc := obj(msgs[0], "incident")
		title, svc = str(inc, "title"), str(obj(inc, "service"), "id")
		incident, link = str(inc, "id"), str(inc, "html_url")
	}
	meta["service_id"], meta["incident_id"], meta["html_url"] = svc, incident, link
	return "PagerDuty " + eventType + ": " + title
}

func describeIncidentIO(eventType string, m map[string]any, meta map[string]any) string {
	payload := obj(m, str(m, "event_type"))
	inc := obj(payload, "incident")
	if inc == nil {
		inc = payload
	}
	name := first(inc, "name", "title")
	meta["incident_id"], meta["severity"] = str(inc, "id"), str(obj(inc, "severity"), "name")
	return "incident.io " + eventType + ": " + name
}

func describeCoralogix(_ string, m map[string]any, meta map[string]any) string {
	if a := obj(m, "alert"); a != nil {
		for k, v := range a {
			if _, ok := m[k]; !ok {
				m[k] = v
			}
		}
	}
	name := first(m, "alert_name", "alertName", "name", "title")
	meta["severity"], meta["application"] = first(m, "alert_severity", "severity"), first(m, "application", "applicationName")
	return "Coralogix alert: " + name
}

// number reads a positive whole number field (0 if it is not one).
func number(m map[string]any, key string) int {
	n, err := strconv.Atoi(str(m, key))
	if err != nil || n < 1 {
		return 0
	}
	return n
}

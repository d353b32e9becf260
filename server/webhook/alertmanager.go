package webhook

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// AlertmanagerVerifier checks Prometheus Alertmanager's webhook receiver
// (SPEC §6). Alertmanager does not sign; its http_config sends a token as
// "Authorization: Bearer <token>" or basic auth, whose password must be one
// of the tokens (the user name is not checked).
type AlertmanagerVerifier struct {
	Tokens []string
	// Labels maps extra labels to routing identifier types
	// (ORCHESTRATOR_ALERTMANAGER_ROUTING_LABELS), beside service → service.
	Labels map[string]string
}

// Source is "alertmanager".
func (v *AlertmanagerVerifier) Source() string { return Alertmanager }

// Verify implements Verifier.
func (v *AlertmanagerVerifier) Verify(body []byte, h http.Header, _ time.Time) (Event, error) {
	if len(v.Tokens) == 0 {
		return Event{}, ErrNoSecret
	}
	if !tokenMatches(v.Tokens, credential(h, "")) {
		return Event{}, fmt.Errorf("%w: missing or wrong Alertmanager credentials", ErrSignature)
	}
	return ParseAlertmanager(body, v.Labels)
}

// Read implements Reader: the event as Verify reads it, without checking
// a token.
func (v *AlertmanagerVerifier) Read(body []byte, _ http.Header) (Event, error) {
	return ParseAlertmanager(body, v.Labels)
}

// credential reads the presented token: a bearer token, a basic auth
// password, or (with header set) that header's value.
func credential(h http.Header, header string) string {
	if header != "" {
		return h.Get(header)
	}
	auth := h.Get("Authorization")
	if t, ok := strings.CutPrefix(auth, "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	if b, ok := strings.CutPrefix(auth, "Basic "); ok {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b))
		if err == nil {
			if _, pass, ok := strings.Cut(string(raw), ":"); ok {
				return pass
			}
		}
	}
	return ""
}

// tokenMatches compares digests, so that the time taken does not depend on
// the token's length or where it differs.
func tokenMatches(tokens []string, got string) bool {
	if got == "" {
		return false
	}
	gotSum := sha256.Sum256([]byte(got))
	matched := 0
	for _, t := range tokens {
		want := sha256.Sum256([]byte(t))
		matched |= subtle.ConstantTimeCompare(gotSum[:], want[:])
	}
	return matched == 1
}

// amMessage is Alertmanager's webhook payload, version 4.
type amMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   uint64            `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []amAlert         `json:"alerts"`
}

type amAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

func parseAM(body []byte) (amMessage, error) {
	var m amMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return amMessage{}, fmt.Errorf("%w: not an Alertmanager webhook payload: %v", ErrPayload, err)
	}
	switch {
	case m.Version != "4":
		return amMessage{}, fmt.Errorf("%w: Alertmanager payload version %q (4 is read)", ErrPayload, m.Version)
	case m.GroupKey == "":
		return amMessage{}, fmt.Errorf("%w: Alertmanager payload without groupKey", ErrPayload)
	case m.Status != AlertFiring && m.Status != AlertResolved:
		return amMessage{}, fmt.Errorf("%w: Alertmanager status %q", ErrPayload, m.Status)
	}
	return m, nil
}

// label reads a label from the group's labels, then the common labels,
// then the first alert that has it.
func (m amMessage) label(name string) string {
	if v := m.GroupLabels[name]; v != "" {
		return v
	}
	if v := m.CommonLabels[name]; v != "" {
		return v
	}
	for _, a := range m.Alerts {
		if v := a.Labels[name]; v != "" {
			return v
		}
	}
	return ""
}

// ParseAlertmanager reads a verified Alertmanager notification: one event
// per notification, its delivery id the SHA-256 of the body (a resend after
// a failed attempt is the same body), its identity the group key, its
// status and its firing alerts' fingerprints.
func ParseAlertmanager(body []byte, labels map[string]string) (Event, error) {
	m, err := parseAM(body)
	if err != nil {
		return Event{}, err
	}
	sum := sha256.Sum256(body)
	ev := Event{Source: Alertmanager, DeliveryID: "sha256:" + hex.EncodeToString(sum[:]),
		EventType: "alertmanager." + m.Status, Identifiers: map[string]string{}}
	if svc := m.label("service"); svc != "" {
		ev.Identifiers["service"] = clean(svc, 128)
	}
	for label, typ := range labels {
		if v := m.label(label); v != "" && ev.Identifiers[typ] == "" {
			ev.Identifiers[typ] = clean(v, 128)
		}
	}
	var firing []string
	for _, a := range m.Alerts {
		if a.Status == AlertFiring && a.Fingerprint != "" {
			firing = append(firing, a.Fingerprint)
		}
	}
	ev.Alert = newAlert(m.GroupKey, m.Status, firing)
	if ev.Alert != nil {
		ev.Alert.Labels = m.CommonLabels
	}
	return ev, nil
}

// describeAlertmanager: "Alertmanager firing: 3 alerts (2 firing, 1
// resolved): HighErrorRate ×2, PodCrashLooping — service=checkout
// namespace=payments severity=critical", with the first summary.
func describeAlertmanager(_ string, body []byte, _ map[string]string) (string, map[string]any) {
	m, err := parseAM(body)
	if err != nil {
		return "Alertmanager notification", map[string]any{}
	}
	names := map[string]int{}
	var order []string
	firing := 0
	for _, a := range m.Alerts {
		n := a.Labels["alertname"]
		if n == "" {
			n = "(unnamed)"
		}
		if names[n] == 0 {
			order = append(order, n)
		}
		names[n]++
		if a.Status == AlertFiring {
			firing++
		}
	}
	sort.SliceStable(order, func(i, j int) bool { return names[order[i]] > names[order[j]] })
	parts := make([]string, 0, len(order))
	for _, n := range order {
		if names[n] > 1 {
			parts = append(parts, fmt.Sprintf("%s ×%d", n, names[n]))
		} else {
			parts = append(parts, n)
		}
	}
	msg := fmt.Sprintf("Alertmanager %s: %d alert%s", m.Status, len(m.Alerts), plural(len(m.Alerts)))
	if firing != len(m.Alerts) && firing > 0 {
		msg += fmt.Sprintf(" (%d firing, %d resolved)", firing, len(m.Alerts)-firing)
	}
	if m.TruncatedAlerts > 0 {
		msg += fmt.Sprintf(" and %d more not sent", m.TruncatedAlerts)
	}
	if len(parts) > 0 {
		msg += ": " + strings.Join(parts, ", ")
	}
	var key []string
	for _, l := range []string{"service", "namespace", "cluster", "job", "severity"} {
		if v := m.label(l); v != "" {
			key = append(key, l+"="+v)
		}
	}
	if len(key) > 0 {
		msg += " — " + strings.Join(key, " ")
	}
	summary := m.CommonAnnotations["summary"]
	if summary == "" && len(m.Alerts) > 0 {
		summary = m.Alerts[0].Annotations["summary"]
	}
	if summary != "" {
		msg += ". " + summary
	}
	alerts := make([]map[string]any, 0, min(len(m.Alerts), 20))
	for _, a := range m.Alerts[:min(len(m.Alerts), 20)] {
		alerts = append(alerts, map[string]any{"status": a.Status, "labels": a.Labels, "annotations": a.Annotations,
			"starts_at": a.StartsAt, "fingerprint": a.Fingerprint, "generator_url": a.GeneratorURL})
	}
	meta := map[string]any{"status": m.Status, "group_key": m.GroupKey, "receiver": m.Receiver,
		"group_labels": m.GroupLabels, "common_labels": m.CommonLabels, "external_url": m.ExternalURL,
		"alerts": alerts, "alert_count": len(m.Alerts)}
	if svc := m.label("service"); svc != "" {
		meta["service"] = svc
	}
	return msg, meta
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// alertmanagerSample is a notification as Alertmanager's webhook sends it.
func alertmanagerSample(id string, now time.Time) []byte {
	started := now.Add(-2 * time.Minute).UTC().Format(time.RFC3339)
	labels := map[string]string{"alertname": "CheckoutHighErrorRate", "service": "checkout", "namespace": "payments",
		"severity": "critical", "sample": id}
	msg := map[string]any{"version": "4", "groupKey": `{}/{service="checkout"}:{alertname="CheckoutHighErrorRate"}`,
		"truncatedAlerts": 0, "status": "firing", "receiver": "orchestrator",
		"groupLabels": map[string]string{"alertname": "CheckoutHighErrorRate"}, "commonLabels": labels,
		"commonAnnotations": map[string]string{"summary": "checkout 5xx above 5% for 2 minutes"},
		"externalURL":       "http://alertmanager.monitoring:9093",
		"alerts": []map[string]any{{"status": "firing", "labels": labels,
			"annotations": map[string]string{"summary": "checkout 5xx above 5% for 2 minutes"},
			"startsAt":    started, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus:9090/graph",
			"fingerprint": fmt.Sprintf("%016x", sha256.Sum256([]byte(id)))[:16]}}}
	b, _ := json.Marshal(msg)
	return b
}

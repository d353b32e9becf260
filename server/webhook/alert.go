package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"strings"
)

// Alert states (SPEC §6 Noise).
const (
	AlertFiring   = "firing"
	AlertResolved = "resolved"
	AlertOther    = "other"
)

// Alert is an alert event's identity: which alert it is about and what it
// says about it. Noise control reads it: a resolve settles the waiting
// firing events of its key, a firing that says nothing new is a repeat.
type Alert struct {
	// Key names the alert: PagerDuty's incident id, incident.io's alert or
	// incident id, Coralogix's alert id, Alertmanager's group key.
	Key string
	// State is firing, resolved or other.
	State string
	// Fingerprints are Alertmanager's firing alerts' fingerprints, sorted:
	// a new alert joining a group is news even under the same key.
	Fingerprints []string
	// Labels are the labels the event's alerts share (Alertmanager's
	// commonLabels): inhibit rules match them (SPEC §21). Nil for a
	// source without labels.
	Labels map[string]string
}

// Bounds of an alert's stored labels: a label past them is left out.
const (
	maxLabels     = 64
	maxLabelValue = 256
)

// LabelsJSON is the stored form of the alert's labels: a JSON object of at
// most 64 labels (by name), names of [a-zA-Z_][a-zA-Z0-9_]* up to 128
// characters and values cleaned to at most 256; "" without any.
func (a *Alert) LabelsJSON() string {
	if a == nil || len(a.Labels) == 0 {
		return ""
	}
	names := slices.Sorted(maps.Keys(a.Labels))
	kept := map[string]string{}
	for _, n := range names {
		if len(kept) == maxLabels {
			break
		}
		if LabelName(n) {
			kept[n] = clean(a.Labels[n], maxLabelValue)
		}
	}
	if len(kept) == 0 {
		return ""
	}
	b, _ := json.Marshal(kept)
	return string(b)
}

// LabelName reports whether n is a label name the appliance keeps and an
// inhibit rule may name: Prometheus's [a-zA-Z_][a-zA-Z0-9_]*, at most 128
// bytes.
func LabelName(n string) bool {
	if n == "" || len(n) > 128 {
		return false
	}
	for i, c := range n {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Signature is a short digest of the firing fingerprints ("" without any).
func (a *Alert) Signature() string {
	if a == nil || len(a.Fingerprints) == 0 {
		return ""
	}
	sum := sha256.Sum256([]byte(strings.Join(a.Fingerprints, ",")))
	return hex.EncodeToString(sum[:8])
}

// MaxAlertKey is the longest alert key stored as it is (the column holds
// 255 characters).
const MaxAlertKey = 255

// alertKeyHead is how much of a longer key is kept readable before its
// digest.
const alertKeyHead = 176

// AlertKey is the stored form of an alert's key: the key itself, or, when
// it is longer than MaxAlertKey bytes or not clean text, its first
// characters (repaired) followed by "…sha256:" and the SHA-256 of the
// whole key as it was sent. Two keys that share a long prefix, or differ
// only in bytes the repair replaces alike, stay two alerts (SPEC §18,
// round 4: never cut into a shared prefix), and the head keeps the page
// and a silence's glob readable.
func AlertKey(key string) string {
	if len(key) <= MaxAlertKey && cleanText(key) {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return clean(key, alertKeyHead) + "…sha256:" + hex.EncodeToString(sum[:])
}

// newAlert builds an alert identity, or nil without a key.
func newAlert(key, state string, fingerprints []string) *Alert {
	if key = AlertKey(key); key == "" {
		return nil
	}
	fps := slices.Clone(fingerprints)
	slices.Sort(fps)
	return &Alert{Key: key, State: state, Fingerprints: slices.Compact(fps)}
}

// pagerDutyAlert: the incident id; triggered and reopened fire, resolved
// resolves (v3 event types and the older messages[] ones).
func pagerDutyAlert(m map[string]any, eventType string) *Alert {
	key := str(obj(obj(m, "event"), "data"), "id")
	if msgs, ok := m["messages"].([]any); ok && len(msgs) > 0 && key == "" {
		inc := obj(msgs[0], "incident")
		if inc == nil {
			inc = obj(obj(msgs[0], "log_entries"), "incident")
		}
		key = str(inc, "id")
	}
	state := AlertOther
	switch eventType {
	case "incident.triggered", "incident.reopened", "incident.trigger":
		state = AlertFiring
	case "incident.resolved", "incident.resolve":
		state = AlertResolved
	}
	return newAlert(key, state, nil)
}

// incidentIOAlert: the alert's id (or the incident's) and its status.
func incidentIOAlert(payload map[string]any) *Alert {
	subject := payload
	if a := obj(payload, "alert"); a != nil {
		subject = a
	} else if inc := obj(payload, "incident"); inc != nil && str(payload, "id") == "" {
		subject = inc
	}
	status := strings.ToLower(str(subject, "status"))
	if status == "" {
		status = strings.ToLower(str(obj(subject, "incident_status"), "category"))
	}
	state := AlertOther
	switch status {
	case "firing", "triggered", "active", "triage", "live":
		state = AlertFiring
	case "resolved", "closed", "post-incident", "post_incident":
		state = AlertResolved
	}
	return newAlert(str(subject, "id"), state, nil)
}

// coralogixAlert: the alert's unique id; trigger fires, resolve resolves.
func coralogixAlert(id, action string) *Alert {
	state := AlertOther
	switch strings.ToLower(action) {
	case "trigger", "triggered":
		state = AlertFiring
	case "resolve", "resolved":
		state = AlertResolved
	}
	return newAlert(id, state, nil)
}

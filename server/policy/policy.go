// Package policy holds what an operator changes in the sources file while
// the appliance runs — the sections other than the sources and Slack apps
// themselves (routing rules, time intervals, inhibit rules, answer
// destinations) — and reloads it when the file changes. A file that does not
// read keeps the previous policy in force and says why: in the log, in
// orchestrator_sources_file_reloads_total{outcome="error"} and
// orchestrator_sources_file_ok, and on the Sources page (Status).
//
// The sources and Slack apps are read once, at start (a verifier and its
// routes are the door's); a change to them is logged as taking effect at
// the next start.
//
// Each room that owns a section parses it (routing its rules, noise its
// intervals and inhibit rules, answers its destinations); Parse composes
// them into one Policy, checked whole before it replaces the last one, so a
// reload is all or nothing.
package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/answers"
	"github.com/incidentfox/orchestrator-edge/server/noise"
	"github.com/incidentfox/orchestrator-edge/server/routing"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

// Policy is one reading of the reloadable sections of the sources file.
// A nil *Policy, or an empty one, is "nothing configured".
type Policy struct {
	// Hash is the SHA-256 of the file this was read from ("" when there is
	// no file).
	Hash string
	// Fixed is the SHA-256 of the file's sources and slack_apps sections:
	// when a reload sees it change, the change waits for a restart.
	Fixed string
	// Routes are the operator's routing rules (routes:), in order.
	Routes *routing.Rules
	// Intervals are the named time intervals (time_intervals:) silences,
	// routes and teams refer to.
	Intervals *noise.Intervals
	// Inhibits are the inhibit rules (inhibit_rules:), in order.
	Inhibits *noise.InhibitRules
	// Destinations are the webhook destinations team config may name
	// (the destinations section; server/answers reads it).
	Destinations []answers.WebhookDestination
}

// Parse reads the reloadable sections of a sources file. getenv reads the
// environment variables the file names (secrets are never in the file). An
// error is one line naming the section, the entry and the field.
// identifiers are routing identifier types rules may name beyond the
// built-in ones and those the file's sources declare (an Alertmanager
// label mapping's).
func Parse(data []byte, getenv func(string) string, identifiers ...string) (*Policy, error) {
	sections, err := webhook.SplitSourcesFile(data)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	p := &Policy{Hash: hex.EncodeToString(sum[:]), Fixed: fixedHash(sections)}
	if p.Routes, err = routing.Parse(sections["routes"], knownIdentifiers(sections["sources"], identifiers)); err != nil {
		return nil, err
	}
	if p.Intervals, err = noise.ParseIntervals(sections["time_intervals"]); err != nil {
		return nil, err
	}
	for _, r := range p.Routes.List() {
		if err := p.Intervals.Check(fmt.Sprintf("routes: rule %q: active_time_intervals", r.Name), r.ActiveTimeIntervals); err != nil {
			return nil, err
		}
	}
	if p.Inhibits, err = noise.ParseInhibitRules(sections["inhibit_rules"]); err != nil {
		return nil, err
	}
	if p.Destinations, err = answers.ParseWebhookDestinations(sections["destinations"], getenv); err != nil {
		return nil, err
	}
	return p, nil
}

// knownIdentifiers are the identifier types routing rules may read: the
// built-in sources', the file's sources' (their routing: keys) and extra.
func knownIdentifiers(sources json.RawMessage, extra []string) []string {
	set := map[string]bool{}
	for _, id := range append(slices.Clone(webhook.BuiltinIdentifiers), extra...) {
		set[id] = true
	}
	var list []struct {
		Routing map[string]json.RawMessage `json:"routing"`
	}
	_ = json.Unmarshal(sources, &list) // the sources section's own errors are reported at start
	for _, s := range list {
		for id := range s.Routing {
			set[id] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// fixedHash digests the sections read only at start.
func fixedHash(sections map[string]json.RawMessage) string {
	h := sha256.New()
	for _, k := range []string{"sources", "slack_apps"} {
		fmt.Fprintf(h, "%s\x00%d\x00", k, len(sections[k]))
		h.Write(sections[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Status is what the Sources page and the API say of the file.
type Status struct {
	// Path is the file (ORCHESTRATOR_SOURCES_FILE); "" when none is set.
	Path string `json:"path,omitempty"`
	// LoadedAt is when the policy in force was read, Hash its file's SHA-256.
	LoadedAt time.Time `json:"loaded_at"`
	Hash     string    `json:"hash,omitempty"`
	// Error is why the file as it is now was not taken (the previous
	// policy stays in force), with when that was last seen; empty when the
	// file in force is the file on disk.
	Error   string     `json:"error,omitempty"`
	ErrorAt *time.Time `json:"error_at,omitempty"`
	// RestartNeeded: the file's sources or Slack apps changed since start;
	// they take effect at the next start.
	RestartNeeded bool `json:"restart_needed,omitempty"`
}

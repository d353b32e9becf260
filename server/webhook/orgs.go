package webhook

import (
	"fmt"
	"slices"
	"strings"

	"github.com/incidentfox/orchestrator-edge/server/ids"
)

// Sources bound to orgs (SPEC §18, round 4). A source's secret is held by
// whoever sends its webhooks; bound to orgs, its events route only to teams
// of those orgs, so one sender's secret cannot drive — or spend the budget
// of — another org's agent by naming that org's channel or service. A
// configured source and a Slack app are bound by `orgs:` in the sources
// file, a built-in source by ORCHESTRATOR_SOURCE_ORGS (the default Slack
// app is the built-in slack). Unbound, a source routes to any team.

// TriggerHeader is the stored header that marks an event of the internal
// trigger (ORCHESTRATOR_INTERNAL_TOKEN, trusted appliance-wide, so bound to
// no org); the door drops any a webhook sender sets.
const TriggerHeader = "x-orchestrator-trigger"

// CheckOrgs checks an orgs list: at least one org id, each valid, none
// twice.
func CheckOrgs(orgs []string) error {
	if len(orgs) == 0 {
		return fmt.Errorf("list at least one org id, or leave orgs out (the source then routes to any org)")
	}
	for i, o := range orgs {
		if !ids.Valid(o) {
			return fmt.Errorf("%q is not an org id (1-128 characters of [A-Za-z0-9._-])", o)
		}
		if slices.Contains(orgs[:i], o) {
			return fmt.Errorf("%q is listed twice", o)
		}
	}
	return nil
}

// BoundOrgs are the orgs the events of the source's app (a Slack app's
// slug, "" for the default app and every other source) may route to; nil:
// any org.
func (s *Source) BoundOrgs(app string) []string {
	if s == nil {
		return nil
	}
	if app != "" && s.appOrgs != nil {
		return s.appOrgs[app]
	}
	return s.Orgs
}

// Allows reports whether an event of the source, through the app and
// carrying those stored headers, may route to a team of org. An internal
// trigger's event is bound to no org.
func (r *Registry) Allows(source string, headers map[string]string, org string) bool {
	if source == Slack && headers[TriggerHeader] == "internal" {
		return true
	}
	orgs := r.Get(source).BoundOrgs(headers[AppHeader])
	return orgs == nil || slices.Contains(orgs, org)
}

// Binding says in words which orgs the source's app is bound to, for an
// unrouted event's reason ("" when it is bound to none).
func (r *Registry) Binding(source string, headers map[string]string) string {
	orgs := r.Get(source).BoundOrgs(headers[AppHeader])
	if orgs == nil {
		return ""
	}
	what := "source " + source
	if app := headers[AppHeader]; source == Slack && app != "" {
		what = "Slack app " + app
	}
	return fmt.Sprintf("%s is bound to org%s %s", what, plural(len(orgs)), strings.Join(orgs, ", "))
}

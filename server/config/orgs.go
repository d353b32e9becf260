package config

import (
	"slices"
	"strings"

	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

// sourceOrgs reads built-in sources' org bindings (SPEC §18, round 4):
// comma-separated source=org;org entries, e.g. slack=acme,github=acme;aaa
// (slack is the default Slack app; the sources file binds the others).
func (p *parser) sourceOrgs(name string) map[string][]string {
	v := p.raw(name)
	if v == "" {
		return nil
	}
	out := map[string][]string{}
	for _, entry := range strings.Split(v, ",") {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		source, list, ok := strings.Cut(entry, "=")
		source = strings.TrimSpace(source)
		switch {
		case !ok:
			p.fail(name, "%q is not source=org;org (e.g. slack=acme,github=acme;aaa)", entry)
			return nil
		case !slices.Contains(Sources[:], source):
			p.fail(name, "%q is not a built-in source (%s; bind configured sources and Slack apps with orgs: in the sources file)",
				source, strings.Join(Sources[:], ", "))
			return nil
		case out[source] != nil:
			p.fail(name, "%s is listed twice", source)
			return nil
		}
		orgs := []string{}
		for _, o := range strings.Split(list, ";") {
			if o = strings.TrimSpace(o); o != "" {
				orgs = append(orgs, o)
			}
		}
		if err := webhook.CheckOrgs(orgs); err != nil {
			p.fail(name, "%s: %v", source, err)
			return nil
		}
		out[source] = orgs
	}
	return out
}

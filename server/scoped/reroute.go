package scoped

import (
	"cmp"
	"context"
	"slices"

	"github.com/incidentfox/orchestrator-edge/server/routing"
	"github.com/incidentfox/orchestrator-edge/store"
)

// RerouteLimit is how many unrouted events a bulk redrive's dry run routes
// again, without storing anything, to say where they would now go.
const RerouteLimit = 200

// Reroute is what a bulk redrive would now do with the unrouted events its
// filter names (a redrive routes those again, rules included; the failed,
// dead and suppressed ones keep their team): the newest RerouteLimit of
// them (bodies purged are left out: they are not redriven) decided by the
// routing in force, counted by what would take them.
type Reroute struct {
	// Evaluated is how many were decided; More: the filter names more
	// unrouted events than were.
	Evaluated int  `json:"evaluated"`
	Limit     int  `json:"limit"`
	More      bool `json:"more"`
	// Rules: each rule that would route or ignore some, with how many,
	// the most first.
	Rules []RuleCount `json:"rules"`
	// Identifiers: routed by the identifier lookup (no rule needed).
	Identifiers int `json:"identifiers"`
	// Unrouted: still unrouted (including a route a source bound to orgs
	// refuses); Failed: the lookup failed, so no answer.
	Unrouted int `json:"unrouted"`
	Failed   int `json:"failed"`
}

// RuleCount is how many events a rule would take.
type RuleCount struct {
	Rule string `json:"rule"`
	// Action is route_to, identifiers or ignore.
	Action string `json:"action"`
	Count  int    `json:"count"`
}

// RerouteEvents is what reads the events to decide (store.DB implements it).
type RerouteEvents interface {
	ListEvents(ctx context.Context, f store.EventFilter) ([]store.Event, string, error)
	GetEvent(ctx context.Context, id string) (store.Event, error)
}

// PreviewReroute decides again, storing nothing and calling only the
// routing's read-only lookups, the newest RerouteLimit unrouted events of
// f (already scoped to the admin's org by the caller; its status, limit and
// cursors are replaced). allows is the sources' org binding (nil: every
// route is allowed).
func PreviewReroute(ctx context.Context, events RerouteEvents, f store.EventFilter,
	decide func(context.Context, store.Event) (routing.Result, error),
	allows func(source string, headers map[string]string, org string) bool) (Reroute, error) {
	out := Reroute{Limit: RerouteLimit, Rules: []RuleCount{}}
	f.Status, f.Limit, f.Cursor, f.Before, f.DeliveryID = store.EventUnrouted, RerouteLimit+1, "", "", ""
	list, _, err := events.ListEvents(ctx, f)
	if err != nil {
		return out, err
	}
	if len(list) > RerouteLimit {
		list, out.More = list[:RerouteLimit], true
	}
	counts := map[RuleCount]int{}
	for _, listed := range list {
		if listed.BodyPurgedAt != nil {
			continue
		}
		e, err := events.GetEvent(ctx, listed.ID)
		if err != nil {
			return out, err
		}
		if e.BodyPurgedAt != nil || e.Status != store.EventUnrouted {
			continue // purged or moved on since it was listed
		}
		out.Evaluated++
		res, err := decide(ctx, e)
		switch {
		case ctx.Err() != nil:
			return out, ctx.Err()
		case err != nil:
			out.Failed++
		case res.Status == routing.Unrouted,
			res.Status == routing.Routed && allows != nil && !allows(e.Source, e.Headers, res.OrgID):
			out.Unrouted++
		case res.Rule != "":
			counts[RuleCount{Rule: res.Rule, Action: ruleAction(res)}]++
		default:
			out.Identifiers++
		}
	}
	for rc, n := range counts {
		rc.Count = n
		out.Rules = append(out.Rules, rc)
	}
	slices.SortFunc(out.Rules, func(a, b RuleCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Action, b.Action))
	})
	return out, nil
}

// ruleAction is the action of the rule that decided: its last step that
// acted (a step with a detail was passed over).
func ruleAction(res routing.Result) string {
	if res.Status == routing.Ignored {
		return routing.ActionIgnore
	}
	for i := len(res.Decision.Steps) - 1; i >= 0; i-- {
		if s := res.Decision.Steps[i]; s.Kind == routing.KindRule && s.Rule == res.Rule && s.Detail == "" {
			return s.Action
		}
	}
	return routing.ActionRouteTo
}

package scoped_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/routing"
	"github.com/incidentfox/orchestrator-edge/server/scoped"
	"github.com/incidentfox/orchestrator-edge/store"
)

// fakeEvents holds unrouted events, newest first, and records the filter
// asked.
type fakeEvents struct {
	list  []store.Event
	asked store.EventFilter
	gets  int
}

func (f *fakeEvents) ListEvents(_ context.Context, q store.EventFilter) ([]store.Event, string, error) {
	f.asked = q
	return f.list[:min(q.Limit, len(f.list))], "", nil
}

func (f *fakeEvents) GetEvent(_ context.Context, id string) (store.Event, error) {
	f.gets++
	for _, e := range f.list {
		if e.ID == id {
			e.Body = []byte("{}")
			return e, nil
		}
	}
	return store.Event{}, store.ErrNotFound
}

// TestPreviewReroute_DecidesAtMostTheLimitAndCountsEachOutcome: of 250
// unrouted events only the newest 200 are decided (more is said), a purged
// body is left out, the filter's status is unrouted whatever was asked
// (its org kept), and every outcome is counted where it belongs: a rule's
// route or ignore, the identifiers, still unrouted, a route the source's
// org binding refuses, a failed lookup.
func TestPreviewReroute_DecidesAtMostTheLimitAndCountsEachOutcome(t *testing.T) {
	f := &fakeEvents{}
	purged := time.Now()
	for i := range 250 {
		e := store.Event{ID: fmt.Sprint(i), Source: "alertmanager", Status: store.EventUnrouted}
		if i == 3 {
			e.BodyPurgedAt = &purged
		}
		f.list = append(f.list, e)
	}
	decide := func(_ context.Context, e store.Event) (routing.Result, error) {
		var n int
		fmt.Sscan(e.ID, &n)
		switch n % 6 {
		case 0:
			r := routing.Result{Status: routing.Routed, OrgID: "acme", TeamNodeID: "t", Rule: "by-app"}
			r.Decision.Add(routing.Step{Kind: routing.KindRule, Rule: "by-app", Action: routing.ActionIdentifiers, OrgID: "acme"})
			return r, nil
		case 1:
			return routing.Result{Status: routing.Ignored, Rule: "drop-info"}, nil
		case 2:
			return routing.Result{Status: routing.Routed, OrgID: "acme", TeamNodeID: "t"}, nil
		case 3:
			return routing.Result{Status: routing.Unrouted}, nil
		case 4:
			return routing.Result{Status: routing.Routed, OrgID: "globex", TeamNodeID: "t", Rule: "fallback"}, nil
		}
		return routing.Result{}, errors.New("config service down")
	}
	allows := func(_ string, _ map[string]string, org string) bool { return org != "globex" }
	got, err := scoped.PreviewReroute(context.Background(), f, store.EventFilter{Status: "failed", OrgID: "acme", Cursor: "c"}, decide, allows)
	if err != nil {
		t.Fatal(err)
	}
	if f.asked.Status != store.EventUnrouted || f.asked.OrgID != "acme" || f.asked.Cursor != "" || f.asked.Limit != scoped.RerouteLimit+1 {
		t.Fatalf("asked %+v", f.asked)
	}
	// 0..199 less the purged 3: 34 each of residues 0 and 1 (mod 6), 33
	// each of 2..5, but 32 unrouted by the rules (3 was purged) beside the
	// 33 the binding refuses.
	want := scoped.Reroute{Evaluated: 199, Limit: 200, More: true, Identifiers: 33, Unrouted: 32 + 33, Failed: 33,
		Rules: []scoped.RuleCount{{Rule: "by-app", Action: "identifiers", Count: 34}, {Rule: "drop-info", Action: "ignore", Count: 34}}}
	if fmt.Sprint(got) != fmt.Sprint(want) || f.gets != 199 {
		t.Fatalf("got %+v (%d reads), want %+v", got, f.gets, want)
	}
}

package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/store"
)

// TestSilences_AtMostAThousandPerOrg (SPEC §18, round 4): an org's 1,001st
// silence that has not ended is refused with 409 too_many_silences, its
// detail saying what to do; another org still sets its own.
func TestSilences_AtMostAThousandPerOrg(t *testing.T) {
	e := twoOrgs(t, envOptions{webhooks: true})
	now := time.Now().UTC()
	for i := range store.MaxActiveSilences {
		if _, err := e.db.CreateSilence(context.Background(), store.Silence{OrgID: "acme", StartsAt: now, EndsAt: now.Add(time.Hour),
			Comment: fmt.Sprint("window ", i), CreatedBy: "alice", CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	ask := map[string]any{"org_id": "acme", "ends_at": now.Add(2 * time.Hour).Format(time.RFC3339), "comment": "one more"}
	r := e.do("POST", "/api/v1/admin/silences", orgToken, ask)
	if r.code != 409 || r.body["error"] != "too_many_silences" || r.body["detail"] != "org acme has 1000 silences that have not ended, the most an org may have: expire some first" {
		t.Fatalf("the 1001st = %d %s", r.code, r.raw)
	}
	ask["org_id"] = "big"
	if r := e.do("POST", "/api/v1/admin/silences", bigToken, ask); r.code != 201 {
		t.Fatalf("another org's = %d %s", r.code, r.raw)
	}
}

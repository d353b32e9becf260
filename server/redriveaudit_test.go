package server_test

import (
	"fmt"
	"testing"

	"github.com/incidentfox/orchestrator-edge/store"
)

// TestAudit_AnOrgsAdminSeesEveryBulkRedriveThatTouchedItsEvents (SPEC §18,
// round 4): an admin of every org redrives, in one bulk redrive, events of
// acme and of big. Each org's admin finds it in its audit — who ran it and
// how many of its own events it queued again, nothing of the other org's —
// and the admin of every org finds the whole. Another org's admin cannot
// ask for acme's audit, nor can an admin without admin:audit:read or a
// caller without a token. Both databases.
func TestAudit_AnOrgsAdminSeesEveryBulkRedriveThatTouchedItsEvents(t *testing.T) {
	onBothDatabases(t, envOptions{webhooks: true, fakeClock: true, callsPerDay: 1}, func(t *testing.T, e *env) {
		for _, svc := range []string{"checkout", "billing"} {
			e.waitStatus(e.sendAM(t, amGroup(svc+"-0", "firing", svc, svc+"0")), store.EventDelivered)
		}
		kept := map[string]int{"checkout": 2, "billing": 1}
		for svc, n := range kept {
			for i := range n {
				e.waitStatus(e.sendAM(t, amGroup(fmt.Sprint(svc, "-", i+1), "firing", svc, fmt.Sprint(svc, i+1))), store.EventSuppressed)
			}
		}
		r := e.do("POST", "/api/v1/admin/events/redrive", adminToken, map[string]any{"suppressed_reason": "budget"})
		if r.code != 200 || r.body["redriven"] != float64(3) {
			t.Fatalf("redrive = %d %s", r.code, r.raw)
		}
		redrives := func(token string) []map[string]any {
			t.Helper()
			r := e.do("GET", "/api/v1/admin/audit", token, nil)
			if r.code != 200 {
				t.Fatalf("audit = %d %s", r.code, r.raw)
			}
			var out []map[string]any
			for _, a := range r.body["audit"].([]any) {
				if a := a.(map[string]any); a["action"] == "events.redrive" {
					out = append(out, a)
				}
			}
			return out
		}
		for token, want := range map[string]struct {
			org      string
			redriven float64
		}{orgToken: {"acme", 2}, bigToken: {"big", 1}} {
			got := redrives(token)
			if len(got) != 1 || got[0]["org_id"] != want.org || got[0]["actor"] != "alice" {
				t.Fatalf("%s's audit = %v", want.org, got)
			}
			d := got[0]["detail"].(map[string]any)
			if d["redriven"] != want.redriven || d["matched"] != nil || d["redrive_audit_id"] == "" {
				t.Fatalf("%s's record = %v", want.org, d)
			}
		}
		// The admin of every org: the whole, and each org's part.
		if all := redrives(adminToken); len(all) != 3 {
			t.Fatalf("every org's audit = %v", all)
		}
		// Outsiders.
		if r := e.do("GET", "/api/v1/admin/audit?org_id=acme", bigToken, nil); r.code != 403 {
			t.Fatalf("another org's admin asking for acme's audit = %d %s", r.code, r.raw)
		}
		if r := e.do("GET", "/api/v1/admin/audit", scopedToken, nil); r.code != 403 {
			t.Fatalf("without admin:audit:read = %d %s", r.code, r.raw)
		}
		if r := e.do("GET", "/api/v1/admin/audit", "", nil); r.code != 401 {
			t.Fatalf("without a token = %d %s", r.code, r.raw)
		}
	})
}

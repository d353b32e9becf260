package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
)

// planEvents is how many events the query-plan test stores (a million: a
// busy appliance's 30 days); STORE_PLAN_EVENTS changes it.
func planEvents() int {
	if n, err := strconv.Atoi(os.Getenv("STORE_PLAN_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

// fillPlanEvents stores n events spread over 30 days before end, in one
// statement both databases run: mostly delivered Slack mentions, some
// ignored, dead, unrouted, failed and queued, routed to 40 teams of 4 orgs;
// the last 7 days keep their payloads.
func fillPlanEvents(t testing.TB, db *DB, n int, end time.Time) {
	t.Helper()
	fillPlanRows(t, db, n, end, nil)
	if _, err := db.write.ExecContext(context.Background(), `INSERT INTO orchestrator_event_payloads (event_id, payload)
		SELECT id, ? FROM orchestrator_webhook_events WHERE received_at >= ? ORDER BY id`,
		encodePayload(slackHeaders, slackBody), ms(end.Add(-7*24*time.Hour))); err != nil {
		t.Fatal(err)
	}
}

// fillPlanRows stores fillPlanEvents' events without their payloads: those
// of the last 7 days are not marked purged. With v10Payload, the schema is
// migration 10's, and those events carry it in their rows.
func fillPlanRows(t testing.TB, db *DB, n int, end time.Time, v10Payload []byte) {
	t.Helper()
	ctx := context.Background()
	step := int64(30*24*time.Hour/time.Millisecond) / int64(n)
	start := ms(end) - step*int64(n)
	cutoff := ms(end.Add(-7 * 24 * time.Hour))
	col, val, args := "", "", []any{}
	if v10Payload != nil {
		col, val = ", payload", `, CASE WHEN CAST(? AS BIGINT) + i * CAST(? AS BIGINT) >= CAST(? AS BIGINT) THEN CAST(? AS BYTEA) ELSE NULL END`
		args = []any{start, step, cutoff, v10Payload}
	}
	_, err := db.write.ExecContext(ctx, `WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?)
		INSERT INTO orchestrator_webhook_events (source, delivery_id, event_type, status, routing_identifiers, org_id,
			team_node_id, matched_by, attempts, next_attempt_at, received_at, updated_at, finished_at, body_purged_at`+col+`)
		SELECT CASE WHEN i % 20 < 12 THEN 'slack' WHEN i % 20 < 14 THEN 'github' WHEN i % 20 < 17 THEN 'pagerduty'
		            WHEN i % 20 < 19 THEN 'incidentio' ELSE 'coralogix' END,
		       'plan-' || i, 'app_mention',
		       CASE WHEN i % 100 < 85 THEN 'delivered' WHEN i % 100 < 93 THEN 'ignored' WHEN i % 100 < 96 THEN 'dead'
		            WHEN i % 100 < 98 THEN 'unrouted' WHEN i % 100 < 99 THEN 'failed' ELSE 'queued' END,
		       '{"slack_channel_id":"C0A4967KRBM"}',
		       CASE WHEN i % 100 IN (96, 97) OR (i % 100 = 99 AND i % 200 = 199) THEN NULL ELSE 'org' || (i % 4) END,
		       CASE WHEN i % 100 IN (96, 97) OR (i % 100 = 99 AND i % 200 = 199) THEN NULL ELSE 'team' || (i % 40) END,
		       'slack_channel_id', 1, CAST(? AS BIGINT) + i * CAST(? AS BIGINT), CAST(? AS BIGINT) + i * CAST(? AS BIGINT),
		       CAST(? AS BIGINT) + i * CAST(? AS BIGINT),
		       CASE WHEN i % 100 = 99 THEN NULL ELSE CAST(? AS BIGINT) + i * CAST(? AS BIGINT) + 2000 END,
		       CASE WHEN CAST(? AS BIGINT) + i * CAST(? AS BIGINT) >= CAST(? AS BIGINT) THEN NULL ELSE CAST(? AS BIGINT) + i * CAST(? AS BIGINT) END`+val+`
		FROM seq`, append([]any{n, start, step, start, step, start, step, start, step, start, step, cutoff, start, step}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
}

// Every query the API, the page, the dispatcher and retention make of the
// events table uses an index with a million events stored (issue 27): the
// statements each store method runs are recorded, then read back with
// EXPLAIN on SQLite (without ANALYZE, as the appliance runs it) and on a
// real PostgreSQL (analyzed, as autovacuum leaves it). A plan that reads
// the whole events table fails the test.
func TestPlans_EveryEventsQueryUsesAnIndexAtAMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a million events")
	}
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			o := Options{Path: filepath.Join(t.TempDir(), "plans.db")}
			if name == "postgres" {
				o = Options{URL: pgtest.Database(t)}
			}
			db := openMigrated(t, o)
			ctx := context.Background()
			end := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
			n := planEvents()
			began := time.Now()
			fillPlanEvents(t, db, n, end)
			if db.Shared() {
				if _, err := db.write.ExecContext(ctx, `ANALYZE`); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("%d events stored in %s", n, time.Since(began).Round(time.Millisecond))

			var mu sync.Mutex
			seen := map[string][]any{}
			traceQuery = func(q string, args []any) {
				if strings.Contains(q, "orchestrator_webhook_events") || strings.Contains(q, "orchestrator_event_payloads") {
					mu.Lock()
					seen[q] = args
					mu.Unlock()
				}
			}
			defer func() { traceQuery = nil }()
			// What the API, the page, the dispatcher and retention ask.
			day := 24 * time.Hour
			var calls []error
			call := func(err error) { calls = append(calls, err) }
			for _, f := range []EventFilter{{}, {Source: "github"}, {Status: "dead"}, {Status: "delivered"}, {Status: "ignored"},
				{OrgID: "org1"}, {OrgID: "org1", TeamNodeID: "team1"}, {OrgID: "org1", TeamNodeID: "team1", Status: "failed"},
				{Source: "pagerduty", DeliveryID: "plan-15"}, {Since: end.Add(-day), Until: end}, {Source: "coralogix", Since: end.Add(-7 * day)},
				{Status: "suppressed"}, {SuppressedReason: "repeat"}, {OrgID: "org1", SuppressedReason: "budget"}} {
				f.Limit = 50
				evs, next, err := db.ListEvents(ctx, f)
				call(err)
				if next != "" {
					f.Cursor = next
					_, _, err = db.ListEvents(ctx, f)
					call(err)
					f.Cursor, f.Before = "", next
					_, _, err = db.ListEvents(ctx, f)
					call(err)
				}
				if len(evs) > 0 {
					_, err = db.GetEvent(ctx, evs[0].ID)
					call(err)
					_, err = db.EventAgentRuns(ctx, evs[0].ID)
					call(err)
				}
			}
			_, err := db.GetEvent(ctx, "0b7e5a52-3f3e-4f4f-9d55-6a8d1a1e2f00") // a UUID of before migration 7
			call(nilIfNotFound(err))
			_, err = db.Redrive(ctx, "100", end)
			call(nilIfConflict(err))
			_, err = db.QueueDepth(ctx, "")
			call(err)
			_, err = db.QueueDepth(ctx, "org1")
			call(err)
			_, err = db.CountEventsSince(ctx, end.Add(-time.Hour), "")
			call(err)
			_, err = db.CountEventsSince(ctx, end.Add(-time.Hour), "org2")
			call(err)
			_, err = db.CountReceived(ctx, end.Add(-day), end)
			call(err)
			_, err = db.EventsPerSlot(ctx, Window{Since: end.Add(-day), Until: end, Slots: 24}, "")
			call(err)
			_, err = db.EventStatuses(ctx, end.Add(-day), end, "org3")
			call(err)
			_, err = db.AgentLatency(ctx, end.Add(-day), end, "")
			call(err)
			_, err = db.Teams(ctx, "")
			call(err)
			_, err = db.Teams(ctx, "org1")
			call(err)
			todo, err := db.EventsToRoute(ctx, end, 100)
			call(err)
			teams, err := db.TeamsDue(ctx, end)
			call(err)
			if len(todo) == 0 || len(teams) == 0 {
				t.Fatalf("the fill left %d events to route and %d teams due", len(todo), len(teams))
			}
			claimed, err := db.ClaimTeamEvents(ctx, end, end.Add(time.Minute), teams[0], Kind{People: true}, 10)
			call(err)
			_, err = db.ClaimTeamEvents(ctx, end, end.Add(time.Minute), teams[0], Kind{Sources: []string{"pagerduty"}}, 10)
			call(err)
			_, err = db.RequeueExpired(ctx, end.Add(time.Hour))
			call(err)
			_, err = db.RequeueDispatching(ctx, end)
			call(err)
			_, err = db.PurgeBodies(ctx, end.Add(-7*day), end, 100)
			call(err)
			_, err = db.PurgeFinishedEvents(ctx, end.Add(-30*day+day), 100)
			call(err)
			// Noise control: an alert's history, a resolve's settling (in
			// the group commit), the calls saved, the bulk redrive.
			_, err = db.AlertHistoryOf(ctx, AlertRef{OrgID: "org1", TeamNodeID: "team1", Source: "pagerduty", Key: "INC-1"}, 1<<40)
			call(err)
			_, err = db.InsertEvent(ctx, Event{Source: "pagerduty", DeliveryID: "plan-resolve", EventType: "incident.resolved", Status: EventQueued,
				OrgID: "org1", TeamNodeID: "team1", ReceivedAt: end, AlertKey: "INC-1", AlertState: AlertStateResolved})
			call(err)
			_, err = db.SuppressedSince(ctx, "", end.Add(-day))
			call(err)
			_, err = db.SuppressedSince(ctx, "org1", end.Add(-day))
			call(err)
			// Release at the end (SPEC §21): what holds events, a hold's events.
			_, err = db.Holds(ctx)
			call(err)
			_, err = db.ReleaseHold(ctx, Hold{Reason: SuppressedSilence, By: "s1"}, ReleasedSilenceEnded, end)
			call(err)
			_, err = db.RedriveMatching(ctx, EventFilter{Status: "dead"}, true, end)
			call(err)
			_, err = db.RedriveMatching(ctx, EventFilter{SuppressedReason: "silence", OrgID: "org1", Since: end.Add(-day)}, true, end)
			call(err)
			_, err = db.RedriveMatching(ctx, EventFilter{Status: "dead", OrgID: "org1", TeamNodeID: "team1", Source: "github"}, false, end)
			call(err)
			for _, err := range calls {
				if err != nil {
					t.Fatal(err)
				}
			}
			traceQuery = nil
			if len(claimed) == 0 {
				t.Log("no Slack event was due for the first team")
			}
			// Statements run through prepared handles, not the trace.
			seen[db.d.bind(findEventSQL)] = []any{"slack", "plan-1"}
			seen[db.d.bind(findReplaySQL)] = []any{slackBody}
			alert := []any{"org1", "team1", "pagerduty", "INC-1"}
			seen[db.d.bind(settleFiringsSQL)] = append([]any{"suppressed", "resolved", "9", 1, 1}, append(alert, 1<<40, "queued", "firing", false)...)
			seen[db.d.bind(alertHandedSQL)] = append(append(alert, 1<<40), append(alert, 1<<40)...)
			seen[db.d.bind(nextResolveSQL)] = append(alert, 1)
			seen[db.d.bind(settleResolveSQL)] = []any{"suppressed", "resolved", "9", 1, 1, 5, "queued"}
			seen[db.d.bind(`UPDATE orchestrator_webhook_events SET status = ? WHERE id = ? AND status = ?`)] = []any{"queued", 5, "dispatching"}

			wholeTable := regexp.MustCompile(`^SCAN (orchestrator_webhook_events|orchestrator_event_payloads|e|n|p)$`)
			for q, args := range seen {
				var plan []string
				if db.Shared() {
					rows, err := db.read.QueryContext(ctx, `EXPLAIN `+q, args...)
					if err != nil {
						t.Fatalf("EXPLAIN %s: %v", q, err)
					}
					plan, err = collect(rows, func(r rowScanner) (string, error) {
						var s string
						return s, r.Scan(&s)
					})
					if err != nil {
						t.Fatal(err)
					}
					for _, line := range plan {
						if strings.Contains(line, "Seq Scan on orchestrator_webhook_events") || strings.Contains(line, "Seq Scan on orchestrator_event_payloads") {
							t.Errorf("reads the whole events table:\n%s\n%s", oneLine(q), strings.Join(plan, "\n"))
						}
					}
				} else {
					rows, err := db.read.QueryContext(ctx, `EXPLAIN QUERY PLAN `+q, args...)
					if err != nil {
						t.Fatalf("EXPLAIN %s: %v", q, err)
					}
					plan, err = collect(rows, func(r rowScanner) (string, error) {
						var id, parent, unused int
						var s string
						return s, r.Scan(&id, &parent, &unused, &s)
					})
					if err != nil {
						t.Fatal(err)
					}
					for _, line := range plan {
						if wholeTable.MatchString(line) {
							t.Errorf("reads the whole events table:\n%s\n%s", oneLine(q), strings.Join(plan, "\n"))
						}
					}
				}
				if testing.Verbose() {
					t.Logf("%s\n    %s", oneLine(q), strings.Join(plan, "\n    "))
				}
			}
			t.Logf("%d statements over the events table, each reading an index", len(seen))
		})
	}
}

func oneLine(q string) string { return strings.Join(strings.Fields(q), " ") }

func nilIfNotFound(err error) error {
	if err != nil && strings.Contains(err.Error(), "not found") {
		return nil
	}
	return err
}

func nilIfConflict(err error) error {
	if err != nil && (strings.Contains(err.Error(), "only unrouted") || strings.Contains(err.Error(), "purged")) {
		return nil
	}
	return fmt.Errorf("redrive of a delivered event: %v", err)
}

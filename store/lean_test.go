package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
	"github.com/incidentfox/orchestrator-edge/migrations"
)

// openAt opens a database migrated only up to version v (the schema an
// older release left).
func openAt(t testing.TB, o Options, v int64) *DB {
	t.Helper()
	o.Migrations = migrations.FS
	db, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.goose.UpTo(context.Background(), v); err != nil {
		t.Fatal(err)
	}
	return db
}

// v6Insert writes an event as schema 6 stored it.
const v6Insert = `INSERT INTO orchestrator_webhook_events (id, source, delivery_id, event_type, status, routing_identifiers,
	org_id, team_node_id, matched_by, attempts, next_attempt_at, last_error, headers, body, body_sha256, body_purged_at,
	received_at, updated_at, finished_at, digest_run_id, digest_size, solo)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// Migration 7 on a database an older release filled: every event keeps
// what it had and opens by the UUID the API handed out; a purged one stays
// purged; a queued one is still dispatched, and its outcome recorded, by
// that id; an agent call still names its event; new events get integer
// ids after every old one and list in received order with them. On both
// databases.
func TestMigration7_KeepsEveryEventAndItsID(t *testing.T) {
	conformAt := func(name string) Options {
		if name == "postgres" {
			return Options{URL: pgtest.Database(t)}
		}
		return Options{Path: filepath.Join(t.TempDir(), "old.db")}
	}
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			o := conformAt(name)
			old := openAt(t, o, 6)
			ctx := context.Background()
			body := []byte(`{"event":{"id":"01ABC","event_type":"incident.triggered"}}`)
			sum := sha256.Sum256(body)
			hexSum := hex.EncodeToString(sum[:])
			run := uuid.NewString()
			ids := map[string]string{"delivered": uuid.NewString(), "purged": uuid.NewString(), "queued": uuid.NewString(), "digest": uuid.NewString()}
			rows := [][]any{
				{ids["delivered"], "pagerduty", "d1", "incident.triggered", EventDelivered, `{"pagerduty_service_id":"PF9KMXH"}`, "acme", "sre",
					"pagerduty_service_id", 1, formatTime(t0), nil, `{"content-type":"application/json","user-agent":"PagerDuty-Webhook/V3.0"}`,
					body, hexSum, nil, formatTime(t0), formatTime(t0.Add(time.Second)), formatTime(t0.Add(time.Second)), nil, nil, false},
				{ids["purged"], "slack", "Ev1", "app_mention", EventDead, nil, nil, nil, nil, 6, formatTime(t0), "boom\nsecond line",
					`{"accept":"*/*"}`, nil, hexSum, formatTime(t0.Add(time.Hour)), formatTime(t0.Add(-time.Minute)), formatTime(t0), formatTime(t0), nil, nil, true},
				{ids["queued"], "github", "g1", "issues", EventQueued, `{"github_repo":"acme/payments"}`, "acme", "sre", "github_repo", 2,
					formatTime(t0.Add(time.Minute)), "503", `{}`, body, hexSum, nil, formatTime(t0.Add(time.Second)), formatTime(t0), nil, nil, nil, false},
				{ids["digest"], "coralogix", "c1", "alert", EventDelivered, nil, "acme", "sre", "coralogix_team_name", 1, formatTime(t0), nil,
					nil, []byte{0xff, 0x00, 0x01}, nil, nil, formatTime(t0.Add(2 * time.Second)), formatTime(t0), formatTime(t0), run, 3, false},
			}
			for _, r := range rows {
				if _, err := old.write.ExecContext(ctx, v6Insert, r...); err != nil {
					t.Fatal(err)
				}
			}
			// The agent run as schema 6 kept it.
			if _, err := old.write.ExecContext(ctx, `INSERT INTO orchestrator_agent_runs (id, trigger_source, webhook_event_id, org_id,
				team_node_id, agent_name, status, duration_ms, started_at, finished_at, event_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				run, "coralogix", ids["delivered"], "acme", "sre", "investigation", RunSucceeded, 0, formatTime(t0.Add(time.Minute)),
				formatTime(t0.Add(time.Minute)), 1); err != nil {
				t.Fatal(err)
			}
			if _, err := old.Migrate(ctx); err != nil {
				t.Fatal(err)
			}

			d, err := old.GetEvent(ctx, ids["delivered"])
			if err != nil || d.ID != ids["delivered"] || string(d.Body) != string(body) || d.BodySHA256 != hexSum ||
				d.Headers["user-agent"] != "PagerDuty-Webhook/V3.0" || d.Identifiers["pagerduty_service_id"] != "PF9KMXH" ||
				!d.ReceivedAt.Equal(t0) || d.FinishedAt == nil || !d.FinishedAt.Equal(t0.Add(time.Second)) || d.Status != EventDelivered {
				t.Fatalf("delivered event after migration 7: %+v %v", d, err)
			}
			p, err := old.GetEvent(ctx, ids["purged"])
			if err != nil || p.Body != nil || p.Headers != nil || p.BodyPurgedAt == nil || p.LastError != "boom\nsecond line" ||
				!p.Solo || p.Attempts != 6 || p.OrgID != "" {
				t.Fatalf("purged event after migration 7: %+v %v", p, err)
			}
			g, err := old.GetEvent(ctx, ids["digest"])
			if err != nil || string(g.Body) != "\xff\x00\x01" || g.DigestRunID != run || g.DigestSize != 3 {
				t.Fatalf("digest event after migration 7: %+v %v", g, err)
			}
			calls, err := old.EventAgentRuns(ctx, ids["delivered"])
			if err != nil || len(calls) != 1 || calls[0].ID != run {
				t.Fatalf("agent calls of the delivered event: %+v %v", calls, err)
			}
			// The queued one is dispatched by its old id.
			claimed, err := old.ClaimTeamEvents(ctx, t0.Add(time.Hour), t0.Add(2*time.Hour), TeamKey{OrgID: "acme", TeamNodeID: "sre"},
				Kind{Sources: []string{"github"}}, 10)
			if err != nil || len(claimed) != 1 || claimed[0].ID != ids["queued"] {
				t.Fatalf("claim after migration 7: %+v %v", claimed, err)
			}
			if err := old.RecordOutcomes(ctx, []Outcome{{ID: claimed[0].ID, Status: EventDelivered, Attempts: 3, At: t0.Add(time.Hour)}}, nil, nil); err != nil {
				t.Fatal(err)
			}
			if q, _ := old.GetEvent(ctx, ids["queued"]); q.Status != EventDelivered || q.Attempts != 3 {
				t.Fatalf("outcome by the old id: %+v", q)
			}
			// A redelivery of an old event is still a duplicate, named by
			// its old id; a new event gets a new id, listed after them.
			dup, err := old.InsertEvent(ctx, newEvent("pagerduty", "d1", t0.Add(time.Hour)))
			if err != nil || !dup.Duplicate || dup.ID != ids["delivered"] {
				t.Fatalf("redelivery after migration 7: %+v %v", dup, err)
			}
			fresh, err := old.InsertEvent(ctx, newEvent("slack", "new-1", t0.Add(time.Hour)))
			if err != nil || fresh.Duplicate {
				t.Fatal(fresh, err)
			}
			if k, err := strconv.ParseInt(fresh.ID, 10, 64); err != nil || k <= 4 {
				t.Fatalf("new event id %q: want an integer after the 4 migrated rows", fresh.ID)
			}
			list, _, err := old.ListEvents(ctx, EventFilter{Limit: 10})
			if err != nil || len(list) != 5 || list[0].ID != fresh.ID || list[4].ID != ids["purged"] {
				t.Fatalf("list after migration 7: %v %v", list, err)
			}
		})
	}
}

// BenchmarkMigration7 times migration 7 (and, on SQLite, the conversion to
// incremental auto-vacuum that follows it) on BENCH_MIGRATE_EVENTS
// (1,000,000) events an older release stored, and the bytes per event
// before and after: on SQLite the pages in use of the whole file, on
// PostgreSQL the events table with its indexes and TOAST.
func BenchmarkMigration7(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_MIGRATE_EVENTS")); err == nil && v > 0 {
		n = v
	}
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				o := Options{Path: filepath.Join(b.TempDir(), "old.db")}
				if name == "postgres" {
					o = Options{URL: pgtest.Database(b)}
				}
				db := openAt(b, o, 6)
				fillV6(b, db, n)
				before := db.eventBytes(b)
				start := time.Now()
				if _, err := db.Migrate(context.Background()); err != nil {
					b.Fatal(err)
				}
				took := time.Since(start)
				after := db.eventBytes(b)
				fmt.Printf("migration 7 on %s: %d events in %s; %.0f bytes per event before, %.0f after\n",
					name, n, took.Round(100*time.Millisecond), float64(before)/float64(n), float64(after)/float64(n))
			}
		})
	}
}

// eventBytes is what the events cost: SQLite's pages in use, PostgreSQL's
// events table and payload table (from migration 13) with their indexes
// and TOAST, after a VACUUM (not FULL: what autovacuum leaves).
func (db *DB) eventBytes(b testing.TB) int64 {
	ctx := context.Background()
	if db.Shared() {
		if _, err := db.write.ExecContext(ctx, `VACUUM ANALYZE`); err != nil {
			b.Fatal(err)
		}
		var n int64
		if err := db.read.QueryRowContext(ctx, `SELECT pg_total_relation_size('orchestrator_webhook_events') +
			COALESCE(pg_total_relation_size(to_regclass('orchestrator_event_payloads')), 0)`).Scan(&n); err != nil {
			b.Fatal(err)
		}
		return n
	}
	n, err := db.UsedBytes(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// fillV6 stores n events as schema 6 did (text UUIDs and times, JSON
// headers, raw bodies), spread over 30 days, the last 7 with bodies.
func fillV6(b testing.TB, db *DB, n int) {
	b.Helper()
	ctx := context.Background()
	id, at, blob := `printf('%08x-0000-4000-8000-%012x', i, i)`, `strftime('%Y-%m-%dT%H:%M:%fZ', 1764000000 + i * 2.592, 'unixepoch')`, `?`
	if db.Shared() {
		id, at, blob = `CAST(lpad(to_hex(i), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(i), 12, '0') AS UUID)`,
			`to_timestamp(1764000000 + i * 2.592) AT TIME ZONE 'UTC'`, `CAST(? AS BYTEA)`
	}
	headers := `{"accept":"*/*","accept-encoding":"gzip,deflate","content-type":"application/json","user-agent":"Slackbot 1.0 (+https://api.slack.com/robots)","x-slack-request-timestamp":"1764115200"}`
	if _, err := db.write.ExecContext(ctx, `WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?)
		INSERT INTO orchestrator_webhook_events (id, source, delivery_id, event_type, status, routing_identifiers, org_id,
			team_node_id, matched_by, attempts, next_attempt_at, headers, body, body_sha256, received_at, updated_at, finished_at)
		SELECT `+id+`, 'slack', 'Ev' || i, 'app_mention', 'delivered', '{"slack_channel_id":"C0A4967KRBM"}', 'acme', 'sre',
			'slack_channel_id', 1, `+at+`, ?, CASE WHEN i > ? THEN `+blob+` ELSE NULL END, ?, `+at+`, `+at+`, `+at+`
		FROM seq`, n, headers, n*23/30, slackBody, hex.EncodeToString(slackBody[:32])); err != nil {
		b.Fatal(err)
	}
}

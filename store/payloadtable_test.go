package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
)

// v10Insert writes an event as schema 10 stored it: the payload in the
// event's row.
const v10Insert = `INSERT INTO orchestrator_webhook_events (source, delivery_id, event_type, status, org_id, team_node_id,
	matched_by, next_attempt_at, payload, body_sha256, body_purged_at, received_at, updated_at, finished_at)
	VALUES (?, ?, 'x', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// Migration 13 on a database migration 10 left (11 and 12 applied on the way): every payload moves to its
// own table, byte for byte, and is read back with its event (the page, a
// claim); a purged event stays purged and one that never had a payload has
// none; the events table no longer has the column; SQLite's file is
// compacted by the same upgrade. Down puts every payload back into its
// row, and up again moves them once more. On both databases.
func TestMigration13_PayloadsMoveToTheirOwnTableAndBack(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			o := Options{Path: filepath.Join(t.TempDir(), "v10.db")}
			if name == "postgres" {
				o = Options{URL: pgtest.Database(t)}
			}
			db := openAt(t, o, 10)
			ctx := context.Background()
			at := ms(t0)
			sum := sha256.Sum256(slackBody)
			withBody := encodePayload(slackHeaders, slackBody)
			queued := encodePayload(map[string]string{"content-type": "application/json"}, []byte(`{"queued":true}`))
			rows := map[string][]any{
				"delivered": {"slack", "delivered", EventDelivered, "acme", "sre", "slack_channel_id", nil, withBody, sum[:], nil, at, at, at},
				"purged":    {"slack", "purged", EventDead, nil, nil, nil, nil, nil, sum[:], at + 1000, at, at, at},
				"queued":    {"github", "queued", EventQueued, "acme", "sre", "github_repo", at, queued, nil, nil, at, at, nil},
				"none":      {"pagerduty", "none", EventIgnored, nil, nil, nil, nil, nil, nil, nil, at, at, at},
			}
			for _, r := range rows {
				if _, err := db.write.ExecContext(ctx, v10Insert, r...); err != nil {
					t.Fatal(err)
				}
			}
			// Enough bodies that their room in the events table shows: the
			// upgrade must leave none of it behind.
			for i := range 2000 {
				body := fmt.Appendf(nil, `{"filler":%d,"text":"%x"}`, i, sha256.Sum256(fmt.Append(nil, i)))
				if _, err := db.write.ExecContext(ctx, v10Insert, "slack", fmt.Sprint("filler-", i), EventDelivered, nil, nil, nil, nil,
					encodePayload(slackHeaders, bytes.Repeat(body, 4)), nil, nil, at, at, at); err != nil {
					t.Fatal(err)
				}
			}
			keyOf := func(delivery string) int64 {
				t.Helper()
				var k int64
				if err := db.read.QueryRowContext(ctx, `SELECT id FROM orchestrator_webhook_events WHERE delivery_id = ?`, delivery).Scan(&k); err != nil {
					t.Fatal(err)
				}
				return k
			}
			ids := map[string]string{}
			for d := range rows {
				ids[d] = fmt.Sprint(keyOf(d))
			}

			if _, err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			d, err := db.GetEvent(ctx, ids["delivered"])
			if err != nil || string(d.Body) != string(slackBody) || d.Headers["user-agent"] != slackHeaders["user-agent"] || d.BodyPurgedAt != nil {
				t.Fatalf("delivered event after migration 13: %+v %v", d, err)
			}
			p, err := db.GetEvent(ctx, ids["purged"])
			if err != nil || p.Body != nil || p.Headers != nil || p.BodyPurgedAt == nil || !p.BodyPurgedAt.Equal(t0.Add(time.Second)) {
				t.Fatalf("purged event after migration 13: %+v %v", p, err)
			}
			n, err := db.GetEvent(ctx, ids["none"])
			if err != nil || n.Body != nil || n.BodyPurgedAt != nil || n.PayloadError != "" {
				t.Fatalf("event without a payload after migration 13: %+v %v", n, err)
			}
			claimed, err := db.ClaimTeamEvents(ctx, t0.Add(time.Minute), t0.Add(time.Hour), TeamKey{OrgID: "acme", TeamNodeID: "sre"},
				Kind{Sources: []string{"github"}}, 10)
			if err != nil || len(claimed) != 1 || claimed[0].ID != ids["queued"] || string(claimed[0].Body) != `{"queued":true}` {
				t.Fatalf("claim after migration 13: %+v %v", claimed, err)
			}
			stored := func(table, keyCol, key string) []byte {
				t.Helper()
				var b []byte
				if err := db.read.QueryRowContext(ctx, `SELECT payload FROM `+table+` WHERE `+keyCol+` = ?`, key).Scan(&b); err != nil {
					t.Fatalf("%s %s: %v", table, key, err)
				}
				return b
			}
			if got := stored("orchestrator_event_payloads", "event_id", ids["delivered"]); !bytes.Equal(got, withBody) {
				t.Fatalf("moved payload = %x, was %x", got, withBody)
			}
			if c := count(t, db, `SELECT COUNT(*) FROM orchestrator_event_payloads`); c != 2002 {
				t.Fatalf("%d payload rows, want 2002 (2 events and the fillers)", c)
			}
			if _, err := db.read.QueryContext(ctx, `SELECT payload FROM orchestrator_webhook_events`); err == nil {
				t.Fatal("the events table still has its payload column")
			}
			if got := eventIndexes(t, db); !got["ix_webhook_events_unpurged"] || got["ix_webhook_events_payload"] {
				t.Fatalf("indexes after migration 13: %v", got)
			}
			if !db.Shared() {
				// Compacted: the pages in use are what a snapshot writes.
				used, err := db.UsedBytes(ctx)
				if err != nil {
					t.Fatal(err)
				}
				snap, err := db.Snapshot(ctx, filepath.Join(t.TempDir(), "s.db"))
				if err != nil {
					t.Fatal(err)
				}
				if used != snap.Size {
					t.Fatalf("after the upgrade the file has %d bytes of pages in use, a compacted copy %d", used, snap.Size)
				}
			}

			if _, err := db.goose.DownTo(ctx, payloadTableVersion-1); err != nil {
				t.Fatal(err)
			}
			if got := stored("orchestrator_webhook_events", "id", ids["delivered"]); !bytes.Equal(got, withBody) {
				t.Fatalf("payload after down = %x, was %x", got, withBody)
			}
			if got := stored("orchestrator_webhook_events", "id", ids["queued"]); !bytes.Equal(got, queued) {
				t.Fatalf("queued payload after down = %x, was %x", got, queued)
			}
			if c := count(t, db, `SELECT COUNT(*) FROM orchestrator_webhook_events WHERE payload IS NOT NULL`); c != 2002 {
				t.Fatalf("%d events with a payload after down, want 2002", c)
			}
			if _, err := db.read.QueryContext(ctx, `SELECT 1 FROM orchestrator_event_payloads`); err == nil {
				t.Fatal("the payload table is still there after down")
			}
			if got := eventIndexes(t, db); got["ix_webhook_events_unpurged"] || !got["ix_webhook_events_payload"] {
				t.Fatalf("indexes after down: %v", got)
			}

			// Up to the newest again: GetEvent reads the newest columns
			// (migration 17's trace among them).
			if _, err := db.goose.Up(ctx); err != nil {
				t.Fatal(err)
			}
			if d, err := db.GetEvent(ctx, ids["delivered"]); err != nil || string(d.Body) != string(slackBody) {
				t.Fatalf("delivered event after up again: %+v %v", d, err)
			}
		})
	}
}

// count runs a COUNT query.
func count(t testing.TB, db *DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.read.QueryRowContext(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// eventIndexes names the events table's indexes.
func eventIndexes(t *testing.T, db *DB) map[string]bool {
	t.Helper()
	q := `SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'orchestrator_webhook_events'`
	if db.Shared() {
		q = `SELECT indexname FROM pg_indexes WHERE tablename = 'orchestrator_webhook_events'`
	}
	rows, err := db.read.QueryContext(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	names, err := collect(rows, func(r rowScanner) (string, error) {
		var s string
		return s, r.Scan(&s)
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, n := range names {
		out[n] = true
	}
	return out
}

// A body purge deletes the payload rows and marks the events purged, never
// one of an event still waiting; deleting an event deletes its payload if
// body retention left it (no payload outlives its event). A redelivery in
// the same batch stores one payload, the first's. On both databases.
func TestConformance_PayloadRowsGoWithPurgesAndEvents(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		day := 24 * time.Hour
		now := t0
		insert := func(delivery, status string, at time.Time) string {
			t.Helper()
			e := newEvent("pagerduty", delivery, at)
			e.Status = status
			r, err := db.InsertEvent(ctx, e)
			if err != nil {
				t.Fatal(err)
			}
			return r.ID
		}
		var old []string
		for i := range 5 {
			old = append(old, insert(fmt.Sprint("old-", i), EventDelivered, now.Add(-10*day)))
		}
		waiting := insert("waiting", EventQueued, now.Add(-10*day))
		young := insert("young", EventDelivered, now.Add(-day))
		for {
			n, err := db.PurgeBodies(ctx, now.Add(-7*day), now, 2)
			if err != nil {
				t.Fatal(err)
			}
			if n < 2 {
				break
			}
		}
		for _, id := range old {
			if e, err := db.GetEvent(ctx, id); err != nil || e.Body != nil || e.BodyPurgedAt == nil || !e.BodyPurgedAt.Equal(now) {
				t.Fatalf("old event %s after the purge: %+v %v", id, e, err)
			}
		}
		for _, id := range []string{waiting, young} {
			if e, err := db.GetEvent(ctx, id); err != nil || e.Body == nil || e.BodyPurgedAt != nil {
				t.Fatalf("event %s after the purge: %+v %v", id, e, err)
			}
		}
		if c := count(t, db, `SELECT COUNT(*) FROM orchestrator_event_payloads`); c != 2 {
			t.Fatalf("%d payload rows after the purge, want 2 (the waiting and the young event's)", c)
		}
		// Events deleted before their bodies' retention take their payloads.
		if n, err := db.PurgeFinishedEvents(ctx, now, 100); err != nil || n != 6 {
			t.Fatalf("purged %d events (%v), want the 5 old and the young one", n, err)
		}
		if c := count(t, db, `SELECT COUNT(*) FROM orchestrator_event_payloads p
			WHERE NOT EXISTS (SELECT 1 FROM orchestrator_webhook_events e WHERE e.id = p.event_id)`); c != 0 {
			t.Fatalf("%d payloads outlived their events", c)
		}
		if c := count(t, db, `SELECT COUNT(*) FROM orchestrator_event_payloads`); c != 1 {
			t.Fatalf("%d payload rows, want the waiting event's", c)
		}

		// The same delivery twice in one batch: one event, one payload.
		first, second := newEvent("slack", "twice", now), newEvent("slack", "twice", now)
		second.Body = []byte(`{"second":true}`)
		batch := []insertReq{{ev: first, done: make(chan insertDone, 1)}, {ev: second, done: make(chan insertDone, 1)}}
		for i := range batch {
			batch[i].vals, batch[i].payload = batch[i].ev.rowValues()
		}
		db.commitBatch(batch)
		a, b := <-batch[0].done, <-batch[1].done
		if a.err != nil || b.err != nil || a.res.Duplicate || !b.res.Duplicate || a.res.ID != b.res.ID {
			t.Fatalf("the same delivery twice in a batch: %+v, %+v", a, b)
		}
		if e, err := db.GetEvent(ctx, a.res.ID); err != nil || string(e.Body) != string(first.Body) {
			t.Fatalf("stored %+v %v, want the first's body", e, err)
		}
		if c := count(t, db, `SELECT COUNT(*) FROM orchestrator_event_payloads`); c != 2 {
			t.Fatalf("%d payload rows, want 2", c)
		}
	})
}

// BenchmarkMigration13 times migration 13 (and, on SQLite, the VACUUM that
// compacts the file after it) on BENCH_MIGRATE_EVENTS (1,000,000) events
// as migration 12 left them — 30 days of them, the last 7 with their
// payloads — and the bytes they take before and after: on SQLite the
// file's pages in use, on PostgreSQL the events and payload tables with
// their indexes and TOAST after a VACUUM (not FULL).
func BenchmarkMigration13(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_MIGRATE_EVENTS")); err == nil && v > 0 {
		n = v
	}
	end := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				o := Options{Path: filepath.Join(b.TempDir(), "v10.db")}
				if name == "postgres" {
					o = Options{URL: pgtest.Database(b)}
				}
				db := openAt(b, o, payloadTableVersion-1)
				fillPlanRows(b, db, n, end, encodePayload(slackHeaders, slackBody))
				if !db.Shared() {
					if err := db.GiveSpaceBack(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
				before := db.eventBytes(b)
				start := time.Now()
				if _, err := db.Migrate(context.Background()); err != nil {
					b.Fatal(err)
				}
				took := time.Since(start)
				after := db.eventBytes(b)
				fmt.Printf("migration 13 on %s: %d events (%d with payloads) in %s; %.0f bytes per event before, %.0f after\n",
					name, n, count(b, db, `SELECT COUNT(*) FROM orchestrator_event_payloads`), took.Round(100*time.Millisecond),
					float64(before)/float64(n), float64(after)/float64(n))
			}
		})
	}
}

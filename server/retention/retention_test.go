package retention

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
	"github.com/incidentfox/orchestrator-edge/migrations"
	"github.com/incidentfox/orchestrator-edge/store"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

func open(t *testing.T, o store.Options) *store.DB {
	t.Helper()
	o.Migrations = migrations.FS
	db, err := store.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}

// Every retention rule of SPEC §16, on SQLite and a real PostgreSQL, with a
// batch of 3 so that the purges really go in several batches: finished
// events go that long after they finished (received, if no finish time),
// never one still queued, dispatching or waiting for a retry; runs and agent
// calls go after the audit retention, never a run still running; the
// idempotency keys go when they expire; schedules stay.
func TestRetention_EveryRuleOnBothDatabases(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			o := store.Options{Path: filepath.Join(t.TempDir(), "r.db")}
			if name == "postgres" {
				o = store.Options{URL: pgtest.Database(t)}
			}
			db := open(t, o)
			ctx := context.Background()
			now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
			day := 24 * time.Hour
			event := func(id, status string, received time.Time) store.Event {
				e := store.Event{Source: "pagerduty", DeliveryID: id, EventType: "x", Status: status,
					Body: []byte(`{}`), ReceivedAt: received, OrgID: "o", TeamNodeID: "t"}
				r, err := db.InsertEvent(ctx, e)
				if err != nil {
					t.Fatal(err)
				}
				e.ID = r.ID
				return e
			}
			keep, gone := map[string]string{}, map[string]string{}
			for i := range 7 { // old finished events of every kind: gone
				st := store.FinishedStatuses[i%len(store.FinishedStatuses)]
				gone[event(fmt.Sprintf("old-%d", i), st, now.Add(-31*day)).ID] = "finished 31 days ago"
			}
			keep[event("recent", store.EventDelivered, now.Add(-29*day)).ID] = "finished 29 days ago"
			keep[event("old-queued", store.EventQueued, now.Add(-90*day)).ID] = "still queued"
			retry := event("old-retry", store.EventQueued, now.Add(-60*day))
			keep[retry.ID] = "waiting for a retry"
			claimed := event("old-claimed", store.EventQueued, now.Add(-60*day))
			keep[claimed.ID] = "dispatching"
			late := event("late-finish", store.EventQueued, now.Add(-45*day))
			keep[late.ID] = "received 45 days ago, finished 10 days ago"
			if err := db.RecordOutcomes(ctx, []store.Outcome{
				{ID: retry.ID, Status: store.EventQueued, Attempts: 2, NextAttemptAt: now.Add(time.Hour), At: now, From: store.EventQueued},
				{ID: late.ID, Status: store.EventDelivered, At: now.Add(-10 * day), From: store.EventQueued},
			}, nil, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ClaimTeamEvents(ctx, now, now.Add(day), store.TeamKey{OrgID: "o", TeamNodeID: "t"}, store.Kind{}, 10); err != nil {
				t.Fatal(err)
			}
			// Runs and agent calls: old ones go, a running one and recent ones stay.
			run := func(status string, created time.Time, key string) store.Run {
				r := store.Run{ID: uuid.NewString(), Kind: store.RunKindProvision, OrgID: "o", TeamNodeID: "t" + key, IdempotencyKey: key,
					Fingerprint: "f", Status: status, CreatedAt: created, UpdatedAt: created}
				if _, err := db.StartRun(ctx, r, created); err != nil {
					t.Fatal(err)
				}
				return r
			}
			oldRuns := []store.Run{run(store.RunSucceeded, now.Add(-401*day), "a"), run(store.RunFailed, now.Add(-500*day), "b")}
			stuck := run(store.RunRunning, now.Add(-450*day), "c")
			recent := run(store.RunSucceeded, now.Add(-2*day), "d")
			var agentRuns []store.AgentRun
			for i, age := range []time.Duration{401 * day, 402 * day, 403 * day, 404 * day, 10 * day} {
				agentRuns = append(agentRuns, store.AgentRun{ID: uuid.NewString(), TriggerSource: "pagerduty", OrgID: "o", TeamNodeID: "t",
					AgentName: "planner", Status: "succeeded", StartedAt: now.Add(-age), EventCount: i + 1})
			}
			if err := db.RecordOutcomes(ctx, nil, agentRuns, nil); err != nil {
				t.Fatal(err)
			}

			// Feedback on the oldest agent call, given then.
			click, err := db.InsertEvent(ctx, store.Event{Source: "slack", DeliveryID: "old-click", EventType: "block_actions.feedback",
				Status: store.EventQueued, ReceivedAt: now.Add(-401 * day)})
			if err != nil {
				t.Fatal(err)
			}
			if res, err := db.RecordFeedback(ctx, store.FeedbackClick{EventID: click.ID, OrgID: "o", TeamNodeID: "t", Ref: agentRuns[0].ID,
				Value: store.FeedbackPositive, UserID: "U1", At: now.Add(-401 * day), Now: now.Add(-401 * day)}); err != nil || res.Run == nil {
				t.Fatalf("feedback: %+v %v", res, err)
			}
			// The admin audit and silences: one of each older than the audit
			// retention (the silence ended then), one of each recent.
			for _, age := range []time.Duration{401 * day, 2 * day} {
				at := now.Add(-age)
				if _, err := db.CreateSilence(ctx, store.Silence{OrgID: "o", StartsAt: at, EndsAt: at.Add(time.Hour),
					Comment: "window", CreatedBy: "admin", CreatedAt: at}); err != nil {
					t.Fatal(err)
				}
			}
			chore, err := New(Options{Store: db, Bodies: 7 * day, Events: 30 * day, Audit: 400 * day, Keys: day, Batch: 3,
				Pause: time.Millisecond, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			rep, err := chore.Once(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Events != 8 || rep.Runs != 2 || rep.AgentRuns != 4 || rep.Audit != 2 || rep.Feedback != 1 {
				t.Fatalf("report %+v, want 8 events (the feedback click's too), 2 runs, 4 agent calls, 1 feedback, 2 audit records (a silence and its record)", rep)
			}
			if sil, err := db.ListSilences(ctx, "", "", now); err != nil || len(sil) != 1 {
				t.Fatalf("silences left = %d %v, want the recent one", len(sil), err)
			}
			if audit, err := db.ListAudit(ctx, "", 10); err != nil || len(audit) != 1 {
				t.Fatalf("audit left = %d %v, want the recent one", len(audit), err)
			}
			for id, why := range gone {
				if _, err := db.GetEvent(ctx, id); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("event (%s) is still there: %v", why, err)
				}
			}
			for id, why := range keep {
				if _, err := db.GetEvent(ctx, id); err != nil {
					t.Errorf("event (%s) was deleted: %v", why, err)
				}
			}
			for _, r := range oldRuns {
				if _, err := db.GetRun(ctx, r.ID); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("a %s run of %s is still there", r.Status, r.CreatedAt)
				}
			}
			for _, r := range []store.Run{stuck, recent} {
				got, err := db.GetRun(ctx, r.ID)
				if err != nil {
					t.Fatalf("the %s run was deleted: %v", r.Status, err)
				}
				// The recent run's key is 2 days old: past its 1-day life.
				if r.ID == recent.ID && got.IdempotencyKey != "" {
					t.Errorf("an expired idempotency key is kept")
				}
			}
			if left, _ := db.TeamAgentRuns(ctx, "o", "t"); len(left) != 1 {
				t.Errorf("%d agent calls left, want the 10-day-old one", len(left))
			}
			// A second pass finds nothing more.
			if again, err := chore.Once(ctx); err != nil || again.Events+again.Runs+again.AgentRuns != 0 {
				t.Fatalf("second pass %+v %v", again, err)
			}
		})
	}
}

func fileBytes(path string) int64 {
	var n int64
	for _, p := range []string{path, path + "-wal"} {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// SPEC §16, space given back: a new SQLite database is in incremental
// auto-vacuum mode, and after a purge the file and its WAL shrink — a
// spike's space is not held for ever.
func TestRetention_SpaceIsGivenBackOnSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	db := open(t, store.Options{Path: path})
	ctx := context.Background()
	if mode, err := db.AutoVacuum(ctx); err != nil || mode != 2 {
		t.Fatalf("auto_vacuum = %d %v, want 2 (incremental)", mode, err)
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	body := make([]byte, 8<<10)
	rand.Read(body)       // stored compressed: random bytes stay their size
	for i := range 2000 { // about 16 MB of old, finished events
		e := store.Event{Source: "github", DeliveryID: fmt.Sprintf("spike-%d", i), EventType: "push",
			Status: store.EventDelivered, Body: body, ReceivedAt: now.Add(-60 * 24 * time.Hour)}
		if _, err := db.InsertEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.GiveSpaceBack(ctx); err != nil { // the WAL folded in first: the file holds the spike
		t.Fatal(err)
	}
	before := fileBytes(path)
	chore, _ := New(Options{Store: db, Events: 30 * 24 * time.Hour, Now: func() time.Time { return now }})
	if rep, err := chore.Once(ctx); err != nil || rep.Events != 2000 {
		t.Fatalf("purge %+v %v", rep, err)
	}
	after := fileBytes(path)
	if before < 10<<20 || after > before/4 {
		t.Fatalf("database and WAL: %d bytes before the purge, %d after; want the spike's space given back", before, after)
	}
	t.Logf("database and WAL: %.1f MB before the purge, %.1f MB after", float64(before)/(1<<20), float64(after)/(1<<20))
}

// SPEC §16, space given back, for bodies (issue 37): purging the bodies of
// events that stay gives their pages back — the live file shrinks by about
// what the payloads took — not just the room inside the events' pages
// (2 % of the file while the payload sat in the event's row).
func TestRetention_PurgedBodiesGiveTheirSpaceBackOnSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	db := open(t, store.Options{Path: path})
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	headers := map[string]string{"content-type": "application/json", "user-agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}
	const n = 3000
	payloads := 0
	for i := range n { // bodies of a few hundred bytes: inside the pages, as most are
		text := make([]byte, 200)
		rand.Read(text)
		body := fmt.Appendf(nil, `{"type":"event_callback","event_id":"Ev%d","event":{"type":"app_mention","text":"%x"}}`, i, text)
		payloads += len(store.EncodePayload(headers, body))
		if _, err := db.InsertEvent(ctx, store.Event{Source: "slack", DeliveryID: fmt.Sprint("Ev", i), EventType: "app_mention",
			Status: store.EventDelivered, Headers: headers, Body: body, ReceivedAt: now.Add(-10 * 24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.GiveSpaceBack(ctx); err != nil {
		t.Fatal(err)
	}
	before := fileBytes(path)
	chore, _ := New(Options{Store: db, Bodies: 7 * 24 * time.Hour, Events: 30 * 24 * time.Hour, Now: func() time.Time { return now }})
	if rep, err := chore.Once(ctx); err != nil || rep.Bodies != n || rep.Events != 0 {
		t.Fatalf("purge %+v %v", rep, err)
	}
	after := fileBytes(path)
	if total, err := db.CountEvents(ctx); err != nil || total != n {
		t.Fatalf("%d events left (%v), want all %d", total, err, n)
	}
	t.Logf("database and WAL: %.2f MB with the bodies (%.2f MB of payloads), %.2f MB after their purge", float64(before)/1e6,
		float64(payloads)/1e6, float64(after)/1e6)
	if before-after < int64(payloads)*8/10 {
		t.Fatalf("the purge of %d bytes of payloads gave back %d bytes of the file's %d", payloads, before-after, before)
	}
}

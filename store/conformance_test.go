package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
	"github.com/incidentfox/orchestrator-edge/migrations"
)

// The store's conformance suite: every case runs on SQLite (a real file in a
// temp dir) and on a real PostgreSQL 15 (a fresh database on a server this
// test binary starts), through the one store API the rest of the code uses.

type backend struct {
	name string
	open func(t *testing.T) (*DB, string) // the database and its URL or path
}

var backends = []backend{
	{"sqlite", func(t *testing.T) (*DB, string) {
		path := filepath.Join(t.TempDir(), "c.db")
		return openMigrated(t, Options{Path: path}), path
	}},
	{"postgres", func(t *testing.T) (*DB, string) {
		url := pgtest.Database(t)
		return openMigrated(t, Options{URL: url}), url
	}},
}

func openMigrated(t testing.TB, o Options) *DB {
	t.Helper()
	o.Migrations = migrations.FS
	db, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}

// conform runs a case on both databases.
func conform(t *testing.T, f func(t *testing.T, db *DB, where string)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db, where := b.open(t)
			f(t, db, where)
		})
	}
}

// replicas runs a case on both databases with two handles on it, as two
// replicas have: on PostgreSQL a second store on the same database, on
// SQLite the one store twice (it has one writer); where names the
// database, for a case that reopens it.
func replicas(t *testing.T, f func(t *testing.T, one, other *DB, where string)) {
	conform(t, func(t *testing.T, one *DB, where string) {
		other := one
		if one.Shared() {
			other = openMigrated(t, Options{URL: where})
		}
		f(t, one, other, where)
	})
}

// Events keep their times to the millisecond (migration 7).
var t0 = time.Date(2026, 11, 24, 12, 0, 0, 123000000, time.UTC)

func newEvent(source, delivery string, at time.Time) Event {
	return Event{Source: source, DeliveryID: delivery, EventType: "x", Status: EventQueued,
		Identifiers: map[string]string{"k": delivery}, Headers: map[string]string{"h": "v"}, Body: []byte(`{"d":"` + delivery + `"}`),
		ReceivedAt: at}
}

// routed stores n events of a source already routed to org/team.
func routed(t *testing.T, db *DB, org, team, source string, n int, at time.Time) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for i := range n {
		e := newEvent(source, fmt.Sprintf("%s-%s-%s-%d", org, team, source, i), at.Add(time.Duration(i)*time.Millisecond))
		e.OrgID, e.TeamNodeID, e.MatchedBy = org, team, "test"
		r, err := db.InsertEvent(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	return ids
}

func TestConformance_InsertDedupesConcurrentRedeliveries(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		var wg sync.WaitGroup
		var mu sync.Mutex
		dups, stored := 0, map[string]string{}
		for i := range 300 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := fmt.Sprintf("d%d", i%200) // 100 redeliveries
				r, err := db.InsertEvent(ctx, newEvent("github", d, t0))
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
				if r.Duplicate {
					dups++
				}
				if old, ok := stored[d]; ok && old != r.ID {
					t.Errorf("delivery %s stored as %s and %s", d, old, r.ID)
				}
				stored[d] = r.ID
			}()
		}
		wg.Wait()
		if dups != 100 || len(stored) != 200 {
			t.Fatalf("duplicates %d, distinct %d; want 100 and 200", dups, len(stored))
		}
		n, err := db.QueueDepth(ctx, "")
		if err != nil || n != 200 {
			t.Fatalf("queue depth = %d %v", n, err)
		}
		// Everything stored reads back as written, to the millisecond.
		for d, id := range stored {
			e, err := db.GetEvent(ctx, id)
			if err != nil || e.DeliveryID != d || string(e.Body) != `{"d":"`+d+`"}` || !e.ReceivedAt.Equal(t0) ||
				e.Identifiers["k"] != d || e.Headers["h"] != "v" || e.Status != EventQueued {
				t.Fatalf("event %s reads back as %+v %v", id, e, err)
			}
			break
		}
	})
}

func TestConformance_ListPagesAndFilters(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		for i := range 25 {
			src := []string{"slack", "github"}[i%2]
			if _, err := db.InsertEvent(ctx, newEvent(src, fmt.Sprint(i), t0.Add(time.Duration(i%5)*time.Second))); err != nil {
				t.Fatal(err)
			}
		}
		var all []Event
		cursor := ""
		for {
			page, next, err := db.ListEvents(ctx, EventFilter{Limit: 7, Cursor: cursor})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, page...)
			if next == "" {
				break
			}
			cursor = next
		}
		if len(all) != 25 {
			t.Fatalf("paged through %d events, want 25", len(all))
		}
		seen := map[string]bool{}
		for i, e := range all {
			if seen[e.ID] {
				t.Fatalf("event %s twice", e.ID)
			}
			seen[e.ID] = true
			if i > 0 && (e.ReceivedAt.After(all[i-1].ReceivedAt) || e.ReceivedAt.Equal(all[i-1].ReceivedAt) && e.Key > all[i-1].Key) {
				t.Fatalf("not newest first at %d", i)
			}
			if e.Body != nil {
				t.Fatal("lists leave bodies out")
			}
		}
		// And back: Before from the oldest pages towards the newest, each
		// page newest first, ties (equal times) broken by id both ways.
		var back []Event
		before := EventCursor(all[len(all)-1])
		back = append(back, all[len(all)-1])
		for {
			page, newer, err := db.ListEvents(ctx, EventFilter{Limit: 7, Before: before})
			if err != nil {
				t.Fatal(err)
			}
			back = append(page, back...)
			if newer == "" {
				break
			}
			before = EventCursor(page[0])
		}
		if len(back) != 25 {
			t.Fatalf("paged back through %d events, want 25", len(back))
		}
		for i := range all {
			if back[i].ID != all[i].ID {
				t.Fatalf("paging back, row %d is %s; paging forward it was %s", i, back[i].ID, all[i].ID)
			}
		}
		got, _, err := db.ListEvents(ctx, EventFilter{Source: "slack", Since: t0.Add(2 * time.Second), Limit: 100})
		if err != nil || len(got) != 8 { // slack: even i; i%5 >= 2
			t.Fatalf("filtered = %d %v", len(got), err)
		}
		counts, err := db.CountEventsSince(ctx, t0, "")
		if err != nil || len(counts) != 2 || counts[0] != (SourceCount{"github", 12}) || counts[1] != (SourceCount{"slack", 13}) {
			t.Fatalf("counts = %v %v", counts, err)
		}
		if _, _, err := db.ListEvents(ctx, EventFilter{Limit: 5, Cursor: "nope"}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("bad cursor: %v", err)
		}
	})
}

func TestConformance_RouteClaimLeaseAndOutcomes(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		// Unrouted events: Slack first.
		gh, _ := db.InsertEvent(ctx, newEvent("github", "g1", t0))
		sl, _ := db.InsertEvent(ctx, newEvent("slack", "s1", t0.Add(time.Second)))
		todo, err := db.EventsToRoute(ctx, t0.Add(time.Minute), 10)
		if err != nil || len(todo) != 2 || todo[0].ID != sl.ID || todo[1].ID != gh.ID {
			t.Fatalf("to route = %v %v", todo, err)
		}
		route := []Outcome{
			{ID: gh.ID, Status: EventQueued, OrgID: "o", TeamNodeID: "t", MatchedBy: "repo", At: t0, From: EventQueued},
			{ID: sl.ID, Status: EventQueued, OrgID: "o", TeamNodeID: "t", MatchedBy: "channel", At: t0, From: EventQueued},
		}
		if err := db.RecordOutcomes(ctx, route, nil, nil); err != nil {
			t.Fatal(err)
		}
		alerts := routed(t, db, "o", "t", "pagerduty", 5, t0)
		teams, err := db.TeamsDue(ctx, t0.Add(time.Minute))
		if err != nil || len(teams) != 1 || teams[0].OrgID != "o" || teams[0].TeamNodeID != "t" {
			t.Fatalf("teams due = %v %v", teams, err)
		}
		now := t0.Add(time.Minute)
		lease := now.Add(6 * time.Minute)
		people, err := db.ClaimTeamEvents(ctx, now, lease, teams[0], Kind{People: true}, 10)
		if err != nil || len(people) != 1 || people[0].ID != sl.ID || people[0].Status != EventDispatching {
			t.Fatalf("people = %v %v", people, err)
		}
		digest, err := db.ClaimTeamEvents(ctx, now, lease, teams[0], Kind{Sources: []string{"pagerduty"}}, 3)
		if err != nil || len(digest) != 3 || digest[0].ID != alerts[0] || digest[2].ID != alerts[2] {
			t.Fatalf("digest = %v %v", digest, err)
		}
		others, err := db.ClaimTeamEvents(ctx, now, lease, teams[0], Kind{Sources: []string{"pagerduty"}, Exclude: true}, 10)
		if err != nil || len(others) != 1 || others[0].ID != gh.ID {
			t.Fatalf("others = %v %v", others, err)
		}
		// The lease: nothing is taken back before it ends; after, every
		// claim without an outcome is.
		if n, err := db.RequeueExpired(ctx, lease.Add(-time.Second)); err != nil || n != 0 {
			t.Fatalf("requeued before the lease ended: %d %v", n, err)
		}
		run := AgentRun{ID: uuid.NewString(), TriggerSource: "digest", OrgID: "o", TeamNodeID: "t", AgentName: "a",
			Status: "succeeded", StartedAt: now, Duration: time.Second, EventCount: 3}
		var outs []Outcome
		for _, e := range digest {
			outs = append(outs, Outcome{ID: e.ID, Status: EventDelivered, Attempts: 1, At: now, DigestRunID: run.ID, DigestSize: 3})
		}
		outs = append(outs, Outcome{ID: gh.ID, Status: EventQueued, Attempts: 1, NextAttemptAt: now.Add(time.Hour), LastError: "503", At: now})
		if err := db.RecordOutcomes(ctx, outs, []AgentRun{run}, nil); err != nil {
			t.Fatal(err)
		}
		if n, err := db.RequeueExpired(ctx, lease); err != nil || n != 1 {
			t.Fatalf("requeued at the lease's end: %d %v (want the Slack event only)", n, err)
		}
		back, err := db.GetEvent(ctx, sl.ID)
		if err != nil || back.Status != EventQueued || back.Attempts != 0 {
			t.Fatalf("expired claim = %+v %v", back, err)
		}
		again, err := db.ClaimTeamEvents(ctx, lease, lease.Add(time.Minute), teams[0], Kind{People: true}, 10)
		if err != nil || len(again) != 1 || again[0].ID != sl.ID {
			t.Fatalf("claimed again = %v %v", again, err)
		}
		// An outcome for an event no longer dispatching is skipped.
		if err := db.RecordOutcomes(ctx, []Outcome{{ID: digest[0].ID, Status: EventDead, At: now}}, nil, nil); err != nil {
			t.Fatal(err)
		}
		d0, _ := db.GetEvent(ctx, digest[0].ID)
		if d0.Status != EventDelivered || d0.DigestRunID != run.ID || d0.DigestSize != 3 || d0.FinishedAt == nil {
			t.Fatalf("delivered event = %+v", d0)
		}
		runs, err := db.EventAgentRuns(ctx, digest[0].ID)
		if err != nil || len(runs) != 1 || runs[0].EventCount != 3 {
			t.Fatalf("digest run = %v %v", runs, err)
		}
		retry, _ := db.GetEvent(ctx, gh.ID)
		if retry.Status != EventQueued || retry.Attempts != 1 || !retry.NextAttemptAt.Equal(now.Add(time.Hour)) || retry.LastError != "503" {
			t.Fatalf("retry = %+v", retry)
		}
	})
}

// Replicas claiming one team's events at once each get different events,
// and together they get all of them.
func TestConformance_ConcurrentClaimsNeverOverlap(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, where string) {
		ctx := context.Background()
		want := routed(t, db, "o", "t", "github", 400, t0)
		// On PostgreSQL each "replica" is a pool of its own.
		handles := []*DB{db}
		if db.Shared() {
			for range 3 {
				handles = append(handles, openMigrated(t, Options{URL: where}))
			}
		}
		team := TeamKey{OrgID: "o", TeamNodeID: "t"}
		now := t0.Add(time.Minute)
		var mu sync.Mutex
		got := map[string]int{}
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := handles[w%len(handles)]
				for {
					evs, err := h.ClaimTeamEvents(ctx, now, now.Add(time.Hour), team, Kind{Sources: nil, Exclude: true}, 7)
					if err != nil {
						t.Error(err)
						return
					}
					if len(evs) == 0 {
						return
					}
					mu.Lock()
					for _, e := range evs {
						got[e.ID]++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(got) != len(want) {
			t.Fatalf("claimed %d distinct events, want %d", len(got), len(want))
		}
		for id, n := range got {
			if n != 1 {
				t.Fatalf("event %s claimed %d times", id, n)
			}
		}
	})
}

func TestConformance_RedriveAndPurge(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		ids := routed(t, db, "o", "t", "github", 2, t0)
		if _, err := db.Redrive(ctx, ids[0], t0); !errors.Is(err, ErrConflict) {
			t.Fatalf("redrive of a queued event: %v", err)
		}
		evs, _ := db.ClaimTeamEvents(ctx, t0.Add(time.Second), t0.Add(time.Hour), TeamKey{OrgID: "o", TeamNodeID: "t"}, Kind{Exclude: true}, 2)
		if len(evs) != 2 {
			t.Fatalf("claimed %d, want 2", len(evs))
		}
		var outs []Outcome
		for _, e := range evs {
			outs = append(outs, Outcome{ID: e.ID, Status: EventDead, Attempts: 6, At: t0})
		}
		if err := db.RecordOutcomes(ctx, outs, nil, nil); err != nil {
			t.Fatal(err)
		}
		e, err := db.Redrive(ctx, ids[0], t0.Add(time.Second))
		if err != nil || e.Status != EventQueued || !e.Solo || e.Attempts != 0 {
			t.Fatalf("redrive = %+v %v", e, err)
		}
		if n, err := db.PurgeBodies(ctx, t0.Add(time.Hour), t0.Add(time.Hour), 1<<30); err != nil || n != 1 {
			t.Fatalf("purged %d %v; want the dead event's body only", n, err)
		}
		dead, _ := db.GetEvent(ctx, ids[1])
		if dead.Body != nil || dead.BodyPurgedAt == nil {
			t.Fatalf("purged event = %+v", dead)
		}
		if _, err := db.Redrive(ctx, ids[1], t0); !errors.Is(err, ErrBodyPurged) {
			t.Fatalf("redrive without a body: %v", err)
		}
		if _, err := db.Redrive(ctx, uuid.NewString(), t0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("redrive of nothing: %v", err)
		}
	})
}

func TestConformance_RunsAndIdempotency(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		r := Run{ID: uuid.NewString(), Kind: RunKindProvision, OrgID: "o", TeamNodeID: "t", IdempotencyKey: "k",
			Fingerprint: "f", Status: RunRunning, CreatedAt: t0, UpdatedAt: t0}
		if old, err := db.StartRun(ctx, r, t0.Add(-time.Hour)); err != nil || old != nil {
			t.Fatalf("start = %v %v", old, err)
		}
		again := r
		again.ID = uuid.NewString()
		old, err := db.StartRun(ctx, again, t0.Add(-time.Hour))
		if err != nil || old == nil || old.ID != r.ID {
			t.Fatalf("same key = %v %v", old, err)
		}
		// Past the key's life the old run gives it up.
		if old, err := db.StartRun(ctx, again, t0.Add(time.Second)); err != nil || old != nil {
			t.Fatalf("expired key = %v %v", old, err)
		}
		r.Status, r.HTTPStatus, r.Response, r.UpdatedAt = RunSucceeded, 200, []byte(`{"ok":true}`), t0.Add(time.Second)
		r.Steps = []byte(`[{"name":"x"}]`)
		if err := db.SaveRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		got, err := db.GetRun(ctx, r.ID)
		if err != nil || got.Status != RunSucceeded || got.HTTPStatus != 200 || string(got.Steps) == "" || got.IdempotencyKey != "" {
			t.Fatalf("run = %+v %v", got, err)
		}
		running, err := db.RunsWithStatus(ctx, RunRunning)
		if err != nil || len(running) != 1 || running[0].ID != again.ID {
			t.Fatalf("running = %v %v", running, err)
		}
		if err := db.SaveRun(ctx, Run{ID: uuid.NewString()}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("save of nothing: %v", err)
		}
		list, next, err := db.ListRuns(ctx, RunFilter{OrgID: "o", Limit: 1})
		if err != nil || len(list) != 1 || next == "" {
			t.Fatalf("list = %v %q %v", list, next, err)
		}
	})
}

func TestConformance_Schedules(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		s := Schedule{ID: uuid.NewString(), OrgID: "o", TeamNodeID: "t", Type: ScheduleIngestion, CronExpression: "0 * * * *",
			CronJobName: "cj-a", Enabled: true, UpdatedAt: t0}
		got, err := db.UpsertSchedule(ctx, s)
		if err != nil || got.CronJobName != "cj-a" || !got.Enabled {
			t.Fatalf("upsert = %+v %v", got, err)
		}
		s.CronExpression, s.Enabled = "5 * * * *", false
		if got, err := db.UpsertSchedule(ctx, s); err != nil || got.CronExpression != "5 * * * *" || got.Enabled || got.ID != s.ID {
			t.Fatalf("update = %+v %v", got, err)
		}
		other := Schedule{ID: uuid.NewString(), OrgID: "o2", TeamNodeID: "t", Type: ScheduleIngestion, CronExpression: "0 * * * *",
			CronJobName: "cj-a", Enabled: true, UpdatedAt: t0}
		if _, err := db.UpsertSchedule(ctx, other); !errors.Is(err, ErrConflict) {
			t.Fatalf("a CronJob name of another team's schedule: %v", err)
		}
		if err := db.SetScheduleEnabled(ctx, "o", "t", ScheduleIngestion, true, t0); err != nil {
			t.Fatal(err)
		}
		if err := db.SetLastRunAt(ctx, s.ID, t0); err != nil {
			t.Fatal(err)
		}
		byName, err := db.ScheduleByCronJobName(ctx, "cj-a")
		if err != nil || byName.LastRunAt == nil || !byName.LastRunAt.Equal(t0) || !byName.Enabled {
			t.Fatalf("by name = %+v %v", byName, err)
		}
		if err := db.DeleteSchedule(ctx, "o", "t", ScheduleIngestion); err != nil {
			t.Fatal(err)
		}
		if list, err := db.ListSchedules(ctx, "", ""); err != nil || len(list) != 0 {
			t.Fatalf("after delete = %v %v", list, err)
		}
	})
}

func TestConformance_Sessions(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		s := Session{IDHash: "h1", Actor: "alice", Sealed: []byte{1, 2, 3}, CreatedAt: t0, SeenAt: t0}
		if err := db.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateSession(ctx, s); !errors.Is(err, ErrConflict) {
			t.Fatalf("same id twice: %v", err)
		}
		if err := db.SetSessionFlash(ctx, "h1", "done"); err != nil {
			t.Fatal(err)
		}
		if err := db.TouchSession(ctx, "h1", t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		got, err := db.GetSession(ctx, "h1")
		if err != nil || got.Actor != "alice" || !slices.Equal(got.Sealed, []byte{1, 2, 3}) || got.Flash != "done" || !got.SeenAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("session = %+v %v", got, err)
		}
		if n, err := db.DeleteExpiredSessions(ctx, t0.Add(30*time.Second), t0.Add(-time.Hour)); err != nil || n != 0 {
			t.Fatalf("expired a live session: %d %v", n, err)
		}
		if n, err := db.DeleteExpiredSessions(ctx, t0.Add(2*time.Minute), t0.Add(-time.Hour)); err != nil || n != 1 {
			t.Fatalf("expired %d %v", n, err)
		}
		if _, err := db.GetSession(ctx, "h1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after expiry: %v", err)
		}
	})
}

// The team budget holds across concurrent takers: no more tokens are granted
// than the bucket holds, whoever asks.
func TestConformance_TeamBudgetIsShared(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, where string) {
		ctx := context.Background()
		handles := []*DB{db}
		if db.Shared() {
			handles = append(handles, openMigrated(t, Options{URL: where}), openMigrated(t, Options{URL: where}))
		}
		var mu sync.Mutex
		granted := 0
		var wg sync.WaitGroup
		for w := range 9 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, _, err := handles[w%len(handles)].TakeTeamBudget(ctx, "o", "t", 3, 10, t0)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				granted += got
				mu.Unlock()
			}()
		}
		wg.Wait()
		if granted != 10 {
			t.Fatalf("granted %d tokens of a bucket of 10", granted)
		}
		got, wait, err := db.TakeTeamBudget(ctx, "o", "t", 1, 10, t0)
		if err != nil || got != 0 || wait != 6*time.Second {
			t.Fatalf("empty bucket: got %d, wait %v, %v", got, wait, err)
		}
		if err := db.ReturnTeamBudget(ctx, "o", "t", 2, 10, t0); err != nil {
			t.Fatal(err)
		}
		if got, _, err := db.TakeTeamBudget(ctx, "o", "t", 5, 10, t0.Add(6*time.Second)); err != nil || got != 3 {
			t.Fatalf("after 2 returned and 6 s of refill: %d %v; want 3", got, err)
		}
		// Another team has its own bucket.
		if got, _, err := db.TakeTeamBudget(ctx, "o", "u", 20, 10, t0); err != nil || got != 10 {
			t.Fatalf("other team: %d %v", got, err)
		}
	})
}

// Team locks exclude across replicas (two Locks over one database or data
// directory), wait a bounded time, and TryAcquire does not wait.
func TestConformance_TeamLocksAcrossReplicas(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		dir := t.TempDir()
		a, err := db.NewLocks(dir, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		b, err := db.NewLocks(dir, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		key := TeamLockKey("o", "t")
		release, err := a.Acquire(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Acquire(ctx, key); !errors.Is(err, ErrLockTimeout) {
			t.Fatalf("second replica got a held lock: %v", err)
		}
		if h, err := b.TryAcquire(ctx, key); err != nil || h != nil {
			t.Fatalf("try of a held lock = %v %v", h, err)
		}
		other, err := b.Acquire(ctx, TeamLockKey("o", "u"))
		if err != nil {
			t.Fatalf("another team's lock: %v", err)
		}
		other()
		release()
		h, err := b.TryAcquire(ctx, key)
		if err != nil || h == nil {
			t.Fatalf("try of a free lock = %v %v", h, err)
		}
		if err := h.Check(ctx); err != nil {
			t.Fatalf("held lock checks as %v", err)
		}
		h.Release()
		h.Release() // twice is harmless
	})
}

// A replica killed while it holds a team's advisory lock frees it: the
// server ends its session.
func TestConformance_AdvisoryLockFreedWhenHolderIsKilled(t *testing.T) {
	url := pgtest.Database(t)
	db := openMigrated(t, Options{URL: url})
	key := TeamLockKey("o", "t")
	h := startHelper(t, "advisory", url, key)
	locks, _ := db.NewLocks(t.TempDir(), 200*time.Millisecond)
	if _, err := locks.Acquire(context.Background(), key); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("lock held by another process was taken: %v", err)
	}
	h.kill()
	locks, _ = db.NewLocks(t.TempDir(), time.Minute)
	release, err := locks.Acquire(context.Background(), key)
	if err != nil {
		t.Fatalf("lock of a killed holder: %v", err)
	}
	release()
}

// Replicas that start together migrate once: goose's session lock makes
// the others wait, and every one ends on the newest version.
func TestConformance_ReplicasMigrateTogether(t *testing.T) {
	url := pgtest.Database(t)
	var wg sync.WaitGroup
	applied := make([][]int64, 4)
	for i := range applied {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := Open(context.Background(), Options{URL: url, Migrations: migrations.FS})
			if err != nil {
				t.Error(err)
				return
			}
			defer db.Close()
			if applied[i], err = db.Migrate(context.Background()); err != nil {
				t.Error(err)
			}
			if err := db.Ready(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, a := range applied {
		total += len(a)
	}
	probe := openMigrated(t, Options{Path: filepath.Join(t.TempDir(), "probe.db")})
	if known := len(probe.goose.ListSources()); total != known {
		t.Fatalf("migrations applied %v in all; want each of %d once", applied, known)
	}
}

// SPEC §18: one event the database refuses fails alone, never the others
// committed with it. The batch is handed to the group commit as one: the
// second event's row breaks a NOT NULL constraint (both databases refuse
// it; on PostgreSQL the refusal aborts the whole transaction), so before
// the fix the first and third failed with it.
func TestConformance_ARefusedEventFailsAloneInItsBatch(t *testing.T) {
	// req is an event as InsertEvent hands it to the group commit; a
	// refused one has no status (NOT NULL: both databases refuse the row;
	// InsertEvent's own checks would have stopped it earlier).
	req := func(e Event, refused bool) insertReq {
		r := insertReq{ev: e, done: make(chan insertDone, 1)}
		r.vals, r.payload = e.rowValues()
		if refused {
			r.vals[3] = nil
		}
		return r
	}
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		good1, good2 := newEvent("slack", "good-1", t0), newEvent("slack", "good-2", t0)
		bad := newEvent("slack", "bad", t0)
		batch := []insertReq{req(good1, false), req(bad, true), req(good2, false)}
		// The committer goroutine is idle: nothing else inserts here.
		db.commitBatch(batch)
		for i, want := range []bool{true, false, true} {
			d := <-batch[i].done
			if ok := d.err == nil && !d.res.Duplicate && d.res.ID != ""; ok != want {
				t.Fatalf("event %d of the batch: %+v, stored=%v, want stored=%v", i, d, ok, want)
			}
			batch[i].ev.ID = d.res.ID
		}
		for _, i := range []int{0, 2} {
			id := batch[i].ev.ID
			if e, err := db.GetEvent(ctx, id); err != nil || e.Status != EventQueued || string(e.Body) != string(batch[i].ev.Body) ||
				e.Headers["h"] != "v" {
				t.Fatalf("good event %s: %+v %v", id, e, err)
			}
		}

		// The same under concurrent good traffic: 200 good events and 10
		// refused ones arrive together; every good one is stored.
		var wg sync.WaitGroup
		var mu sync.Mutex
		var goodErrs, badOK int
		for i := range 210 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Handed to the group commit as InsertEvent does.
				r := req(newEvent("github", fmt.Sprintf("storm-%d", i), t0), i%21 == 20)
				db.inserts <- r
				err := (<-r.done).err
				mu.Lock()
				defer mu.Unlock()
				switch {
				case i%21 == 20 && err == nil:
					badOK++
				case i%21 != 20 && err != nil:
					goodErrs++
					t.Errorf("good event %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
		if goodErrs != 0 || badOK != 0 {
			t.Fatalf("%d good events failed, %d refused ones stored", goodErrs, badOK)
		}
		if n, err := db.QueueDepth(ctx, ""); err != nil || n != 202 {
			t.Fatalf("queue depth = %d %v, want 202", n, err)
		}
	})
}

// Text the databases would refuse or mangle never reaches a batch: invalid
// UTF-8 or a NUL in any stored text is ErrInvalid at once (the door cleans
// before it stores, so this is the last line, not the first).
func TestConformance_UncleanTextIsRefusedBeforeTheBatch(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		for name, edit := range map[string]func(*Event){
			"delivery id NUL":    func(e *Event) { e.DeliveryID = "a\x00b" },
			"event type invalid": func(e *Event) { e.EventType = "issues\xff" },
			"identifier NUL":     func(e *Event) { e.Identifiers = map[string]string{"coralogix_team_name": "ac\x00me"} },
			"header value":       func(e *Event) { e.Headers = map[string]string{"x-github-event": "issues\xff"} },
		} {
			e := newEvent("github", "unclean-"+name, t0)
			edit(&e)
			if _, err := db.InsertEvent(ctx, e); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: %v, want ErrInvalid", name, err)
			}
		}
	})
}

// GitHub signs only the body: the same body under a new delivery id is a
// replay and a duplicate of the first (SPEC §18), for as long as the first
// is kept; other sources' bodies may repeat.
func TestConformance_GitHubReplayOfABodyIsADuplicate(t *testing.T) {
	sum12 := strings.Repeat("ab12", 16)
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		first := newEvent("github", "delivery-1", t0)
		first.BodySHA256 = sum12
		r1, err := db.InsertEvent(ctx, first)
		if err != nil || r1.Duplicate {
			t.Fatal(r1, err)
		}
		replay := newEvent("github", "delivery-2", t0)
		replay.BodySHA256 = sum12
		r2, err := db.InsertEvent(ctx, replay)
		if err != nil || !r2.Duplicate || r2.ID != r1.ID {
			t.Fatalf("replay = %+v %v, want a duplicate of %s", r2, err, r1.ID)
		}
		other := newEvent("slack", "delivery-1", t0)
		other.BodySHA256 = sum12
		if r3, err := db.InsertEvent(ctx, other); err != nil || r3.Duplicate {
			t.Fatalf("another source with the same body = %+v %v", r3, err)
		}
		if e, err := db.GetEvent(ctx, r1.ID); err != nil || e.BodySHA256 != sum12 {
			t.Fatalf("stored hash = %+v %v", e, err)
		}
	})
}

// A routing decision is stored with the outcome that carries it, kept by an
// outcome without one, replaced by the next that has one; the list filters
// by matched_by (a rule's "rule:<name>").
func TestConformance_DecisionAndMatchedByFilter(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		a, _ := db.InsertEvent(ctx, newEvent("alertmanager", "a1", t0))
		b, _ := db.InsertEvent(ctx, newEvent("alertmanager", "b1", t0))
		routedBy := `[{"kind":"rule","rule":"k8s-namespace","matchers":["label.namespace=\"payments\""],"org_id":"o","team_node_id":"t"}]`
		if err := db.RecordOutcomes(ctx, []Outcome{
			{ID: a.ID, Status: EventQueued, OrgID: "o", TeamNodeID: "t", MatchedBy: "rule:k8s-namespace", At: t0, From: EventQueued, Decision: []byte(routedBy)},
			{ID: b.ID, Status: EventUnrouted, At: t0, From: EventQueued, LastError: "nothing matched", Decision: []byte(`[{"kind":"unrouted"}]`)},
		}, nil, nil); err != nil {
			t.Fatal(err)
		}
		got, _ := db.GetEvent(ctx, a.ID)
		if string(got.Decision) != routedBy {
			t.Fatalf("decision = %s", got.Decision)
		}
		evs, _, err := db.ListEvents(ctx, EventFilter{MatchedBy: "rule:k8s-namespace", Limit: 10})
		if err != nil || len(evs) != 1 || evs[0].ID != a.ID {
			t.Fatalf("filtered by rule: %v %v", evs, err)
		}
		claimed, _ := db.ClaimTeamEvents(ctx, t0.Add(time.Second), t0.Add(time.Hour), TeamKey{OrgID: "o", TeamNodeID: "t"}, Kind{Exclude: true}, 1)
		if len(claimed) != 1 || string(claimed[0].Decision) != routedBy {
			t.Fatalf("a claimed event carries its decision: %+v", claimed)
		}
		if err := db.RecordOutcomes(ctx, []Outcome{{ID: a.ID, Status: EventDead, At: t0}}, nil, nil); err != nil {
			t.Fatal(err)
		}
		if got, _ = db.GetEvent(ctx, a.ID); string(got.Decision) != routedBy {
			t.Fatalf("an outcome without a decision replaced it: %s", got.Decision)
		}
	})
}

// An event keeps the trace it came with (migration 17): 25 bytes read back
// by GetEvent, the list, the router and the claim alike; an event without
// one stores NULL, and a malformed reference is not stored.
func TestConformance_TraceIsKeptWithTheEvent(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		ref := []byte("0123456789abcdef" + "spanid01" + "\x01")
		traced := newEvent("alertmanager", "traced", t0)
		traced.Trace = ref
		a, err := db.InsertEvent(ctx, traced)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := db.InsertEvent(ctx, newEvent("alertmanager", "plain", t0))
		short := newEvent("alertmanager", "short", t0)
		short.Trace = []byte("0123")
		c, _ := db.InsertEvent(ctx, short)
		for id, want := range map[string][]byte{a.ID: ref, b.ID: nil, c.ID: nil} {
			got, err := db.GetEvent(ctx, id)
			if err != nil || !bytes.Equal(got.Trace, want) {
				t.Errorf("event %s: trace %q (%v), want %q", id, got.Trace, err, want)
			}
		}
		toRoute, err := db.EventsToRoute(ctx, t0.Add(time.Second), 10)
		if err != nil || len(toRoute) != 3 {
			t.Fatalf("to route: %d %v", len(toRoute), err)
		}
		for _, e := range toRoute {
			if e.ID == a.ID && !bytes.Equal(e.Trace, ref) {
				t.Errorf("the router reads trace %q", e.Trace)
			}
		}
		if err := db.RecordOutcomes(ctx, []Outcome{{ID: a.ID, Status: EventQueued, OrgID: "o", TeamNodeID: "t", MatchedBy: "test", At: t0, From: EventQueued}}, nil, nil); err != nil {
			t.Fatal(err)
		}
		claimed, _ := db.ClaimTeamEvents(ctx, t0.Add(time.Second), t0.Add(time.Hour), TeamKey{OrgID: "o", TeamNodeID: "t"}, Kind{Exclude: true}, 1)
		if len(claimed) != 1 || !bytes.Equal(claimed[0].Trace, ref) {
			t.Fatalf("a claimed event carries its trace: %+v", claimed)
		}
		evs, _, err := db.ListEvents(ctx, EventFilter{Limit: 10})
		if err != nil || len(evs) != 3 {
			t.Fatalf("list: %v", err)
		}
	})
}

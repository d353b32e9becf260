package retention

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
	"github.com/incidentfox/orchestrator-edge/store"
)

// A year unattended (SPEC §16 Proof): the store is driven through 365
// simulated days on a clock the test controls — a steady 300 events a day
// (delivered, ignored, dead; a few left waiting for a retry for ever), one
// agent call per ten events, a provisioning run a day, and on day 200 ten
// times the usual traffic — with the retention chore run at the end of each
// day at the defaults (bodies 7 days, events 30) and the audit at its
// minimum, 30 days. At the end every rule held, nothing still due was
// deleted, and the SQLite file (with its WAL) is at most 1.25 times its
// size at the end of the first retention window, the spike's space given
// back. On SQLite and on a real PostgreSQL.
// liveBytesWithBody and liveBytesPurged are what a stored event costs in
// the live file with its body and after its purge, as docs/backups.md
// sizes the volume with them (BenchmarkBytesPerStoredEvent: a delivered
// Slack mention with its agent call, the whole file's pages in use).
const liveBytesWithBody, liveBytesPurged = 890, 702

func TestRetention_ASimulatedYear(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			o := store.Options{Path: filepath.Join(t.TempDir(), "year.db")}
			if name == "postgres" {
				o = store.Options{URL: pgtest.Database(t)}
			}
			db := open(t, o)
			ctx := context.Background()
			const perDay, spikeDay, days = 300, 200, 365
			day := 24 * time.Hour
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			var clock time.Time
			chore, err := New(Options{Store: db, Bodies: 7 * day, Events: 30 * day, Audit: 30 * day, Keys: day,
				Pause: time.Microsecond, Now: func() time.Time { return clock }})
			if err != nil {
				t.Fatal(err)
			}
			statuses := []string{store.EventDelivered, store.EventDelivered, store.EventDelivered, store.EventDelivered,
				store.EventDelivered, store.EventDelivered, store.EventDelivered, store.EventIgnored, store.EventIgnored, store.EventDead}
			var waiting []string // never finished: retention must keep them
			var firstWindow, largest int64
			for d := range days {
				dayStart := start.Add(time.Duration(d) * day)
				n := perDay
				if d == spikeDay {
					n = 10 * perDay
				}
				var wg sync.WaitGroup
				var mu sync.Mutex
				for i := range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						at := dayStart.Add(time.Duration(i) * day / time.Duration(n))
						st := statuses[i%len(statuses)]
						if d == 10 && i < 3 {
							st = store.EventQueued
						}
						body := fmt.Appendf(nil, `{"token":"","team_id":"T0A1B2C3D","event":{"type":"app_mention","user":"U0A1B2C3D","text":"<@U0BOT> day %d event %d: why is checkout slow?","channel":"C0A4967KRBM"},"type":"event_callback","event_id":"Ev%d-%d"}`, d, i, d, i)
						r, err := db.InsertEvent(ctx, store.Event{Source: "slack", DeliveryID: fmt.Sprintf("Ev%d-%d", d, i),
							EventType: "app_mention", Status: st, Identifiers: map[string]string{"slack_channel_id": "C0A4967KRBM"},
							OrgID: "acme", TeamNodeID: "sre", MatchedBy: "slack_channel_id", ReceivedAt: at, Body: body,
							Headers: map[string]string{"content-type": "application/json", "user-agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}})
						if err != nil {
							t.Error(err)
							return
						}
						if st == store.EventQueued {
							mu.Lock()
							waiting = append(waiting, r.ID)
							mu.Unlock()
						}
						if i%10 == 0 {
							if err := db.InsertAgentRun(ctx, store.AgentRun{ID: uuid.NewString(), TriggerSource: "slack",
								WebhookEventID: r.ID, OrgID: "acme", TeamNodeID: "sre", AgentName: "investigation",
								Status: store.RunSucceeded, StartedAt: at.Add(time.Second), Duration: 2 * time.Second}); err != nil {
								t.Error(err)
							}
						}
					}()
				}
				wg.Wait()
				if t.Failed() {
					t.FailNow()
				}
				run := store.Run{ID: uuid.NewString(), Kind: store.RunKindProvision, OrgID: "acme", TeamNodeID: "sre",
					IdempotencyKey: fmt.Sprint("day-", d), Fingerprint: "f", Status: store.RunSucceeded, CreatedAt: dayStart, UpdatedAt: dayStart}
				if _, err := db.StartRun(ctx, run, dayStart.Add(-day)); err != nil {
					t.Fatal(err)
				}
				clock = dayStart.Add(day)
				if _, err := chore.Once(ctx); err != nil {
					t.Fatalf("day %d: %v", d, err)
				}
				size := db.FileBytes()
				largest = max(largest, size)
				if d == 29 {
					firstWindow = size
				}
			}
			now := clock

			// Every finished event received before the window is gone; the
			// ones waiting for a retry are all still there, with bodies.
			old, _, err := db.ListEvents(ctx, store.EventFilter{Until: now.Add(-30 * day), Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if len(old) != len(waiting) {
				t.Fatalf("%d events older than 30 days remain, want the %d still waiting", len(old), len(waiting))
			}
			for _, id := range waiting {
				e, err := db.GetEvent(ctx, id)
				if err != nil || e.Status != store.EventQueued || e.Body == nil {
					t.Fatalf("waiting event %s: %+v %v", id, e, err)
				}
			}
			total, err := db.CountEvents(ctx)
			if err != nil || total != 30*perDay+len(waiting) {
				t.Fatalf("%d events kept, want 30 days' %d and the %d waiting (%v)", total, 30*perDay, len(waiting), err)
			}
			// Bodies: none of a finished event older than 7 days, every one
			// younger.
			for _, c := range []struct {
				since, until time.Time
				bodies       bool
			}{{now.Add(-30 * day), now.Add(-7*day - time.Minute), false}, {now.Add(-7*day + time.Minute), now, true}} {
				evs, _, err := db.ListEvents(ctx, store.EventFilter{Since: c.since, Until: c.until, Limit: 50})
				if err != nil || len(evs) == 0 {
					t.Fatal(evs, err)
				}
				for _, e := range evs {
					full, err := db.GetEvent(ctx, e.ID)
					if err != nil || (full.Body != nil) != c.bodies || (full.BodyPurgedAt == nil) != c.bodies {
						t.Fatalf("event received %s: body kept = %v, want %v (%v)", e.ReceivedAt, full.Body != nil, c.bodies, err)
					}
				}
			}
			// Audit: agent calls and runs of the last 30 days only.
			calls, err := db.TeamAgentRuns(ctx, "acme", "sre")
			if err != nil || len(calls) != 30*perDay/10 {
				t.Fatalf("%d agent calls kept, want %d (%v)", len(calls), 30*perDay/10, err)
			}
			runs, _, err := db.ListRuns(ctx, store.RunFilter{Limit: 100})
			if err != nil || len(runs) != 30 {
				t.Fatalf("%d runs kept, want 30 (%v)", len(runs), err)
			}
			if name == "sqlite" {
				// The live file: what is on disk after the retention pass,
				// never a compacted copy. It is exactly its pages in use
				// (the purges' free pages went back to the file system, the
				// WAL was truncated), and within what the sizing in
				// docs/backups.md says a live database holds at this volume.
				end := db.FileBytes()
				used, err := db.UsedBytes(ctx)
				if err != nil {
					t.Fatal(err)
				}
				sized := int64(perDay * (7*liveBytesWithBody + 23*liveBytesPurged))
				t.Logf("SQLite file with its WAL: %.1f MB after the first 30 days, %.1f MB at most (the spike), %.1f MB after a year (%.2f×); the sizing says %.1f MB",
					float64(firstWindow)/1e6, float64(largest)/1e6, float64(end)/1e6, float64(end)/float64(firstWindow), float64(sized)/1e6)
				if end != used {
					t.Fatalf("the file and its WAL hold %d bytes, its pages in use %d: the space purges freed was not given back", end, used)
				}
				if float64(end) > 1.25*float64(firstWindow) {
					t.Fatalf("the file is %d bytes after a year, more than 1.25 × its %d bytes after the first window", end, firstWindow)
				}
				if end > sized {
					t.Fatalf("the file is %d bytes after a year, more than the %d the sizing gives %d events a day", end, sized, perDay)
				}
				if largest <= end {
					t.Fatalf("the largest size %d is not above the end's %d: the test did not take the file through a spike", largest, end)
				}
			}
		})
	}
}

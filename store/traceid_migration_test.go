package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
)

// traceIDVersion is the migration that gave events their trace column.
const traceIDVersion = 17

// BenchmarkMigration17 times migration 17 (the nullable trace_id column)
// on BENCH_MIGRATE_EVENTS (1,000,000) events as migration 16 left them,
// 30 days of them, and the bytes they take before and after. Adding a
// nullable column without a default is a change to the schema alone on
// both databases, so the figure should not grow with the table.
func BenchmarkMigration17(b *testing.B) { benchMigrations(b, traceIDVersion) }

// BenchmarkMigrations18To20 times, one by one, the migrations of noise
// round 2 and the conversation on the same 1,000,000 events as migration
// 17 left them: 18 (inhibition: two nullable columns and a partial index
// on the events, which reads the table once), 19 (a new table for the
// conversation's questions and approvals) and 20 (a nullable column on the
// silences).
func BenchmarkMigrations18To20(b *testing.B) { benchMigrations(b, 18, 19, 20) }

// BenchmarkMigrations21To23 applies the run summary (21) and the held-events
// index (23) to a million events (there is no 22).
func BenchmarkMigrations21To23(b *testing.B) { benchMigrations(b, 21, 23) }

// benchMigrations fills BENCH_MIGRATE_EVENTS events (default 1,000,000, 30
// days) at the schema before versions[0], then applies each version in
// turn, printing its time and the events' bytes per event before and
// after, on both databases.
func benchMigrations(b *testing.B, versions ...int64) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_MIGRATE_EVENTS")); err == nil && v > 0 {
		n = v
	}
	end := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				o := Options{Path: filepath.Join(b.TempDir(), "before.db")}
				if name == "postgres" {
					o = Options{URL: pgtest.Database(b)}
				}
				db := openAt(b, o, versions[0]-1)
				fillPlanRows(b, db, n, end, nil)
				for _, v := range versions {
					before := db.eventBytes(b)
					start := time.Now()
					if _, err := db.goose.UpTo(context.Background(), v); err != nil {
						b.Fatal(err)
					}
					took := time.Since(start)
					after := db.eventBytes(b)
					fmt.Printf("migration %d on %s: %d events in %s; %.1f bytes per event before, %.1f after\n",
						v, name, n, took.Round(time.Millisecond), float64(before)/float64(n), float64(after)/float64(n))
				}
			}
		})
	}
}

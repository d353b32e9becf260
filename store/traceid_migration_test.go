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
func BenchmarkMigration17(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_MIGRATE_EVENTS")); err == nil && v > 0 {
		n = v
	}
	end := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				o := Options{Path: filepath.Join(b.TempDir(), "v16.db")}
				if name == "postgres" {
					o = Options{URL: pgtest.Database(b)}
				}
				db := openAt(b, o, traceIDVersion-1)
				fillPlanRows(b, db, n, end, nil)
				before := db.eventBytes(b)
				start := time.Now()
				if _, err := db.goose.UpTo(context.Background(), traceIDVersion); err != nil {
					b.Fatal(err)
				}
				took := time.Since(start)
				after := db.eventBytes(b)
				fmt.Printf("migration 17 on %s: %d events in %s; %.1f bytes per event before, %.1f after\n",
					name, n, took.Round(time.Millisecond), float64(before)/float64(n), float64(after)/float64(n))
			}
		})
	}
}

package server_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/migrations"
	"github.com/incidentfox/orchestrator-edge/store"
)

// BenchmarkCopyToPostgres times what `orchestrator migrate-to-postgres`
// does with BENCH_COPY_EVENTS (default 1,000,000) events and their agent
// runs: the copy into a real, empty PostgreSQL 15 and the verification of
// every table (row counts and checksums read back from both).
func BenchmarkCopyToPostgres(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_COPY_EVENTS")); err == nil && v > 0 {
		n = v
	}
	dir := b.TempDir()
	path := filepath.Join(dir, "orchestrator.db")
	ctx := context.Background()
	src, err := store.Open(ctx, store.Options{Path: path, Migrations: migrations.FS})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	if _, err := src.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	fillMillion(b, path, n, wallclock.Now(), 30*24*time.Hour)
	dst, err := store.Open(ctx, store.Options{URL: pgtest.Database(b), Migrations: migrations.FS})
	if err != nil {
		b.Fatal(err)
	}
	defer dst.Close()
	if _, err := dst.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	copied, err := src.CopyTo(ctx, dst, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	rows := 0
	for _, t := range copied {
		rows += t.Rows
	}
	fmt.Printf("copy: %d events (%d rows in %d tables) copied into PostgreSQL and verified in %s (%.0f rows/s)\n",
		n, rows, len(copied), took.Round(time.Second), float64(rows)/took.Seconds())
	b.ReportMetric(took.Seconds(), "s_copy")
}

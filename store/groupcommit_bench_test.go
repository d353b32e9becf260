package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/migrations"
)

// BenchmarkGroupCommit is the SQLite writer alone, without HTTP: 40,000
// Slack mentions (the door's headers and body, already routed) stored by
// InsertEvent from 8 and from 32 goroutines, as the door's handlers would.
// It prints events/s, events per commit and the process's CPU per event —
// the floor under the door's own figures (issue 27). Run with `make bench`.
func BenchmarkGroupCommit(b *testing.B) {
	const n = 40000
	for _, conc := range []int{8, 32} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			db, err := Open(context.Background(), Options{Path: filepath.Join(b.TempDir(), "g.db"), Migrations: migrations.FS})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			ctx := context.Background()
			if _, err := db.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
			at := time.Now()
			var next atomic.Int64
			var ru0, ru1 syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			b0 := db.CommitBatches()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range conc {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > n {
							return
						}
						e := Event{Source: "slack", DeliveryID: fmt.Sprintf("Ev%010x", i*0x9e3779b1%(1<<40)), EventType: "app_mention",
							Status: EventQueued, Identifiers: map[string]string{"slack_channel_id": "C0A4967KRBM"},
							Headers: slackHeaders, Body: slackBody, ReceivedAt: at.Add(time.Duration(i) * time.Microsecond),
							OrgID: "acme", TeamNodeID: "sre", MatchedBy: "slack_channel_id",
							BodySHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}
						if _, err := db.InsertEvent(ctx, e); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := time.Duration(ru1.Utime.Nano() - ru0.Utime.Nano() + ru1.Stime.Nano() - ru0.Stime.Nano())
			rate := n / elapsed.Seconds()
			b.ReportMetric(rate, "events/s")
			fmt.Printf("group commit c=%d: %.0f events/s, %.1f events per commit, %.0f µs of CPU per event (%.0f%% of a core)\n",
				conc, rate, float64(n)/float64(max(1, db.CommitBatches()-b0)), float64(cpu.Microseconds())/n,
				100*cpu.Seconds()/elapsed.Seconds())
		})
	}
}

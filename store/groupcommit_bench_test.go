package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
	"github.com/incidentfox/orchestrator-edge/migrations"
)

// BenchmarkGroupCommit is the SQLite writer alone, without HTTP: 40,000
// Slack mentions (the door's headers and body, already routed) stored by
// InsertEvent from 8 and from 32 goroutines, as the door's handlers would.
// It prints events/s, events per commit and the process's CPU per event —
// the floor under the door's own figures (issue 27). Run with `make bench`.
//
// On PostgreSQL (postgres/…) the same, and the server's CPU per event
// beside the process's: the CPU its processes used meanwhile, read from
// /proc for every process pg_stat_activity lists.
func BenchmarkGroupCommit(b *testing.B) {
	const n = 40000
	for _, name := range []string{"", "postgres/"} {
		for _, conc := range []int{8, 32} {
			b.Run(fmt.Sprintf("%sconcurrency=%d", name, conc), func(b *testing.B) { groupCommit(b, name != "", n, conc) })
		}
	}
}

// serverCPU is the CPU the PostgreSQL server's processes have used, by pid.
func serverCPU(b *testing.B, db *DB) map[int]time.Duration {
	rows, err := db.read.QueryContext(context.Background(), `SELECT pid FROM pg_stat_activity`)
	if err != nil {
		b.Fatal(err)
	}
	pids, err := collect(rows, func(r rowScanner) (int, error) {
		var pid int
		return pid, r.Scan(&pid)
	})
	if err != nil {
		b.Fatal(err)
	}
	out := map[int]time.Duration{}
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command's closing parenthesis: utime and stime
		// are the 12th and 13th, in clock ticks (100 a second).
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[pid] = time.Duration(ut+st) * 10 * time.Millisecond
	}
	return out
}

// groupCommit stores n mentions from conc goroutines into a new database.
func groupCommit(b *testing.B, postgres bool, n, conc int) {
	o := Options{Path: filepath.Join(b.TempDir(), "g.db"), Migrations: migrations.FS}
	if postgres {
		o.URL = pgtest.Database(b)
	}
	db, err := Open(context.Background(), o)
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
	var server0 map[int]time.Duration
	if postgres {
		server0 = serverCPU(b, db)
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
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
	rate := float64(n) / elapsed.Seconds()
	b.ReportMetric(rate, "events/s")
	where, server := "", ""
	if postgres {
		where = "PostgreSQL "
		var used time.Duration
		for pid, d := range serverCPU(b, db) {
			used += d - server0[pid]
		}
		server = fmt.Sprintf("; PostgreSQL's processes %.0f µs of CPU per event", float64(used.Microseconds())/float64(n))
	}
	fmt.Printf("group commit %sc=%d: %.0f events/s, %.1f events per commit, %.0f µs of CPU per event (%.0f%% of a core)%s\n",
		where, conc, rate, float64(n)/float64(max(1, db.CommitBatches()-b0)),
		float64(cpu.Microseconds())/float64(n), 100*cpu.Seconds()/elapsed.Seconds(), server)
}

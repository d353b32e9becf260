// Package wallclock is where the product reads the date: the one place a test
// run can move it. In a binary built by `go build` Now is time.Now. In a
// binary built by `go test` (testing.Testing reports true, which only the
// go command's test link sets), ORCHESTRATOR_NOW_OFFSET, a Go duration such
// as 8760h or -720h, is added to it, so the whole suite can be run as if it
// were a year later (or earlier) without touching the machine's clock, which
// libfaketime cannot move for Go programs anyway.
//
// Now is for dates: what is stored, retention cutoffs, budgets by UTC day,
// silences, expiries. Elapsed times, timers and deadlines keep time.Now and
// time.Since, which the offset must not reach.
package wallclock

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// OffsetEnv names the test-only offset.
const OffsetEnv = "ORCHESTRATOR_NOW_OFFSET"

// Now is the current time, moved by ORCHESTRATOR_NOW_OFFSET in a test
// binary. A value that is not a duration stops the test binary at once
// rather than running the suite at the wrong date.
func Now() time.Time {
	now := time.Now()
	if !testing.Testing() {
		return now
	}
	return now.Add(Offset())
}

// Offset is the test-only offset Now adds: always 0 outside `go test`.
func Offset() time.Duration {
	if !testing.Testing() {
		return 0
	}
	v := os.Getenv(OffsetEnv)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		panic(fmt.Sprintf("%s=%q is not a duration (e.g. 8760h): %v", OffsetEnv, v, err))
	}
	return d
}

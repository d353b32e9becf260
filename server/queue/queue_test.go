package queue

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A failed attempt: permanent → failed (not counted); transient → retried
// after the backoff, or after what the other side asked; the last allowed
// attempt → dead.
func TestPolicy_FailDecides(t *testing.T) {
	p := Policy{MaxAttempts: 3, Base: time.Second, Max: time.Minute}.WithDefaults()
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	if d := p.Fail(1, true, 0, now); d != (Decision{Outcome: Failed, Attempts: 1}) {
		t.Fatalf("permanent = %+v", d)
	}
	d := p.Fail(0, false, 0, now)
	if d.Outcome != Retry || d.Attempts != 1 || d.At.Before(now.Add(500*time.Millisecond)) || d.At.After(now.Add(time.Second)) {
		t.Fatalf("first transient = %+v", d)
	}
	if d := p.Fail(1, false, 7*time.Second, now); d.Outcome != Retry || d.Attempts != 2 || !d.At.Equal(now.Add(7*time.Second)) {
		t.Fatalf("asked to wait = %+v", d)
	}
	if d := p.Fail(2, false, 7*time.Second, now); d.Outcome != Dead || d.Attempts != 3 {
		t.Fatalf("the last attempt = %+v", d)
	}
	if def := (Policy{}).WithDefaults(); def != (Policy{MaxAttempts: 6, Base: 2 * time.Second, Max: 5 * time.Minute}) {
		t.Fatalf("defaults = %+v", def)
	}
}

// The backoff doubles from Base with jitter (between half and all of it),
// capped at Max.
func TestPolicy_BackoffIsExponentialWithJitterAndCapped(t *testing.T) {
	p := Policy{Base: time.Second, Max: 10 * time.Second}
	for range 200 {
		for n, full := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 20: 10 * time.Second} {
			if d := p.Backoff(n); d < full/2 || d > full {
				t.Fatalf("Backoff(%d) = %v, want between %v and %v", n, d, full/2, full)
			}
		}
	}
}

// Slots never run more than their number at once, and say when one frees.
func TestSlots_BoundConcurrency(t *testing.T) {
	s := NewSlots(3)
	var running, most atomic.Int32
	release := make(chan struct{})
	for range 3 {
		s.Go(func() {
			n := running.Add(1)
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			<-release
			running.Add(-1)
		})
	}
	if s.Free() != 0 {
		t.Fatalf("free = %d with three running", s.Free())
	}
	waitUntil(t, func() bool { return running.Load() == 3 })
	close(release)
	<-s.Freed()
	s.Wait()
	if s.Free() != 3 || most.Load() != 3 {
		t.Fatalf("free %d, at most %d at once", s.Free(), most.Load())
	}
}

// The completer writes in batches, keeps a batch whose write failed for the
// next flush (nothing dropped), hands each written batch to After once, and
// writes what is left when it closes.
func TestCompleter_BatchesKeepsFailuresAndFlushesOnClose(t *testing.T) {
	var mu sync.Mutex
	var written, after [][]int
	fail := true
	c := &Completer[int]{Every: time.Hour, At: 3,
		Flush: func(_ context.Context, b []int) error {
			mu.Lock()
			defer mu.Unlock()
			if fail {
				fail = false
				return errors.New("database is locked")
			}
			written = append(written, append([]int(nil), b...))
			return nil
		},
		After: func(b []int) { mu.Lock(); after = append(after, b); mu.Unlock() },
	}
	c.Start()
	c.Add(1, 2, 3) // full: flushed at once, and refused
	waitUntil(t, func() bool { mu.Lock(); defer mu.Unlock(); return !fail })
	// The refused batch is kept and counts toward the next: one Add (two
	// would race the flush the first one makes full) brings it to six.
	c.Add(4, 5, 6)
	waitUntil(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(written) == 1 })
	c.Add(7)
	c.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(written) != 2 || len(written[0]) != 6 || written[0][0] != 1 || written[0][5] != 6 || len(written[1]) != 1 || written[1][0] != 7 {
		t.Fatalf("written = %v", written)
	}
	if len(after) != 2 {
		t.Fatalf("after saw %d batches", len(after))
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for range 30000 {
		if cond() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("condition never held")
}

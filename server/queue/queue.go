// Package queue is what the appliance's two durable queues share — the
// webhook events the dispatcher hands to the agent, and the answer
// deliveries the outbox posts: the retry policy (exponential backoff with
// jitter, a bound on attempts, then dead), the worker slots that bound
// concurrent work and say when one frees, and the completer that writes
// outcomes in batches. The SQL of claims and leases is the store's
// (store/queue.go); this is the rest of the machinery, written once.
package queue

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Outcomes of a failed attempt.
const (
	// Retry: queued again for a later attempt.
	Retry = "retry"
	// Dead: transient failures used up every attempt (redrivable).
	Dead = "dead"
	// Failed: a failure retrying cannot fix (redrivable by hand).
	Failed = "failed"
)

// Policy is how a queue retries: attempt n waits between half and all of
// Base·2^(n-1), capped at Max, until MaxAttempts failures make it dead.
type Policy struct {
	MaxAttempts int
	Base, Max   time.Duration
}

// WithDefaults fills what is unset: 6 attempts, 2 s, 5 min.
func (p Policy) WithDefaults() Policy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 6
	}
	if p.Base <= 0 {
		p.Base = 2 * time.Second
	}
	if p.Max <= 0 {
		p.Max = 5 * time.Minute
	}
	return p
}

// Backoff is the wait before attempt n+1 after n failures: exponential
// with jitter (between half and all of Base·2^(n-1)), capped.
func (p Policy) Backoff(n int) time.Duration {
	delay := p.Base
	for i := 1; i < n && delay < p.Max; i++ {
		delay *= 2
	}
	delay = min(delay, p.Max)
	return delay/2 + time.Duration(rand.Int64N(int64(delay/2)+1))
}

// Decision is what one failed attempt comes to.
type Decision struct {
	// Outcome is Retry, Dead or Failed.
	Outcome string
	// Attempts is the failure count after this one (a permanent failure
	// does not count: it was not worth retrying).
	Attempts int
	// At is when to try again (Retry only).
	At time.Time
}

// Fail decides a failed attempt of work that had failed attempts times
// before: a permanent failure ends failed; a transient one is retried
// after the backoff — or after asked, when the other side said when
// (a 429's Retry-After) — until MaxAttempts, then dead.
func (p Policy) Fail(attempts int, permanent bool, asked time.Duration, now time.Time) Decision {
	if permanent {
		return Decision{Outcome: Failed, Attempts: attempts}
	}
	n := attempts + 1
	if n >= p.MaxAttempts {
		return Decision{Outcome: Dead, Attempts: n}
	}
	wait := p.Backoff(n)
	if asked > 0 {
		wait = asked
	}
	return Decision{Outcome: Retry, Attempts: n, At: now.Add(wait)}
}

// Slots bound concurrent work: a loop asks Free, starts work with Go, and
// waits on Freed to fill a slot again.
type Slots struct {
	slots chan struct{}
	freed chan struct{}
	wg    sync.WaitGroup
}

// NewSlots returns n slots.
func NewSlots(n int) *Slots {
	return &Slots{slots: make(chan struct{}, n), freed: make(chan struct{}, 1)}
}

// Free is how many slots are free.
func (s *Slots) Free() int { return cap(s.slots) - len(s.slots) }

// Go runs f in a slot (waiting for one if none is free).
func (s *Slots) Go(f func()) {
	s.slots <- struct{}{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
		<-s.slots
		select {
		case s.freed <- struct{}{}:
		default:
		}
	}()
}

// Freed signals when a slot was freed.
func (s *Slots) Freed() <-chan struct{} { return s.freed }

// Wait waits until every started f has returned.
func (s *Slots) Wait() { s.wg.Wait() }

// Completer writes outcomes in batches (River's completer is the model):
// items wait until every Every or until At of them (by Weight) wait, then
// Flush writes them in one transaction, so bookkeeping costs one commit a
// batch, not one an item, and never keeps the single writer from ingest
// for long. A failed flush keeps its items for the next one: nothing is
// dropped. After, if set, sees each batch once it is written.
type Completer[T any] struct {
	// Flush writes a batch (one transaction).
	Flush func(ctx context.Context, batch []T) error
	// After sees a written batch (optional).
	After func(batch []T)
	// Weight is how much an item counts toward At (default 1).
	Weight func(T) int
	Every  time.Duration
	At     int
	Logger *slog.Logger

	mu      sync.Mutex
	items   []T
	weight  int
	full    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
}

// Start starts flushing (defaults: every 50 ms or at 100).
func (c *Completer[T]) Start() {
	if c.Every <= 0 {
		c.Every = 50 * time.Millisecond
	}
	if c.At <= 0 {
		c.At = 100
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.full, c.stop, c.stopped = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go c.run()
}

// Add queues items for the next flush.
func (c *Completer[T]) Add(items ...T) {
	if len(items) == 0 {
		return
	}
	w := len(items)
	if c.Weight != nil {
		w = 0
		for _, it := range items {
			w += c.Weight(it)
		}
	}
	c.mu.Lock()
	c.items = append(c.items, items...)
	c.weight += w
	n := c.weight
	c.mu.Unlock()
	if n >= c.At {
		select {
		case c.full <- struct{}{}:
		default:
		}
	}
}

func (c *Completer[T]) run() {
	defer close(c.stopped)
	t := time.NewTicker(c.Every)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			c.flush()
			return
		case <-t.C:
		case <-c.full:
		}
		c.flush()
	}
}

func (c *Completer[T]) flush() {
	c.mu.Lock()
	items, weight := c.items, c.weight
	c.items, c.weight = nil, 0
	c.mu.Unlock()
	if len(items) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Flush(ctx, items); err != nil {
		c.Logger.Error("recording outcomes failed; kept for the next flush", "items", len(items), "error", err)
		c.mu.Lock()
		c.items, c.weight = append(items, c.items...), c.weight+weight
		c.mu.Unlock()
		return
	}
	if c.After != nil {
		c.After(items)
	}
}

// Close flushes what is left and stops.
func (c *Completer[T]) Close() {
	if c.stop == nil {
		return
	}
	close(c.stop)
	<-c.stopped
}

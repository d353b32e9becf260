package dispatch

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/incidentfox/orchestrator-edge/store"
)

// completer writes dispatch outcomes and agent-run rows in batches (SPEC §6
// Storms; River's completer is the model): it flushes every FlushEvery or
// as soon as FlushAt outcomes wait, in one transaction, so that dispatch
// bookkeeping never keeps the single writer from ingest for long. Until a
// flush, the events stay dispatching; a crash before it returns them to
// the queue at the next start.
type completer struct {
	db    *store.DB
	log   *slog.Logger
	every time.Duration
	at    int

	mu      sync.Mutex
	outs    []store.Outcome
	runs    []store.AgentRun
	full    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
}

func newCompleter(db *store.DB, log *slog.Logger, every time.Duration, at int) *completer {
	return &completer{db: db, log: log, every: every, at: at, full: make(chan struct{}, 1),
		stop: make(chan struct{}), stopped: make(chan struct{})}
}

// add queues a call's outcomes and its run (nil when no call was made).
func (c *completer) add(outs []store.Outcome, run *store.AgentRun) {
	c.mu.Lock()
	c.outs = append(c.outs, outs...)
	if run != nil {
		c.runs = append(c.runs, *run)
	}
	n := len(c.outs)
	c.mu.Unlock()
	if n >= c.at {
		select {
		case c.full <- struct{}{}:
		default:
		}
	}
}

// run flushes on the tick or when full, until close; then flushes the rest.
func (c *completer) run() {
	defer close(c.stopped)
	t := time.NewTicker(c.every)
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

// flush writes what waits. On failure the batch stays for the next flush:
// nothing a call came to is dropped.
func (c *completer) flush() {
	c.mu.Lock()
	outs, runs := c.outs, c.runs
	c.outs, c.runs = nil, nil
	c.mu.Unlock()
	if len(outs) == 0 && len(runs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.db.RecordOutcomes(ctx, outs, runs); err != nil {
		c.log.Error("recording dispatch outcomes failed; kept for the next flush", "outcomes", len(outs), "error", err)
		c.mu.Lock()
		c.outs, c.runs = append(outs, c.outs...), append(runs, c.runs...)
		c.mu.Unlock()
	}
}

// close flushes what is left and stops.
func (c *completer) close() {
	close(c.stop)
	<-c.stopped
}

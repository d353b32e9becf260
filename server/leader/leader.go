// Package leader runs the work that must happen once across replicas —
// schedule reconcile, body retention, settling interrupted provisioning runs,
// scheduled backups — on one replica at a time (SPEC §13). Leadership is a
// lock: an advisory lock on PostgreSQL, the data directory's lock file on
// SQLite (where the one replica always wins it). When the leader dies, its
// database session ends, the lock is free, and another replica takes it at
// its next try.
package leader

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Key is the leader lock's key.
const Key = "orchestrator|leader"

// Options configure Run.
type Options struct {
	Locks *store.Locks
	// Every is how often a follower tries to become leader and a leader
	// checks that it still is.
	Every    time.Duration
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Elector holds or seeks leadership.
type Elector struct {
	o     Options
	log   *slog.Logger
	gauge prometheus.Gauge
}

// New returns an Elector and registers orchestrator_leader.
func New(o Options) (*Elector, error) {
	if o.Every <= 0 {
		o.Every = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Elector{o: o, log: o.Logger.With("component", "leader"), gauge: prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "orchestrator_leader",
		Help: "1 while this replica runs the once-only work (reconcile, retention, settling runs, backups).",
	})}
	if o.Registry != nil {
		if err := o.Registry.Register(e.gauge); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Run seeks leadership until ctx ends. While this replica leads, each chore
// runs in its own goroutine with a context that ends when leadership is
// lost (or ctx ends); Run waits for them before it tries again or returns.
func (e *Elector) Run(ctx context.Context, chores ...func(context.Context)) {
	t := time.NewTicker(e.o.Every)
	defer t.Stop()
	for {
		held, err := e.o.Locks.TryAcquire(ctx, Key)
		if err != nil && ctx.Err() == nil {
			e.log.Warn("cannot try for leadership", "error", err)
		}
		if held != nil {
			e.lead(ctx, held, t.C, chores)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (e *Elector) lead(ctx context.Context, held *store.Held, tick <-chan time.Time, chores []func(context.Context)) {
	defer held.Release()
	e.log.Info("leading: this replica runs reconcile, retention and recovery")
	e.gauge.Set(1)
	defer e.gauge.Set(0)
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, c := range chores {
		wg.Add(1)
		go func() { defer wg.Done(); c(cctx) }()
	}
	defer wg.Wait()
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			if err := held.Check(ctx); err != nil {
				if ctx.Err() == nil {
					e.log.Warn("leadership lost; stopping the once-only work", "error", err)
				}
				return
			}
		}
	}
}

package ingest

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/store"
)

// ackStats sums the ack latency of accepted events per source until the
// next write (FlushAckStats): the event is committed before its answer, so
// its latency cannot be a column of its row.
type ackStats struct {
	mu     sync.Mutex
	counts map[string]store.Histogram
}

func (a *ackStats) observe(source string, d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.histogram(source).Observe(d)
}

// histogram is source's histogram, made on first use (a.mu held).
func (a *ackStats) histogram(source string) store.Histogram {
	h, ok := a.counts[source]
	if !ok {
		if a.counts == nil {
			a.counts = map[string]store.Histogram{}
		}
		h = store.NewHistogram(store.AckBuckets)
		a.counts[source] = h
	}
	return h
}

// putBack adds histograms that could not be written to the pending ones.
func (a *ackStats) putBack(pending map[string]store.Histogram) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for source, h := range pending {
		a.histogram(source).Add(h)
	}
}

func (a *ackStats) take() map[string]store.Histogram {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.counts
	a.counts = nil
	return out
}

// FlushAckStats writes the ack latencies gathered since the last write, one
// row per source. A failed write puts them back for the next.
func (d *Door) FlushAckStats(ctx context.Context) error {
	if d.o.Acks == nil {
		return nil
	}
	pending := d.acks.take()
	if len(pending) == 0 {
		return nil
	}
	now := d.now()
	rows := make([]store.AckStat, 0, len(pending))
	for source, h := range pending {
		rows = append(rows, store.AckStat{ID: uuid.NewString(), Source: source, At: now, Counts: h.Counts})
	}
	err := d.o.Acks.AddAckStats(ctx, rows)
	if err != nil {
		d.acks.putBack(pending)
	}
	return err
}

// RunAckFlusher writes the ack latencies every interval until stop closes,
// and once more then.
func (d *Door) RunAckFlusher(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := d.FlushAckStats(ctx); err != nil {
				d.log.Warn("writing ack latency figures failed", "error", err)
			}
			cancel()
			return
		case <-t.C:
			if err := d.FlushAckStats(context.Background()); err != nil {
				d.log.Warn("writing ack latency figures failed", "error", err)
			}
		}
	}
}

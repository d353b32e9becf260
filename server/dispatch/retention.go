package dispatch

import (
	"context"
	"log/slog"
	"time"

	"github.com/incidentfox/orchestrator-edge/store"
)

// RunRetention purges raw webhook bodies older than retention every
// interval (and once at start) until ctx ends. Metadata is kept.
func RunRetention(ctx context.Context, db *store.DB, retention, interval time.Duration, now func() time.Time, log *slog.Logger) {
	for {
		t := now().UTC()
		if _, err := db.PurgeAckStats(ctx, t.Add(-store.AckStatsRetention)); err != nil && ctx.Err() == nil {
			log.Error("purging old ack latency figures failed", "error", err)
		}
		n, err := db.PurgeBodies(ctx, t.Add(-retention), t)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("purging old webhook bodies failed", "error", err)
		case n > 0:
			log.Info("purged old webhook bodies", "count", n, "retention", retention.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

package store

// Migration 10 (issue 27): on SQLite, the events table's indexes no longer
// repeat the id. SQLite ends every index entry with the row's rowid — here
// the id itself (INTEGER PRIMARY KEY) — so an index declared
// (received_at, id) held the id twice; declared (received_at) it holds it
// once and still orders, seeks and pages by (received_at, id), as the
// query-plan test checks at a million events. That is 8.6 bytes an event
// (BenchmarkBytesPerStoredEvent: 300.6 → 292 after the body's purge) and
// less for every insert to write. PostgreSQL has no rowid: its indexes keep
// the id, and the migration does nothing there. It is a Go migration only
// because the two databases want different statements.

import (
	"context"
	"database/sql"
	"strings"
)

// rowidIndexesVersion is migration 10's version.
const rowidIndexesVersion = 10

// rowidIndexes are the events indexes whose last column was the id.
var rowidIndexes = []struct{ name, cols, where string }{
	{"ix_webhook_events_received", "received_at", ""},
	{"ix_webhook_events_source_received", "source, received_at", ""},
	{"ix_webhook_events_team", "org_id, team_node_id, received_at", ""},
	{"ix_webhook_events_rare_status", "status, received_at", rareStatuses},
	{"ix_webhook_events_alert", "source, alert_key", "alert_key IS NOT NULL"},
	{"ix_webhook_events_suppressed", "suppressed_reason, received_at", "suppressed_reason IS NOT NULL"},
}

// rowidIndexesDDL rebuilds those indexes on SQLite: without the trailing
// id (up) or with it (down).
func (db *DB) rowidIndexesDDL(ctx context.Context, tx *sql.Tx, withID bool) error {
	if db.d.name != "sqlite" {
		return nil
	}
	for _, ix := range rowidIndexes {
		cols := ix.cols
		if withID {
			cols += ", id"
		}
		q := []string{`DROP INDEX IF EXISTS ` + ix.name, `CREATE INDEX ` + ix.name + ` ON orchestrator_webhook_events (` + cols + `)`}
		if ix.where != "" {
			q[1] += ` WHERE ` + ix.where
		}
		if _, err := tx.ExecContext(ctx, strings.Join(q, "; ")); err != nil {
			return err
		}
	}
	return nil
}

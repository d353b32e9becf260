package store

// Migration 13 (issue 37): an event's payload — its headers and body,
// compressed (payload.go) — moves out of the event's row into a table of
// its own, orchestrator_event_payloads, keyed by the event's id.
//
// Why: body retention used to clear the payload inside the row. That left
// every leaf page of the events table half empty, and SQLite returns only
// whole free pages to the file system (new rows are appended at the end of
// the id order and never reuse the room), so a purge gave back 2 % of the
// live file. Now a purge deletes whole payload rows, oldest ids first:
// their pages empty completely, and the incremental vacuum after the
// retention pass returns them (SPEC §16 "Space given back"). On
// PostgreSQL the same split lets autovacuum reuse the space of the purged
// bodies for new ones.
//
// The payload table on SQLite is a rowid table (event_id INTEGER PRIMARY
// KEY: the id is the row's key, no second index); on PostgreSQL event_id is
// a BIGINT primary key, like the events' identity. There is no foreign key:
// a check per inserted payload would cost the door on PostgreSQL, and a
// foreign key's cascade would turn a future rebuild of the events table
// (drop and rename) into a delete of every payload. Instead the store
// deletes an event's payload with the event (PurgeFinishedEvents), and the
// door replaces a payload it finds under a new event's id on SQLite (which
// may reuse the id of the newest event once it is deleted).
//
// The events table keeps body_purged_at: an event whose body_purged_at is
// NULL still has its payload (or never had one), and
// ix_webhook_events_unpurged — those events by received time — is what a
// body purge reads, oldest first.
//
// The migration copies the payloads (in id order), drops the column and
// the index over it, and creates the new index. On SQLite the upgrade then
// compacts the file once (VACUUM, outside the migration's transaction, like
// migration 7's conversion; the pre-migrate snapshot covers both), so the
// room the column took in the events table's pages is given back at once.
// Down puts the payloads back into the events rows.

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// payloadTableVersion is migration 13's version.
const payloadTableVersion = 13

// unpurged is ix_webhook_events_unpurged's condition: events whose payload
// has not been purged (hasBody, in a query that may read the index).
const unpurged = `body_purged_at IS NULL`

// payloadOf is an event's payload as a column of a query over the events
// table: NULL when the event has none (purged, or never had one). A
// correlated subquery, not a join, so the same expression serves a SELECT,
// an UPDATE's RETURNING and a SELECT … FOR UPDATE on both databases.
const payloadOf = `(SELECT p.payload FROM orchestrator_event_payloads p WHERE p.event_id = orchestrator_webhook_events.id)`

// payloadTableDDL creates the payload table. payload is not declared NOT
// NULL: on SQLite the door writes it with INSERT OR REPLACE, which a NOT
// NULL column would make able to abort half-way, and a statement that can
// abort half-way pays for a statement journal inside the batch's
// transaction. No NULL is ever written.
func (d *dialect) payloadTableDDL() string {
	id := "event_id INTEGER PRIMARY KEY"
	if d.name == "postgres" {
		id = "event_id BIGINT PRIMARY KEY"
	}
	return `CREATE TABLE orchestrator_event_payloads (
    ` + id + `,
    payload  BYTEA
)`
}

// payloadTableUp is migration 13: the payload table, filled from the
// events' payload column, which then goes.
func (db *DB) payloadTableUp(ctx context.Context, sqlTx *sql.Tx) error {
	start := time.Now()
	c := tx{sqlTx, db.d}
	var moved int64
	for i, q := range []string{
		db.d.payloadTableDDL(),
		`INSERT INTO orchestrator_event_payloads (event_id, payload)
			SELECT id, payload FROM orchestrator_webhook_events WHERE payload IS NOT NULL ORDER BY id`,
		`DROP INDEX ix_webhook_events_payload`,
		`ALTER TABLE orchestrator_webhook_events DROP COLUMN payload`,
		`CREATE INDEX ix_webhook_events_unpurged ON orchestrator_webhook_events (received_at) WHERE ` + unpurged,
	} {
		res, err := c.ExecContext(ctx, q)
		if err != nil {
			return fmt.Errorf("payload table: %w", err)
		}
		if i == 1 {
			moved, _ = res.RowsAffected()
		}
	}
	db.logger.Info("migration 13: payloads moved to their own table", "payloads", moved,
		"took", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// payloadTableDown undoes migration 13: the payloads go back into their
// events' rows (as the last column: every query names its columns).
func (db *DB) payloadTableDown(ctx context.Context, sqlTx *sql.Tx) error {
	c := tx{sqlTx, db.d}
	for _, q := range []string{
		`DROP INDEX ix_webhook_events_unpurged`,
		`ALTER TABLE orchestrator_webhook_events ADD COLUMN payload BYTEA`,
		`UPDATE orchestrator_webhook_events SET payload = ` + payloadOf + `
			WHERE id IN (SELECT event_id FROM orchestrator_event_payloads)`,
		`DROP TABLE orchestrator_event_payloads`,
		`CREATE INDEX ix_webhook_events_payload ON orchestrator_webhook_events (received_at) WHERE ` + withPayload,
	} {
		if _, err := c.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("payload table down: %w", err)
		}
	}
	return nil
}

// compact rewrites the SQLite file without its free room (VACUUM) and
// truncates the WAL: after migration 13, the events table's pages no
// longer hold the payloads' room. It runs on a connection of its own,
// outside any transaction. A failure is not the upgrade's: the schema is
// migrated, and retention frees the old pages as their events go.
func (db *DB) compact(ctx context.Context) error {
	if db.d.name != "sqlite" {
		return nil
	}
	start := time.Now()
	before, _ := db.UsedBytes(ctx)
	sdb, err := sql.Open("sqlite", dsn(db.path, false))
	if err != nil {
		return err
	}
	defer sdb.Close()
	c, err := sdb.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, q := range []string{`VACUUM`, `PRAGMA wal_checkpoint(TRUNCATE)`} {
		if _, err := c.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("compact: %s: %w", q, err)
		}
	}
	after, _ := db.UsedBytes(ctx)
	db.logger.Info("database compacted after migration 13", "bytes_before", before, "bytes_after", after,
		"took", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// PayloadSpace is what the stored payloads take.
type PayloadSpace struct {
	// Bytes is the payload table's pages in use (SQLite: overflow pages
	// included; PostgreSQL: the table with its index and TOAST).
	Bytes int64
	// Payloads is how many events still have theirs.
	Payloads int
}

// PayloadSpace measures the payload table: a body costs what it adds to
// the live database until its purge (the overview's "full in about N
// days" counts bodies apart, since retention purges them sooner than the
// events). It reads every page of the table: call it seldom.
func (db *DB) PayloadSpace(ctx context.Context) (PayloadSpace, error) {
	var s PayloadSpace
	q := `SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name = 'orchestrator_event_payloads'`
	if db.Shared() {
		q = `SELECT pg_total_relation_size('orchestrator_event_payloads')`
	}
	if err := db.read.QueryRowContext(ctx, q).Scan(&s.Bytes); err != nil {
		return s, fmt.Errorf("store: payload space: %w", err)
	}
	if err := db.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM orchestrator_event_payloads`).Scan(&s.Payloads); err != nil {
		return s, fmt.Errorf("store: payload space: %w", err)
	}
	return s, nil
}

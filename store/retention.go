package store

import (
	"context"
	"strings"
	"time"
)

// Retention (SPEC §16): nothing the appliance keeps grows without bound.
// Deletes go in small batches, each its own short transaction, so the
// event writer (the group commit) never waits long behind a purge.

// RetentionBatch is the most rows one purge transaction deletes.
const RetentionBatch = 500

// FinishedStatuses are the event statuses retention may delete: an event
// still queued, dispatching or waiting for a retry (queued with a later
// next attempt) never is.
var FinishedStatuses = []string{EventDelivered, EventIgnored, EventUnrouted, EventFailed, EventDead, EventSuppressed}

// PurgeFinishedEvents deletes up to limit events that finished before
// cutoff (received before it when no finish time is known), with their
// payloads if body retention left any. It reports how many went; fewer than
// limit means none is left.
func (db *DB) PurgeFinishedEvents(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	at := ms(cutoff)
	args := []any{}
	for _, s := range FinishedStatuses {
		args = append(args, s)
	}
	args = append(args, at, at, limit)
	t, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer t.Rollback()
	// received_at < cutoff is what the received index finds, oldest first;
	// a finish time is never before its receipt, so no finished event older
	// than the cutoff is missed. The payloads go by the ids deleted, so an
	// event that changed meanwhile (another replica's redrive) keeps its own.
	rows, err := t.QueryContext(ctx, `DELETE FROM orchestrator_webhook_events WHERE id IN (
		SELECT id FROM orchestrator_webhook_events
		WHERE status IN (`+strings.TrimSuffix(strings.Repeat("?, ", len(FinishedStatuses)), ", ")+`) AND received_at < ? AND COALESCE(finished_at, received_at) < ?
		ORDER BY received_at LIMIT ?`+db.d.forUpdate+`) RETURNING id`, args...)
	if err != nil {
		return 0, err
	}
	ids, err := collect(rows, scanKey)
	if err != nil {
		return 0, err
	}
	if err := deletePayloads(ctx, t, ids); err != nil {
		return 0, err
	}
	return len(ids), t.Commit()
}

// PurgeRuns deletes up to limit provisioning and deprovisioning runs
// created before cutoff, never one still running.
func (db *DB) PurgeRuns(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	res, err := db.write.ExecContext(ctx, `DELETE FROM orchestrator_provisioning_runs WHERE id IN (
		SELECT id FROM orchestrator_provisioning_runs WHERE created_at < ? AND status <> ? LIMIT ?)`,
		formatTime(cutoff), RunRunning, limit)
	return affectedRows(res, err)
}

// PurgeAgentRuns deletes up to limit agent calls started before cutoff,
// and as many of the runs' questions and approvals kept since before it.
func (db *DB) PurgeAgentRuns(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	if _, err := db.PurgePrompts(ctx, cutoff, limit); err != nil {
		return 0, err
	}
	res, err := db.write.ExecContext(ctx, `DELETE FROM orchestrator_agent_runs WHERE id IN (
		SELECT id FROM orchestrator_agent_runs WHERE started_at < ? LIMIT ?)`, formatTime(cutoff), limit)
	return affectedRows(res, err)
}

// ForgetIdempotencyKeys drops the idempotency keys of runs created before
// cutoff (the keys' lifetime has passed; the runs stay for the audit).
func (db *DB) ForgetIdempotencyKeys(ctx context.Context, cutoff time.Time) (int, error) {
	res, err := db.write.ExecContext(ctx, `UPDATE orchestrator_provisioning_runs SET idempotency_key = NULL
		WHERE idempotency_key IS NOT NULL AND created_at < ? AND status <> ?`, formatTime(cutoff), RunRunning)
	return affectedRows(res, err)
}

// CountReceived counts the events received in [since, until) (every org).
func (db *DB) CountReceived(ctx context.Context, since, until time.Time) (int, error) {
	var n int
	err := db.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM orchestrator_webhook_events WHERE received_at >= ? AND received_at < ?`,
		ms(since), ms(until)).Scan(&n)
	return n, err
}

// CountEvents counts every stored event.
func (db *DB) CountEvents(ctx context.Context) (int, error) {
	var n int
	err := db.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM orchestrator_webhook_events`).Scan(&n)
	return n, err
}

// GiveSpaceBack returns the pages a purge freed to the file system and
// truncates the WAL (SPEC §16), so the database file and its WAL shrink
// after a purge. On SQLite only; on a database not yet converted to
// incremental auto-vacuum the first step does nothing.
func (db *DB) GiveSpaceBack(ctx context.Context) error {
	if db.Shared() {
		return nil // PostgreSQL: autovacuum's business
	}
	if _, err := db.write.ExecContext(ctx, `PRAGMA incremental_vacuum`); err != nil {
		return err
	}
	_, err := db.write.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	return err
}

// AutoVacuum is the database's auto_vacuum mode (0 none, 1 full, 2
// incremental; PostgreSQL: -1).
func (db *DB) AutoVacuum(ctx context.Context) (int, error) {
	if db.Shared() {
		return -1, nil
	}
	var mode int
	err := db.read.QueryRowContext(ctx, `PRAGMA auto_vacuum`).Scan(&mode)
	return mode, err
}

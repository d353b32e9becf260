package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Webhook event statuses (SPEC §6): queued → dispatching → delivered |
// ignored | unrouted | failed | dead.
const (
	EventQueued      = "queued"
	EventDispatching = "dispatching"
	EventDelivered   = "delivered"
	EventIgnored     = "ignored"
	EventUnrouted    = "unrouted"
	EventFailed      = "failed"
	EventDead        = "dead"
)

// EventStatuses lists the event statuses in their lifecycle order.
var EventStatuses = []string{EventQueued, EventDispatching, EventDelivered, EventIgnored, EventUnrouted, EventFailed, EventDead}

// ErrBodyPurged: the event's body was purged by retention, so it cannot be
// dispatched again.
var ErrBodyPurged = errors.New("event body purged by retention")

// Event is a stored webhook event.
type Event struct {
	ID            string
	Source        string
	DeliveryID    string
	EventType     string
	Status        string
	Identifiers   map[string]string
	OrgID         string
	TeamNodeID    string
	MatchedBy     string
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
	Headers       map[string]string
	Body          []byte
	BodyPurgedAt  *time.Time
	ReceivedAt    time.Time
	UpdatedAt     time.Time
	FinishedAt    *time.Time
	// DigestRunID and DigestSize name the agent call this event was last
	// folded into with others (SPEC §6 Storms); empty for a lone delivery.
	DigestRunID string
	DigestSize  int
	// Solo: a redriven event goes alone, never folded into a digest.
	Solo bool
	// BodySHA256 is the hex SHA-256 of the body as it arrived (kept when
	// the body is purged). For GitHub it is also a dedupe key: GitHub signs
	// only the body, so the same body under a new X-GitHub-Delivery is a
	// replay (SPEC §18).
	BodySHA256 string
}

const eventColumns = `id, source, delivery_id, event_type, status, routing_identifiers, org_id, team_node_id,
	matched_by, attempts, next_attempt_at, last_error, headers, body, body_purged_at, received_at, updated_at, finished_at,
	digest_run_id, digest_size, solo, body_sha256`

// eventColumnsNoBody selects the same columns with the body left out (lists
// and routing do not need it, and it can be large).
var eventColumnsNoBody = strings.Replace(eventColumns, " body,", " NULL,", 1)

func scanEvent(row rowScanner) (Event, error) {
	var e Event
	var idents, org, team, matched, lastErr, headers, digest, sum sql.NullString
	var digestSize sql.NullInt64
	var next, purged, received, updated, finished nullTime
	err := row.Scan(&e.ID, &e.Source, &e.DeliveryID, &e.EventType, &e.Status, &idents, &org, &team,
		&matched, &e.Attempts, &next, &lastErr, &headers, &e.Body, &purged, &received, &updated, &finished,
		&digest, &digestSize, &e.Solo, &sum)
	if err != nil {
		return Event{}, err
	}
	e.DigestRunID, e.DigestSize, e.BodySHA256 = digest.String, int(digestSize.Int64), sum.String
	e.OrgID, e.TeamNodeID, e.MatchedBy, e.LastError = org.String, team.String, matched.String, lastErr.String
	if idents.Valid {
		_ = json.Unmarshal([]byte(idents.String), &e.Identifiers)
	}
	if headers.Valid {
		_ = json.Unmarshal([]byte(headers.String), &e.Headers)
	}
	e.NextAttemptAt, e.BodyPurgedAt, e.ReceivedAt, e.UpdatedAt, e.FinishedAt = next.Time, purged.ptr(), received.Time, updated.Time, finished.ptr()
	return e, nil
}

func jsonText(v any) any {
	b, err := json.Marshal(v)
	if err != nil || string(b) == "null" {
		return nil
	}
	return string(b)
}

// RequeueDispatching returns events a crash left dispatching to the queue.
func (db *DB) RequeueDispatching(ctx context.Context, now time.Time) (int, error) {
	res, err := db.write.ExecContext(ctx, `UPDATE orchestrator_webhook_events SET status = ?, next_attempt_at = ?, updated_at = ?
		WHERE status = ?`, EventQueued, formatTime(now), formatTime(now), EventDispatching)
	return affectedRows(res, err)
}

// GetEvent returns one event.
func (db *DB) GetEvent(ctx context.Context, id string) (Event, error) {
	e, err := scanEvent(db.read.QueryRowContext(ctx, `SELECT `+eventColumns+` FROM orchestrator_webhook_events WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Event{}, fmt.Errorf("%w: event %s", ErrNotFound, id)
	}
	return e, err
}

// EventFilter selects events; empty fields do not filter.
type EventFilter struct {
	Source, Status, OrgID, TeamNodeID string
	// DeliveryID finds the event a vendor knows by that id (with Source, it
	// uses the unique index; without, it scans).
	DeliveryID   string
	Since, Until time.Time
	Limit        int
	Cursor       string
	// Before (instead of Cursor) pages towards newer events: the page just
	// newer than the event that cursor names; the cursor ListEvents then
	// returns is the Before of the page newer still.
	Before string
}

// EventCursor is the paging cursor that names e: Cursor pages older than
// it, Before newer.
func EventCursor(e Event) string { return encodeCursor(e.ReceivedAt, e.ID) }

// ListEvents returns events newest first and the next page's cursor. The
// list leaves bodies out: they can be large, and the detail has them.
func (db *DB) ListEvents(ctx context.Context, f EventFilter) ([]Event, string, error) {
	var w filter
	w.eq("source", f.Source)
	w.eq("status", f.Status)
	w.eq("org_id", f.OrgID)
	w.eq("team_node_id", f.TeamNodeID)
	w.eq("delivery_id", f.DeliveryID)
	if !f.Since.IsZero() {
		w.add("received_at >= ?", formatTime(f.Since))
	}
	if !f.Until.IsZero() {
		w.add("received_at < ?", formatTime(f.Until))
	}
	return page[Event]{table: "orchestrator_webhook_events", columns: eventColumnsNoBody,
		timeCol: "received_at", limit: f.Limit, cursor: f.Cursor, before: f.Before, scan: scanEvent,
		key: func(e Event) (time.Time, string) { return e.ReceivedAt, e.ID }}.run(ctx, db.read, w)
}

// Redrivable reports whether the event's status allows queueing it again:
// it ended unrouted, failed or dead. (Redrive also needs its body.)
func (e Event) Redrivable() bool {
	return e.Status == EventUnrouted || e.Status == EventFailed || e.Status == EventDead
}

// Redrive puts an unrouted, failed or dead event back in the queue with a
// fresh attempt budget.
func (db *DB) Redrive(ctx context.Context, id string, now time.Time) (Event, error) {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return Event{}, err
	}
	defer tx.Rollback()
	e, err := scanEvent(tx.QueryRowContext(ctx, `SELECT `+eventColumns+` FROM orchestrator_webhook_events WHERE id = ?`+db.d.forUpdate, id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Event{}, fmt.Errorf("%w: event %s", ErrNotFound, id)
	case err != nil:
		return Event{}, err
	case !e.Redrivable():
		return Event{}, fmt.Errorf("%w: event %s is %s; only unrouted, failed and dead events can be redriven", ErrConflict, id, e.Status)
	case e.BodyPurgedAt != nil:
		return Event{}, fmt.Errorf("%w: event %s", ErrBodyPurged, id)
	}
	at := formatTime(now)
	// A redriven event goes alone (solo), never folded into a digest.
	if _, err := tx.ExecContext(ctx, `UPDATE orchestrator_webhook_events SET status = ?, attempts = 0, next_attempt_at = ?,
		updated_at = ?, finished_at = NULL, solo = ?, digest_run_id = NULL, digest_size = NULL WHERE id = ?`, EventQueued, at, at, true, id); err != nil {
		return Event{}, err
	}
	if err := tx.Commit(); err != nil {
		return Event{}, err
	}
	e.Status, e.Attempts, e.NextAttemptAt, e.FinishedAt, e.Solo, e.DigestRunID, e.DigestSize = EventQueued, 0, now, nil, true, "", 0
	return e, nil
}

// PurgeBodies drops the raw bodies of events received before cutoff that
// are not waiting in the queue; their metadata stays.
func (db *DB) PurgeBodies(ctx context.Context, cutoff, now time.Time) (int, error) {
	res, err := db.write.ExecContext(ctx, `UPDATE orchestrator_webhook_events SET body = NULL, body_purged_at = ?
		WHERE received_at < ? AND body IS NOT NULL AND status NOT IN (?, ?)`,
		formatTime(now), formatTime(cutoff), EventQueued, EventDispatching)
	return affectedRows(res, err)
}

// QueueDepth counts events waiting for or in dispatch, of one org if org
// is not "" (events not yet routed belong to no org).
func (db *DB) QueueDepth(ctx context.Context, org string) (int, error) {
	q, args := `SELECT COUNT(*) FROM orchestrator_webhook_events WHERE status IN (?, ?)`, []any{EventQueued, EventDispatching}
	if org != "" {
		q, args = q+` AND org_id = ?`, append(args, org)
	}
	var n int
	err := db.read.QueryRowContext(ctx, q, args...).Scan(&n)
	return n, err
}

// SourceCount is how many events one source sent.
type SourceCount struct {
	Source string
	Count  int
}

// endOfTime bounds an open time range (a literal both databases read).
var endOfTime = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// CountEventsSince counts events per source received at or after since, of
// one org if org is not "".
func (db *DB) CountEventsSince(ctx context.Context, since time.Time, org string) ([]SourceCount, error) {
	// Bounded on both sides, or SQLite's planner walks the whole
	// (source, received_at) index for the GROUP BY instead of the hour.
	q, args := `SELECT source, COUNT(*) FROM orchestrator_webhook_events WHERE received_at >= ? AND received_at < ?`,
		[]any{formatTime(since), formatTime(endOfTime)}
	if org != "" {
		q, args = q+` AND org_id = ?`, append(args, org)
	}
	rows, err := db.read.QueryContext(ctx, q+` GROUP BY source ORDER BY source`, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r rowScanner) (SourceCount, error) {
		var c SourceCount
		return c, r.Scan(&c.Source, &c.Count)
	})
}

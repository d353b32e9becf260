package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
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

const insertEventSQL = `INSERT INTO orchestrator_webhook_events
	(id, source, delivery_id, event_type, status, routing_identifiers, attempts, next_attempt_at, last_error,
	 headers, body, received_at, updated_at, finished_at, org_id, team_node_id, matched_by, body_sha256)
	VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (source, delivery_id) DO NOTHING`

const findEventSQL = `SELECT id FROM orchestrator_webhook_events WHERE source = ? AND delivery_id = ?`

// replaySource is the source whose bodies are unique (its signature covers
// the body alone); ux_webhook_events_replay (migration 00006) indexes them.
const replaySource = "github"

// findReplaySQL names the source literally so that both databases use the
// partial index.
const findReplaySQL = `SELECT id FROM orchestrator_webhook_events WHERE source = 'github' AND body_sha256 = ?`

// eventStmts are the group commit's statements, prepared once: preparing
// per event cost more than the insert itself.
type eventStmts struct{ insert, find, replay *sql.Stmt }

// insertEvent is one event in a group commit: it reports the stored id and
// whether the (source, delivery id) — or, for GitHub, the body — was
// already there.
func insertEvent(ctx context.Context, st eventStmts, e Event) (string, bool, error) {
	if e.Source == replaySource && e.BodySHA256 != "" {
		var id string
		switch err := st.replay.QueryRowContext(ctx, e.BodySHA256).Scan(&id); {
		case err == nil:
			return id, true, nil
		case !errors.Is(err, sql.ErrNoRows):
			return "", false, err
		}
	}
	insert, find := st.insert, st.find
	at := formatTime(e.ReceivedAt)
	var finished any
	if e.Status != EventQueued {
		finished = at
	}
	res, err := insert.ExecContext(ctx, e.ID, e.Source, e.DeliveryID, e.EventType, e.Status, jsonText(e.Identifiers),
		at, nullIfEmpty(e.LastError), jsonText(e.Headers), e.Body, at, at, finished,
		nullIfEmpty(e.OrgID), nullIfEmpty(e.TeamNodeID), nullIfEmpty(e.MatchedBy), nullIfEmpty(e.BodySHA256))
	if err != nil {
		return "", false, err
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return e.ID, false, nil
	}
	var id string
	err = find.QueryRowContext(ctx, e.Source, e.DeliveryID).Scan(&id)
	return id, true, err
}

// InsertResult is the outcome of InsertEvent.
type InsertResult struct {
	ID        string
	Duplicate bool
}

type insertReq struct {
	ev   Event
	done chan insertDone
}

type insertDone struct {
	res InsertResult
	err error
}

// maxBatch bounds one group commit.
const maxBatch = 256

// InsertEvent stores a new event durably — it returns only after the
// transaction holding it has committed (and, with synchronous=FULL, been
// fsynced) — or reports a duplicate of (source, delivery id). Concurrent
// calls are batched into one transaction by a single writer goroutine, so
// that durability costs one fsync per batch, not per event.
func (db *DB) InsertEvent(ctx context.Context, e Event) (InsertResult, error) {
	if e.ID == "" || e.Source == "" || e.DeliveryID == "" || e.Status == "" {
		return InsertResult{}, fmt.Errorf("%w: event needs id, source, delivery id and status", ErrInvalid)
	}
	if err := e.checkText(); err != nil {
		return InsertResult{}, err
	}
	req := insertReq{ev: e, done: make(chan insertDone, 1)}
	select {
	case db.inserts <- req:
	case <-db.closing:
		return InsertResult{}, errors.New("store: closed")
	case <-ctx.Done():
		return InsertResult{}, ctx.Err()
	}
	select {
	case d := <-req.done:
		return d.res, d.err
	case <-db.committerDone:
		select {
		case d := <-req.done:
			return d.res, d.err
		default:
			return InsertResult{}, errors.New("store: closed")
		}
	case <-ctx.Done():
		// The event may still be committed; a vendor retry is then a duplicate.
		return InsertResult{}, ctx.Err()
	}
}

// groupCommit is the single writer of new events.
func (db *DB) groupCommit() {
	defer close(db.committerDone)
	for {
		var batch []insertReq
		select {
		case r := <-db.inserts:
			batch = append(batch, r)
		case <-db.closing:
			// Commit what was handed over before the close.
			for {
				select {
				case r := <-db.inserts:
					db.commitBatch([]insertReq{r})
				default:
					return
				}
			}
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case r := <-db.inserts:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		db.commitBatch(batch)
	}
}

// commitBatch commits a batch in one transaction. If the database refuses
// one row — on PostgreSQL that aborts the whole transaction — each event is
// committed again on its own, so the refused one fails alone and the others
// are stored (SPEC §18).
func (db *DB) commitBatch(batch []insertReq) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results, rowFailed, err := db.insertBatch(ctx, batch)
	switch {
	case err == nil:
	case rowFailed && len(batch) > 1:
		for i := range batch {
			one, _, err := db.insertBatch(ctx, batch[i:i+1])
			results[i] = one[0]
			if err != nil {
				results[i] = insertDone{err: fmt.Errorf("store: commit event: %w", err)}
			}
		}
	default:
		for i := range results {
			results[i] = insertDone{err: fmt.Errorf("store: commit events: %w", err)}
		}
	}
	for i, r := range batch {
		r.done <- results[i]
	}
	db.batches.Add(1)
}

// insertBatch inserts the events in one transaction. It stops at the first
// row the database refuses (rowFailed) and then commits nothing.
func (db *DB) insertBatch(ctx context.Context, batch []insertReq) (results []insertDone, rowFailed bool, err error) {
	results = make([]insertDone, len(batch))
	if db.stmts.insert == nil {
		var st eventStmts
		if st.insert, err = db.write.PrepareContext(ctx, insertEventSQL); err != nil {
			return results, false, err
		}
		if st.find, err = db.write.PrepareContext(ctx, findEventSQL); err != nil {
			return results, false, err
		}
		if st.replay, err = db.write.PrepareContext(ctx, findReplaySQL); err != nil {
			return results, false, err
		}
		db.stmts = st
	}
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return results, false, err
	}
	defer tx.Rollback()
	st := eventStmts{tx.StmtContext(ctx, db.stmts.insert), tx.StmtContext(ctx, db.stmts.find), tx.StmtContext(ctx, db.stmts.replay)}
	for i, r := range batch {
		id, dup, err := insertEvent(ctx, st, r.ev)
		if err != nil {
			return results, true, err
		}
		results[i] = insertDone{res: InsertResult{ID: id, Duplicate: dup}}
	}
	return results, false, tx.Commit()
}

// checkText refuses what the databases would refuse or mangle (SPEC §18:
// text is valid UTF-8 without NUL, within its column's length in
// characters), so a bad value never reaches a batch.
func (e Event) checkText() error {
	bad := func(s string) bool { return !utf8.ValidString(s) || strings.ContainsRune(s, 0) }
	for _, s := range []string{e.Source, e.DeliveryID, e.EventType, e.Status, e.OrgID, e.TeamNodeID, e.MatchedBy, e.LastError, e.BodySHA256} {
		if bad(s) {
			return fmt.Errorf("%w: event text is not valid UTF-8 without NUL", ErrInvalid)
		}
	}
	for _, c := range []struct {
		s string
		n int
	}{{e.Source, 32}, {e.DeliveryID, 255}, {e.EventType, 128}, {e.Status, 32}, {e.OrgID, 128}, {e.TeamNodeID, 128},
		{e.MatchedBy, 64}, {e.BodySHA256, 64}} {
		if utf8.RuneCountInString(c.s) > c.n {
			return fmt.Errorf("%w: %q is longer than its column (%d characters)", ErrInvalid, c.s[:min(len(c.s), 40)], c.n)
		}
	}
	for _, m := range []map[string]string{e.Identifiers, e.Headers} {
		for k, v := range m {
			if bad(k) || bad(v) {
				return fmt.Errorf("%w: event identifiers or headers are not valid UTF-8 without NUL", ErrInvalid)
			}
		}
	}
	return nil
}

// CommitBatches is how many group commits have run (for benchmarks).
func (db *DB) CommitBatches() int64 { return db.batches.Load() }

// RequeueDispatching returns events a crash left dispatching to the queue.
func (db *DB) RequeueDispatching(ctx context.Context, now time.Time) (int, error) {
	res, err := db.write.ExecContext(ctx, `UPDATE orchestrator_webhook_events SET status = ?, next_attempt_at = ?, updated_at = ?
		WHERE status = ?`, EventQueued, formatTime(now), formatTime(now), EventDispatching)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return int(n), nil
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
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return int(n), nil
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

// AgentRun is one agent call, admin-triggered or dispatched for an event.
type AgentRun struct {
	ID             string
	TriggerSource  string
	WebhookEventID string
	Actor          string
	OrgID          string
	TeamNodeID     string
	AgentName      string
	Status         string
	UpstreamStatus int
	Error          string
	CorrelationID  string
	Duration       time.Duration
	StartedAt      time.Time
	// EventCount is how many events the call carried (1 unless a digest).
	EventCount int
}

// InsertAgentRun records an agent call.
func (db *DB) InsertAgentRun(ctx context.Context, r AgentRun) error {
	return insertAgentRun(ctx, db.write, r)
}

func insertAgentRun(ctx context.Context, x interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, r AgentRun) error {
	_, err := x.ExecContext(ctx, `INSERT INTO orchestrator_agent_runs
		(id, trigger_source, webhook_event_id, actor, org_id, team_node_id, agent_name, status, upstream_status, error,
		 correlation_id, duration_ms, started_at, finished_at, event_count)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.TriggerSource, nullIfEmpty(r.WebhookEventID), nullIfEmpty(r.Actor), r.OrgID, r.TeamNodeID, r.AgentName,
		r.Status, nullInt(r.UpstreamStatus), nullIfEmpty(r.Error), nullIfEmpty(r.CorrelationID), r.Duration.Milliseconds(),
		formatTime(r.StartedAt), formatTime(r.StartedAt.Add(r.Duration)), max(1, r.EventCount))
	return err
}

const agentRunColumns = `id, trigger_source, webhook_event_id, actor, org_id, team_node_id, agent_name, status,
	upstream_status, error, correlation_id, duration_ms, started_at, event_count`

func scanAgentRun(row rowScanner) (AgentRun, error) {
	var r AgentRun
	var event, actor, errText, corr sql.NullString
	var upstream sql.NullInt64
	var ms int64
	var started nullTime
	err := row.Scan(&r.ID, &r.TriggerSource, &event, &actor, &r.OrgID, &r.TeamNodeID, &r.AgentName, &r.Status,
		&upstream, &errText, &corr, &ms, &started, &r.EventCount)
	r.WebhookEventID, r.Actor, r.Error, r.CorrelationID = event.String, actor.String, errText.String, corr.String
	r.UpstreamStatus, r.Duration, r.StartedAt = int(upstream.Int64), time.Duration(ms)*time.Millisecond, started.Time
	return r, err
}

// EventAgentRuns lists the agent calls made for an event, oldest first:
// its own calls and the digest it was last folded into.
func (db *DB) EventAgentRuns(ctx context.Context, eventID string) ([]AgentRun, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT `+agentRunColumns+` FROM orchestrator_agent_runs
		WHERE webhook_event_id = ? OR id = (SELECT digest_run_id FROM orchestrator_webhook_events WHERE id = ?)
		ORDER BY started_at, id`, eventID, eventID)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanAgentRun)
}

// TeamAgentRuns lists a team's agent calls, oldest first.
func (db *DB) TeamAgentRuns(ctx context.Context, org, team string) ([]AgentRun, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT `+agentRunColumns+` FROM orchestrator_agent_runs
		WHERE org_id = ? AND team_node_id = ? ORDER BY started_at, id`, org, team)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanAgentRun)
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

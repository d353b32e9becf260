package store

// The group commit of new webhook events: many concurrent InsertEvent
// calls share one transaction (one fsync), and a row the database refuses
// fails alone.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

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

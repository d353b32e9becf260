package store

// The answers outbox: one delivery per (agent run, destination), a durable
// queue on the events queue's machinery (leasedQueue): claimed in one
// statement, leased while posting, retried with backoff, dead-lettered,
// redelivered by hand. New deliveries are written in the transaction that
// records their run (RecordOutcomes), one row each.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Answer delivery statuses: queued → posting → posted | failed | dead.
const (
	AnswerQueued  = "queued"
	AnswerPosting = "posting"
	AnswerPosted  = "posted"
	AnswerFailed  = "failed"
	AnswerDead    = "dead"
)

// AnswerStatuses are every delivery status, in the order of their life.
var AnswerStatuses = []string{AnswerQueued, AnswerPosting, AnswerPosted, AnswerFailed, AnswerDead}

// answerActive is ix_answer_deliveries_queue's condition.
const answerActive = `status IN ('queued', 'posting')`

// MaxAnswerBytes bounds the answer text kept with a run: past it the text
// is cut (on a character boundary) with a note. Every destination's own
// limit is far below it (Slack 50 × 3,000 characters, GitHub 65,536).
const MaxAnswerBytes = 200_000

// ErrAnswerPurged: the run's answer text was purged by retention (or the
// run is gone), so its delivery cannot be posted again.
var ErrAnswerPurged = errors.New("answer purged by retention")

// AnswerDelivery is one answer on its way to one destination.
type AnswerDelivery struct {
	ID         string
	AgentRunID string
	// Seq orders a run's deliveries (0, 1, …).
	Seq        int
	EventID    string
	OrgID      string
	TeamNodeID string
	// Type is the destination's type; Destination its JSON.
	Type        string
	Destination []byte
	Status      string
	Attempts    int
	// NextAttemptAt: when a queued delivery is due; while posting, when
	// the claim's lease ends.
	NextAttemptAt time.Time
	LastError     string
	// MessageID and Link name the posted message.
	MessageID, Link string
	CreatedAt       time.Time
	UpdatedAt       time.Time
	FinishedAt      *time.Time
}

// Finished reports whether the delivery is over (posted, failed or dead).
func (d AnswerDelivery) Finished() bool {
	return d.Status == AnswerPosted || d.Status == AnswerFailed || d.Status == AnswerDead
}

// Redeliverable reports whether an admin may queue the delivery again.
func (d AnswerDelivery) Redeliverable() bool {
	return d.Status == AnswerFailed || d.Status == AnswerDead
}

var deliveryCols = []string{"id", "agent_run_id", "seq", "webhook_event_id", "org_id", "team_node_id", "dest_type", "destination",
	"status", "attempts", "next_attempt_at", "last_error", "message_id", "link", "created_at", "updated_at", "finished_at"}

var deliveryColumns = strings.Join(deliveryCols, ", ")

func scanDelivery(r rowScanner) (AnswerDelivery, error) {
	var d AnswerDelivery
	var event, lastErr, msgID, link sql.NullString
	var dest string
	var next, created, updated, finished msTime
	err := r.Scan(&d.ID, &d.AgentRunID, &d.Seq, &event, &d.OrgID, &d.TeamNodeID, &d.Type, &dest, &d.Status, &d.Attempts,
		&next, &lastErr, &msgID, &link, &created, &updated, &finished)
	d.EventID, d.LastError, d.MessageID, d.Link = event.String, lastErr.String, msgID.String, link.String
	d.Destination, d.NextAttemptAt, d.CreatedAt, d.UpdatedAt = []byte(dest), next.Time, created.Time, updated.Time
	if finished.Valid {
		t := finished.Time
		d.FinishedAt = &t
	}
	return d, err
}

// insertDeliveries writes new deliveries in multi-row statements (one per
// batch of rows): the outbox's only write when an answer is recorded.
func insertDeliveries(ctx context.Context, q querier, ds []AnswerDelivery) error {
	rows := make([][]any, 0, len(ds))
	for _, d := range ds {
		var next, finished any
		if d.Status == AnswerQueued || d.Status == AnswerPosting {
			next = ms(d.NextAttemptAt)
		} else {
			finished = ms(d.CreatedAt)
		}
		rows = append(rows, []any{d.ID, d.AgentRunID, d.Seq, nullIfEmpty(d.EventID), d.OrgID, d.TeamNodeID, d.Type,
			string(d.Destination), d.Status, d.Attempts, next, nullIfEmpty(d.LastError), nullIfEmpty(d.MessageID),
			nullIfEmpty(d.Link), ms(d.CreatedAt), ms(d.CreatedAt), finished})
	}
	return insertRows(ctx, q, "orchestrator_answer_deliveries", deliveryCols, rows)
}

// ClaimAnswerDeliveries moves up to limit due queued deliveries to
// posting, leased until leaseUntil, in one statement (the events queue's
// claim), and returns them.
func (db *DB) ClaimAnswerDeliveries(ctx context.Context, now, leaseUntil time.Time, limit int) ([]AnswerDelivery, error) {
	rows, err := answersQueue.claim(ctx, db, now, leaseUntil, `next_attempt_at <= ?`, []any{ms(now)}, limit, deliveryColumns)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanDelivery)
}

// NextAnswerDue says when the earliest queued delivery is due (ok false:
// none is queued). A read, so that an idle outbox never takes the writer.
func (db *DB) NextAnswerDue(ctx context.Context) (time.Time, bool, error) {
	var due msTime
	err := db.read.QueryRowContext(ctx, `SELECT MIN(next_attempt_at) FROM orchestrator_answer_deliveries
		WHERE `+answerActive+` AND status = ?`, AnswerQueued).Scan(&due)
	return due.Time, due.Valid, err
}

// RequeueExpiredAnswers returns deliveries whose claim's lease passed (the
// replica posting them died) to the queue. A retry looks for the run's
// marker first, so one posted just before the crash is not posted again
// where the destination's API lets it look.
func (db *DB) RequeueExpiredAnswers(ctx context.Context, now time.Time) (int, error) {
	return answersQueue.requeueExpired(ctx, db, now)
}

// RequeuePostingAnswers returns every delivery left posting to the queue:
// on a database of its own, those were this process's, before a crash.
func (db *DB) RequeuePostingAnswers(ctx context.Context, now time.Time) (int, error) {
	return answersQueue.requeueAll(ctx, db, now)
}

// AnswerOutcome is what one posting attempt came to.
type AnswerOutcome struct {
	ID       string
	Status   string
	Attempts int
	// NextAttemptAt, for a retry (status queued).
	NextAttemptAt   time.Time
	LastError       string
	MessageID, Link string
	At              time.Time
}

// RecordAnswerOutcomes writes posting outcomes in one transaction, one
// statement each. An outcome whose delivery is no longer posting (a lease
// that passed and another replica took it) is skipped.
func (db *DB) RecordAnswerOutcomes(ctx context.Context, outs []AnswerOutcome) error {
	if len(outs) == 0 {
		return nil
	}
	return db.inTx(ctx, func(t tx) error {
		st, err := t.PrepareContext(ctx, `UPDATE orchestrator_answer_deliveries SET status = ?, attempts = ?, next_attempt_at = ?,
			last_error = ?, message_id = COALESCE(?, message_id), link = COALESCE(?, link), updated_at = ?, finished_at = ?
			WHERE id = ? AND status = ?`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, o := range outs {
			var next, finished any
			if o.Status == AnswerQueued {
				next = ms(o.NextAttemptAt)
			} else {
				finished = ms(o.At)
			}
			if _, err := st.ExecContext(ctx, o.Status, o.Attempts, next, nullIfEmpty(o.LastError), nullIfEmpty(o.MessageID),
				nullIfEmpty(o.Link), ms(o.At), finished, o.ID, AnswerPosting); err != nil {
				return fmt.Errorf("store: outcome of answer delivery %s: %w", o.ID, err)
			}
		}
		return nil
	})
}

// GetAnswerDelivery returns one delivery.
func (db *DB) GetAnswerDelivery(ctx context.Context, id string) (AnswerDelivery, error) {
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return AnswerDelivery{}, fmt.Errorf("%w: answer delivery %s", ErrNotFound, id)
	}
	d, err := scanDelivery(db.read.QueryRowContext(ctx, `SELECT `+deliveryColumns+` FROM orchestrator_answer_deliveries WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return AnswerDelivery{}, fmt.Errorf("%w: answer delivery %s", ErrNotFound, id)
	}
	return d, err
}

// RunDeliveries lists the deliveries of each run, in order.
func (db *DB) RunDeliveries(ctx context.Context, runIDs []string) (map[string][]AnswerDelivery, error) {
	out := map[string][]AnswerDelivery{}
	for _, id := range runIDs {
		rows, err := db.read.QueryContext(ctx, `SELECT `+deliveryColumns+` FROM orchestrator_answer_deliveries
			WHERE agent_run_id = ? ORDER BY seq`, id)
		if err != nil {
			return nil, err
		}
		list, err := collect(rows, scanDelivery)
		if err != nil {
			return nil, err
		}
		if len(list) > 0 {
			out[id] = list
		}
	}
	return out, nil
}

// Redeliver queues a failed or dead delivery again, due now, with its
// attempts reset, and records who asked in the admin audit, in one
// transaction. It refuses (ErrConflict) a delivery that is not failed or
// dead, and (ErrAnswerPurged) one whose run's answer is gone.
func (db *DB) Redeliver(ctx context.Context, id, actor string, now time.Time) (AnswerDelivery, error) {
	var d AnswerDelivery
	err := db.inTx(ctx, func(t tx) error {
		var err error
		d, err = scanDelivery(t.QueryRowContext(ctx, `SELECT `+deliveryColumns+` FROM orchestrator_answer_deliveries WHERE id = ?`+db.d.forUpdate, id))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("%w: answer delivery %s", ErrNotFound, id)
		case err != nil:
			return err
		case !d.Redeliverable():
			return fmt.Errorf("%w: answer delivery %s is %s; only failed and dead deliveries can be redelivered", ErrConflict, id, d.Status)
		}
		var purged sql.NullInt64
		err = t.QueryRowContext(ctx, `SELECT answer_purged_at FROM orchestrator_agent_runs WHERE id = ?`, d.AgentRunID).Scan(&purged)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && purged.Valid) {
			return fmt.Errorf("%w: answer delivery %s", ErrAnswerPurged, id)
		}
		if err != nil {
			return err
		}
		at := ms(now)
		if _, err := t.ExecContext(ctx, `UPDATE orchestrator_answer_deliveries SET status = ?, attempts = 0, next_attempt_at = ?,
			updated_at = ?, finished_at = NULL WHERE id = ?`, AnswerQueued, at, at, id); err != nil {
			return err
		}
		d.Status, d.Attempts, d.NextAttemptAt, d.UpdatedAt, d.FinishedAt = AnswerQueued, 0, now, now, nil
		return insertAudit(ctx, t, Audit{At: now, Actor: actor, OrgID: d.OrgID, Action: "answer.redeliver",
			Detail: map[string]any{"delivery_id": d.ID, "agent_run_id": d.AgentRunID, "type": d.Type, "team_node_id": d.TeamNodeID}})
	})
	return d, err
}

// RunAnswer is what a delivery posts of its run.
type RunAnswer struct {
	Run AgentRun
	// Answer is the run's answer text; Purged says retention emptied it.
	Answer string
	Purged bool
}

// AgentRunAnswers returns the runs (with their answer text) of the given
// ids; a run retention deleted is absent.
func (db *DB) AgentRunAnswers(ctx context.Context, runIDs []string) (map[string]RunAnswer, error) {
	out := map[string]RunAnswer{}
	for _, id := range runIDs {
		if _, ok := out[id]; ok {
			continue
		}
		a, err := db.agentRunAnswer(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[id] = a
	}
	return out, nil
}

func (db *DB) agentRunAnswer(ctx context.Context, id string) (RunAnswer, error) {
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return RunAnswer{}, fmt.Errorf("%w: agent run %s", ErrNotFound, id)
	}
	var text, summary sql.NullString
	var purged sql.NullInt64
	run, err := scanAgentRunWith(db.read.QueryRowContext(ctx, `SELECT `+agentRunColumns+`, answer, answer_purged_at, summary
		FROM orchestrator_agent_runs WHERE id = ?`, id), &text, &purged, &summary)
	if errors.Is(err, sql.ErrNoRows) {
		return RunAnswer{}, fmt.Errorf("%w: agent run %s", ErrNotFound, id)
	}
	run.Summary = summary.String
	return RunAnswer{Run: run, Answer: text.String, Purged: purged.Valid}, err
}

// GetAgentRun returns one agent run with its answer.
func (db *DB) GetAgentRun(ctx context.Context, id string) (RunAnswer, error) {
	return db.agentRunAnswer(ctx, id)
}

// AnswerCounts counts the deliveries that ended since a time: posted, and
// failed or dead (of one org if org is not "").
func (db *DB) AnswerCounts(ctx context.Context, since time.Time, org string) (posted, failed int, err error) {
	q := `SELECT status, COUNT(*) FROM orchestrator_answer_deliveries WHERE finished_at >= ? AND finished_at < ?`
	args := []any{ms(since), ms(endOfTime)}
	if org != "" {
		q, args = q+` AND org_id = ?`, append(args, org)
	}
	rows, err := db.read.QueryContext(ctx, q+` GROUP BY status`, args...)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return 0, 0, err
		}
		switch s {
		case AnswerPosted:
			posted += n
		case AnswerFailed, AnswerDead:
			failed += n
		}
	}
	return posted, failed, rows.Err()
}

// PurgeAnswerDeliveries deletes up to limit deliveries made before cutoff
// (with the agent runs they belong to, by the audit retention), never one
// still queued or posting.
func (db *DB) PurgeAnswerDeliveries(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	res, err := db.write.ExecContext(ctx, `DELETE FROM orchestrator_answer_deliveries WHERE id IN (
		SELECT id FROM orchestrator_answer_deliveries WHERE created_at < ? AND status NOT IN (?, ?) LIMIT ?)`,
		ms(cutoff), AnswerQueued, AnswerPosting, limit)
	return affectedRows(res, err)
}

// PurgeAnswers empties, up to limit at a time, the answer text of agent
// runs started before cutoff (the body retention: an answer is a
// conversation's content, like a webhook body), unless a delivery of the
// run still waits to be posted. The run and its deliveries stay, for the
// audit.
func (db *DB) PurgeAnswers(ctx context.Context, cutoff, now time.Time, limit int) (int, error) {
	res, err := db.write.ExecContext(ctx, `UPDATE orchestrator_agent_runs SET answer = NULL, answer_purged_at = ?
		WHERE id IN (SELECT r.id FROM orchestrator_agent_runs r
			WHERE r.started_at < ? AND r.answer IS NOT NULL
			  AND NOT EXISTS (SELECT 1 FROM orchestrator_answer_deliveries d
				WHERE d.agent_run_id = CAST(r.id AS VARCHAR(36)) AND d.`+answerActive+`)
			LIMIT ?)`, ms(now), formatTime(cutoff), limit)
	return affectedRows(res, err)
}

// clipAnswer keeps an answer within MaxAnswerBytes, cut on a character
// boundary with a note.
func clipAnswer(s string) string {
	if len(s) <= MaxAnswerBytes {
		return s
	}
	const note = "\n\n… (answer cut: it was longer than the appliance keeps)"
	cut := MaxAnswerBytes - len(note)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + note
}

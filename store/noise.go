package store

// Noise control (SPEC §6 Noise): what the store knows of an alert's history
// — its waiting firing events, its last delivery, its last resolve — and
// the silences. Every query goes through ix_webhook_events_alert (source,
// alert_key, then the id: declared on PostgreSQL, the rowid on SQLite),
// whose partial condition alert_key = ? implies.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Alert states, as events store them.
const (
	AlertStateFiring   = "firing"
	AlertStateResolved = "resolved"
	AlertStateOther    = "other"
)

// The settle's statements, prepared once with the group commit's (a
// resolve settles inside the writer's transaction, so its statements must
// cost little: parsing them per resolve showed in the storm's ack p99).
const (
	// settleFiringsSQL suppresses an alert's waiting firing events, by the
	// alert index (alert_key = ? implies its partial condition).
	settleFiringsSQL = `UPDATE orchestrator_webhook_events SET status = ?, suppressed_reason = ?, suppressed_by = ?,
		finished_at = ?, updated_at = ?, next_attempt_at = NULL
		WHERE source = ? AND alert_key = ? AND id < ? AND ` + activeStatuses + ` AND status = ? AND alert_state = ? AND solo = ?`
	// alertHandedSQL: of the alert's firing events since its previous
	// resolve, the newest that reached the agent (delivered or being
	// delivered) and the newest of all.
	alertHandedSQL = `SELECT MAX(CASE WHEN status IN ('delivered', 'dispatching') THEN id END), MAX(id)
		FROM orchestrator_webhook_events
		WHERE source = ? AND alert_key = ? AND id < ? AND alert_state = 'firing'
		  AND id > COALESCE((SELECT MAX(id) FROM orchestrator_webhook_events
		                     WHERE source = ? AND alert_key = ? AND id < ? AND alert_state = 'resolved'), 0)`
	// settleResolveSQL suppresses the resolve itself.
	settleResolveSQL = `UPDATE orchestrator_webhook_events SET status = ?, suppressed_reason = ?, suppressed_by = ?,
		finished_at = ?, updated_at = ?, next_attempt_at = NULL WHERE id = ? AND status = ?`
)

// settle runs in the group commit's transaction for a stored resolve (key):
// its alert's waiting firing events (queued, not claimed, not redriven)
// become suppressed, resolved by it. If no firing of the alert since its
// previous resolve reached the agent (delivered, or being delivered), the
// agent never heard of it: the resolve is suppressed too, naming the
// firing it closed. Otherwise it stays queued, to be delivered.
func (db *DB) settle(ctx context.Context, t tx, key int64, e Event) (settled int, suppressed bool, err error) {
	at := ms(e.ReceivedAt)
	res, err := t.StmtContext(ctx, db.stmts.settleFirings).ExecContext(ctx, EventSuppressed, SuppressedResolved, strconv.FormatInt(key, 10),
		at, at, e.Source, e.AlertKey, key, EventQueued, AlertStateFiring, false)
	if err != nil {
		return 0, false, fmt.Errorf("store: settle alert %q: %w", e.AlertKey, err)
	}
	n, err := affectedRows(res, nil)
	if err != nil {
		return 0, false, err
	}
	var handed, latest sql.NullInt64
	if err := t.StmtContext(ctx, db.stmts.alertHanded).QueryRowContext(ctx, e.Source, e.AlertKey, key,
		e.Source, e.AlertKey, key).Scan(&handed, &latest); err != nil {
		return 0, false, err
	}
	if handed.Valid || !latest.Valid {
		// The agent heard of it (the resolve follows), or no firing is
		// known here at all (the resolve goes, the agent may know more).
		return n, false, nil
	}
	_, err = t.StmtContext(ctx, db.stmts.settleResolve).ExecContext(ctx, EventSuppressed, SuppressedResolved,
		strconv.FormatInt(latest.Int64, 10), at, at, key, EventQueued)
	return n, err == nil, err
}

// AlertRef names an alert: its source and key.
type AlertRef struct{ Source, Key string }

// AlertHistory is what noise control needs to know of an alert before an
// event of it (Before) is delivered.
type AlertHistory struct {
	// Delivered is the alert's last delivered firing event before Before,
	// with its firing fingerprints' digest and when it was delivered.
	Delivered     string
	DeliveredSig  string
	DeliveredAt   time.Time
	deliveredKey  int64
	resolvedAfter bool
}

// RepeatOf reports whether a firing event with fingerprint digest sig says
// nothing new: the alert's last firing was delivered within window of now,
// with the same fingerprints, and no resolve came after it.
func (h AlertHistory) RepeatOf(sig string, now time.Time, window time.Duration) bool {
	return h.Delivered != "" && !h.resolvedAfter && h.DeliveredSig == sig && now.Sub(h.DeliveredAt) < window
}

// AlertHistoryOf reads an alert's last delivered firing before the event
// with key before, and whether a resolve came after it.
func (db *DB) AlertHistoryOf(ctx context.Context, ref AlertRef, before int64) (AlertHistory, error) {
	var h AlertHistory
	var sig sql.NullString
	var finished msTime
	err := db.read.QueryRowContext(ctx, `SELECT id, alert_sig, finished_at FROM orchestrator_webhook_events
		WHERE source = ? AND alert_key = ? AND id < ? AND alert_state = ? AND status = ?
		ORDER BY id DESC LIMIT 1`, ref.Source, ref.Key, before, AlertStateFiring, EventDelivered).Scan(&h.deliveredKey, &sig, &finished)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return h, nil
	case err != nil:
		return h, err
	}
	h.Delivered, h.DeliveredSig, h.DeliveredAt = strconv.FormatInt(h.deliveredKey, 10), sig.String, finished.Time
	var one int
	err = db.read.QueryRowContext(ctx, `SELECT 1 FROM orchestrator_webhook_events
		WHERE source = ? AND alert_key = ? AND id > ? AND id < ? AND alert_state = ? LIMIT 1`,
		ref.Source, ref.Key, h.deliveredKey, before, AlertStateResolved).Scan(&one)
	switch {
	case err == nil:
		h.resolvedAfter = true
	case !errors.Is(err, sql.ErrNoRows):
		return h, err
	}
	return h, nil
}

// ReasonCount is how many events were suppressed for a reason.
type ReasonCount struct {
	Reason string
	Count  int
}

// SuppressedSince counts the events suppressed since a time, per reason
// (org "" = every org): the overview's agent calls saved. One redriven
// since keeps its reason, but saved no call.
func (db *DB) SuppressedSince(ctx context.Context, org string, since time.Time) ([]ReasonCount, error) {
	var w filter
	w.add("suppressed_reason IS NOT NULL")
	w.eq("status", EventSuppressed)
	w.add("received_at >= ?", ms(since))
	w.eq("org_id", org)
	rows, err := db.read.QueryContext(ctx, `SELECT suppressed_reason, COUNT(*) FROM orchestrator_webhook_events`+w.clause()+
		` GROUP BY suppressed_reason`, w.args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r rowScanner) (ReasonCount, error) {
		var c ReasonCount
		return c, r.Scan(&c.Reason, &c.Count)
	})
}

// The trigger sources of agent calls the daily budget does not count
// besides a person's (slack) and an admin's: an event an operator redrove,
// and a call of resolves alone (closing alerts already delivered).
const (
	TriggerRedrive = "redrive"
	TriggerResolve = "resolve"
)

// CountAlertCalls counts a team's alert-triggered agent calls started since
// a time: every call but a person's (Slack), an admin's, a redriven event's
// and one of resolves alone (docs/webhooks.md, Budget). A digest is one
// call.
func (db *DB) CountAlertCalls(ctx context.Context, org, team string, since time.Time) (int, error) {
	var n int
	err := db.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM orchestrator_agent_runs
		WHERE org_id = ? AND team_node_id = ? AND started_at >= ? AND trigger_source NOT IN ('slack', 'admin', ?, ?)`,
		org, team, formatTime(since), TriggerRedrive, TriggerResolve).Scan(&n)
	return n, err
}

// RedriveLimit bounds one bulk redrive.
const RedriveLimit = 10_000

// BulkRedrive is what a bulk redrive found and did.
type BulkRedrive struct {
	// Matched counts the redrivable events the filter names (with a body).
	Matched int `json:"matched"`
	// Redriven counts those queued again (0 for a dry run): the oldest,
	// at most RedriveLimit.
	Redriven int `json:"redriven"`
	// Purged counts matching events whose body retention removed: they
	// cannot be dispatched again.
	Purged int      `json:"purged"`
	More   bool     `json:"more"`
	IDs    []string `json:"-"`
}

// RedriveMatching queues again, alone and past noise control, the oldest
// RedriveLimit events the filter names that ended unrouted, failed, dead or
// suppressed and still have their bodies (f.Status narrows it to one of
// those). With dryRun it only counts.
func (db *DB) RedriveMatching(ctx context.Context, f EventFilter, dryRun bool, now time.Time) (BulkRedrive, error) {
	var w filter
	w.add(rareStatuses)
	if f.Status != "" {
		w.eq("status", f.Status)
	} else {
		w.add(redrivableCondition)
	}
	w.eq("source", f.Source)
	w.scope(f)
	var out BulkRedrive
	if err := db.read.QueryRowContext(ctx, `SELECT COALESCE(SUM(CASE WHEN payload IS NULL THEN 0 ELSE 1 END), 0),
		COALESCE(SUM(CASE WHEN payload IS NULL THEN 1 ELSE 0 END), 0) FROM orchestrator_webhook_events`+w.clause(), w.args...).Scan(&out.Matched, &out.Purged); err != nil {
		return out, err
	}
	out.More = out.Matched > RedriveLimit
	if dryRun || out.Matched == 0 {
		return out, nil
	}
	w.add("payload IS NOT NULL")
	rows, err := db.read.QueryContext(ctx, `SELECT id FROM orchestrator_webhook_events`+w.clause()+` ORDER BY received_at, id LIMIT ?`,
		append(w.args, RedriveLimit)...)
	if err != nil {
		return out, err
	}
	keys, err := collect(rows, func(r rowScanner) (int64, error) {
		var id int64
		return id, r.Scan(&id)
	})
	if err != nil {
		return out, err
	}
	at := ms(now)
	err = db.inTx(ctx, func(t tx) error {
		for len(keys) > 0 {
			n := min(len(keys), 500)
			args := []any{EventQueued, at, at, true}
			for _, k := range keys[:n] {
				args = append(args, k)
			}
			res, err := t.ExecContext(ctx, requeueSQL+`id IN (`+strings.TrimSuffix(strings.Repeat("?,", n), ",")+`) AND `+rareStatuses+
				` AND `+redrivableCondition, args...)
			if err != nil {
				return err
			}
			done, _ := res.RowsAffected()
			out.Redriven += int(done)
			for _, k := range keys[:n] {
				out.IDs = append(out.IDs, strconv.FormatInt(k, 10))
			}
			keys = keys[n:]
		}
		return nil
	})
	return out, err
}

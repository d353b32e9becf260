package store

// Noise control (SPEC §6 Noise): what the store knows of an alert's history
// — its waiting firing events, its last delivery, its last resolve — and
// the silences. An alert is one team's (SPEC §18, round 4): every query
// compares events of one org, team, source and key, so another org's
// resolve or delivery of the same key is another alert. Every query goes
// through ix_webhook_events_alert (source, alert_key, then the id: declared
// on PostgreSQL, the rowid on SQLite), whose partial condition
// alert_key = ? implies; the org and team are checked on the few rows of
// one key.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
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

// alertOf is the condition naming one team's alert; its arguments are an
// AlertRef's args.
const alertOf = `org_id = ? AND team_node_id = ? AND source = ? AND alert_key = ?`

// The settle's statements, prepared once with the group commit's (a
// resolve settles inside the writer's transaction, so its statements must
// cost little: parsing them per resolve showed in the storm's ack p99).
const (
	// settleFiringsSQL suppresses an alert's waiting firing events, by the
	// alert index (alert_key = ? implies its partial condition).
	settleFiringsSQL = `UPDATE orchestrator_webhook_events SET status = ?, suppressed_reason = ?, suppressed_by = ?,
		finished_at = ?, updated_at = ?, next_attempt_at = NULL
		WHERE ` + alertOf + ` AND id < ? AND ` + activeStatuses + ` AND status = ? AND alert_state = ? AND solo = ?`
	// alertHandedSQL: of the alert's firing events since its previous
	// resolve, the newest that reached the agent (delivered or being
	// delivered) and the newest of all.
	alertHandedSQL = `SELECT MAX(CASE WHEN status IN ('delivered', 'dispatching') THEN id END), MAX(id)
		FROM orchestrator_webhook_events
		WHERE ` + alertOf + ` AND id < ? AND alert_state = 'firing'
		  AND id > COALESCE((SELECT MAX(id) FROM orchestrator_webhook_events
		                     WHERE ` + alertOf + ` AND id < ? AND alert_state = 'resolved'), 0)`
	// settleKeptSQL gives an alert's firing events kept back when it
	// resolves — suppressed for a silence or mute interval, an inhibition
	// or active_time_intervals (held), still: a released one is queued
	// again, and kept back anew only by a new decision — the reason
	// resolved (SPEC §21: one that resolved meanwhile stays suppressed
	// resolved), so that no release pass delivers them. suppressed_by
	// becomes the resolve, as for the waiting ones; what held it stays in
	// last_error (and in the decision trail's noise step). finished_at is
	// kept, and no metric counts them again: orchestrator_suppressed_total
	// counted each once, by the reason it was kept back for.
	settleKeptSQL = `UPDATE orchestrator_webhook_events SET suppressed_reason = ?, suppressed_by = ?, updated_at = ?,
		last_error = 'suppressed: resolved by event ' || CAST(? AS TEXT) || ' while kept back (' || suppressed_reason
		  || COALESCE(': ' || CASE WHEN last_error LIKE 'suppressed: %' THEN SUBSTR(last_error, 13) ELSE last_error END, '') || ')'
		WHERE ` + alertOf + ` AND id < ? AND status = ? AND suppressed_reason IN (?, ?, ?) AND alert_state = ?`
	// settleResolveSQL suppresses the resolve itself.
	settleResolveSQL = `UPDATE orchestrator_webhook_events SET status = ?, suppressed_reason = ?, suppressed_by = ?,
		finished_at = ?, updated_at = ?, next_attempt_at = NULL WHERE id = ? AND status = ?`
	// nextResolveSQL finds the first resolve of an alert after one of its
	// firing events (the router's check when the firing is routed later
	// than its resolve).
	nextResolveSQL = `SELECT MIN(id) FROM orchestrator_webhook_events WHERE ` + alertOf + ` AND id > ? AND alert_state = 'resolved'`
)

// AlertRef names an alert: the org and team its events were routed to,
// their source and the alert's key.
type AlertRef struct{ OrgID, TeamNodeID, Source, Key string }

func (r AlertRef) args() []any { return []any{r.OrgID, r.TeamNodeID, r.Source, r.Key} }

// alertStatements runs the settle's statements: the group commit's
// prepared ones (on its writer goroutine), or by their text elsewhere.
type alertStatements struct {
	t        tx
	prepared *eventStmts
}

func (a alertStatements) exec(ctx context.Context, st func(*eventStmts) *sql.Stmt, q string, args ...any) (sql.Result, error) {
	if a.prepared != nil {
		return a.t.StmtContext(ctx, st(a.prepared)).ExecContext(ctx, args...)
	}
	return a.t.ExecContext(ctx, q, args...)
}

func (a alertStatements) queryRow(ctx context.Context, st func(*eventStmts) *sql.Stmt, q string, args ...any) *sql.Row {
	if a.prepared != nil {
		return a.t.StmtContext(ctx, st(a.prepared)).QueryRowContext(ctx, args...)
	}
	return a.t.QueryRowContext(ctx, q, args...)
}

// settle runs in the transaction that stores or routes a resolve (key) of
// the alert ref: the alert's waiting firing events (queued, not claimed,
// not redriven) become suppressed, resolved by it (settled counts them),
// and those kept back (settleKeptSQL) take the reason resolved, by it,
// uncounted. If no firing of the
// alert since its previous resolve reached the agent (delivered, or being
// delivered), the agent never heard of it: the resolve is suppressed too,
// naming the firing it closed. Otherwise it stays queued, to be delivered.
func settle(ctx context.Context, a alertStatements, key int64, ref AlertRef, at time.Time) (settled int, suppressed bool, err error) {
	when := ms(at)
	args := append([]any{EventSuppressed, SuppressedResolved, strconv.FormatInt(key, 10), when, when}, ref.args()...)
	// Kept-back events first: on PostgreSQL a release (the event queued
	// again) that commits between the two statements is then either seen
	// by the firings' statement (queued) or blocked by this one's row lock
	// and refused by its own guard (the reason is no longer the hold's).
	if _, err := a.exec(ctx, func(s *eventStmts) *sql.Stmt { return s.settleKept }, settleKeptSQL,
		append(append([]any{SuppressedResolved, strconv.FormatInt(key, 10), when, strconv.FormatInt(key, 10)}, ref.args()...),
			key, EventSuppressed, SuppressedSilence, SuppressedInhibited, SuppressedHeld, AlertStateFiring)...); err != nil {
		return 0, false, fmt.Errorf("store: settle alert %q's kept-back events: %w", ref.Key, err)
	}
	res, err := a.exec(ctx, func(s *eventStmts) *sql.Stmt { return s.settleFirings }, settleFiringsSQL,
		append(args, key, EventQueued, AlertStateFiring, false)...)
	if err != nil {
		return 0, false, fmt.Errorf("store: settle alert %q: %w", ref.Key, err)
	}
	n, err := affectedRows(res, nil)
	if err != nil {
		return 0, false, err
	}
	var handed, latest sql.NullInt64
	if err := a.queryRow(ctx, func(s *eventStmts) *sql.Stmt { return s.alertHanded }, alertHandedSQL,
		append(append(ref.args(), key), append(ref.args(), key)...)...).Scan(&handed, &latest); err != nil {
		return 0, false, err
	}
	if handed.Valid || !latest.Valid {
		// The agent heard of it (the resolve follows), or no firing is
		// known here at all (the resolve goes, the agent may know more).
		return n, false, nil
	}
	res, err = a.exec(ctx, func(s *eventStmts) *sql.Stmt { return s.settleResolve }, settleResolveSQL, EventSuppressed, SuppressedResolved,
		strconv.FormatInt(latest.Int64, 10), when, when, key, EventQueued)
	if err != nil {
		return n, false, err
	}
	done, err := affectedRows(res, nil)
	return n, done == 1, err
}

// alertLockClass is the first key of the PostgreSQL advisory locks that
// serialize the settling of one alert across replicas ("alrt"); the two-key
// form keeps them apart from the team locks' single keys.
const alertLockClass = 0x616c7274

// lockAlerts takes, on PostgreSQL, the transaction's advisory lock of each
// alert it will settle or route, before it writes anything: a replica
// routing a firing and another storing or routing its resolve then run one
// after the other, so the later sees the earlier's team and settles. Locks
// are taken in one order, so two transactions never wait for each other.
// SQLite has one writer: nothing to take.
func (db *DB) lockAlerts(ctx context.Context, t tx, refs []AlertRef) error {
	if db.d.name != "postgres" || len(refs) == 0 {
		return nil
	}
	keys := make([]int32, 0, len(refs))
	for _, r := range refs {
		h := fnv.New32a()
		for _, s := range []string{r.OrgID, r.TeamNodeID, r.Source, r.Key} {
			// Length-prefixed: no id can shift a boundary.
			h.Write([]byte(strconv.Itoa(len(s)) + ":" + s))
		}
		keys = append(keys, int32(h.Sum32()))
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	list := make([]string, len(keys))
	for i, k := range keys {
		list[i] = strconv.FormatInt(int64(k), 10)
	}
	// unnest yields the sorted keys in order, and every row is evaluated.
	_, err := t.ExecContext(ctx, `SELECT pg_advisory_xact_lock(`+strconv.Itoa(alertLockClass)+`, k)
		FROM unnest(ARRAY[`+strings.Join(list, ", ")+`]::int[]) AS k`)
	return err
}

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
// with key before, and whether a resolve came after it: of its own team's
// events only.
func (db *DB) AlertHistoryOf(ctx context.Context, ref AlertRef, before int64) (AlertHistory, error) {
	var h AlertHistory
	var sig sql.NullString
	var finished msTime
	err := db.read.QueryRowContext(ctx, `SELECT id, alert_sig, finished_at FROM orchestrator_webhook_events
		WHERE `+alertOf+` AND id < ? AND alert_state = ? AND status = ?
		ORDER BY id DESC LIMIT 1`, append(ref.args(), before, AlertStateFiring, EventDelivered)...).Scan(&h.deliveredKey, &sig, &finished)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return h, nil
	case err != nil:
		return h, err
	}
	h.Delivered, h.DeliveredSig, h.DeliveredAt = strconv.FormatInt(h.deliveredKey, 10), sig.String, finished.Time
	var one int
	err = db.read.QueryRowContext(ctx, `SELECT 1 FROM orchestrator_webhook_events
		WHERE `+alertOf+` AND id > ? AND id < ? AND alert_state = ? LIMIT 1`,
		append(ref.args(), h.deliveredKey, before, AlertStateResolved)...).Scan(&one)
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
	// ByOrg counts the redriven events of each org (events never routed
	// belong to none), so that each org's audit shows what touched it.
	ByOrg map[string]int `json:"-"`
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
	if err := db.read.QueryRowContext(ctx, `SELECT COALESCE(SUM(CASE WHEN `+unpurged+` THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN `+unpurged+` THEN 0 ELSE 1 END), 0) FROM orchestrator_webhook_events`+w.clause(), w.args...).Scan(&out.Matched, &out.Purged); err != nil {
		return out, err
	}
	out.More = out.Matched > RedriveLimit
	if dryRun || out.Matched == 0 {
		return out, nil
	}
	w.add(unpurged)
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
			rows, err := t.QueryContext(ctx, requeueSQL+`id IN (`+strings.TrimSuffix(strings.Repeat("?,", n), ",")+`) AND `+rareStatuses+
				` AND `+redrivableCondition+` RETURNING org_id`, args...)
			if err != nil {
				return err
			}
			orgs, err := collect(rows, func(r rowScanner) (sql.NullString, error) {
				var org sql.NullString
				return org, r.Scan(&org)
			})
			if err != nil {
				return err
			}
			out.Redriven += len(orgs)
			for _, org := range orgs {
				if org.Valid {
					if out.ByOrg == nil {
						out.ByOrg = map[string]int{}
					}
					out.ByOrg[org.String]++
				}
			}
			for _, k := range keys[:n] {
				out.IDs = append(out.IDs, strconv.FormatInt(k, 10))
			}
			keys = keys[n:]
		}
		return nil
	})
	return out, err
}

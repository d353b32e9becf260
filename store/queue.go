package store

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The event queue under load (SPEC §6 Storms). An event is routed once: a
// queued event without a team is read, looked up and written back with its
// team. From then on it waits for its team to be able to take a call, and a
// waiting event costs nothing: it is not claimed, looked up or written until
// the dispatcher claims it for a call. Claims are one statement for the
// events of one team and one kind; outcomes are written in batches.

// TeamKey names a team whose routed events are waiting.
type TeamKey struct {
	OrgID, TeamNodeID string
	// OldestDue is when its oldest waiting event became due.
	OldestDue time.Time
}

// EventsToRoute returns up to limit queued events that have no team yet —
// Slack mentions first, then the oldest — without claiming them: routing
// is one goroutine's work, and its write-back is guarded by "still queued
// without a team". A new event is routed at once even when it is held (the
// alert group wait): only a routed resolve can settle it, so it must know
// its team before the wait is over. An event whose lookup failed waits
// for its retry.
func (db *DB) EventsToRoute(ctx context.Context, now time.Time, limit int) ([]Event, error) {
	var out []Event
	for _, people := range []bool{true, false} {
		op := "="
		if !people {
			op = "<>"
		}
		rows, err := db.read.QueryContext(ctx, `SELECT `+eventColumnsToRoute+`
			FROM orchestrator_webhook_events
			WHERE `+activeStatuses+` AND status = ? AND org_id IS NULL AND team_node_id IS NULL AND (next_attempt_at <= ? OR attempts = 0)
			  AND source `+op+` ?
			ORDER BY next_attempt_at, id LIMIT ?`, EventQueued, ms(now), "slack", limit-len(out))
		if err != nil {
			return nil, err
		}
		got, err := collect(rows, scanEvent)
		if err != nil {
			return nil, err
		}
		if out = append(out, got...); len(out) >= limit {
			break
		}
	}
	return out, nil
}

// eventColumnsToRoute leave the payload out but for Slack's small events:
// the router reads which Slack app one came through (a stored header) to
// hold it to the app's orgs.
var eventColumnsToRoute = strings.Replace(eventColumns, " payload,", " CASE WHEN source = 'slack' THEN payload END,", 1)

// TeamsDue lists the teams with routed events due at now, the longest
// waiting first.
func (db *DB) TeamsDue(ctx context.Context, now time.Time) ([]TeamKey, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT org_id, team_node_id, MIN(next_attempt_at)
		FROM orchestrator_webhook_events
		WHERE `+activeStatuses+` AND status = ? AND team_node_id IS NOT NULL AND next_attempt_at <= ?
		GROUP BY org_id, team_node_id ORDER BY 3, 1, 2`, EventQueued, ms(now))
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r rowScanner) (TeamKey, error) {
		var k TeamKey
		var due msTime
		err := r.Scan(&k.OrgID, &k.TeamNodeID, &due)
		k.OldestDue = due.Time
		return k, err
	})
}

// Kind selects which of a team's due events a claim takes.
type Kind struct {
	// People: Slack mentions and internal triggers (source slack), and
	// redriven (solo) events. Each goes alone.
	People bool
	// Sources, when People is false, are the sources to take; Exclude
	// inverts the list. Solo events and Slack are never taken here.
	Sources []string
	Exclude bool
}

// ClaimTeamEvents moves up to limit of the team's due queued events of one
// kind to dispatching, in one statement, and returns them oldest first. It
// takes the longest due first (for a new event, due is when it arrived), in
// the order of the queue index, so a claim reads only the rows it takes
// however many of the team's events wait (ordering by arrival made every
// claim read and sort all of them: 40% of the CPU under a storm). A
// claim is a lease: the events' next_attempt_at becomes leaseUntil, and
// RequeueExpired returns them to the queue after it if no outcome came (the
// replica that claimed them died). On PostgreSQL, replicas claiming at once
// skip each other's rows instead of waiting for them.
func (db *DB) ClaimTeamEvents(ctx context.Context, now, leaseUntil time.Time, team TeamKey, kind Kind, limit int) ([]Event, error) {
	at := ms(now)
	cond, args := "(source = ? OR solo = ?)", []any{"slack", true}
	if !kind.People {
		cond, args = "source <> ? AND solo = ?", []any{"slack", false}
		if len(kind.Sources) > 0 {
			in := "IN"
			if kind.Exclude {
				in = "NOT IN"
			}
			cond += " AND source " + in + " (" + strings.TrimSuffix(strings.Repeat("?,", len(kind.Sources)), ",") + ")"
			for _, s := range kind.Sources {
				args = append(args, s)
			}
		} else if !kind.Exclude {
			return nil, nil // no source selected
		}
	}
	rows, err := eventsQueue.claim(ctx, db, now, leaseUntil, `org_id = ? AND team_node_id = ? AND next_attempt_at <= ? AND `+cond,
		append([]any{team.OrgID, team.TeamNodeID, at}, args...), limit, eventColumns)
	if err != nil {
		return nil, err
	}
	events, err := collect(rows, scanEvent)
	slices.SortFunc(events, func(a, b Event) int {
		if c := a.ReceivedAt.Compare(b.ReceivedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	return events, err
}

// RequeueExpired returns events whose claim's lease has passed to the
// queue: the replica that claimed them stopped without an outcome. Their
// attempt count is unchanged; the agent may see such an event a second
// time, with the same correlation id.
func (db *DB) RequeueExpired(ctx context.Context, now time.Time) (int, error) {
	return eventsQueue.requeueExpired(ctx, db, now)
}

// leasedQueue is what the store's two durable queues share — the webhook
// events and the answer deliveries (ARCHITECTURE.md: one claim, lease and
// redrive machinery, not two): a status that is waiting or working,
// next_attempt_at in milliseconds as the due time while waiting and as the
// claim's lease while working, and a partial index on the active rows.
type leasedQueue struct {
	table string
	// active is the queue index's condition (waiting or working), repeated
	// in every query so that SQLite uses the partial index.
	active           string
	waiting, working string
}

var (
	eventsQueue  = leasedQueue{"orchestrator_webhook_events", activeStatuses, EventQueued, EventDispatching}
	answersQueue = leasedQueue{"orchestrator_answer_deliveries", answerActive, AnswerQueued, AnswerPosting}
)

// claim moves up to limit waiting rows that match where (with its args) to
// working, leased until leaseUntil, in one statement, and returns their
// columns. It takes the longest due first, in the queue index's order. On
// PostgreSQL, replicas claiming at once skip each other's rows instead of
// waiting for them.
func (q leasedQueue) claim(ctx context.Context, db *DB, now, leaseUntil time.Time, where string, args []any, limit int, columns string) (*sql.Rows, error) {
	stmt := `UPDATE ` + q.table + ` SET status = ?, updated_at = ?, next_attempt_at = ?
		WHERE id IN (SELECT id FROM ` + q.table + `
			WHERE ` + q.active + ` AND status = ? AND ` + where + `
			ORDER BY next_attempt_at, id LIMIT ?` + db.d.skipLocked + `)
		RETURNING ` + columns
	all := append([]any{q.working, ms(now), ms(leaseUntil), q.waiting}, args...)
	return db.write.QueryContext(ctx, stmt, append(all, limit)...)
}

// requeueExpired returns working rows whose lease has passed to the queue:
// the replica that claimed them stopped without an outcome. Their attempt
// count is unchanged.
func (q leasedQueue) requeueExpired(ctx context.Context, db *DB, now time.Time) (int, error) {
	at := ms(now)
	res, err := db.write.ExecContext(ctx, `UPDATE `+q.table+` SET status = ?, updated_at = ?
		WHERE `+q.active+` AND status = ? AND next_attempt_at <= ?`, q.waiting, at, q.working, at)
	return affectedRows(res, err)
}

// requeueAll returns every working row to the queue, due now: on a
// database of its own, what a crash left working was this process's.
func (q leasedQueue) requeueAll(ctx context.Context, db *DB, now time.Time) (int, error) {
	res, err := db.write.ExecContext(ctx, `UPDATE `+q.table+` SET status = ?, next_attempt_at = ?, updated_at = ?
		WHERE `+q.active+` AND status = ?`, q.waiting, ms(now), ms(now), q.working)
	return affectedRows(res, err)
}

// Outcome is what one dispatch attempt (or one routing) came to for one
// event.
type Outcome struct {
	ID            string
	Status        string
	Attempts      int
	NextAttemptAt time.Time // for a retry (status queued)
	LastError     string
	OrgID         string
	TeamNodeID    string
	MatchedBy     string
	At            time.Time
	// From is the status the event must still have for the outcome to
	// apply: dispatching for a claimed event, queued for a routing result.
	From string
	// DigestRunID and DigestSize, for an event folded into a digest.
	DigestRunID string
	DigestSize  int
	// SuppressedReason and SuppressedBy, for an event noise control kept
	// from the agent (status suppressed).
	SuppressedReason, SuppressedBy string
	// Decision, when set, replaces the event's stored decision (routing
	// writes it; the team loop writes it again with its own steps added).
	Decision []byte
}

// RecordOutcomes writes outcomes, the agent calls they came from and the
// calls' answer deliveries in one transaction: the batched completion of SPEC §6, so that dispatch
// bookkeeping costs one commit per batch, not one per event. An outcome
// whose event is no longer in its From status is skipped (a redrive or a
// restart got there first).
func (db *DB) RecordOutcomes(ctx context.Context, outcomes []Outcome, runs []AgentRun, deliveries []AnswerDelivery) error {
	if len(outcomes) == 0 && len(runs) == 0 && len(deliveries) == 0 {
		return nil
	}
	t, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer t.Rollback()
	// Runs first: a folded event's digest_run_id points at its run.
	for _, r := range runs {
		if err := insertAgentRun(ctx, t, r); err != nil {
			return fmt.Errorf("store: agent run %s: %w", r.ID, err)
		}
	}
	// The answers' deliveries, one row each, in multi-row statements.
	if err := insertDeliveries(ctx, t, deliveries); err != nil {
		return fmt.Errorf("store: answer deliveries: %w", err)
	}
	if _, err := writeOutcomes(ctx, t, outcomes); err != nil {
		return err
	}
	return t.Commit()
}

// Routed is the router's result for one event: its outcome (From queued),
// and the event's alert identity, so that an alert event given its team is
// settled by team.
type Routed struct {
	Outcome
	Source, AlertKey, AlertState string
	// Solo: a redriven event, past noise control.
	Solo bool
}

// settles reports whether routing r may settle its alert: a firing or a
// resolve of an alert, not redriven, going on to its team.
func (r Routed) settles() bool {
	return r.Status == EventQueued && r.OrgID != "" && r.TeamNodeID != "" && r.AlertKey != "" && !r.Solo &&
		(r.AlertState == AlertStateResolved || r.AlertState == AlertStateFiring)
}

func (r Routed) alertRef() AlertRef {
	return AlertRef{OrgID: r.OrgID, TeamNodeID: r.TeamNodeID, Source: r.Source, Key: r.AlertKey}
}

// RecordRoutes writes the router's results in one transaction and settles
// alerts by team (SPEC §18, round 4: an alert is one team's, so only a
// routed resolve can settle): a resolve given its team settles its
// alert's waiting firing events as it would have at its ack had its route
// been known then, and a firing given its team after a resolve of its
// alert was routed is settled by that resolve. It returns, per source, how
// many events the settling suppressed.
func (db *DB) RecordRoutes(ctx context.Context, routed []Routed) (map[string]int, error) {
	if len(routed) == 0 {
		return nil, nil
	}
	t, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer t.Rollback()
	var refs []AlertRef
	outcomes := make([]Outcome, len(routed))
	for i, r := range routed {
		outcomes[i] = r.Outcome
		if r.settles() {
			refs = append(refs, r.alertRef())
		}
	}
	if err := db.lockAlerts(ctx, t, refs); err != nil {
		return nil, err
	}
	applied, err := writeOutcomes(ctx, t, outcomes)
	if err != nil {
		return nil, err
	}
	settled := map[string]int{}
	for i, r := range routed {
		key, kerr := strconv.ParseInt(r.ID, 10, 64)
		if !applied[i] || !r.settles() || kerr != nil {
			continue
		}
		ref, resolve := r.alertRef(), key
		if r.AlertState == AlertStateFiring {
			var next sql.NullInt64
			if err := t.QueryRowContext(ctx, nextResolveSQL, append(ref.args(), key)...).Scan(&next); err != nil {
				return nil, err
			}
			if !next.Valid {
				continue
			}
			resolve = next.Int64
		}
		n, suppressed, err := settle(ctx, alertStatements{t: t}, resolve, ref, r.At)
		if err != nil {
			return nil, err
		}
		if n += btoi(suppressed); n > 0 {
			settled[r.Source] += n
		}
	}
	return settled, t.Commit()
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// writeOutcomes applies outcomes in t; applied[i] reports whether the
// event of outcomes[i] was still in its From status, and so took it.
func writeOutcomes(ctx context.Context, t tx, outcomes []Outcome) ([]bool, error) {
	applied := make([]bool, len(outcomes))
	// A redriven event keeps why it had been suppressed when it is
	// delivered (or fails): only a new suppression replaces the reason.
	// A released event that is kept back again (by another holder) is no
	// longer released: that holder's end releases it again.
	// One statement per way an event is named (eventRef): by key, or, for
	// an event stored before migration 7, by its UUID; each prepared when
	// first needed.
	stmts := map[string]*sql.Stmt{}
	stmtFor := func(cond string) (*sql.Stmt, error) {
		if st := stmts[cond]; st != nil {
			return st, nil
		}
		st, err := t.PrepareContext(ctx, `UPDATE orchestrator_webhook_events SET status = ?, attempts = ?, next_attempt_at = ?,
		last_error = ?, org_id = COALESCE(?, org_id), team_node_id = COALESCE(?, team_node_id), matched_by = COALESCE(?, matched_by),
		updated_at = ?, finished_at = ?, digest_run_id = COALESCE(?, digest_run_id), digest_size = COALESCE(?, digest_size),
		suppressed_reason = COALESCE(?, suppressed_reason), suppressed_by = COALESCE(?, suppressed_by),
		decision = COALESCE(?, decision), released_by = CASE WHEN ? = 'suppressed' THEN NULL ELSE released_by END
		WHERE `+cond+` AND status = ?`)
		stmts[cond] = st
		return st, err
	}
	defer func() {
		for _, st := range stmts {
			if st != nil {
				st.Close()
			}
		}
	}()
	for i, o := range outcomes {
		var finished any
		switch o.Status {
		case EventDelivered, EventIgnored, EventUnrouted, EventFailed, EventDead, EventSuppressed:
			finished = ms(o.At)
		}
		// A finished event has no next attempt (and a NULL costs no bytes).
		var next any
		if finished == nil {
			at := o.NextAttemptAt
			if at.IsZero() {
				at = o.At
			}
			next = ms(at)
		}
		from := o.From
		if from == "" {
			from = EventDispatching
		}
		var size any
		if o.DigestSize > 0 {
			size = o.DigestSize
		}
		cond, key, ok := eventRef(o.ID)
		if !ok {
			return nil, fmt.Errorf("%w: outcome for event %q", ErrInvalid, o.ID)
		}
		stmt, err := stmtFor(cond)
		if err != nil {
			return nil, err
		}
		res, err := stmt.ExecContext(ctx, o.Status, o.Attempts, next, nullIfEmpty(o.LastError),
			nullIfEmpty(o.OrgID), nullIfEmpty(o.TeamNodeID), nullIfEmpty(o.MatchedBy), ms(o.At), finished,
			nullIfEmpty(o.DigestRunID), size, nullIfEmpty(o.SuppressedReason), nullIfEmpty(o.SuppressedBy), nullIfEmpty(string(o.Decision)), o.Status, key, from)
		if err != nil {
			return nil, fmt.Errorf("store: outcome of event %s: %w", o.ID, err)
		}
		n, err := affectedRows(res, nil)
		if err != nil {
			return nil, err
		}
		applied[i] = n > 0
	}
	return applied, nil
}

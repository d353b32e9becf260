package store

// Release at the end (SPEC §21): the alert events a silence, a mute
// interval or a route's active_time_intervals keep back are grouped by what
// holds them (suppressed_reason, suppressed_by); once a group's holder ends
// (the silence ended or was expired, its window closed, the route's
// interval opened), each event of it that is still its alert's newest (its
// alert still open: not a resolve) is queued again once, marked released_by what ended the hold; the
// group's other events (a newer event of the alert carries on, or it was a
// resolve) are only marked, so that they leave the index the pass reads.

import (
	"context"
	"database/sql"
	"sort"
	"strconv"
	"strings"
	"time"
)

// What ended a hold, as released_by says it (an inhibited event's
// released_by is the resolving event's id).
const (
	ReleasedSilenceEnded   = "silence-ended"
	ReleasedSilenceExpired = "silence-expired"
	ReleasedWindowClosed   = "window-closed"
	// ReleasedIntervalOpened is followed by ":" and the interval's name
	// (alone when the two would not fit in released_by).
	ReleasedIntervalOpened = "interval-opened"
	ReleasedIntervalsGone  = "intervals-removed"
)

// Hold is what keeps a group of events back: a silence (By: its id) or a
// route's active_time_intervals (By: the names, comma-separated), in an org.
type Hold struct {
	Reason, By string
}

// Holds lists what keeps unreleased events back, for reasons silence and
// held: by ix_webhook_events_held, as large as what is held now.
func (db *DB) Holds(ctx context.Context) ([]Hold, error) {
	// The literal conditions are the partial index's own, so that SQLite
	// may use it.
	rows, err := db.read.QueryContext(ctx, `SELECT DISTINCT suppressed_reason, suppressed_by FROM orchestrator_webhook_events
		WHERE status = 'suppressed' AND released_by IS NULL AND suppressed_reason IN ('silence', 'held', 'inhibited')
		  AND suppressed_reason <> 'inhibited' AND suppressed_by IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r rowScanner) (Hold, error) {
		var h Hold
		return h, r.Scan(&h.Reason, &h.By)
	})
}

// MaxReleasedBy bounds released_by (the column is VARCHAR(64)).
const MaxReleasedBy = 64

// releaseBatch bounds the rows one release statement updates (a short
// write lock on SQLite however large the hold).
const releaseBatch = 1000

// The conditions of ReleaseHold's statements: the hold's unreleased events
// (the partial index's own literal conditions first, so SQLite may use
// it), and whether such an event is still its alert's newest, not a resolve.
const (
	heldByCondition = `status = 'suppressed' AND released_by IS NULL AND suppressed_reason IN ('silence', 'held', 'inhibited')
		AND suppressed_reason = ? AND suppressed_by = ?`
	openAlertCondition = `alert_key IS NOT NULL AND COALESCE(alert_state, '') <> 'resolved'
		AND NOT EXISTS (SELECT 1 FROM orchestrator_webhook_events n
		                WHERE n.source = orchestrator_webhook_events.source AND n.alert_key = orchestrator_webhook_events.alert_key
		                  AND n.id > orchestrator_webhook_events.id AND n.org_id = orchestrator_webhook_events.org_id
		                  AND n.team_node_id = orchestrator_webhook_events.team_node_id)`
)

// ReleaseHold ends a hold: each event it keeps back that is still the
// newest of its alert, and not a resolve, is queued again, marked
// released_by (at most MaxReleasedBy bytes); the hold's other events are
// marked and stay suppressed. Each statement is guarded by the event's
// status, reason, holder and released_by, so of replicas releasing at once
// one releases each event; an event kept back by the hold after the first
// statement (a replica's cached silence) is neither queued nor marked, and
// the next pass releases it. It returns the events queued again.
func (db *DB) ReleaseHold(ctx context.Context, h Hold, releasedBy string, now time.Time) ([]Release, error) {
	if len(releasedBy) > MaxReleasedBy {
		releasedBy = releasedBy[:MaxReleasedBy]
	}
	at := ms(now)
	var out []Release
	// Each batch: the ids read, then updated by id (the primary key) under
	// the same guards; a batch that updates nothing (another replica took
	// it) ends the loop, the next pass sees what is left.
	pick := func(cond string) ([]any, error) {
		rows, err := db.write.QueryContext(ctx, `SELECT id FROM orchestrator_webhook_events WHERE `+heldByCondition+` AND `+cond+`
			ORDER BY id LIMIT `+strconv.Itoa(releaseBatch), h.Reason, h.By)
		if err != nil {
			return nil, err
		}
		return collect(rows, func(r rowScanner) (any, error) {
			var id int64
			return id, r.Scan(&id)
		})
	}
	in := func(ids []any) string { return strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ") }
	for {
		ids, err := pick(openAlertCondition)
		if err != nil || len(ids) == 0 {
			return out, err
		}
		rows, err := db.write.QueryContext(ctx, `UPDATE orchestrator_webhook_events SET status = ?, released_by = ?, attempts = 0,
			next_attempt_at = ?, updated_at = ?, finished_at = NULL, digest_run_id = NULL, digest_size = NULL
			WHERE id IN (`+in(ids)+`) AND `+heldByCondition+`
			RETURNING id, org_id, team_node_id, source`,
			append(append([]any{EventQueued, releasedBy, at, at}, ids...), h.Reason, h.By)...)
		if err != nil {
			return out, err
		}
		batch, err := collect(rows, func(r rowScanner) (Release, error) {
			var rel Release
			var key int64
			var org, team sql.NullString
			err := r.Scan(&key, &org, &team, &rel.Source)
			rel.ID, rel.OrgID, rel.TeamNodeID, rel.HeldBy, rel.ResolvedBy = strconv.FormatInt(key, 10), org.String, team.String, h.By, releasedBy
			return rel, err
		})
		out = append(out, batch...)
		if err != nil {
			return out, err
		}
		if len(batch) == 0 || len(ids) < releaseBatch {
			break
		}
	}
	for {
		ids, err := pick(`NOT (` + openAlertCondition + `)`)
		if err != nil || len(ids) == 0 {
			return out, err
		}
		res, err := db.write.ExecContext(ctx, `UPDATE orchestrator_webhook_events SET released_by = ?
			WHERE id IN (`+in(ids)+`) AND `+heldByCondition, append(append([]any{releasedBy}, ids...), h.Reason, h.By)...)
		if err != nil {
			return out, err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 || len(ids) < releaseBatch {
			if err != nil {
				return out, err
			}
			break
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return len(out[i].ID) < len(out[j].ID) || len(out[i].ID) == len(out[j].ID) && out[i].ID < out[j].ID
	})
	return out, nil
}

package store

// Inhibition (SPEC §21): what the store knows of an org's firing alerts
// with labels (the inhibitors an inhibit rule's source may match), and the
// release of the events they held once they resolve. Both read the
// database, so every replica, and a restarted one, agree.

import (
	"context"
	"database/sql"
	"encoding/json"
	"strconv"
	"time"
)

// MaxAlertLabels bounds an event's stored labels (JSON text).
const MaxAlertLabels = 16384

// FiringAlert is an org's alert whose newest event fires, with the labels
// its alerts share.
type FiringAlert struct {
	// ID is that newest event's id (what suppressed_by names).
	ID     string
	Ref    AlertRef
	Labels map[string]string
}

// FiringAlerts lists an org's alerts whose newest event (of their team,
// source and key) is a firing one with labels, and the newest event id of
// the table when it was read: an event with a larger id was stored after
// the list was read. By ix_webhook_events_labeled, then
// ix_webhook_events_alert for each.
func (db *DB) FiringAlerts(ctx context.Context, org string) ([]FiringAlert, int64, error) {
	var maxID int64
	if err := db.read.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM orchestrator_webhook_events`).Scan(&maxID); err != nil {
		return nil, 0, err
	}
	rows, err := db.read.QueryContext(ctx, `SELECT e.id, e.team_node_id, e.source, e.alert_key, e.alert_labels
		FROM orchestrator_webhook_events e
		WHERE e.org_id = ? AND e.alert_labels IS NOT NULL AND e.alert_state = 'firing' AND e.alert_key IS NOT NULL
		  AND NOT EXISTS (SELECT 1 FROM orchestrator_webhook_events n
		                  WHERE n.source = e.source AND n.alert_key = e.alert_key AND n.id > e.id
		                    AND n.org_id = e.org_id AND n.team_node_id = e.team_node_id)
		ORDER BY e.id`, org)
	if err != nil {
		return nil, 0, err
	}
	list, err := collect(rows, func(r rowScanner) (FiringAlert, error) {
		var a FiringAlert
		var key int64
		var team, labels string
		if err := r.Scan(&key, &team, &a.Ref.Source, &a.Ref.Key, &labels); err != nil {
			return a, err
		}
		a.ID, a.Ref.OrgID, a.Ref.TeamNodeID = strconv.FormatInt(key, 10), org, team
		if json.Unmarshal([]byte(labels), &a.Labels) != nil {
			a.Labels = nil // a crafted row: it inhibits nothing
		}
		return a, nil
	})
	return list, maxID, err
}

// AlertChange is an org's alert event stored after a reading of its
// firing alerts: Firing when it fires with labels (the alert's firing
// alert is now this event), else the alert no longer fires with labels.
type AlertChange struct {
	FiringAlert
	Firing bool
}

// AlertChangesSince lists an org's alert events with an id above after, in
// order, up to the newest id of the table (returned): what turns a reading
// of FiringAlerts into the current one without reading it all again. By
// the primary key (the few rows stored since).
func (db *DB) AlertChangesSince(ctx context.Context, org string, after int64) ([]AlertChange, int64, error) {
	var maxID int64
	if err := db.read.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM orchestrator_webhook_events`).Scan(&maxID); err != nil {
		return nil, 0, err
	}
	if maxID <= after {
		return nil, after, nil
	}
	rows, err := db.read.QueryContext(ctx, `SELECT id, team_node_id, source, alert_key, alert_state, alert_labels
		FROM orchestrator_webhook_events
		WHERE id > ? AND id <= ? AND org_id = ? AND alert_key IS NOT NULL ORDER BY id`, after, maxID, org)
	if err != nil {
		return nil, 0, err
	}
	list, err := collect(rows, func(r rowScanner) (AlertChange, error) {
		var c AlertChange
		var key int64
		var team, state, labels sql.NullString
		if err := r.Scan(&key, &team, &c.Ref.Source, &c.Ref.Key, &state, &labels); err != nil {
			return c, err
		}
		c.ID, c.Ref.OrgID, c.Ref.TeamNodeID = strconv.FormatInt(key, 10), org, team.String
		if state.String == AlertStateFiring && labels.Valid && json.Unmarshal([]byte(labels.String), &c.Labels) == nil {
			c.Firing = true
		}
		return c, nil
	})
	return list, maxID, err
}

// Release is one inhibited event queued again because what held it
// resolved.
type Release struct {
	ID, OrgID, TeamNodeID, Source string
	// HeldBy is the inhibiting event, ResolvedBy the resolve that ended it.
	HeldBy, ResolvedBy string
}

// ReleaseInhibited queues again, once, each event suppressed inhibited
// whose inhibiting alert has resolved since and that is still the newest
// event of its own alert (still firing): it goes through noise control
// again (another inhibitor may hold it) and is marked released_by the
// resolve. The update is guarded by the event's state, so of replicas
// releasing at once one releases each event. One that resolved meanwhile
// stays suppressed.
func (db *DB) ReleaseInhibited(ctx context.Context, now time.Time) ([]Release, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT t.id, t.suppressed_by, t.org_id, t.team_node_id, t.source, t.alert_key
		FROM orchestrator_webhook_events t
		WHERE t.suppressed_reason = ? AND t.status = ? AND t.released_by IS NULL AND t.alert_key IS NOT NULL
		  AND NOT EXISTS (SELECT 1 FROM orchestrator_webhook_events n
		                  WHERE n.source = t.source AND n.alert_key = t.alert_key AND n.id > t.id
		                    AND n.org_id = t.org_id AND n.team_node_id = t.team_node_id)`, SuppressedInhibited, EventSuppressed)
	if err != nil {
		return nil, err
	}
	type candidate struct {
		key  int64
		rel  Release
		held int64
	}
	cands, err := collect(rows, func(r rowScanner) (candidate, error) {
		var c candidate
		var alertKey string
		err := r.Scan(&c.key, &c.rel.HeldBy, &c.rel.OrgID, &c.rel.TeamNodeID, &c.rel.Source, &alertKey)
		c.rel.ID = strconv.FormatInt(c.key, 10)
		c.held, _ = strconv.ParseInt(c.rel.HeldBy, 10, 64)
		return c, err
	})
	if err != nil {
		return nil, err
	}
	var out []Release
	// The resolve of each holder, read once: a cascade's targets share it.
	resolves := map[int64]sql.NullInt64{}
	for _, c := range cands {
		if c.held <= 0 {
			continue
		}
		resolve, read := resolves[c.held]
		if !read {
			if err := db.read.QueryRowContext(ctx, `SELECT MIN(r.id) FROM orchestrator_webhook_events s
				JOIN orchestrator_webhook_events r ON r.source = s.source AND r.alert_key = s.alert_key AND r.id > s.id
				  AND r.org_id = s.org_id AND r.team_node_id = s.team_node_id AND r.alert_state = 'resolved'
				WHERE s.id = ?`, c.held).Scan(&resolve); err != nil {
				return out, err
			}
			resolves[c.held] = resolve
		}
		if !resolve.Valid {
			continue
		}
		at := ms(now)
		by := strconv.FormatInt(resolve.Int64, 10)
		res, err := db.write.ExecContext(ctx, `UPDATE orchestrator_webhook_events SET status = ?, released_by = ?, attempts = 0,
			next_attempt_at = ?, updated_at = ?, finished_at = NULL, digest_run_id = NULL, digest_size = NULL
			WHERE id = ? AND status = ? AND suppressed_reason = ? AND suppressed_by = ? AND released_by IS NULL`,
			EventQueued, by, at, at, c.key, EventSuppressed, SuppressedInhibited, c.rel.HeldBy)
		if err != nil {
			return out, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return out, err
		} else if n == 1 {
			c.rel.ResolvedBy = by
			out = append(out, c.rel)
		}
	}
	return out, nil
}

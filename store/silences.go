package store

// Silences and the admin audit (SPEC §6 Noise): maintenance windows an admin
// sets, kept after they end, and a record of who changed what.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Silence is a maintenance window: alert events of its org (and team, and
// sources) that match it while it is active are suppressed.
type Silence struct {
	ID         string
	OrgID      string
	TeamNodeID string
	// Sources: empty = every alert source.
	Sources []string
	// Match: each set field must match, exactly or as a * glob.
	EventType, Service, AlertKey string
	StartsAt, EndsAt             time.Time
	// MuteTimeIntervals, when set, makes the silence recurring: between
	// StartsAt and EndsAt it mutes only while one of these time intervals
	// of the sources file is open.
	MuteTimeIntervals []string
	Comment           string
	CreatedBy         string
	CreatedAt         time.Time
	ExpiredBy         string
	ExpiredAt         *time.Time
}

// Service is what a silence's service matches for an event: its service
// identifier, or PagerDuty's service id.
func (e Event) Service() string {
	if s := e.Identifiers["service"]; s != "" {
		return s
	}
	return e.Identifiers["pagerduty_service_id"]
}

// A silence's states.
const (
	SilenceActive  = "active"  // in force now
	SilencePending = "pending" // starts later
	SilenceExpired = "expired" // ended, or expired by an admin
)

// State is the silence's state at now.
func (s Silence) State(now time.Time) string {
	switch {
	case s.ExpiredAt != nil || !now.Before(s.EndsAt):
		return SilenceExpired
	case now.Before(s.StartsAt):
		return SilencePending
	}
	return SilenceActive
}

// Active reports whether the silence applies at now.
func (s Silence) Active(now time.Time) bool { return s.State(now) == SilenceActive }

const silenceColumns = `id, org_id, team_node_id, sources, match_event_type, match_service, match_alert_key, starts_at, ends_at,
	comment, created_by, created_at, expired_by, expired_at, mute_time_intervals`

func scanSilence(row rowScanner) (Silence, error) {
	var s Silence
	var team, sources, et, svc, key, expBy, mute sql.NullString
	var starts, ends, created, expired msTime
	err := row.Scan(&s.ID, &s.OrgID, &team, &sources, &et, &svc, &key, &starts, &ends, &s.Comment, &s.CreatedBy, &created, &expBy, &expired, &mute)
	s.TeamNodeID, s.EventType, s.Service, s.AlertKey, s.ExpiredBy = team.String, et.String, svc.String, key.String, expBy.String
	if sources.String != "" {
		s.Sources = strings.Split(sources.String, ",")
	}
	if mute.String != "" {
		s.MuteTimeIntervals = strings.Split(mute.String, ",")
	}
	s.StartsAt, s.EndsAt, s.CreatedAt, s.ExpiredAt = starts.Time, ends.Time, created.Time, expired.ptr()
	return s, err
}

// MaxActiveSilences bounds an org's silences that have not ended (active
// or pending; SPEC §18, round 4): each is matched against every alert
// event of the org, and the list is read once a second.
const MaxActiveSilences = 1000

// silenceLockClass is the first key of the PostgreSQL advisory lock that
// makes an org's silence count and insert one step across replicas
// ("silc").
const silenceLockClass = 0x73696c63

// CreateSilence stores a new silence (its ID is set here) and its audit
// record in one transaction, unless its org already has MaxActiveSilences
// that have not ended at s.CreatedAt (ErrLimit).
func (db *DB) CreateSilence(ctx context.Context, s Silence) (Silence, error) {
	s.ID = uuid.NewString()
	err := db.inTx(ctx, func(t tx) error {
		if db.d.name == "postgres" {
			// Two replicas creating the org's 1000th at once: one waits.
			h := fnv.New32a()
			h.Write([]byte(s.OrgID))
			if _, err := t.ExecContext(ctx, `SELECT pg_advisory_xact_lock(`+strconv.Itoa(silenceLockClass)+`, ?)`, int32(h.Sum32())); err != nil {
				return err
			}
		}
		var n int
		if err := t.QueryRowContext(ctx, `SELECT COUNT(*) FROM orchestrator_silences WHERE org_id = ? AND expired_at IS NULL AND ends_at > ?`,
			s.OrgID, ms(s.CreatedAt)).Scan(&n); err != nil {
			return err
		}
		if n >= MaxActiveSilences {
			return fmt.Errorf("%w: org %s has %d silences that have not ended, the most an org may have", ErrLimit, s.OrgID, n)
		}
		if _, err := t.ExecContext(ctx, `INSERT INTO orchestrator_silences (`+silenceColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)`, s.ID, s.OrgID, nullIfEmpty(s.TeamNodeID),
			nullIfEmpty(strings.Join(s.Sources, ",")), nullIfEmpty(s.EventType), nullIfEmpty(s.Service), nullIfEmpty(s.AlertKey),
			ms(s.StartsAt), ms(s.EndsAt), s.Comment, s.CreatedBy, ms(s.CreatedAt), nullIfEmpty(strings.Join(s.MuteTimeIntervals, ","))); err != nil {
			return err
		}
		detail := map[string]any{"silence_id": s.ID, "team_node_id": s.TeamNodeID, "sources": s.Sources, "event_type": s.EventType,
			"service": s.Service, "alert_key": s.AlertKey, "starts_at": s.StartsAt, "ends_at": s.EndsAt, "comment": s.Comment}
		if len(s.MuteTimeIntervals) > 0 {
			detail["mute_time_intervals"] = s.MuteTimeIntervals
		}
		return insertAudit(ctx, t, Audit{At: s.CreatedAt, Actor: s.CreatedBy, OrgID: s.OrgID, Action: "silence.create", Detail: detail})
	})
	return s, err
}

// GetSilence returns one silence.
func (db *DB) GetSilence(ctx context.Context, id string) (Silence, error) {
	s, err := scanSilence(db.read.QueryRowContext(ctx, `SELECT `+silenceColumns+` FROM orchestrator_silences WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return s, fmt.Errorf("%w: silence %s", ErrNotFound, id)
	}
	return s, err
}

// ListSilences lists an org's silences (org "" = every org), newest first:
// state "active" those that apply at now or will, "expired" the others, ""
// all; at most 500.
func (db *DB) ListSilences(ctx context.Context, org, state string, now time.Time) ([]Silence, error) {
	var w filter
	w.eq("org_id", org)
	switch state {
	case SilenceActive:
		w.add("expired_at IS NULL AND ends_at > ?", ms(now))
	case SilenceExpired:
		w.add("(expired_at IS NOT NULL OR ends_at <= ?)", ms(now))
	}
	rows, err := db.read.QueryContext(ctx, `SELECT `+silenceColumns+` FROM orchestrator_silences`+w.clause()+` ORDER BY created_at DESC, id LIMIT 500`, w.args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanSilence)
}

// ActiveSilences lists the silences in force at now, every org.
func (db *DB) ActiveSilences(ctx context.Context, now time.Time) ([]Silence, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT `+silenceColumns+` FROM orchestrator_silences
		WHERE ends_at > ? AND starts_at <= ? AND expired_at IS NULL`, ms(now), ms(now))
	if err != nil {
		return nil, err
	}
	return collect(rows, scanSilence)
}

// ExpireSilence ends a silence now (it is kept, for the audit). Expiring
// one that has already ended is a conflict.
func (db *DB) ExpireSilence(ctx context.Context, id, actor string, now time.Time) (Silence, error) {
	var out Silence
	err := db.inTx(ctx, func(t tx) error {
		s, err := scanSilence(t.QueryRowContext(ctx, `SELECT `+silenceColumns+` FROM orchestrator_silences WHERE id = ?`+db.d.forUpdate, id))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("%w: silence %s", ErrNotFound, id)
		case err != nil:
			return err
		case s.ExpiredAt != nil || !now.Before(s.EndsAt):
			return fmt.Errorf("%w: silence %s has already ended", ErrConflict, id)
		}
		if _, err := t.ExecContext(ctx, `UPDATE orchestrator_silences SET expired_at = ?, expired_by = ? WHERE id = ?`, ms(now), actor, id); err != nil {
			return err
		}
		s.ExpiredAt, s.ExpiredBy = &now, actor
		out = s
		return insertAudit(ctx, t, Audit{At: now, Actor: actor, OrgID: s.OrgID, Action: "silence.expire", Detail: map[string]any{"silence_id": id}})
	})
	return out, err
}

// Audit is one admin action kept for the record: who, when, what.
type Audit struct {
	ID     string
	At     time.Time
	Actor  string
	OrgID  string
	Action string
	Detail map[string]any
}

// AddAudit records an admin action.
func (db *DB) AddAudit(ctx context.Context, a Audit) error { return insertAudit(ctx, db.write, a) }

func insertAudit(ctx context.Context, x querier, a Audit) error {
	if a.ID == "" {
		a.ID = uuid.NewString()
	}
	detail, err := json.Marshal(a.Detail)
	if err != nil {
		return err
	}
	_, err = x.ExecContext(ctx, `INSERT INTO orchestrator_admin_audit (id, at, actor, org_id, action, detail) VALUES (?, ?, ?, ?, ?, ?)`,
		a.ID, ms(a.At), a.Actor, nullIfEmpty(a.OrgID), a.Action, string(detail))
	return err
}

// ListAudit lists the admin audit newest first (org "" = every org), at most limit.
func (db *DB) ListAudit(ctx context.Context, org string, limit int) ([]Audit, error) {
	var w filter
	w.eq("org_id", org)
	rows, err := db.read.QueryContext(ctx, `SELECT id, at, actor, org_id, action, detail FROM orchestrator_admin_audit`+w.clause()+
		` ORDER BY at DESC, id LIMIT ?`, append(w.args, limit)...)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r rowScanner) (Audit, error) {
		var a Audit
		var at msTime
		var org sql.NullString
		var detail string
		err := r.Scan(&a.ID, &at, &a.Actor, &org, &a.Action, &detail)
		a.At, a.OrgID = at.Time, org.String
		_ = json.Unmarshal([]byte(detail), &a.Detail)
		return a, err
	})
}

// PurgeAudit deletes up to limit admin audit records and ended silences
// older than cutoff (the audit retention, SPEC §16).
func (db *DB) PurgeAudit(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	res, err := db.write.ExecContext(ctx, `DELETE FROM orchestrator_admin_audit WHERE id IN (
		SELECT id FROM orchestrator_admin_audit WHERE at < ? LIMIT ?)`, ms(cutoff), limit)
	n, err := affectedRows(res, err)
	if err != nil || n == limit {
		return n, err
	}
	res, err = db.write.ExecContext(ctx, `DELETE FROM orchestrator_silences WHERE id IN (
		SELECT id FROM orchestrator_silences WHERE ends_at < ? LIMIT ?)`, ms(cutoff), limit-n)
	m, err := affectedRows(res, err)
	return n + m, err
}

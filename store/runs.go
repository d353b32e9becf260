package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Run kinds and statuses.
const (
	RunKindProvision   = "provision"
	RunKindDeprovision = "deprovision"

	RunRunning   = "running"
	RunSucceeded = "succeeded"
	RunFailed    = "failed"
)

// Run is one provisioning or deprovisioning run: the audit record and the
// idempotency record at once.
type Run struct {
	ID             string
	Kind           string
	OrgID          string
	TeamNodeID     string
	IdempotencyKey string // "" when none was given
	Fingerprint    string
	Status         string
	Steps          json.RawMessage // the workflow's step list, opaque here
	Response       json.RawMessage // the stored response body, for replays
	HTTPStatus     int
	Error          string
	Actor          string
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

const runColumns = `id, kind, org_id, team_node_id, idempotency_key, request_fingerprint, status,
	steps, response, http_status, error, actor, created_at, updated_at`

func scanRun(row rowScanner) (Run, error) {
	var r Run
	var key, fp, resp, errText, actor sql.NullString
	var steps string
	var status sql.NullInt64
	var created, updated nullTime
	err := row.Scan(&r.ID, &r.Kind, &r.OrgID, &r.TeamNodeID, &key, &fp, &r.Status,
		&steps, &resp, &status, &errText, &actor, &created, &updated)
	if err != nil {
		return Run{}, err
	}
	r.IdempotencyKey, r.Fingerprint, r.Error, r.Actor = key.String, fp.String, errText.String, actor.String
	r.Steps = json.RawMessage(steps)
	if resp.Valid {
		r.Response = json.RawMessage(resp.String)
	}
	r.HTTPStatus = int(status.Int64)
	r.CreatedAt, r.UpdatedAt = created.Time, updated.Time
	return r, nil
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func jsonOrNull(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

// StartRun records a new run as running. With an idempotency key it first
// looks for a run with the same (org, team, key) created after keyFloor: if
// one exists it is returned as existing and nothing is written; an older one
// gives its key up. Check and insert are one transaction, so two requests
// with one key cannot both start.
func (db *DB) StartRun(ctx context.Context, r Run, keyFloor time.Time) (existing *Run, err error) {
	if r.ID == "" || r.Kind == "" || r.OrgID == "" || r.TeamNodeID == "" {
		return nil, fmt.Errorf("%w: run needs id, kind, org and team", ErrInvalid)
	}
	if len(r.Steps) == 0 {
		r.Steps = json.RawMessage("[]")
	}
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()

	if r.IdempotencyKey != "" {
		row := tx.QueryRowContext(ctx, `SELECT `+runColumns+` FROM orchestrator_provisioning_runs
			WHERE org_id = ? AND team_node_id = ? AND idempotency_key = ?`, r.OrgID, r.TeamNodeID, r.IdempotencyKey)
		old, err := scanRun(row)
		switch {
		case err == nil && !old.CreatedAt.Before(keyFloor):
			return &old, nil
		case err == nil:
			// Expired: the old run stays as audit, without the key.
			if _, err := tx.ExecContext(ctx, `UPDATE orchestrator_provisioning_runs SET idempotency_key = NULL WHERE id = ?`, old.ID); err != nil {
				return nil, err
			}
		case !errors.Is(err, sql.ErrNoRows):
			return nil, err
		}
	}
	now := formatTime(r.CreatedAt)
	_, err = tx.ExecContext(ctx, `INSERT INTO orchestrator_provisioning_runs
		(id, kind, org_id, team_node_id, idempotency_key, request_fingerprint, status, steps, response, http_status, error, actor, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Kind, r.OrgID, r.TeamNodeID, nullIfEmpty(r.IdempotencyKey), nullIfEmpty(r.Fingerprint), r.Status,
		string(r.Steps), jsonOrNull(r.Response), nullInt(r.HTTPStatus), nullIfEmpty(r.Error), nullIfEmpty(r.Actor), now, now)
	if err != nil {
		if isUniqueViolation(err) {
			return nil, fmt.Errorf("%w: run %s", ErrConflict, r.ID)
		}
		return nil, err
	}
	return nil, tx.Commit()
}

func nullInt(n int) any {
	if n == 0 {
		return nil
	}
	return n
}

// SaveRun writes a run's progress or outcome: status, steps, response, HTTP
// status and error.
func (db *DB) SaveRun(ctx context.Context, r Run) error {
	if len(r.Steps) == 0 {
		r.Steps = json.RawMessage("[]")
	}
	res, err := db.write.ExecContext(ctx, `UPDATE orchestrator_provisioning_runs
		SET status = ?, steps = ?, response = ?, http_status = ?, error = ?, updated_at = ? WHERE id = ?`,
		r.Status, string(r.Steps), jsonOrNull(r.Response), nullInt(r.HTTPStatus), nullIfEmpty(r.Error), formatTime(r.UpdatedAt), r.ID)
	return affected(res, err, "run "+r.ID)
}

// GetRun returns one run.
func (db *DB) GetRun(ctx context.Context, id string) (Run, error) {
	r, err := scanRun(db.read.QueryRowContext(ctx, `SELECT `+runColumns+` FROM orchestrator_provisioning_runs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Run{}, fmt.Errorf("%w: run %s", ErrNotFound, id)
	}
	return r, err
}

// RunFilter selects runs; empty fields do not filter.
type RunFilter struct {
	OrgID, TeamNodeID, Status, Kind string
	Limit                           int
	// Cursor continues a listing where the previous page ended.
	Cursor string
}

// ListRuns returns runs newest first, at most f.Limit, and the cursor of the
// next page ("" when this is the last).
func (db *DB) ListRuns(ctx context.Context, f RunFilter) ([]Run, string, error) {
	var w filter
	w.eq("org_id", f.OrgID)
	w.eq("team_node_id", f.TeamNodeID)
	w.eq("status", f.Status)
	w.eq("kind", f.Kind)
	return page[Run]{table: "orchestrator_provisioning_runs", columns: runColumns, timeCol: "created_at",
		limit: f.Limit, cursor: f.Cursor, scan: scanRun,
		key: func(r Run) (time.Time, string) { return r.CreatedAt, r.ID }}.run(ctx, db.read, w)
}

// RunsWithStatus returns every run in a status (used at start to find runs a
// crash interrupted).
func (db *DB) RunsWithStatus(ctx context.Context, status string) ([]Run, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT `+runColumns+` FROM orchestrator_provisioning_runs WHERE status = ? ORDER BY created_at`, status)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanRun)
}

// encodeCursor makes an opaque keyset cursor of (time, id).
func encodeCursor(t time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(formatTime(t) + "|" + id))
}

func decodeCursor(c string) (string, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		at, id, ok := strings.Cut(string(b), "|")
		if _, perr := time.Parse(timeLayout, at); ok && perr == nil && id != "" {
			return at, id, nil
		}
	}
	return "", "", fmt.Errorf("%w: malformed cursor", ErrInvalid)
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Schedule types of SPEC §8.
const (
	ScheduleIngestion   = "ingestion"
	ScheduleGapAnalysis = "gap_analysis"
	ScheduleEval        = "eval"
	// ScheduleDependencyDiscovery is the dependency discovery CronJob that
	// sync-cronjobs manages from the team's config.
	ScheduleDependencyDiscovery = "dependency_discovery"
)

// Schedule is a pipeline schedule row: what the cluster's CronJob should be.
type Schedule struct {
	ID             string
	OrgID          string
	TeamNodeID     string
	Type           string
	CronExpression string
	CronJobName    string
	Enabled        bool
	LastRunAt      *time.Time
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

const scheduleColumns = `id, org_id, team_node_id, schedule_type, cron_expression, k8s_cronjob_name,
	enabled, last_run_at, created_at, updated_at`

func scanSchedule(row rowScanner) (Schedule, error) {
	var s Schedule
	var last, created, updated nullTime
	err := row.Scan(&s.ID, &s.OrgID, &s.TeamNodeID, &s.Type, &s.CronExpression, &s.CronJobName,
		&s.Enabled, &last, &created, &updated)
	s.LastRunAt, s.CreatedAt, s.UpdatedAt = last.ptr(), created.Time, updated.Time
	return s, err
}

// GetSchedule returns the team's schedule of a type.
func (db *DB) GetSchedule(ctx context.Context, org, team, typ string) (Schedule, error) {
	s, err := scanSchedule(db.read.QueryRowContext(ctx, `SELECT `+scheduleColumns+`
		FROM orchestrator_pipeline_schedules WHERE org_id = ? AND team_node_id = ? AND schedule_type = ?`, org, team, typ))
	if errors.Is(err, sql.ErrNoRows) {
		return Schedule{}, fmt.Errorf("%w: schedule %s/%s/%s", ErrNotFound, org, team, typ)
	}
	return s, err
}

// ScheduleByCronJobName returns the schedule row that names a CronJob.
func (db *DB) ScheduleByCronJobName(ctx context.Context, name string) (Schedule, error) {
	s, err := scanSchedule(db.read.QueryRowContext(ctx, `SELECT `+scheduleColumns+`
		FROM orchestrator_pipeline_schedules WHERE k8s_cronjob_name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Schedule{}, fmt.Errorf("%w: schedule for CronJob %s", ErrNotFound, name)
	}
	return s, err
}

// UpsertSchedule creates the team's schedule of s.Type or updates its
// expression, CronJob name and enabled flag. It returns the stored row.
func (db *DB) UpsertSchedule(ctx context.Context, s Schedule) (Schedule, error) {
	now := formatTime(s.UpdatedAt)
	_, err := db.write.ExecContext(ctx, `INSERT INTO orchestrator_pipeline_schedules
		(id, org_id, team_node_id, schedule_type, cron_expression, k8s_cronjob_name, enabled, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (org_id, team_node_id, schedule_type) DO UPDATE SET
			cron_expression = excluded.cron_expression,
			k8s_cronjob_name = excluded.k8s_cronjob_name,
			enabled = excluded.enabled,
			updated_at = excluded.updated_at`,
		s.ID, s.OrgID, s.TeamNodeID, s.Type, s.CronExpression, s.CronJobName, s.Enabled, now, now)
	if err != nil {
		if isUniqueViolation(err) {
			return Schedule{}, fmt.Errorf("%w: CronJob name %s belongs to another schedule", ErrConflict, s.CronJobName)
		}
		return Schedule{}, err
	}
	return db.GetSchedule(ctx, s.OrgID, s.TeamNodeID, s.Type)
}

// DeleteSchedule removes the team's schedule of a type (to undo a row a
// failed run created, and when deprovisioning deletes its CronJob).
func (db *DB) DeleteSchedule(ctx context.Context, org, team, typ string) error {
	_, err := db.write.ExecContext(ctx, `DELETE FROM orchestrator_pipeline_schedules
		WHERE org_id = ? AND team_node_id = ? AND schedule_type = ?`, org, team, typ)
	return err
}

// SetScheduleEnabled turns one of the team's schedules on or off.
func (db *DB) SetScheduleEnabled(ctx context.Context, org, team, typ string, enabled bool, at time.Time) error {
	res, err := db.write.ExecContext(ctx, `UPDATE orchestrator_pipeline_schedules SET enabled = ?, updated_at = ?
		WHERE org_id = ? AND team_node_id = ? AND schedule_type = ?`, enabled, formatTime(at), org, team, typ)
	return affected(res, err, "schedule "+org+"/"+team+"/"+typ)
}

// TeamSchedules lists a team's schedules.
func (db *DB) TeamSchedules(ctx context.Context, org, team string) ([]Schedule, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT `+scheduleColumns+` FROM orchestrator_pipeline_schedules
		WHERE org_id = ? AND team_node_id = ? ORDER BY schedule_type`, org, team)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanSchedule)
}

// GetScheduleByID returns one schedule row.
func (db *DB) GetScheduleByID(ctx context.Context, id string) (Schedule, error) {
	s, err := scanSchedule(db.read.QueryRowContext(ctx, `SELECT `+scheduleColumns+` FROM orchestrator_pipeline_schedules WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Schedule{}, fmt.Errorf("%w: schedule %s", ErrNotFound, id)
	}
	return s, err
}

// ListSchedules returns schedule rows, optionally of one org and team,
// ordered by org, team and type.
func (db *DB) ListSchedules(ctx context.Context, org, team string) ([]Schedule, error) {
	var w filter
	w.eq("org_id", org)
	w.eq("team_node_id", team)
	q := `SELECT ` + scheduleColumns + ` FROM orchestrator_pipeline_schedules`
	if len(w.where) > 0 {
		q += " WHERE " + strings.Join(w.where, " AND ")
	}
	rows, err := db.read.QueryContext(ctx, q+" ORDER BY org_id, team_node_id, schedule_type", w.args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanSchedule)
}

// UpdateSchedule sets a row's expression and enabled flag.
func (db *DB) UpdateSchedule(ctx context.Context, id, cron string, enabled bool, at time.Time) error {
	res, err := db.write.ExecContext(ctx, `UPDATE orchestrator_pipeline_schedules SET cron_expression = ?, enabled = ?, updated_at = ?
		WHERE id = ?`, cron, enabled, formatTime(at), id)
	return affected(res, err, "schedule "+id)
}

// SetLastRunAt records when the schedule's CronJob last ran.
func (db *DB) SetLastRunAt(ctx context.Context, id string, at time.Time) error {
	res, err := db.write.ExecContext(ctx, `UPDATE orchestrator_pipeline_schedules SET last_run_at = ? WHERE id = ?`, formatTime(at), id)
	return affected(res, err, "schedule "+id)
}

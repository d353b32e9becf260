package store

// Feedback on agent answers (SPEC §6 Slack apps): a click on an answer's
// feedback button, recorded on the agent run it names.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Feedback values.
const (
	FeedbackPositive = "positive"
	FeedbackNegative = "negative"
)

// Feedback is one click on an answer's feedback button.
type Feedback struct {
	ID         string    `json:"id"`
	AgentRunID string    `json:"agent_run_id"`
	EventID    string    `json:"event_id,omitempty"`
	OrgID      string    `json:"org_id"`
	TeamNodeID string    `json:"team_node_id"`
	Value      string    `json:"value"`
	UserID     string    `json:"user_id,omitempty"`
	UserName   string    `json:"user_name,omitempty"`
	SlackApp   string    `json:"slack_app,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
}

// FeedbackResult is the outcome of RecordFeedback.
type FeedbackResult struct {
	InsertResult
	// Run is the agent run the feedback was recorded on (nil: the button
	// named no run this appliance knows, and only the event was stored).
	Run *AgentRun
}

// RecordFeedback stores the event of a feedback click and, when ref names
// an agent run (its id, or its correlation id: the latest such run), the
// feedback on that run, in one transaction: a redelivery of the click is
// a duplicate and records nothing twice. The event is stored ignored (it
// is not sent to the agent); a click that names no run says so as its last
// error (one recorded has none: nothing went wrong, see EventFeedback).
func (db *DB) RecordFeedback(ctx context.Context, e Event, ref string, fb Feedback) (FeedbackResult, error) {
	if fb.Value != FeedbackPositive && fb.Value != FeedbackNegative {
		return FeedbackResult{}, fmt.Errorf("%w: feedback is positive or negative", ErrInvalid)
	}
	if e.Source == "" || e.DeliveryID == "" {
		return FeedbackResult{}, fmt.Errorf("%w: event needs source and delivery id", ErrInvalid)
	}
	e.Status = EventIgnored
	var out FeedbackResult
	err := db.inTx(ctx, func(tx tx) error {
		var key int64
		var legacy sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT id, legacy_id FROM orchestrator_webhook_events WHERE source = ? AND delivery_id = ?`,
			e.Source, e.DeliveryID).Scan(&key, &legacy)
		if err == nil {
			out.ID, out.Duplicate = apiID(key, legacy), true
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var run *AgentRun
		if ref != "" && len(ref) <= 128 {
			// A run's id is a UUID (PostgreSQL's column type refuses
			// anything else); a correlation id may be an event's id.
			cond, args := `correlation_id = ?`, []any{ref}
			if _, uerr := uuid.Parse(ref); uerr == nil && len(ref) == 36 {
				cond, args = `id = ? OR correlation_id = ?`, []any{ref, ref}
			}
			r, err := scanAgentRun(tx.QueryRowContext(ctx, `SELECT `+agentRunColumns+` FROM orchestrator_agent_runs
				WHERE `+cond+` ORDER BY started_at DESC, id DESC LIMIT 1`, args...))
			switch {
			case err == nil:
				run = &r
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
		}
		if run != nil {
			e.OrgID, e.TeamNodeID, e.MatchedBy = run.OrgID, run.TeamNodeID, "agent_run"
		} else {
			e.LastError = fmt.Sprintf("ignored: feedback names no agent run (%q)", ref)
		}
		if err := e.checkText(); err != nil {
			return err
		}
		vals := e.rowValues()
		err = tx.QueryRowContext(ctx, db.d.insertSQL(1), vals...).Scan(&key, new(string), new(string))
		if errors.Is(err, sql.ErrNoRows) {
			// The same click stored meanwhile by another replica (the
			// insert skipped it): a duplicate, recorded once.
			out.Duplicate = true
			if err := tx.QueryRowContext(ctx, findEventSQL, e.Source, e.DeliveryID).Scan(&key, &legacy); err != nil {
				return err
			}
			out.ID = apiID(key, legacy)
			return nil
		}
		if err != nil {
			return err
		}
		out.ID = fmt.Sprint(key)
		if run == nil {
			return nil
		}
		fb.ID, fb.AgentRunID, fb.EventID, fb.OrgID, fb.TeamNodeID = uuid.NewString(), run.ID, out.ID, run.OrgID, run.TeamNodeID
		if fb.CreatedAt.IsZero() {
			fb.CreatedAt = e.ReceivedAt
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO orchestrator_agent_run_feedback
			(id, agent_run_id, webhook_event_id, org_id, team_node_id, value, user_id, user_name, slack_app, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, fb.ID, fb.AgentRunID, fb.EventID, fb.OrgID, fb.TeamNodeID, fb.Value,
			nullIfEmpty(fb.UserID), nullIfEmpty(fb.UserName), nullIfEmpty(fb.SlackApp), ms(fb.CreatedAt))
		out.Run = run
		return err
	})
	return out, err
}

const feedbackColumns = `id, agent_run_id, webhook_event_id, org_id, team_node_id, value, user_id, user_name, slack_app, created_at`

func scanFeedback(row rowScanner) (Feedback, error) {
	var f Feedback
	var event, user, name, app sql.NullString
	var at msTime
	err := row.Scan(&f.ID, &f.AgentRunID, &event, &f.OrgID, &f.TeamNodeID, &f.Value, &user, &name, &app, &at)
	f.EventID, f.UserID, f.UserName, f.SlackApp, f.CreatedAt = event.String, user.String, name.String, app.String, at.Time
	return f, err
}

// RunFeedback lists the feedback on each of the runs, oldest first.
func (db *DB) RunFeedback(ctx context.Context, runIDs []string) (map[string][]Feedback, error) {
	out := map[string][]Feedback{}
	for _, id := range runIDs {
		rows, err := db.read.QueryContext(ctx, `SELECT `+feedbackColumns+` FROM orchestrator_agent_run_feedback
			WHERE agent_run_id = ? ORDER BY created_at, id`, id)
		if err != nil {
			return nil, err
		}
		list, err := collect(rows, scanFeedback)
		if err != nil {
			return nil, err
		}
		if len(list) > 0 {
			out[id] = list
		}
	}
	return out, nil
}

// TeamFeedback counts one team's (or every team's) helpful and unhelpful answers.
type TeamFeedback struct {
	OrgID, TeamNodeID  string
	Positive, Negative int
}

// FeedbackSince counts the feedback given since a time, per team (org ""
// = every org), teams with the most feedback first.
func (db *DB) FeedbackSince(ctx context.Context, org string, since time.Time) ([]TeamFeedback, error) {
	q := `SELECT org_id, team_node_id,
		SUM(CASE WHEN value = 'positive' THEN 1 ELSE 0 END), SUM(CASE WHEN value = 'negative' THEN 1 ELSE 0 END)
		FROM orchestrator_agent_run_feedback WHERE created_at >= ?`
	args := []any{ms(since)}
	if org != "" {
		q += ` AND org_id = ?`
		args = append(args, org)
	}
	rows, err := db.read.QueryContext(ctx, q+` GROUP BY org_id, team_node_id ORDER BY COUNT(*) DESC, org_id, team_node_id LIMIT 50`, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r rowScanner) (TeamFeedback, error) {
		var t TeamFeedback
		return t, r.Scan(&t.OrgID, &t.TeamNodeID, &t.Positive, &t.Negative)
	})
}

// PurgeFeedback deletes up to limit feedback rows given before cutoff (with
// the agent calls they were given on, by the audit retention).
func (db *DB) PurgeFeedback(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	res, err := db.write.ExecContext(ctx, `DELETE FROM orchestrator_agent_run_feedback WHERE id IN (
		SELECT id FROM orchestrator_agent_run_feedback WHERE created_at < ? LIMIT ?)`, ms(cutoff), limit)
	return affectedRows(res, err)
}

// inTx runs f in a write transaction, committed when f returns nil.
func (db *DB) inTx(ctx context.Context, f func(tx) error) error {
	t, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer t.Rollback()
	if err := f(t); err != nil {
		return err
	}
	return t.Commit()
}

// EventFeedback lists the feedback a click's event recorded (none for any
// other event). Only an ignored event's page asks, so the scan of the
// feedback table it may cost is paid rarely.
func (db *DB) EventFeedback(ctx context.Context, eventID string) ([]Feedback, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT `+feedbackColumns+` FROM orchestrator_agent_run_feedback
		WHERE webhook_event_id = ? ORDER BY created_at, id`, eventID)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanFeedback)
}

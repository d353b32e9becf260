package store

// Feedback on agent answers (SPEC §6 Slack apps, §18 round 4): a click on
// an answer's feedback button, recorded on the agent run it names when the
// click comes from a channel of the run's own team; one row a person and
// run.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

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

// FeedbackClick is a click on an answer's feedback button, as the router
// hands it over once the click's Slack app and channel have a team.
type FeedbackClick struct {
	// EventID is the click's stored event (queued, without a team yet).
	EventID string
	// OrgID, TeamNodeID and MatchedBy are the team the click's channel
	// routes to (through its app's binding).
	OrgID, TeamNodeID, MatchedBy string
	// Ref is the button's value: the run's feedback reference.
	Ref string
	// Value, UserID, UserName, SlackApp say what was clicked, by whom and
	// through which Slack app.
	Value, UserID, UserName, SlackApp string
	// At is when the click arrived (the last click wins); Now is when it
	// is recorded.
	At, Now time.Time
	// Decision is the routing decision the click's event keeps (why its
	// channel routed to this team), as routing encodes it.
	Decision []byte
}

// FeedbackResult is the outcome of RecordFeedback.
type FeedbackResult struct {
	// Run is the agent run the feedback was recorded on; nil when it was
	// not (Reason says why, in the event's last error).
	Run    *AgentRun
	Reason string
	// Applied is false when the click's event was no longer waiting to be
	// routed (another replica's router got there first): nothing changed.
	Applied bool
}

// findRunByRef finds the agent run a button's value names: its feedback
// reference, or, for a button of a run made before migration 12 or of a
// digest, the run's id or correlation id when that is a UUID (random, so
// as unguessable). A sequential correlation id — a lone event's id — names
// nothing: anyone could count to it.
func findRunByRef(ctx context.Context, t tx, ref string) (*AgentRun, error) {
	var cond string
	var args []any
	switch {
	case feedbackRefPattern.MatchString(ref):
		cond, args = `feedback_ref = ?`, []any{ref}
	case len(ref) == 36 && uuid.Validate(ref) == nil:
		cond, args = `id = ? OR correlation_id = ?`, []any{ref, ref}
	default:
		return nil, nil
	}
	r, err := scanAgentRun(t.QueryRowContext(ctx, `SELECT `+agentRunColumns+` FROM orchestrator_agent_runs
		WHERE `+cond+` ORDER BY started_at DESC, id DESC LIMIT 1`, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return &r, err
}

// RecordFeedback binds a feedback click to the run its button names (SPEC
// §18, round 4) and ends the click's event ignored (it never reaches the
// agent), in one transaction. The feedback counts only when the run is of
// the team the click's app and channel route to, and then it is the one
// row of that person on that run: a later click replaces an earlier one
// (last click wins), whichever replica records it. The event keeps the
// team its channel routed to, and why in its last error when the feedback
// was not recorded.
func (db *DB) RecordFeedback(ctx context.Context, c FeedbackClick) (FeedbackResult, error) {
	if c.Value != FeedbackPositive && c.Value != FeedbackNegative {
		return FeedbackResult{}, fmt.Errorf("%w: feedback is positive or negative", ErrInvalid)
	}
	if c.OrgID == "" || c.TeamNodeID == "" {
		return FeedbackResult{}, fmt.Errorf("%w: a feedback click is recorded once its channel has a team", ErrInvalid)
	}
	var out FeedbackResult
	err := db.inTx(ctx, func(t tx) error {
		run, err := findRunByRef(ctx, t, c.Ref)
		if err != nil {
			return err
		}
		switch {
		case run == nil && (feedbackRefPattern.MatchString(c.Ref) || uuid.Validate(c.Ref) == nil):
			out.Reason = "the button names no agent run this appliance keeps"
		case run == nil:
			out.Reason = fmt.Sprintf("the button's value %q is not an agent run's feedback reference", clip(c.Ref, 40))
		case run.OrgID != c.OrgID || run.TeamNodeID != c.TeamNodeID:
			out.Reason = "the agent run is not of the team this channel routes to (feedback counts only from the run's own team)"
		case c.UserID == "":
			out.Reason = "the click names no Slack user"
		default:
			out.Run = run
		}
		// Recorded reads as what it is, not as an error: no last error (its
		// page and the API show the feedback, see EventFeedback).
		last := ""
		if out.Run == nil {
			last = "ignored: feedback " + c.Value + " not recorded: " + out.Reason
		}
		applied, err := writeOutcomes(ctx, t, []Outcome{{ID: c.EventID, Status: EventIgnored, From: EventQueued, OrgID: c.OrgID,
			TeamNodeID: c.TeamNodeID, MatchedBy: c.MatchedBy, LastError: last, At: c.Now, Decision: c.Decision}})
		if err != nil || !applied[0] {
			out.Run = nil
			return err
		}
		out.Applied = true
		if out.Run == nil {
			return nil
		}
		// One row a person and run: a later click replaces it, an earlier
		// one (a replica that was slower) does not.
		_, err = t.ExecContext(ctx, `INSERT INTO orchestrator_agent_run_feedback
			(id, agent_run_id, webhook_event_id, org_id, team_node_id, value, user_id, user_name, slack_app, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (agent_run_id, user_id) DO UPDATE SET value = excluded.value, webhook_event_id = excluded.webhook_event_id,
				user_name = excluded.user_name, slack_app = excluded.slack_app, created_at = excluded.created_at
			WHERE orchestrator_agent_run_feedback.created_at <= excluded.created_at`,
			uuid.NewString(), run.ID, c.EventID, run.OrgID, run.TeamNodeID, c.Value, c.UserID, nullIfEmpty(c.UserName),
			nullIfEmpty(c.SlackApp), ms(c.At))
		return err
	})
	return out, err
}

// clip cuts s to at most n bytes on a character boundary.
func clip(s string, n int) string {
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
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

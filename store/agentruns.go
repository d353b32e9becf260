package store

// The agent calls: one row per call (a digest is one call), for the audit
// trail, the event pages and the ack→agent figures.

import (
	"context"
	"crypto/rand"
	"database/sql"
	"regexp"
	"strings"
	"time"
)

// AgentRun is one agent call, admin-triggered or dispatched for an event.
type AgentRun struct {
	ID             string
	TriggerSource  string
	WebhookEventID string
	Actor          string
	OrgID          string
	TeamNodeID     string
	AgentName      string
	Status         string
	UpstreamStatus int
	Error          string
	CorrelationID  string
	Duration       time.Duration
	StartedAt      time.Time
	// EventCount is how many events the call carried (1 unless a digest).
	EventCount int
	// FeedbackRef is the run's unguessable reference (NewFeedbackRef), the
	// value its answer's feedback buttons carry; "" for a run made before
	// migration 12 or by an admin.
	FeedbackRef string
	// Answer is the agent's answer text, written with the run (cut to
	// MaxAnswerBytes); read back by GetAgentRun and AgentRunAnswers only.
	Answer string
	// Summary is a streamed run's summary (tools, questions, approvals,
	// duration; at most MaxSummaryBytes), "" for a run call; read back by
	// GetAgentRun and AgentRunAnswers only (migration 21).
	Summary string
}

// MaxSummaryBytes bounds a run's summary.
const MaxSummaryBytes = 2000

// NewFeedbackRef makes an agent run's feedback reference: 130 random bits
// (crypto/rand's Text, 26 base32 characters), so that a button's value
// cannot be guessed from another's — a correlation id can be: a lone
// event's is its sequential id.
func NewFeedbackRef() string { return rand.Text() }

// feedbackRefPattern is what NewFeedbackRef makes.
var feedbackRefPattern = regexp.MustCompile(`^[A-Z2-7]{26}$`)

// InsertAgentRun records an agent call.
func (db *DB) InsertAgentRun(ctx context.Context, r AgentRun) error {
	return insertAgentRun(ctx, db.write, r)
}

func insertAgentRun(ctx context.Context, x interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, r AgentRun) error {
	args := []any{r.ID, r.TriggerSource, nullIfEmpty(r.WebhookEventID), nullIfEmpty(r.Actor), r.OrgID, r.TeamNodeID, r.AgentName,
		r.Status, nullInt(r.UpstreamStatus), nullIfEmpty(r.Error), nullIfEmpty(r.CorrelationID), r.Duration.Milliseconds(),
		formatTime(r.StartedAt), formatTime(r.StartedAt.Add(r.Duration)), max(1, r.EventCount), nullIfEmpty(r.FeedbackRef)}
	cols := insertAgentRunColumns
	if r.Answer != "" {
		// Only a run with an answer names the column (migration 14's), so
		// a run without one is written the same on every schema.
		cols, args = cols+", answer", append(args, clipAnswer(r.Answer))
	}
	if r.Summary != "" {
		// Likewise the summary (migration 21's): only a streamed run's.
		cols, args = cols+", summary", append(args, clipSummary(r.Summary))
	}
	_, err := x.ExecContext(ctx, `INSERT INTO orchestrator_agent_runs (`+cols+`) VALUES (`+
		strings.TrimSuffix(strings.Repeat("?, ", len(args)), ", ")+`)`, args...)
	return err
}

// clipSummary cuts a summary to MaxSummaryBytes on a character boundary.
func clipSummary(s string) string {
	if len(s) <= MaxSummaryBytes {
		return s
	}
	return strings.ToValidUTF8(s[:MaxSummaryBytes], "")
}

// insertAgentRunColumns are the columns every run is written with.
const insertAgentRunColumns = `id, trigger_source, webhook_event_id, actor, org_id, team_node_id, agent_name, status,
	upstream_status, error, correlation_id, duration_ms, started_at, finished_at, event_count, feedback_ref`

const agentRunColumns = `id, trigger_source, webhook_event_id, actor, org_id, team_node_id, agent_name, status,
	upstream_status, error, correlation_id, duration_ms, started_at, event_count, feedback_ref`

func scanAgentRun(row rowScanner) (AgentRun, error) { return scanAgentRunWith(row) }

// scanAgentRunWith scans agentRunColumns and then the extra columns a
// query selects after them.
func scanAgentRunWith(row rowScanner, extra ...any) (AgentRun, error) {
	var r AgentRun
	var event, actor, errText, corr, ref sql.NullString
	var upstream sql.NullInt64
	var ms int64
	var started nullTime
	err := row.Scan(append([]any{&r.ID, &r.TriggerSource, &event, &actor, &r.OrgID, &r.TeamNodeID, &r.AgentName, &r.Status,
		&upstream, &errText, &corr, &ms, &started, &r.EventCount, &ref}, extra...)...)
	r.WebhookEventID, r.Actor, r.Error, r.CorrelationID, r.FeedbackRef = event.String, actor.String, errText.String, corr.String, ref.String
	r.UpstreamStatus, r.Duration, r.StartedAt = int(upstream.Int64), time.Duration(ms)*time.Millisecond, started.Time
	return r, err
}

// EventAgentRuns lists the agent calls made for an event, oldest first:
// its own calls and the digest it was last folded into.
func (db *DB) EventAgentRuns(ctx context.Context, eventID string) ([]AgentRun, error) {
	cond, arg, ok := eventRef(eventID)
	if !ok {
		return nil, nil
	}
	rows, err := db.read.QueryContext(ctx, `SELECT `+agentRunColumns+` FROM orchestrator_agent_runs
		WHERE webhook_event_id = ? OR id = (SELECT digest_run_id FROM orchestrator_webhook_events WHERE `+cond+`)
		ORDER BY started_at, id`, eventID, arg)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanAgentRun)
}

// TeamAgentRuns lists a team's agent calls, oldest first.
func (db *DB) TeamAgentRuns(ctx context.Context, org, team string) ([]AgentRun, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT `+agentRunColumns+` FROM orchestrator_agent_runs
		WHERE org_id = ? AND team_node_id = ? ORDER BY started_at, id`, org, team)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanAgentRun)
}

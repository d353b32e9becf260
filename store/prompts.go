package store

// The conversation, streamed (SPEC §19): an agent run's questions and
// approvals, posted in its Slack thread with buttons, kept as rows so that
// a click reaching another replica, or arriving after a restart, is
// honoured, and an approval nobody decided is denied on time. A decision
// is final: it is written only while the row is open, so a second click
// (or another replica's) is refused.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Kinds of prompt.
const (
	PromptQuestion = "question"
	PromptApproval = "approval"
	// PromptStop is a streamed run's Stop button: open while the run
	// streams, stopped by a click, expired when the run ends.
	PromptStop = "stop"
)

// States of a prompt: open until answered, approved, denied or expired.
const (
	PromptOpen     = "open"
	PromptAnswered = "answered"
	PromptApproved = "approved"
	PromptDenied   = "denied"
	PromptExpired  = "expired"
	PromptStopped  = "stopped"
)

// Prompt is one question or approval of an agent run.
type Prompt struct {
	ID         string `json:"id"`
	AgentRunID string `json:"agent_run_id"`
	OrgID      string `json:"org_id"`
	TeamNodeID string `json:"team_node_id"`
	// SlackApp, ChannelID, ThreadTS and MessageTS say where it was posted.
	SlackApp  string `json:"slack_app,omitempty"`
	ChannelID string `json:"channel_id"`
	ThreadTS  string `json:"thread_ts,omitempty"`
	MessageTS string `json:"message_ts,omitempty"`
	Kind      string `json:"kind"`
	// Ref is the agent's own id of it (an approval's approval_id).
	Ref string `json:"ref,omitempty"`
	// Payload is what the agent sent (a question's questions and options;
	// an approval's action, target and reason).
	Payload   json.RawMessage `json:"payload"`
	ExpiresAt *time.Time      `json:"expires_at,omitempty"`
	State     string          `json:"state"`
	// Decision is what was decided: the answers sent (a question), approve
	// or deny (an approval).
	Decision    string     `json:"decision,omitempty"`
	DecidedBy   string     `json:"decided_by,omitempty"`
	DecidedName string     `json:"decided_name,omitempty"`
	DecidedAt   *time.Time `json:"decided_at,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
}

const promptColumns = `id, agent_run_id, org_id, team_node_id, slack_app, channel_id, thread_ts, message_ts, kind, ref, payload,
	expires_at, state, decision, decided_by, decided_name, decided_at, created_at`

func scanPrompt(r rowScanner) (Prompt, error) {
	var p Prompt
	var app, thread, msg, ref, decision, by, name sql.NullString
	var payload string
	var expires, decided, created msTime
	err := r.Scan(&p.ID, &p.AgentRunID, &p.OrgID, &p.TeamNodeID, &app, &p.ChannelID, &thread, &msg, &p.Kind, &ref, &payload,
		&expires, &p.State, &decision, &by, &name, &decided, &created)
	p.SlackApp, p.ThreadTS, p.MessageTS, p.Ref = app.String, thread.String, msg.String, ref.String
	p.Decision, p.DecidedBy, p.DecidedName = decision.String, by.String, name.String
	p.Payload = json.RawMessage(payload)
	p.ExpiresAt, p.DecidedAt, p.CreatedAt = expires.ptr(), decided.ptr(), created.Time
	return p, err
}

// InsertPrompt keeps a prompt, open (its ID is made when empty).
func (db *DB) InsertPrompt(ctx context.Context, p Prompt) (Prompt, error) {
	switch {
	case p.Kind != PromptQuestion && p.Kind != PromptApproval && p.Kind != PromptStop:
		return Prompt{}, fmt.Errorf("%w: a prompt is a question, an approval or a stop, not %q", ErrInvalid, clip(p.Kind, 40))
	case p.AgentRunID == "" || p.OrgID == "" || p.TeamNodeID == "" || p.ChannelID == "":
		return Prompt{}, fmt.Errorf("%w: a prompt needs its run, org, team and channel", ErrInvalid)
	case !json.Valid(p.Payload):
		return Prompt{}, fmt.Errorf("%w: a prompt's payload is JSON", ErrInvalid)
	}
	if p.ID == "" {
		p.ID = uuid.NewString()
	}
	p.State = PromptOpen
	var expires any
	if p.ExpiresAt != nil {
		expires = ms(*p.ExpiresAt)
	}
	_, err := db.write.ExecContext(ctx, `INSERT INTO orchestrator_run_prompts (id, agent_run_id, org_id, team_node_id, slack_app,
		channel_id, thread_ts, message_ts, kind, ref, payload, expires_at, state, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, p.ID, p.AgentRunID, p.OrgID, p.TeamNodeID, nullIfEmpty(p.SlackApp),
		p.ChannelID, nullIfEmpty(p.ThreadTS), nullIfEmpty(p.MessageTS), p.Kind, nullIfEmpty(p.Ref), string(p.Payload), expires,
		p.State, ms(p.CreatedAt))
	if err != nil {
		return Prompt{}, err
	}
	return p, nil
}

// GetPrompt returns one prompt (ErrNotFound when there is none).
func (db *DB) GetPrompt(ctx context.Context, id string) (Prompt, error) {
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return Prompt{}, fmt.Errorf("%w: prompt %s", ErrNotFound, clip(id, 40))
	}
	p, err := scanPrompt(db.read.QueryRowContext(ctx, `SELECT `+promptColumns+` FROM orchestrator_run_prompts WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Prompt{}, fmt.Errorf("%w: prompt %s", ErrNotFound, id)
	}
	return p, err
}

// SetPromptMessage records the ts of the message that shows the prompt.
func (db *DB) SetPromptMessage(ctx context.Context, id, ts string) error {
	_, err := db.write.ExecContext(ctx, `UPDATE orchestrator_run_prompts SET message_ts = ? WHERE id = ?`, ts, id)
	return err
}

// PromptDecision is a decision on a prompt.
type PromptDecision struct {
	// State is answered, approved or denied for a person's decision;
	// expired for the expiry loop's.
	State string
	// Decision is what is sent to the agent (answers; approve or deny).
	Decision string
	// By and ByName say who decided (the Slack user; "" for an expiry).
	By, ByName string
	At         time.Time
	// Ended: the agent or the run ended it (question_timeout, the stream's
	// end), so an expiry is written whatever the deadline.
	Ended bool
}

// DecidePrompt writes a decision on an open prompt, and, for an approval,
// the admin audit's record of it (who, when), in one transaction. It is
// conditional: ok is false, nothing written, when the prompt is no longer
// open (decided before, by this or another replica) or, for a person's
// decision, has expired by d.At. An expiry is written only once the
// prompt's deadline has passed. The prompt is returned as it stands.
func (db *DB) DecidePrompt(ctx context.Context, id string, d PromptDecision) (Prompt, bool, error) {
	switch d.State {
	case PromptAnswered, PromptApproved, PromptDenied, PromptExpired, PromptStopped:
	default:
		return Prompt{}, false, fmt.Errorf("%w: a prompt is answered, approved, denied, expired or stopped, not %q", ErrInvalid, clip(d.State, 40))
	}
	var out Prompt
	ok := false
	err := db.inTx(ctx, func(t tx) error {
		var res sql.Result
		var err error
		at := ms(d.At)
		switch {
		case d.State == PromptExpired && d.Ended:
			res, err = t.ExecContext(ctx, `UPDATE orchestrator_run_prompts SET state = ?, decision = ?, decided_at = ?
				WHERE id = ? AND state = ?`, d.State, nullIfEmpty(d.Decision), at, id, PromptOpen)
		case d.State == PromptExpired:
			res, err = t.ExecContext(ctx, `UPDATE orchestrator_run_prompts SET state = ?, decision = ?, decided_at = ?
				WHERE id = ? AND state = ? AND expires_at IS NOT NULL AND expires_at <= ?`,
				d.State, nullIfEmpty(d.Decision), at, id, PromptOpen, at)
		default:
			res, err = t.ExecContext(ctx, `UPDATE orchestrator_run_prompts SET state = ?, decision = ?, decided_by = ?, decided_name = ?,
				decided_at = ? WHERE id = ? AND state = ? AND (expires_at IS NULL OR expires_at > ?)`,
				d.State, nullIfEmpty(d.Decision), nullIfEmpty(d.By), nullIfEmpty(d.ByName), at, id, PromptOpen, at)
		}
		n, err := affectedRows(res, err)
		if err != nil {
			return err
		}
		out, err = scanPrompt(t.QueryRowContext(ctx, `SELECT `+promptColumns+` FROM orchestrator_run_prompts WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: prompt %s", ErrNotFound, clip(id, 40))
		}
		if err != nil || n == 0 {
			return err
		}
		ok = true
		if out.Kind == PromptStop && d.State == PromptExpired {
			return nil // the run ended: nothing anyone decided
		}
		actor := d.By
		if actor == "" {
			actor = "expiry"
		} else if d.ByName != "" {
			actor = "slack:" + d.By + " (" + d.ByName + ")"
		} else {
			actor = "slack:" + d.By
		}
		return insertAudit(ctx, t, Audit{At: d.At, Actor: actor, OrgID: out.OrgID, Action: out.Kind + "." + d.State,
			Detail: map[string]any{"prompt_id": out.ID, "agent_run_id": out.AgentRunID, "team_node_id": out.TeamNodeID,
				"ref": out.Ref, "decision": d.Decision, "channel_id": out.ChannelID}})
	})
	return out, ok, err
}

// DuePrompts lists up to limit open prompts whose deadline is at or before
// now, soonest first (the expiry loop's work).
func (db *DB) DuePrompts(ctx context.Context, now time.Time, limit int) ([]Prompt, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT `+promptColumns+` FROM orchestrator_run_prompts
		WHERE state = ? AND expires_at <= ? ORDER BY expires_at, id LIMIT ?`, PromptOpen, ms(now), limit)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanPrompt)
}

// NextPromptExpiry is the soonest deadline of an open prompt (nil: none).
func (db *DB) NextPromptExpiry(ctx context.Context) (*time.Time, error) {
	var at sql.NullInt64
	err := db.read.QueryRowContext(ctx, `SELECT MIN(expires_at) FROM orchestrator_run_prompts WHERE state = ?`, PromptOpen).Scan(&at)
	if err != nil || !at.Valid {
		return nil, err
	}
	t := time.UnixMilli(at.Int64).UTC()
	return &t, nil
}

// OpenRunPrompts lists a run's prompts still open.
func (db *DB) OpenRunPrompts(ctx context.Context, runID string) ([]Prompt, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT `+promptColumns+` FROM orchestrator_run_prompts
		WHERE agent_run_id = ? AND state = ? ORDER BY created_at, id`, runID, PromptOpen)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanPrompt)
}

// RunPrompts lists a run's prompts in the order they came.
func (db *DB) RunPrompts(ctx context.Context, runID string) ([]Prompt, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT `+promptColumns+` FROM orchestrator_run_prompts
		WHERE agent_run_id = ? ORDER BY created_at, id`, runID)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanPrompt)
}

// PurgePrompts deletes up to limit prompts created before cutoff (with
// the agent runs they belong to).
func (db *DB) PurgePrompts(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	res, err := db.write.ExecContext(ctx, `DELETE FROM orchestrator_run_prompts WHERE id IN (
		SELECT id FROM orchestrator_run_prompts WHERE created_at < ? LIMIT ?)`, ms(cutoff), limit)
	return affectedRows(res, err)
}

// ClaimClick takes a click event (on a conversation's button) for the one
// router that carries it out: routers on several replicas read the same
// unrouted events, and a click has effects (a decision, a call to the
// agent, a message to the clicker) that must happen on one of them. The
// event stays queued, unrouted, with one attempt and its next attempt at
// until: the other routers pass it by, and should this process die before
// it records the outcome, a router takes it again then (the decision, if
// written, stays final). ok is false when another router has it.
func (db *DB) ClaimClick(ctx context.Context, id string, now, until time.Time) (bool, error) {
	cond, arg, ok := eventRef(id)
	if !ok {
		return false, nil
	}
	res, err := db.write.ExecContext(ctx, `UPDATE orchestrator_webhook_events SET attempts = attempts + 1, next_attempt_at = ?
		WHERE `+cond+` AND status = ? AND org_id IS NULL AND team_node_id IS NULL AND (attempts = 0 OR next_attempt_at <= ?)`,
		ms(until), arg, EventQueued, ms(now))
	n, err := affectedRows(res, err)
	return n == 1, err
}

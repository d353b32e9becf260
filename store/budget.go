package store

import (
	"context"
	"database/sql"
	"errors"
	"math"
	"time"
)

// A team's dispatch budget (SPEC §6, §13): a token bucket of perMinute
// calls a minute with a burst of as many. On several replicas the bucket is
// the team's row, read and written under a row lock, so the limit holds for
// the team across all of them.

// Refill is the token bucket's arithmetic: tokens held at `at`, grown at
// perMinute a minute up to perMinute, as of now.
func Refill(tokens float64, at, now time.Time, perMinute int) float64 {
	if dt := now.Sub(at); dt > 0 {
		tokens += dt.Minutes() * float64(perMinute)
	}
	return math.Min(tokens, float64(perMinute))
}

// TakeTokens is how many whole tokens (at most want) a bucket at level
// grants; with none, wait says when it will hold one.
func TakeTokens(level float64, want, perMinute int) (got int, wait time.Duration) {
	got = min(want, int(math.Floor(level)))
	if got >= 1 {
		return got, 0
	}
	return 0, max(time.Millisecond, time.Duration((1-level)/float64(perMinute)*float64(time.Minute)))
}

// TakeTeamBudget takes up to want whole tokens from the team's bucket and
// returns how many it got; with none, wait says when one will be there. A
// team without a row starts with a full bucket.
func (db *DB) TakeTeamBudget(ctx context.Context, org, team string, want, perMinute int, now time.Time) (got int, wait time.Duration, err error) {
	err = db.budget(ctx, org, team, perMinute, now, func(tokens float64) float64 {
		got, wait = TakeTokens(tokens, want, perMinute)
		return tokens - float64(got)
	})
	return got, wait, err
}

// ReturnTeamBudget gives back n tokens taken but not used.
func (db *DB) ReturnTeamBudget(ctx context.Context, org, team string, n, perMinute int, now time.Time) error {
	if n <= 0 {
		return nil
	}
	return db.budget(ctx, org, team, perMinute, now, func(tokens float64) float64 { return tokens + float64(n) })
}

// budget reads the team's bucket as of now under a row lock, lets change
// compute the new level, and writes it. A bucket that cannot take a token
// is not written.
func (db *DB) budget(ctx context.Context, org, team string, perMinute int, now time.Time, change func(float64) float64) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var tokens float64
	var at nullTime
	err = tx.QueryRowContext(ctx, `SELECT tokens, updated_at FROM orchestrator_team_budgets
		WHERE org_id = ? AND team_node_id = ?`+db.d.forUpdate, org, team).Scan(&tokens, &at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		tokens, at.Time = float64(perMinute), now
		// Two replicas may both find no row: the second insert does nothing,
		// and its take is then checked against the row the first wrote.
		if _, err := tx.ExecContext(ctx, `INSERT INTO orchestrator_team_budgets (org_id, team_node_id, tokens, updated_at)
			VALUES (?, ?, ?, ?) ON CONFLICT (org_id, team_node_id) DO NOTHING`, org, team, tokens, formatTime(now)); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT tokens, updated_at FROM orchestrator_team_budgets
			WHERE org_id = ? AND team_node_id = ?`+db.d.forUpdate, org, team).Scan(&tokens, &at); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	level := Refill(tokens, at.Time, now, perMinute)
	after := change(level)
	if after == level {
		return nil // nothing taken: no write
	}
	if _, err := tx.ExecContext(ctx, `UPDATE orchestrator_team_budgets SET tokens = ?, updated_at = ?
		WHERE org_id = ? AND team_node_id = ?`, math.Min(after, float64(perMinute)), formatTime(now), org, team); err != nil {
		return err
	}
	return tx.Commit()
}

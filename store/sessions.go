package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Session is an admin page login (SPEC §13). The store keeps only a hash of
// the session id; Sealed is the admin's token, encrypted by the server with
// a key derived from the id, so a copy of the database opens no session.
type Session struct {
	IDHash    string
	Actor     string
	Sealed    []byte
	Flash     string
	CreatedAt time.Time
	SeenAt    time.Time
}

// CreateSession stores a new login.
func (db *DB) CreateSession(ctx context.Context, s Session) error {
	_, err := db.write.ExecContext(ctx, `INSERT INTO orchestrator_ui_sessions (id_hash, actor, sealed, flash, created_at, seen_at)
		VALUES (?, ?, ?, ?, ?, ?)`, s.IDHash, s.Actor, s.Sealed, nullIfEmpty(s.Flash), formatTime(s.CreatedAt), formatTime(s.SeenAt))
	if isUniqueViolation(err) {
		return fmt.Errorf("%w: session", ErrConflict)
	}
	return err
}

// GetSession returns a login by its id's hash.
func (db *DB) GetSession(ctx context.Context, idHash string) (Session, error) {
	var s Session
	var flash sql.NullString
	var created, seen nullTime
	err := db.read.QueryRowContext(ctx, `SELECT id_hash, actor, sealed, flash, created_at, seen_at
		FROM orchestrator_ui_sessions WHERE id_hash = ?`, idHash).Scan(&s.IDHash, &s.Actor, &s.Sealed, &flash, &created, &seen)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, fmt.Errorf("%w: session", ErrNotFound)
	}
	s.Flash, s.CreatedAt, s.SeenAt = flash.String, created.Time, seen.Time
	return s, err
}

// TouchSession records that a login was used at seen.
func (db *DB) TouchSession(ctx context.Context, idHash string, seen time.Time) error {
	res, err := db.write.ExecContext(ctx, `UPDATE orchestrator_ui_sessions SET seen_at = ? WHERE id_hash = ?`, formatTime(seen), idHash)
	return affected(res, err, "session")
}

// SetSessionFlash sets (or with "" clears) the notice the login's next page
// shows.
func (db *DB) SetSessionFlash(ctx context.Context, idHash, flash string) error {
	_, err := db.write.ExecContext(ctx, `UPDATE orchestrator_ui_sessions SET flash = ? WHERE id_hash = ?`, nullIfEmpty(flash), idHash)
	return err
}

// DeleteSession ends a login.
func (db *DB) DeleteSession(ctx context.Context, idHash string) error {
	_, err := db.write.ExecContext(ctx, `DELETE FROM orchestrator_ui_sessions WHERE id_hash = ?`, idHash)
	return err
}

// DeleteExpiredSessions drops logins idle since before idleCutoff or created
// before createdCutoff.
func (db *DB) DeleteExpiredSessions(ctx context.Context, idleCutoff, createdCutoff time.Time) (int, error) {
	res, err := db.write.ExecContext(ctx, `DELETE FROM orchestrator_ui_sessions WHERE seen_at < ? OR created_at < ?`,
		formatTime(idleCutoff), formatTime(createdCutoff))
	return affectedRows(res, err)
}

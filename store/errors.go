package store

import (
	"errors"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The store's error vocabulary. Methods wrap these with detail; the server
// maps them to HTTP statuses in one place.
var (
	// ErrNotFound: the row asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the write collides with existing state (a unique key).
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the values cannot be stored as given.
	ErrInvalid = errors.New("invalid")
	// ErrNotMigrated: the schema has pending migrations.
	ErrNotMigrated = errors.New("database migrations are pending")
	// ErrLockTimeout: a file lock was not free within the bounded wait.
	ErrLockTimeout = errors.New("lock wait timed out")
)

// isUniqueViolation matches SQLite's unique and primary key constraint
// errors by code, not message.
func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

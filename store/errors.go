package store

import "errors"

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
	// ErrLockTimeout: a team lock was not free within the bounded wait.
	ErrLockTimeout = errors.New("lock wait timed out")
	// ErrLimit: the write would pass a bound on what is kept (an org's
	// active silences).
	ErrLimit = errors.New("limit reached")
)

// isUniqueViolation matches a unique or primary key constraint error of
// either database.
func isUniqueViolation(err error) bool {
	return sqliteDialect.uniqueViolation(err) || postgresDialect.uniqueViolation(err)
}

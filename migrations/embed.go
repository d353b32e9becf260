// Package migrations holds the goose SQL migrations of the orchestrator's
// schema, embedded in the binary. The same files apply to SQLite (the embedded
// default) and to PostgreSQL 15 (the scale-out path), so they use only types
// and syntax both accept: UUID, VARCHAR(n), TEXT, JSONB, BYTEA, BOOLEAN,
// INTEGER, BIGINT, TIMESTAMP and CURRENT_TIMESTAMP defaults.
package migrations

import "embed"

// FS holds the *.sql migration files, named NNNNN_description.sql.
//
//go:embed *.sql
var FS embed.FS

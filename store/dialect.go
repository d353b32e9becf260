package store

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"sync"

	"github.com/pressly/goose/v3"
)

// One codebase, two dialects (ARCHITECTURE.md): every query in this package
// is written once, with ? placeholders, and what differs between SQLite and
// PostgreSQL sits in a dialect value beside the code that opens that
// database (sqlite.go, postgres.go). Nothing above the store knows which
// database it runs on, beyond Shared (several replicas may share it).

// dialect is what differs between the two databases.
type dialect struct {
	name  string
	goose goose.Dialect
	// numbered placeholders ($1, $2, …) instead of ?.
	numbered bool
	// skipLocked ends the claim's inner SELECT: other replicas' claims skip
	// the rows this one is taking instead of waiting for them.
	skipLocked string
	// forUpdate ends a SELECT whose rows the transaction will write.
	forUpdate string
	// probe is the readiness check: a durable write on SQLite (a full disk
	// shows), a round trip on PostgreSQL.
	probe func(ctx context.Context, db *DB) error
	// uniqueViolation matches the driver's unique-constraint error.
	uniqueViolation func(error) bool
	// epochMillis is an SQL expression: the TIMESTAMP column c in whole
	// milliseconds since the Unix epoch (as the events table stores times).
	epochMillis func(c string) string
}

// rebinds caches the numbered form of each query (queries are constants).
var rebinds sync.Map

// bind turns a query written with ? placeholders into the dialect's form.
// No query of this package has a ? inside a string literal.
func (d *dialect) bind(q string) string {
	if !d.numbered || !strings.Contains(q, "?") {
		return q
	}
	if v, ok := rebinds.Load(q); ok {
		return v.(string)
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	out := b.String()
	rebinds.Store(q, out)
	return out
}

// conn is a pool that speaks the dialect: every statement goes through bind.
type conn struct {
	*sql.DB
	d *dialect
}

// traceQuery, when a test sets it, sees every statement a pool or a
// transaction runs directly (the query-plan test reads them back with
// EXPLAIN).
var traceQuery func(q string, args []any)

// prep is q in the dialect's form, shown to traceQuery if a test set it.
func (d *dialect) prep(q string, args []any) string {
	q = d.bind(q)
	if traceQuery != nil {
		traceQuery(q, args)
	}
	return q
}

func (c conn) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return c.DB.ExecContext(ctx, c.d.prep(q, args), args...)
}

func (c conn) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return c.DB.QueryContext(ctx, c.d.prep(q, args), args...)
}

func (c conn) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return c.DB.QueryRowContext(ctx, c.d.prep(q, args), args...)
}

func (c conn) PrepareContext(ctx context.Context, q string) (*sql.Stmt, error) {
	return c.DB.PrepareContext(ctx, c.d.bind(q))
}

func (c conn) BeginTx(ctx context.Context, opts *sql.TxOptions) (tx, error) {
	t, err := c.DB.BeginTx(ctx, opts)
	return tx{t, c.d}, err
}

// tx is a transaction that speaks the dialect.
type tx struct {
	*sql.Tx
	d *dialect
}

func (t tx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return t.Tx.ExecContext(ctx, t.d.prep(q, args), args...)
}

func (t tx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return t.Tx.QueryContext(ctx, t.d.prep(q, args), args...)
}

func (t tx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return t.Tx.QueryRowContext(ctx, t.d.prep(q, args), args...)
}

func (t tx) PrepareContext(ctx context.Context, q string) (*sql.Stmt, error) {
	return t.Tx.PrepareContext(ctx, t.d.bind(q))
}

// querier is a pool or a transaction.
type querier interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

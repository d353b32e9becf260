package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"
)

// rowScanner is *sql.Row or *sql.Rows.
type rowScanner interface{ Scan(...any) error }

// collect scans every row with scan.
func collect[T any](rows *sql.Rows, scan func(rowScanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// filter builds a WHERE clause from equality conditions (empty values do
// not filter) plus any extra conditions.
type filter struct {
	where []string
	args  []any
}

func (f *filter) eq(col, val string) {
	if val != "" {
		f.where = append(f.where, col+" = ?")
		f.args = append(f.args, val)
	}
}

func (f *filter) add(cond string, args ...any) {
	f.where = append(f.where, cond)
	f.args = append(f.args, args...)
}

// page is a newest-first keyset page over (timeCol, id).
type page[T any] struct {
	table, columns, timeCol string
	limit                   int
	cursor                  string
	// before, instead of cursor, asks for the page just newer than it.
	before string
	scan   func(rowScanner) (T, error)
	key    func(T) (time.Time, string)
	// keyArgs turns a cursor's time and id into the query's arguments
	// (default: as they are).
	keyArgs func(at, id string) (any, any, error)
}

// run queries one page and returns it with the next page's cursor ("" at
// the end). With before, the page is the rows just newer than before, still
// newest first, and the cursor returned is the before of the page newer
// still ("" when this is the newest).
func (p page[T]) run(ctx context.Context, db querier, f filter) ([]T, string, error) {
	// Older pages walk the key down from the cursor; a before page walks it
	// up from before, and is turned newest first at the end.
	cursor, cmp, order := p.cursor, "<", "DESC"
	if p.before != "" {
		cursor, cmp, order = p.before, ">", "ASC"
	}
	if cursor != "" {
		atText, idText, err := decodeCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		var at, id any = atText, idText
		if p.keyArgs != nil {
			if at, id, err = p.keyArgs(atText, idText); err != nil {
				return nil, "", err
			}
		}
		f.add("("+p.timeCol+" "+cmp+" ? OR ("+p.timeCol+" = ? AND id "+cmp+" ?))", at, at, id)
	}
	q := `SELECT ` + p.columns + ` FROM ` + p.table
	if len(f.where) > 0 {
		q += " WHERE " + strings.Join(f.where, " AND ")
	}
	q += " ORDER BY " + p.timeCol + " " + order + ", id " + order + " LIMIT ?"
	rows, err := db.QueryContext(ctx, q, append(f.args, p.limit+1)...)
	if err != nil {
		return nil, "", err
	}
	out, err := collect(rows, p.scan)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > p.limit {
		out = out[:p.limit]
		at, id := p.key(out[len(out)-1])
		next = encodeCursor(at, id)
	}
	if p.before != "" {
		slices.Reverse(out)
	}
	return out, next, nil
}

// affected turns "no row changed" into ErrNotFound naming what was missing.
func affected(res sql.Result, err error, what string) error {
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, what)
	}
	return nil
}

// affectedRows is how many rows a statement changed (or its error).
func affectedRows(res sql.Result, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// clause is the filter as a WHERE clause ("" without conditions).
func (f *filter) clause() string {
	if len(f.where) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(f.where, " AND ")
}

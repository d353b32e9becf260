package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Moving from SQLite to PostgreSQL (SPEC §17): every table of the
// appliance is copied in batches into an empty PostgreSQL database that
// already has this build's schema, then verified: the same row count and
// the same checksum per table, both read back from the databases.

// ErrTargetNotEmpty: the PostgreSQL database already holds the
// appliance's data.
var ErrTargetNotEmpty = errors.New("the target database already holds data")

// copyBatch is how many rows one INSERT of the copy carries.
const copyBatch = 500

// TableCopy is one table's outcome.
type TableCopy struct {
	Table    string `json:"table"`
	Rows     int    `json:"rows"`
	Checksum string `json:"checksum"`
}

// Tables lists the appliance's tables, parents before children (an agent
// run names its event).
func (db *DB) Tables(ctx context.Context) ([]string, error) {
	q := `SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'orchestrator_%'`
	if db.Shared() {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name LIKE 'orchestrator_%'`
	}
	rows, err := db.read.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	names, err := collect(rows, func(r rowScanner) (string, error) {
		var s string
		return s, r.Scan(&s)
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(names, func(a, b string) int {
		// Children last: they reference the others.
		rank := func(s string) int {
			if s == "orchestrator_agent_runs" {
				return 1
			}
			return 0
		}
		if d := rank(a) - rank(b); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	return names, nil
}

// IsEmpty reports whether none of the appliance's tables holds a row.
func (db *DB) IsEmpty(ctx context.Context) (bool, error) {
	tables, err := db.Tables(ctx)
	if err != nil {
		return false, err
	}
	for _, t := range tables {
		var one int
		err := db.read.QueryRowContext(ctx, `SELECT 1 FROM `+t+` LIMIT 1`).Scan(&one)
		if err == nil {
			return false, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return false, err
		}
	}
	return true, nil
}

// CopyError is a copy that failed part-way. Emptied says whether the
// target was emptied again (every table truncated, the schema kept), so
// that the same copy can simply run again; when it could not be, EmptyErr
// says why.
type CopyError struct {
	Err      error
	Emptied  bool
	EmptyErr error
}

func (e *CopyError) Error() string { return e.Err.Error() }
func (e *CopyError) Unwrap() error { return e.Err }

// emptyAgainTimeout bounds the clean-up of a failed copy.
const emptyAgainTimeout = 2 * time.Minute

// CopyTo copies every table of db (SQLite) into dst (PostgreSQL, migrated to
// the same schema and empty), writing progress lines to progress, and
// verifies each table's row count and checksum on both sides. A copy that
// fails part-way — a lost connection, a cancelled context, a failed
// verification — leaves the target empty again (a *CopyError says whether
// that worked), even when ctx is what was cancelled.
func (db *DB) CopyTo(ctx context.Context, dst *DB, progress io.Writer) ([]TableCopy, error) {
	if db.Shared() || !dst.Shared() {
		return nil, errors.New("store: the copy goes from SQLite to PostgreSQL")
	}
	empty, err := dst.IsEmpty(ctx)
	if err != nil {
		return nil, err
	}
	if !empty {
		return nil, ErrTargetNotEmpty
	}
	out, err := db.copyTables(ctx, dst, progress)
	if err == nil {
		return out, nil
	}
	cerr := &CopyError{Err: err}
	clean, cancel := context.WithTimeout(context.WithoutCancel(ctx), emptyAgainTimeout)
	defer cancel()
	if cerr.EmptyErr = dst.truncateAll(clean); cerr.EmptyErr == nil {
		cerr.Emptied = true
		fmt.Fprintf(progress, "the copy failed; the target was emptied again (its schema kept)\n")
	}
	return nil, cerr
}

// truncateAll empties every table of the appliance in the PostgreSQL
// database db in one statement, keeping the schema and its version.
func (db *DB) truncateAll(ctx context.Context) error {
	tables, err := db.Tables(ctx)
	if err != nil || len(tables) == 0 {
		return err
	}
	_, err = db.write.ExecContext(ctx, `TRUNCATE `+strings.Join(tables, ", ")+` RESTART IDENTITY CASCADE`)
	return err
}

// copyTables copies and verifies each table in turn.
func (db *DB) copyTables(ctx context.Context, dst *DB, progress io.Writer) ([]TableCopy, error) {
	tables, err := db.Tables(ctx)
	if err != nil {
		return nil, err
	}
	var out []TableCopy
	for _, t := range tables {
		types, err := dst.columnTypes(ctx, t)
		if err != nil {
			return out, err
		}
		n, err := db.copyTable(ctx, dst, t, types, progress)
		if err != nil {
			return out, fmt.Errorf("copying %s: %w", t, err)
		}
		if err := dst.advanceIdentity(ctx, t, types); err != nil {
			return out, fmt.Errorf("copying %s: %w", t, err)
		}
		srcRows, srcSum, err := db.checksum(ctx, t, types)
		if err != nil {
			return out, err
		}
		dstRows, dstSum, err := dst.checksum(ctx, t, types)
		if err != nil {
			return out, err
		}
		if srcRows != n || dstRows != srcRows || dstSum != srcSum {
			return out, fmt.Errorf("%s: verification failed: %d rows (checksum %s) in SQLite, %d copied, %d (checksum %s) in PostgreSQL",
				t, srcRows, srcSum, n, dstRows, dstSum)
		}
		fmt.Fprintf(progress, "%s: %d rows copied and verified (checksum %s)\n", t, n, srcSum[:16])
		out = append(out, TableCopy{Table: t, Rows: n, Checksum: srcSum})
	}
	return out, nil
}

// advanceIdentity moves a table's identity sequence (the events' ids)
// past the ids copied with their rows, so the next event gets a new one.
func (db *DB) advanceIdentity(ctx context.Context, table string, types [][2]string) error {
	if !slices.Contains(types, [2]string{"id", "bigint"}) {
		return nil
	}
	var seq sql.NullString
	if err := db.read.QueryRowContext(ctx, `SELECT pg_get_serial_sequence(?, 'id')`, table).Scan(&seq); err != nil || !seq.Valid {
		return err
	}
	_, err := db.write.ExecContext(ctx, `SELECT setval(?, GREATEST(COALESCE((SELECT MAX(id) FROM `+table+`), 0), 1))`, seq.String)
	return err
}

// columnTypes is each column's PostgreSQL type, in table order.
func (db *DB) columnTypes(ctx context.Context, table string) ([][2]string, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position`, table)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r rowScanner) ([2]string, error) {
		var c [2]string
		return c, r.Scan(&c[0], &c[1])
	})
}

func (db *DB) copyTable(ctx context.Context, dst *DB, table string, types [][2]string, progress io.Writer) (int, error) {
	var total int
	if err := db.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&total); err != nil {
		return 0, err
	}
	cols := make([]string, len(types))
	for i, c := range types {
		cols[i] = c[0]
	}
	list := strings.Join(cols, ", ")
	done := 0
	var last int64 // keyset paging on SQLite's rowid: each batch one seek
	for {
		rows, err := db.read.QueryContext(ctx, `SELECT rowid, `+list+` FROM `+table+` WHERE rowid > ? ORDER BY rowid LIMIT ?`, last, copyBatch)
		if err != nil {
			return done, err
		}
		var args []any
		var values []string
		for rows.Next() {
			all, err := scanAny(rows, len(cols)+1)
			if err != nil {
				rows.Close()
				return done, err
			}
			last, _ = all[0].(int64)
			raw := all[1:]
			marks := make([]string, len(cols))
			for i, v := range raw {
				cv, err := toPostgres(v, types[i][1])
				if err != nil {
					rows.Close()
					return done, fmt.Errorf("column %s: %w", cols[i], err)
				}
				args = append(args, cv)
				marks[i] = "?"
			}
			values = append(values, "("+strings.Join(marks, ", ")+")")
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return done, err
		}
		if len(values) == 0 {
			return done, nil
		}
		if _, err := dst.write.ExecContext(ctx, `INSERT INTO `+table+` (`+list+`) VALUES `+strings.Join(values, ", "), args...); err != nil {
			return done, err
		}
		done += len(values)
		fmt.Fprintf(progress, "%s: %d of %d rows\n", table, done, total)
		if len(values) < copyBatch {
			return done, nil
		}
	}
}

// toPostgres turns a value as modernc hands it over into one PostgreSQL
// takes for the column's type.
func toPostgres(v any, pgType string) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch pgType {
	case "boolean":
		switch b := v.(type) {
		case bool:
			return b, nil
		case int64:
			return b != 0, nil
		}
	case "timestamp without time zone", "timestamp with time zone":
		switch t := v.(type) {
		case time.Time:
			return t.UTC(), nil
		case string:
			return parseStoredTime(t)
		case []byte:
			return parseStoredTime(string(t))
		}
	case "bytea":
		switch b := v.(type) {
		case []byte:
			return b, nil
		case string:
			return []byte(b), nil
		}
	case "jsonb", "json", "text", "character varying", "uuid":
		switch s := v.(type) {
		case []byte:
			return string(s), nil
		case string:
			return s, nil
		}
	}
	return v, nil
}

func parseStoredTime(s string) (time.Time, error) {
	for _, layout := range []string{timeLayout, time.RFC3339Nano, "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time", s)
}

// checksum reads a table back and sums it, whatever the database: each
// row's values in a canonical form (times in UTC to the microsecond,
// booleans as true/false, JSON re-encoded, bytes in hex) are hashed, and
// the sorted row hashes hashed again, so row order and collation do not
// matter.
func (db *DB) checksum(ctx context.Context, table string, types [][2]string) (int, string, error) {
	cols := make([]string, len(types))
	for i, c := range types {
		cols[i] = c[0]
	}
	rows, err := db.read.QueryContext(ctx, `SELECT `+strings.Join(cols, ", ")+` FROM `+table)
	if err != nil {
		return 0, "", err
	}
	defer rows.Close()
	var hashes []string
	for rows.Next() {
		raw, err := scanAny(rows, len(cols))
		if err != nil {
			return 0, "", err
		}
		h := sha256.New()
		for i, v := range raw {
			s, err := canonical(v, types[i][1])
			if err != nil {
				return 0, "", fmt.Errorf("%s.%s: %w", table, cols[i], err)
			}
			fmt.Fprintf(h, "%d:%s|", len(s), s)
		}
		hashes = append(hashes, hex.EncodeToString(h.Sum(nil)))
	}
	if err := rows.Err(); err != nil {
		return 0, "", err
	}
	slices.Sort(hashes)
	sum := sha256.Sum256([]byte(strings.Join(hashes, "")))
	return len(hashes), hex.EncodeToString(sum[:]), nil
}

// scanAny reads a row of n columns as the driver hands them over.
func scanAny(rows *sql.Rows, n int) ([]any, error) {
	raw := make([]any, n)
	ptrs := make([]any, n)
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	return raw, rows.Scan(ptrs...)
}

func canonical(v any, pgType string) (string, error) {
	if v == nil {
		return "∅", nil
	}
	pv, err := toPostgres(v, pgType)
	if err != nil {
		return "", err
	}
	switch x := pv.(type) {
	case time.Time:
		return x.UTC().Truncate(time.Microsecond).Format(timeLayout), nil
	case bool:
		return strconv.FormatBool(x), nil
	case []byte:
		return hex.EncodeToString(x), nil
	case string:
		if pgType == "jsonb" || pgType == "json" {
			var j any
			if json.Unmarshal([]byte(x), &j) == nil {
				b, _ := json.Marshal(j)
				return string(b), nil
			}
		}
		return x, nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	}
	return fmt.Sprint(pv), nil
}

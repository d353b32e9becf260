package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrSchemaTooNew: the database was migrated by a newer build than this one.
var ErrSchemaTooNew = errors.New("database schema is newer than this build")

// ErrNoSnapshots: snapshots are of the embedded SQLite database; a
// PostgreSQL deployment is backed up with PostgreSQL's own tools.
var ErrNoSnapshots = errors.New("snapshots are taken of the embedded SQLite database only; back PostgreSQL up with pg_dump or your provider's backups")

// ErrNotSnapshot: a file is not a sound snapshot of this appliance's database.
var ErrNotSnapshot = errors.New("not a usable snapshot")

// Versions returns the schema version the database is at (0 when new) and
// the newest version this build knows.
func (db *DB) Versions(ctx context.Context) (current, known int64, err error) {
	current, err = db.goose.GetDBVersion(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("store: schema version: %w", err)
	}
	return current, db.KnownVersion(), nil
}

// KnownVersion reads the newest migration version among goose SQL files
// (NNNNN_name.sql) and this build's Go migrations, without a database.
func KnownVersion(fsys fs.FS) (int64, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return 0, err
	}
	var known int64
	for v := range GoMigrationNames {
		known = max(known, v)
	}
	for _, n := range names {
		head, _, _ := strings.Cut(n, "_")
		v, err := strconv.ParseInt(head, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("store: migration %s: no version", n)
		}
		known = max(known, v)
	}
	return known, nil
}

// KnownVersion is the newest migration this build carries.
func (db *DB) KnownVersion() int64 {
	src := db.goose.ListSources()
	if len(src) == 0 {
		return 0
	}
	return src[len(src)-1].Version
}

// CheckSchema refuses a database migrated by a newer build (SPEC §14): goose
// would not notice, and this build would run on a schema it does not know.
func (db *DB) CheckSchema(ctx context.Context) error {
	current, known, err := db.Versions(ctx)
	if err != nil {
		return err
	}
	if current > known {
		return fmt.Errorf("%w: database schema version %d is newer than this build knows (%d): run a newer image or restore a backup",
			ErrSchemaTooNew, current, known)
	}
	return nil
}

// SnapshotInfo describes a verified snapshot.
type SnapshotInfo struct {
	Size          int64  `json:"size"`
	SHA256        string `json:"sha256"`
	SchemaVersion int64  `json:"schema_version"`
	Integrity     string `json:"integrity"`
	Events        int64  `json:"events"`
}

// Snapshot writes a consistent copy of the live database to dest with
// VACUUM INTO — one read transaction, so webhooks keep being acknowledged
// while it runs — then verifies it. dest must not exist.
func (db *DB) Snapshot(ctx context.Context, dest string) (SnapshotInfo, error) {
	if db.Shared() {
		return SnapshotInfo{}, ErrNoSnapshots
	}
	if _, err := os.Stat(dest); err == nil {
		return SnapshotInfo{}, fmt.Errorf("store: snapshot: %s already exists", dest)
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
		return SnapshotInfo{}, fmt.Errorf("store: snapshot: %w", err)
	}
	// Its own connection: the readers are query_only, and the writer belongs
	// to ingest.
	conn, err := sql.Open("sqlite", dsn(db.path, false))
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("store: snapshot: %w", err)
	}
	defer conn.Close()
	conn.SetMaxOpenConns(1)
	tmp := dest + ".partial"
	_ = os.Remove(tmp)
	// VACUUM INTO writes into an empty file that exists: made 0600 first,
	// a snapshot is never readable by others, not even while written.
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("store: snapshot: %w", err)
	}
	f.Close()
	if _, err := conn.ExecContext(ctx, `VACUUM INTO ?`, tmp); err != nil {
		_ = os.Remove(tmp)
		return SnapshotInfo{}, fmt.Errorf("store: snapshot: %w", err)
	}
	info, err := VerifySnapshot(ctx, tmp, 0)
	if err == nil {
		err = syncFile(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, dest)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return SnapshotInfo{}, err
	}
	return info, nil
}

// VerifySnapshot checks a snapshot file: it is a SQLite database of this
// appliance (its tables are there), PRAGMA integrity_check says ok, and its
// schema version is at most known (0: any). It never writes to the file.
func VerifySnapshot(ctx context.Context, path string, known int64) (SnapshotInfo, error) {
	var info SnapshotInfo
	fi, err := os.Stat(path)
	if err != nil {
		return info, fmt.Errorf("%w: %v", ErrNotSnapshot, err)
	}
	if !fi.Mode().IsRegular() {
		return info, fmt.Errorf("%w: %s is not a regular file", ErrNotSnapshot, path)
	}
	head := make([]byte, 16)
	f, err := os.Open(path)
	if err != nil {
		return info, fmt.Errorf("%w: %v", ErrNotSnapshot, err)
	}
	h := sha256.New()
	_, herr := io.ReadFull(f, head)
	if herr == nil {
		_, _ = f.Seek(0, io.SeekStart)
		_, herr = io.Copy(h, f)
	}
	f.Close()
	if herr != nil || string(head) != "SQLite format 3\x00" {
		return info, fmt.Errorf("%w: %s is not a SQLite database", ErrNotSnapshot, path)
	}
	info.Size, info.SHA256 = fi.Size(), hex.EncodeToString(h.Sum(nil))

	conn, err := sql.Open("sqlite", "file:"+uriPath(path)+"?mode=ro&_pragma=query_only(ON)")
	if err != nil {
		return info, fmt.Errorf("%w: %v", ErrNotSnapshot, err)
	}
	defer conn.Close()
	if err := conn.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&info.Integrity); err != nil {
		return info, fmt.Errorf("%w: integrity check: %v", ErrNotSnapshot, err)
	}
	if info.Integrity != "ok" {
		return info, fmt.Errorf("%w: integrity check says %q", ErrNotSnapshot, info.Integrity)
	}
	if err := conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&info.SchemaVersion); err != nil {
		return info, fmt.Errorf("%w: no schema version in it (not this appliance's database?): %v", ErrNotSnapshot, err)
	}
	if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM orchestrator_webhook_events`).Scan(&info.Events); err != nil {
		return info, fmt.Errorf("%w: not this appliance's database: %v", ErrNotSnapshot, err)
	}
	if known > 0 && info.SchemaVersion > known {
		return info, fmt.Errorf("%w: the snapshot's schema version %d is newer than this build knows (%d)", ErrSchemaTooNew, info.SchemaVersion, known)
	}
	return info, nil
}

// Restore installs a verified snapshot as the database at path, keeping the
// current database (with its WAL) beside it as path.before-restore-<UTC
// time>. It must run with the server stopped (the caller holds the instance
// lock). It returns where the old database went ("" if there was none).
func Restore(ctx context.Context, path, from string, known int64, now time.Time) (SnapshotInfo, string, error) {
	info, err := VerifySnapshot(ctx, from, known)
	if err != nil {
		return info, "", err
	}
	tmp := path + ".restoring"
	_ = os.Remove(tmp) // left by an interrupted restore
	if err := copyFile(from, tmp); err != nil {
		_ = os.Remove(tmp)
		return info, "", fmt.Errorf("store: restore: %w", err)
	}
	kept := ""
	if _, err := os.Stat(path); err == nil {
		kept = path + ".before-restore-" + now.UTC().Format("20060102T150405Z")
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Rename(path+suffix, kept+suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
				_ = os.Remove(tmp)
				return info, "", fmt.Errorf("store: restore: keep the current database: %w", err)
			}
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return info, kept, fmt.Errorf("store: restore: %w", err)
	}
	return info, kept, syncDir(filepath.Dir(path))
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// UsedBytes is what a snapshot of the database will write: the pages in
// use (a snapshot leaves the free pages out).
func (db *DB) UsedBytes(ctx context.Context) (int64, error) {
	if db.Shared() {
		return 0, ErrNoSnapshots
	}
	var pages, free, size int64
	if err := db.read.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		return 0, err
	}
	if err := db.read.QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&free); err != nil {
		return 0, err
	}
	if err := db.read.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&size); err != nil {
		return 0, err
	}
	return (pages - free) * size, nil
}

// FileBytes is the size of the database file and its WAL (0 on PostgreSQL).
func (db *DB) FileBytes() int64 {
	if db.Shared() {
		return 0
	}
	var n int64
	for _, p := range []string{db.path, db.path + "-wal"} {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// SpaceByTable reads the SQLite file at path (a snapshot, say) and returns
// the bytes of its pages per table, each table's indexes included, and the
// whole file's under "".
func SpaceByTable(ctx context.Context, path string) (map[string]int64, error) {
	conn, err := sql.Open("sqlite", "file:"+uriPath(path)+"?mode=ro")
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	rows, err := conn.QueryContext(ctx, `SELECT COALESCE(m.tbl_name, s.name), SUM(s.pgsize) FROM dbstat s
		LEFT JOIN sqlite_master m ON m.name = s.name GROUP BY 1`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			return nil, err
		}
		out[name] = n
		out[""] += n
	}
	return out, rows.Err()
}

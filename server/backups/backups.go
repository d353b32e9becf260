// Package backups keeps verified snapshots of the appliance's database in
// $DATA_DIR/backups (SPEC §14): on demand, on a schedule and before a
// migration. Each snapshot is a SQLite file written with VACUUM INTO while
// the server runs, checked (integrity, schema version) and recorded in a JSON
// file beside it with its size, schema version and SHA-256. One backup runs
// at a time.
package backups

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"
)

// Triggers of a backup.
const (
	Manual     = "manual"
	Scheduled  = "scheduled"
	PreMigrate = "pre-migrate"
)

// ErrInProgress: another backup is running.
var ErrInProgress = errors.New("a backup is already running")

// ErrNotFound: no backup of that name.
var ErrNotFound = errors.New("no such backup")

// Info is one recorded backup.
type Info struct {
	Name       string    `json:"name"`
	Trigger    string    `json:"trigger"`
	CreatedAt  time.Time `json:"created_at"`
	DurationMS int64     `json:"duration_ms"`
	store.SnapshotInfo
}

// Options configure a Manager.
type Options struct {
	DB  *store.DB
	Dir string // $DATA_DIR/backups
	// Keep is how many scheduled backups are kept (newest first), KeepManual
	// how many manual ones (default 5); pre-migrate ones stay until deleted.
	Keep       int
	KeepManual int
	// ReservePercent of the volume must stay free after a snapshot (default
	// 10); Statfs reads the volume (StatVolume unless set: tests replace it
	// where no small file system can be mounted).
	ReservePercent int
	Statfs         func(dir string) (Volume, error)
	Logger         *slog.Logger
	Registry       prometheus.Registerer
	Now            func() time.Time
	// Schedule is the cron expression of scheduled backups, for display
	// ("" = off); Run takes the parsed schedule.
	Schedule string
	// Snapshot writes one snapshot; DB.Snapshot unless set (tests hold it).
	Snapshot func(ctx context.Context, dest string) (store.SnapshotInfo, error)
}

// Manager makes, lists and removes backups.
type Manager struct {
	o       Options
	log     *slog.Logger
	running sync.Mutex
	total   *prometheus.CounterVec

	mu          sync.Mutex
	lastFailure string
	failedAt    time.Time
}

// New returns a Manager and registers orchestrator_backups_total.
func New(o Options) (*Manager, error) {
	if o.DB == nil || o.Dir == "" {
		return nil, errors.New("backups: database and directory are required")
	}
	if o.Keep <= 0 {
		o.Keep = 7
	}
	if o.KeepManual <= 0 {
		o.KeepManual = 5
	}
	if o.ReservePercent <= 0 {
		o.ReservePercent = 10
	}
	if o.Statfs == nil {
		o.Statfs = StatVolume
	}
	if o.Now == nil {
		o.Now = wallclock.Now
	}
	if o.Snapshot == nil {
		o.Snapshot = o.DB.Snapshot
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{o: o, log: o.Logger.With("component", "backups"), total: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orchestrator_backups_total",
		Help: "Backups by trigger (manual, scheduled, pre-migrate) and outcome (ok, failed).",
	}, []string{"trigger", "outcome"})}
	for _, tr := range []string{Manual, Scheduled, PreMigrate} {
		for _, oc := range []string{"ok", "failed"} {
			m.total.WithLabelValues(tr, oc)
		}
	}
	if o.Registry != nil {
		collectors := []prometheus.Collector{m.total}
		if !o.DB.Shared() {
			collectors = append(collectors, m.volumeMetrics()...)
		}
		for _, c := range collectors {
			if err := o.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("backups: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Dir is where the backups are.
func (m *Manager) Dir() string { return m.o.Dir }

// Schedule is the backup schedule ("" = off) and how many scheduled backups
// are kept.
func (m *Manager) Schedule() (string, int) { return m.o.Schedule, m.o.Keep }

// Create takes a snapshot now; ErrInProgress if one is running.
func (m *Manager) Create(ctx context.Context, trigger string) (Info, error) {
	return m.create(ctx, trigger, trigger+"-")
}

// BeforeMigrate snapshots a database that has data and pending migrations,
// as pre-migrate-<from>-<to>-<time>.db; it does nothing for a new or an
// up-to-date database.
func (m *Manager) BeforeMigrate(ctx context.Context) (*Info, error) {
	if m.o.DB.Shared() {
		return nil, nil // PostgreSQL is backed up with its own tools
	}
	from, to, err := m.o.DB.Versions(ctx)
	if err != nil || from == 0 || from >= to {
		return nil, err
	}
	info, err := m.create(ctx, PreMigrate, fmt.Sprintf("%s-%d-%d-", PreMigrate, from, to))
	if err != nil {
		return nil, fmt.Errorf("snapshot before migrating from %d to %d: %w", from, to, err)
	}
	return &info, nil
}

// BeforeMigrateDown snapshots the database before `migrate down` takes it
// from schema from back to schema to, named as an upgrade's snapshot is
// (pre-migrate-<from>-<to>-<time>.db), so the way back can be undone too.
// PostgreSQL is backed up with its own tools: nothing is written there.
func (m *Manager) BeforeMigrateDown(ctx context.Context, from, to int64) (*Info, error) {
	if m.o.DB.Shared() {
		return nil, nil
	}
	info, err := m.create(ctx, PreMigrate, fmt.Sprintf("%s-%d-%d-", PreMigrate, from, to))
	if err != nil {
		return nil, fmt.Errorf("snapshot before migrating from %d down to %d: %w", from, to, err)
	}
	return &info, nil
}

func (m *Manager) create(ctx context.Context, trigger, prefix string) (Info, error) {
	if !m.running.TryLock() {
		return Info{}, ErrInProgress
	}
	defer m.running.Unlock()
	start := m.o.Now().UTC()
	name := prefix + start.Format("20060102T150405.000Z") + ".db"
	info := Info{Name: name, Trigger: trigger, CreatedAt: start}
	var snap store.SnapshotInfo
	err := m.checkSpace(ctx)
	if err == nil {
		snap, err = m.o.Snapshot(ctx, filepath.Join(m.o.Dir, name))
	}
	if err == nil {
		info.SnapshotInfo, info.DurationMS = snap, m.o.Now().Sub(start).Milliseconds()
		err = m.record(info)
	}
	if err != nil {
		_ = os.Remove(filepath.Join(m.o.Dir, name))
		m.total.WithLabelValues(trigger, "failed").Inc()
		m.mu.Lock()
		m.lastFailure, m.failedAt = err.Error(), start
		m.mu.Unlock()
		m.log.Error("backup failed", "trigger", trigger, "error", err)
		return Info{}, err
	}
	m.total.WithLabelValues(trigger, "ok").Inc()
	m.mu.Lock()
	if !m.failedAt.After(start) {
		m.lastFailure, m.failedAt = "", time.Time{}
	}
	m.mu.Unlock()
	m.log.Info("backup written", "name", name, "trigger", trigger, "bytes", info.Size, "schema_version", info.SchemaVersion,
		"events", info.Events, "duration_ms", info.DurationMS)
	switch trigger {
	case Scheduled:
		m.prune(Scheduled, m.o.Keep)
	case Manual:
		m.prune(Manual, m.o.KeepManual)
	}
	return info, nil
}

// record writes the sidecar JSON, atomically.
func (m *Manager) record(info Info) error {
	b, _ := json.MarshalIndent(info, "", "  ")
	tmp := filepath.Join(m.o.Dir, info.Name+".json.partial")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(m.o.Dir, info.Name+".json"))
}

// List returns the recorded backups, newest first.
func (m *Manager) List() ([]Info, error) {
	entries, err := os.ReadDir(m.o.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return []Info{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := []Info{}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".db.json")
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(m.o.Dir, e.Name()))
		var info Info
		if err != nil || json.Unmarshal(b, &info) != nil || info.Name != name+".db" {
			continue
		}
		if _, err := os.Stat(filepath.Join(m.o.Dir, info.Name)); err == nil {
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

var validName = regexp.MustCompile(`^[a-z][A-Za-z0-9.-]{0,120}\.db$`)

// Find returns a recorded backup and its file's path.
func (m *Manager) Find(name string) (Info, string, error) {
	if !validName.MatchString(name) || strings.Contains(name, "..") {
		return Info{}, "", ErrNotFound
	}
	list, err := m.List()
	if err != nil {
		return Info{}, "", err
	}
	for _, info := range list {
		if info.Name == name {
			return info, filepath.Join(m.o.Dir, name), nil
		}
	}
	return Info{}, "", ErrNotFound
}

// Delete removes a backup and its record.
func (m *Manager) Delete(name string) error {
	_, path, err := m.Find(name)
	if err != nil {
		return err
	}
	if err := os.Remove(path + ".json"); err != nil {
		return err
	}
	return os.Remove(path)
}

// prune keeps the newest keep backups of a trigger.
func (m *Manager) prune(trigger string, keep int) {
	list, err := m.List()
	if err != nil {
		return
	}
	n := 0
	for _, info := range list {
		if info.Trigger != trigger {
			continue
		}
		if n++; n > keep {
			if err := m.Delete(info.Name); err != nil {
				m.log.Warn("pruning an old backup failed", "name", info.Name, "error", err)
			}
		}
	}
}

// LastFailure is the last failed backup's error and time, unless a backup
// has succeeded since ("" then).
func (m *Manager) LastFailure() (string, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastFailure, m.failedAt
}

// Run takes scheduled backups until ctx ends.
func (m *Manager) Run(ctx context.Context, schedule cron.Schedule) {
	for {
		next := schedule.Next(m.o.Now())
		t := time.NewTimer(next.Sub(m.o.Now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if _, err := m.Create(ctx, Scheduled); err != nil && ctx.Err() == nil {
			m.log.Error("scheduled backup failed", "error", err)
		}
	}
}

package backups

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
)

// The disk guard (SPEC §16): every snapshot first checks that, after its
// pages are written, ORCHESTRATOR_DISK_RESERVE_PERCENT of the volume stays
// free; the volume's figures are metrics, so alerts fire long before a
// full disk would turn every webhook into a 503.

// ErrInsufficientStorage: a snapshot would leave less than the reserve free.
var ErrInsufficientStorage = errors.New("not enough free space for a snapshot")

// Volume is one reading of the data volume.
type Volume struct {
	Size, Available int64 // bytes
}

// StatVolume reads the volume that holds dir (statfs).
func StatVolume(dir string) (Volume, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return Volume{}, err
	}
	return Volume{Size: int64(st.Blocks) * int64(st.Bsize), Available: int64(st.Bavail) * int64(st.Bsize)}, nil
}

// dataDir is the folder the database lives in (the volume to watch).
func (m *Manager) dataDir() string { return filepath.Dir(m.o.DB.Path()) }

// checkSpace refuses a snapshot that would breach the reserve, before a
// byte of it is written.
func (m *Manager) checkSpace(ctx context.Context) error {
	need, err := m.o.DB.UsedBytes(ctx)
	if err != nil {
		return err
	}
	dir := m.o.Dir
	if _, err := os.Stat(dir); err != nil {
		dir = m.dataDir()
	}
	vol, err := m.o.Statfs(dir)
	if err != nil {
		return fmt.Errorf("reading the volume's free space: %w", err)
	}
	reserve := vol.Size * int64(m.o.ReservePercent) / 100
	if vol.Available-need < reserve {
		return fmt.Errorf("%w: it needs about %s and must leave %d%% of the volume (%s) free; %s are free",
			ErrInsufficientStorage, human(need), m.o.ReservePercent, human(reserve), human(vol.Available))
	}
	return nil
}

// IntakeLow reports whether the data volume has less than half the reserve
// free: the webhook door then refuses new deliveries (503, senders retry)
// so that the room left goes to what is already accepted — dispatch,
// outcomes, retention's deletes. On PostgreSQL the volume is the database
// server's, and a volume that cannot be read is not called low (the
// store's own errors still answer 503).
func (m *Manager) IntakeLow() bool {
	if m.o.DB.Shared() {
		return false
	}
	vol, err := m.o.Statfs(m.dataDir())
	if err != nil || vol.Size <= 0 {
		return false
	}
	return vol.Available < vol.Size*int64(m.o.ReservePercent)/200
}

// BackupsBytes is the size of every file in the backups folder.
func (m *Manager) BackupsBytes() int64 {
	entries, err := os.ReadDir(m.o.Dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

// volumeMetrics are the disk guard's gauges, read at each scrape.
func (m *Manager) volumeMetrics() []prometheus.Collector {
	vol := func(pick func(Volume) int64) func() float64 {
		return func() float64 {
			v, err := m.o.Statfs(m.dataDir())
			if err != nil {
				return 0
			}
			return float64(pick(v))
		}
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "orchestrator_database_bytes",
			Help: "The SQLite database file and its WAL, in bytes."}, func() float64 { return float64(m.o.DB.FileBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "orchestrator_data_volume_available_bytes",
			Help: "Free bytes on the data directory's volume (statfs)."}, vol(func(v Volume) int64 { return v.Available })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "orchestrator_data_volume_size_bytes",
			Help: "Size of the data directory's volume in bytes (statfs)."}, vol(func(v Volume) int64 { return v.Size })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "orchestrator_backups_bytes",
			Help: "Every file in the backups directory, in bytes."}, func() float64 { return float64(m.BackupsBytes()) }),
	}
}

// human writes bytes as MB or GB.
func human(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
}

// VolumeFigures are the data volume's figures the overview page shows.
type VolumeFigures struct {
	DatabaseBytes, UsedBytes, BackupsBytes int64
	Volume
}

// Figures reads the database's and the volume's sizes now.
func (m *Manager) Figures(ctx context.Context) (VolumeFigures, error) {
	if m.o.DB.Shared() {
		return VolumeFigures{}, ErrShared
	}
	used, err := m.o.DB.UsedBytes(ctx)
	if err != nil {
		return VolumeFigures{}, err
	}
	vol, err := m.o.Statfs(m.dataDir())
	if err != nil {
		return VolumeFigures{}, err
	}
	return VolumeFigures{DatabaseBytes: m.o.DB.FileBytes(), UsedBytes: used, BackupsBytes: m.BackupsBytes(), Volume: vol}, nil
}

// ErrShared: on PostgreSQL the volume is the database server's business.
var ErrShared = errors.New("the database is PostgreSQL: its volume is not this pod's")

package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// File locks replace PostgreSQL advisory locks on the embedded default. They
// are flock(2) locks: the kernel drops them when the holder dies, even by
// SIGKILL, so a crash never leaves a stale lock behind.

// InstanceLockedError says that another process owns the data directory.
type InstanceLockedError struct {
	Path string // the lock file
	PID  int    // the holder's pid, 0 if it could not be read
}

// Error names the lock file and the holder.
func (e *InstanceLockedError) Error() string {
	holder := "another process"
	if e.PID > 0 {
		holder = "pid " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("data directory is in use: lock file %s is held by %s", e.Path, holder)
}

// InstanceLock is held for the lifetime of a process that owns a data
// directory.
type InstanceLock struct {
	f *os.File
}

// AcquireInstanceLock takes dataDir/orchestrator.lock without waiting. If
// another process holds it, it returns *InstanceLockedError at once.
func AcquireInstanceLock(dataDir string) (*InstanceLock, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path, err := filepath.Abs(filepath.Join(dataDir, "orchestrator.lock"))
	if err != nil {
		return nil, fmt.Errorf("lock file path: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := tryFlock(f); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &InstanceLockedError{Path: path, PID: readPID(f)}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := writeHolder(f, ""); err != nil {
		f.Close()
		return nil, fmt.Errorf("write lock file %s: %w", path, err)
	}
	return &InstanceLock{f: f}, nil
}

// Path returns the lock file's path.
func (l *InstanceLock) Path() string { return l.f.Name() }

// Release frees the lock. The file stays: removing a lock file races with a
// process that has just opened it.
func (l *InstanceLock) Release() error {
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	return l.f.Close()
}

// Locks hands out named locks that exclude both goroutines of this process
// and other processes on the same data directory (a CLI next to the server,
// or a second server started by mistake).
type Locks struct {
	dir  string
	wait time.Duration

	mu    sync.Mutex
	local map[string]*localLock
}

// localLock queues this process's goroutines without polling the file.
type localLock struct {
	ch   chan struct{}
	refs int
}

// NewLocks keeps lock files in dataDir/locks. wait bounds every Acquire.
func NewLocks(dataDir string, wait time.Duration) (*Locks, error) {
	dir := filepath.Join(dataDir, "locks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create lock directory: %w", err)
	}
	return &Locks{dir: dir, wait: wait, local: make(map[string]*localLock)}, nil
}

// TeamLockKey is the lock key of a team, as SPEC §1 names it.
func TeamLockKey(orgID, teamNodeID string) string {
	return "provision|" + orgID + "|" + teamNodeID
}

// Acquire takes the lock named key, waiting at most the configured bound (or
// less if ctx ends first). It returns a function that releases the lock; on a
// timeout the error wraps ErrLockTimeout.
func (l *Locks) Acquire(ctx context.Context, key string) (release func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, l.wait)
	defer cancel()

	ll := l.ref(key)
	select {
	case ll.ch <- struct{}{}:
	case <-ctx.Done():
		l.unref(key)
		return nil, l.waitErr(ctx, key)
	}
	f, err := l.lockFile(ctx, key)
	if err != nil {
		<-ll.ch
		l.unref(key)
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			f.Close()
			<-ll.ch
			l.unref(key)
		})
	}, nil
}

// lockFile takes the key's file lock, polling while another process holds it.
// flock has no timeout, and a blocked flock cannot be interrupted.
func (l *Locks) lockFile(ctx context.Context, key string) (*os.File, error) {
	sum := sha256.Sum256([]byte(key))
	path := filepath.Join(l.dir, hex.EncodeToString(sum[:16])+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	backoff := 2 * time.Millisecond
	for {
		err := tryFlock(f)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
			backoff = min(2*backoff, 100*time.Millisecond)
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, l.waitErr(ctx, key)
		}
	}
	// The holder's pid and key help an operator who finds the file; a failed
	// write does not weaken the lock.
	_ = writeHolder(f, key)
	return f, nil
}

func (l *Locks) waitErr(ctx context.Context, key string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %s", ErrLockTimeout, key)
	}
	return ctx.Err()
}

func (l *Locks) ref(key string) *localLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	ll := l.local[key]
	if ll == nil {
		ll = &localLock{ch: make(chan struct{}, 1)}
		l.local[key] = ll
	}
	ll.refs++
	return ll
}

func (l *Locks) unref(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ll := l.local[key]; ll != nil {
		if ll.refs--; ll.refs == 0 {
			delete(l.local, key)
		}
	}
}

func tryFlock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// writeHolder records "pid [key]" in a lock file this process holds.
func writeHolder(f *os.File, key string) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	line := strconv.Itoa(os.Getpid())
	if key != "" {
		line += " " + key
	}
	_, err := f.WriteAt([]byte(line+"\n"), 0)
	return err
}

func readPID(f *os.File) int {
	buf := make([]byte, 64)
	n, _ := f.ReadAt(buf, 0)
	field, _, _ := strings.Cut(strings.TrimSpace(string(buf[:n])), " ")
	pid, _ := strconv.Atoi(field)
	return pid
}

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

// File locks stand in for PostgreSQL's advisory locks on the embedded
// default. They are flock(2) locks: the kernel drops them when the holder dies, even by
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
// and other processes: on SQLite, flock(2) files in the data directory (a
// CLI next to the server, or a second server started by mistake); on
// PostgreSQL, session advisory locks that every replica sees (pglock.go).
type Locks struct {
	wait  time.Duration
	newer func(key string) (session, error)

	mu    sync.Mutex
	local map[string]*localLock
}

// session is one holder's hold on the cross-process side of a lock.
type session interface {
	// try takes the lock if it is free, without waiting.
	try(ctx context.Context) (bool, error)
	// check reports an error once the hold may have been lost (PostgreSQL:
	// the connection holding it is gone).
	check(ctx context.Context) error
	// close releases the lock, if held, and what held it.
	close()
}

// localLock queues this process's goroutines without polling the backend.
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
	return newLocks(wait, func(key string) (session, error) { return openFileLock(dir, key) }), nil
}

func newLocks(wait time.Duration, newer func(string) (session, error)) *Locks {
	return &Locks{wait: wait, newer: newer, local: make(map[string]*localLock)}
}

// NewLocks returns the locks that fit this database: advisory locks on
// PostgreSQL, shared by every replica; lock files in dataDir on SQLite.
func (db *DB) NewLocks(dataDir string, wait time.Duration) (*Locks, error) {
	if db.Shared() {
		return newLocks(wait, func(key string) (session, error) { return openAdvisoryLock(db.url, key) }), nil
	}
	return NewLocks(dataDir, wait)
}

// TeamLockKey is the lock key of a team, as SPEC §1 names it.
func TeamLockKey(orgID, teamNodeID string) string {
	return "provision|" + orgID + "|" + teamNodeID
}

// Held is a lock this process holds.
type Held struct {
	once    sync.Once
	sess    session
	release func()
}

// Release frees the lock; later calls do nothing.
func (h *Held) Release() { h.once.Do(h.release) }

// Check reports an error when the lock may have been lost: its holder's
// database connection is gone (another replica may hold it now).
func (h *Held) Check(ctx context.Context) error { return h.sess.check(ctx) }

// Acquire takes the lock named key, waiting at most the configured bound (or
// less if ctx ends first). It returns a function that releases the lock; on a
// timeout the error wraps ErrLockTimeout.
func (l *Locks) Acquire(ctx context.Context, key string) (release func(), err error) {
	h, err := l.take(ctx, key, true)
	if err != nil {
		return nil, err
	}
	return h.Release, nil
}

// TryAcquire takes the lock named key only if it is free now: nil, nil when
// another goroutine or process holds it.
func (l *Locks) TryAcquire(ctx context.Context, key string) (*Held, error) {
	h, err := l.take(ctx, key, false)
	if errors.Is(err, ErrLockTimeout) {
		return nil, nil
	}
	return h, err
}

func (l *Locks) take(ctx context.Context, key string, wait bool) (*Held, error) {
	ctx, cancel := context.WithTimeout(ctx, l.wait)
	defer cancel()
	ll := l.ref(key)
	if wait {
		select {
		case ll.ch <- struct{}{}:
		case <-ctx.Done():
			l.unref(key)
			return nil, l.waitErr(ctx, key)
		}
	} else {
		select {
		case ll.ch <- struct{}{}:
		default:
			l.unref(key)
			return nil, fmt.Errorf("%w: %s", ErrLockTimeout, key)
		}
	}
	sess, err := l.hold(ctx, key, wait)
	if err != nil {
		<-ll.ch
		l.unref(key)
		return nil, err
	}
	return &Held{sess: sess, release: func() {
		sess.close()
		<-ll.ch
		l.unref(key)
	}}, nil
}

// hold takes the key's cross-process lock, polling while another process
// holds it (flock has no timeout, and advisory lock waits are polled too so
// that the bound and ctx are kept).
func (l *Locks) hold(ctx context.Context, key string, wait bool) (session, error) {
	sess, err := l.newer(key)
	if err != nil {
		return nil, err
	}
	backoff := 2 * time.Millisecond
	for {
		ok, err := sess.try(ctx)
		if err != nil {
			sess.close()
			if ctx.Err() != nil {
				return nil, l.waitErr(ctx, key)
			}
			return nil, err
		}
		if ok {
			return sess, nil
		}
		if !wait {
			sess.close()
			return nil, fmt.Errorf("%w: %s", ErrLockTimeout, key)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
			backoff = min(2*backoff, 100*time.Millisecond)
		case <-ctx.Done():
			t.Stop()
			sess.close()
			return nil, l.waitErr(ctx, key)
		}
	}
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

// fileLock is a flock(2) on a file named by the key's hash.
type fileLock struct {
	f   *os.File
	key string
}

func openFileLock(dir, key string) (session, error) {
	sum := sha256.Sum256([]byte(key))
	path := filepath.Join(dir, hex.EncodeToString(sum[:16])+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	return &fileLock{f: f, key: key}, nil
}

func (fl *fileLock) try(context.Context) (bool, error) {
	err := tryFlock(fl.f)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", fl.f.Name(), err)
	}
	// The holder's pid and key help an operator who finds the file; a failed
	// write does not weaken the lock.
	_ = writeHolder(fl.f, fl.key)
	return true, nil
}

// check: the kernel keeps a flock for as long as the file is open.
func (fl *fileLock) check(context.Context) error { return nil }

func (fl *fileLock) close() {
	_ = syscall.Flock(int(fl.f.Fd()), syscall.LOCK_UN)
	fl.f.Close()
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

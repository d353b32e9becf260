package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
)

// The test binary doubles as a lock-holding helper process: with
// STORE_LOCK_HELPER=instance|team it takes the lock in STORE_LOCK_DIR, prints
// "locked", and holds it until its stdin closes (or it is killed).
func TestMain(m *testing.M) {
	switch os.Getenv("STORE_LOCK_HELPER") {
	case "":
		code := m.Run()
		pgtest.StopShared()
		os.Exit(code)
	case "advisory":
		// A replica holding a team's advisory lock (conformance_test.go).
		locks := newLocks(time.Minute, func(key string) (session, error) { return openAdvisoryLock(os.Getenv("STORE_LOCK_DIR"), key) })
		release, err := locks.Acquire(context.Background(), os.Getenv("STORE_LOCK_KEY"))
		holdAndExit(err, release)
	case "instance":
		l, err := AcquireInstanceLock(os.Getenv("STORE_LOCK_DIR"))
		holdAndExit(err, func() { l.Release() })
	case "team":
		locks, err := NewLocks(os.Getenv("STORE_LOCK_DIR"), time.Minute)
		if err != nil {
			holdAndExit(err, nil)
		}
		release, err := locks.Acquire(context.Background(), os.Getenv("STORE_LOCK_KEY"))
		holdAndExit(err, release)
	}
}

func holdAndExit(err error, release func()) {
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	fmt.Println("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
	release()
	os.Exit(0)
}

// helper is a child process holding a lock.
type helper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

func startHelper(t *testing.T, kind, dir, key string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STORE_LOCK_HELPER="+kind, "STORE_LOCK_DIR="+dir, "STORE_LOCK_KEY="+key)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, stdin: stdin}
	t.Cleanup(func() { h.kill() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "locked" {
		t.Fatalf("helper did not lock: %q %v", line, err)
	}
	return h
}

// release makes the helper release its lock and exit cleanly.
func (h *helper) release(t *testing.T) {
	t.Helper()
	h.stdin.Close()
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("helper exit: %v", err)
	}
}

// kill is SIGKILL: no chance to release anything.
func (h *helper) kill() {
	if h.cmd.ProcessState == nil {
		_ = h.cmd.Process.Kill()
		_ = h.cmd.Wait()
	}
}

func TestInstanceLock_SecondHolderRefusedWithPathAndPID(t *testing.T) {
	dir := t.TempDir()
	first, err := AcquireInstanceLock(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = AcquireInstanceLock(dir)
	var locked *InstanceLockedError
	if !errors.As(err, &locked) {
		t.Fatalf("second acquire = %v, want *InstanceLockedError", err)
	}
	if locked.PID != os.Getpid() || locked.Path != first.Path() {
		t.Fatalf("locked = %+v, want pid %d path %s", locked, os.Getpid(), first.Path())
	}
	if msg := err.Error(); !strings.Contains(msg, first.Path()) || !strings.Contains(msg, fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("message %q should name the lock file and pid", msg)
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	again, err := AcquireInstanceLock(dir)
	if err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
	again.Release()
}

func TestInstanceLock_HeldByOtherProcessUntilItDies(t *testing.T) {
	dir := t.TempDir()
	h := startHelper(t, "instance", dir, "")
	_, err := AcquireInstanceLock(dir)
	var locked *InstanceLockedError
	if !errors.As(err, &locked) || locked.PID != h.cmd.Process.Pid {
		t.Fatalf("acquire while helper holds = %v, want holder pid %d", err, h.cmd.Process.Pid)
	}
	h.kill() // SIGKILL: the kernel drops the lock
	l, err := AcquireInstanceLock(dir)
	if err != nil {
		t.Fatalf("acquire after the holder died: %v", err)
	}
	l.Release()
}

func TestLocks_GoroutinesAreMutuallyExclusive(t *testing.T) {
	locks, err := NewLocks(t.TempDir(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	key := TeamLockKey("acme", "platform-sre")
	var inside, maxInside atomic.Int32
	counter := 0 // deliberately unsynchronised: the lock is the only guard
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				release, err := locks.Acquire(context.Background(), key)
				if err != nil {
					t.Error(err)
					return
				}
				n := inside.Add(1)
				if n > maxInside.Load() {
					maxInside.Store(n)
				}
				counter++
				inside.Add(-1)
				release()
			}
		}()
	}
	wg.Wait()
	if maxInside.Load() != 1 || counter != 32*20 {
		t.Fatalf("max holders at once = %d, counter = %d; want 1 and %d", maxInside.Load(), counter, 32*20)
	}
	if len(locks.local) != 0 {
		t.Fatalf("%d in-process lock entries left behind", len(locks.local))
	}
}

func TestLocks_BoundedWaitTimesOut(t *testing.T) {
	dir := t.TempDir()
	holder, _ := NewLocks(dir, time.Minute)
	release, err := holder.Acquire(context.Background(), "provision|acme|sre")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	waiter, _ := NewLocks(dir, 50*time.Millisecond)
	// Same process, same Locks: waits on the in-process queue, here bounded
	// by the caller's deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := holder.Acquire(ctx, "provision|acme|sre"); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("in-process waiter = %v, want ErrLockTimeout", err)
	}
	// Another Locks on the same directory: waits on the file lock.
	if _, err := waiter.Acquire(context.Background(), "provision|acme|sre"); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("file waiter = %v, want ErrLockTimeout", err)
	}
	// Other teams are not blocked.
	r2, err := waiter.Acquire(context.Background(), "provision|acme|other")
	if err != nil {
		t.Fatalf("another team's lock: %v", err)
	}
	r2()
}

func TestLocks_CancelledCallerIsNotATimeout(t *testing.T) {
	locks, _ := NewLocks(t.TempDir(), time.Minute)
	release, err := locks.Acquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := locks.Acquire(ctx, "k"); !errors.Is(err, context.Canceled) || errors.Is(err, ErrLockTimeout) {
		t.Fatalf("cancelled acquire = %v, want context.Canceled", err)
	}
}

func TestLocks_ExcludeOtherProcesses(t *testing.T) {
	dir := t.TempDir()
	key := TeamLockKey("acme", "platform-sre")
	h := startHelper(t, "team", dir, key)

	short, _ := NewLocks(dir, 100*time.Millisecond)
	if _, err := short.Acquire(context.Background(), key); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("acquire while another process holds = %v, want ErrLockTimeout", err)
	}

	// A waiter with a long bound gets the lock once the holder lets go.
	long, _ := NewLocks(dir, time.Minute)
	got := make(chan error, 1)
	go func() {
		release, err := long.Acquire(context.Background(), key)
		if err == nil {
			release()
		}
		got <- err
	}()
	h.release(t)
	if err := <-got; err != nil {
		t.Fatalf("waiter after release: %v", err)
	}
}

func TestLocks_HolderKilledFreesTheLock(t *testing.T) {
	dir := t.TempDir()
	key := TeamLockKey("acme", "platform-sre")
	h := startHelper(t, "team", dir, key)
	h.kill()
	locks, _ := NewLocks(dir, time.Minute)
	release, err := locks.Acquire(context.Background(), key)
	if err != nil {
		t.Fatalf("acquire after the holder was killed: %v", err)
	}
	release()
}

// Package devserve starts the orchestrator binary in dev mode for the build
// tools' tests (the image test runs it from the image, also under qemu; the
// monitoring test scrapes it).
package devserve

import (
	"bufio"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Server is a running `orchestrator serve --dev`.
type Server struct {
	// URL is where it listens, e.g. http://127.0.0.1:40123.
	URL  string
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs strings.Builder
	done chan struct{}
}

// Start runs argv (the binary, or an emulator and the binary) with `serve
// --dev` on a free loopback port and a temporary data directory, and
// returns once its log says it has started. The test's cleanup kills it if
// Stop was not called.
func Start(t testing.TB, argv ...string) *Server {
	t.Helper()
	args := append(argv[1:len(argv):len(argv)], "serve", "--dev", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir())
	s := &Server{cmd: exec.Command(argv[0], args...), done: make(chan struct{})}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdout = io.Discard
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.cmd.Process.Kill(); <-s.done })

	started := make(chan string, 1)
	go func() {
		defer close(s.done)
		defer close(started)
		sc := bufio.NewScanner(stderr)
		addr, sent := "", false
		for sc.Scan() {
			s.mu.Lock()
			s.logs.Write(sc.Bytes())
			s.logs.WriteByte('\n')
			s.mu.Unlock()
			var m struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			if m.Msg == "listening" {
				addr = m.Addr
			}
			if m.Msg == "started" && addr != "" && !sent {
				started <- addr
				sent = true
			}
		}
		_ = s.cmd.Wait()
	}()
	addr, ok := <-started
	if !ok {
		t.Fatalf("%s serve --dev ended before it started:\n%s", argv, s.Logs())
	}
	s.URL = "http://" + addr
	return s
}

// Stop sends SIGTERM and waits for the process; it reports how it exited.
func (s *Server) Stop() error {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	<-s.done
	if st := s.cmd.ProcessState; st != nil && !st.Success() {
		return &exec.ExitError{ProcessState: st}
	}
	return nil
}

// Logs is everything it has logged so far.
func (s *Server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// Package pgtest starts a real, throwaway PostgreSQL server on loopback for
// tests: Debian's postgresql package (initdb and pg_ctl under
// /usr/lib/postgresql/N/bin). When run as root the server runs as the
// "postgres" user, since PostgreSQL refuses to run as root.
package pgtest

import (
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" driver
)

// RequireEnv names the variable that turns a missing PostgreSQL from a skip
// into a failure; `make test` (and so CI) sets it.
const RequireEnv = "ORCHESTRATOR_TEST_REQUIRE_POSTGRES"

// shared is the package-wide server Database hands out databases on.
var shared struct {
	sync.Mutex
	url  string
	stop func()
	n    int
	err  error
}

// Database returns the URL of a new, empty database on a server shared by
// the whole test binary (started on first use; a new server per case would
// cost a second each). Call StopShared from TestMain when m.Run returns.
func Database(t testing.TB) string {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	if shared.url == "" && shared.err == nil {
		shared.url, shared.stop, shared.err = start()
	}
	if shared.err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("PostgreSQL is required (%s=1): %v", RequireEnv, shared.err)
		}
		t.Skipf("PostgreSQL not available (%v); `make test` requires it", shared.err)
	}
	shared.n++
	name := fmt.Sprintf("case_%d", shared.n)
	db, err := sql.Open("pgx", shared.url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	return strings.Replace(shared.url, "/postgres?", "/"+name+"?", 1)
}

// StopShared stops the shared server, if one was started.
func StopShared() {
	shared.Lock()
	defer shared.Unlock()
	if shared.stop != nil {
		shared.stop()
		shared.stop, shared.url = nil, ""
	}
}

// Start starts a PostgreSQL server for the test and returns a connection URL
// for its "postgres" database. The server is stopped and its files removed
// when the test ends.
func Start(t testing.TB) string {
	t.Helper()
	if _, err := binDir(); err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("PostgreSQL is required (%s=1) but not installed: %v (apt-get install postgresql)", RequireEnv, err)
		}
		t.Skipf("PostgreSQL not installed (%v); `make test` requires it", err)
	}
	url, stop, err := start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return url
}

// Server is a running PostgreSQL the caller controls: tests that take the
// database away and bring it back (SPEC §13: 503 while it is gone).
type Server struct {
	URL       string
	data, dir string
	port      int
	asUser    func(name string, args ...string) *exec.Cmd
	// Durable keeps fsync on (benchmarks of durable ingest); tests run
	// without it.
	Durable bool
}

// StartServer starts a server the test can stop and start again.
func StartServer(t testing.TB) *Server { return startServer(t, false) }

// StartDurableServer starts a server with fsync on, as in production: for
// benchmarks of durable writes.
func StartDurableServer(t testing.TB) *Server { return startServer(t, true) }

func startServer(t testing.TB, durable bool) *Server {
	t.Helper()
	if _, err := binDir(); err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("PostgreSQL is required (%s=1) but not installed: %v (apt-get install postgresql)", RequireEnv, err)
		}
		t.Skipf("PostgreSQL not installed (%v); `make test` requires it", err)
	}
	srv, err := newServer()
	if err != nil {
		t.Fatal(err)
	}
	srv.Durable = durable
	if err := srv.Start(); err != nil {
		srv.remove()
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop(); srv.remove() })
	return srv
}

func start() (string, func(), error) {
	srv, err := newServer()
	if err != nil {
		return "", nil, err
	}
	if err := srv.Start(); err != nil {
		srv.remove()
		return "", nil, err
	}
	return srv.URL, func() { srv.Stop(); srv.remove() }, nil
}

func newServer() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "orchestrator-pg-")
	if err != nil {
		return nil, err
	}
	srv := &Server{dir: dir, data: filepath.Join(dir, "data")}
	srv.asUser = func(name string, args ...string) *exec.Cmd {
		return exec.Command(filepath.Join(bin, name), args...)
	}
	if os.Geteuid() == 0 {
		pg, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		srv.asUser = func(name string, args ...string) *exec.Cmd {
			return exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(bin, name)}, args...)...)
		}
	}
	if out, err := srv.asUser("initdb", "-D", srv.data, "-A", "trust", "-U", "postgres", "--no-sync").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if srv.port, err = freePort(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	srv.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=10", srv.port)
	return srv, nil
}

// Start starts (or starts again) the server on its port.
func (s *Server) Start() error {
	fsync := "off"
	if s.Durable {
		fsync = "on"
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=%s -c max_connections=300", s.port, s.dir, fsync)
	if out, err := s.asUser("pg_ctl", "-D", s.data, "-o", opts, "-l", filepath.Join(s.dir, "log"), "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	return nil
}

// Stop stops the server at once (connections are cut).
func (s *Server) Stop() {
	_ = s.asUser("pg_ctl", "-D", s.data, "-m", "immediate", "-w", "stop").Run()
}

func (s *Server) remove() { os.RemoveAll(s.dir) }

// binDir finds the newest installed PostgreSQL's bin directory, preferring 15.
func binDir() (string, error) {
	if d := os.Getenv("PG_BIN_DIR"); d != "" {
		return d, nil
	}
	others, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for _, d := range append([]string{"/usr/lib/postgresql/15/bin"}, others...) {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("no /usr/lib/postgresql/*/bin/pg_ctl")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

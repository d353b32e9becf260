package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
)

// With ORCHESTRATOR_TEST_MAIN=1 the test binary is the orchestrator binary,
// so process-level behaviour (exit codes, signals, locks held by another
// process) is tested without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("ORCHESTRATOR_TEST_MAIN") == "1" {
		main()
		return
	}
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

func envOf(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

// lineWaiter is an io.Writer that remembers output and lets a test wait for
// a log line with a given message.
type lineWaiter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines []map[string]any
	cond  *sync.Cond
}

func newLineWaiter() *lineWaiter {
	w := &lineWaiter{}
	w.cond = sync.NewCond(&w.mu)
	return w
}

func (w *lineWaiter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for _, l := range bytes.Split(bytes.TrimSpace(p), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(l, &m) == nil {
			w.lines = append(w.lines, m)
		}
	}
	w.cond.Broadcast()
	return len(p), nil
}

// wait blocks until a line with msg is written, or done is closed.
func (w *lineWaiter) wait(msg string, done <-chan struct{}) (map[string]any, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for _, l := range w.lines {
			if l["msg"] == msg {
				return l, true
			}
		}
		select {
		case <-done:
			return nil, false
		default:
		}
		w.cond.Wait()
	}
}

func (w *lineWaiter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServe_DevModeAnswersHealthReadyMetrics(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	logs := newLineWaiter()
	exited := make(chan struct{})
	var runErr error
	start := time.Now()
	go func() {
		// Wake waiters only after exited is closed, so they see it.
		defer logs.cond.Broadcast()
		defer close(exited)
		runErr = run(ctx, []string{"serve", "--dev", "--addr", "127.0.0.1:0", "--data-dir", dir}, envOf(nil), io.Discard, logs)
	}()
	listening, ok := logs.wait("listening", exited)
	if !ok {
		t.Fatalf("serve exited: %v\n%s", runErr, logs)
	}
	if _, ok := logs.wait("started", exited); !ok {
		t.Fatalf("serve exited: %v\n%s", runErr, logs)
	}
	base := "http://" + listening["addr"].(string)
	if code, body := get(t, base+"/health"); code != 200 || !strings.Contains(body, `"ok"`) {
		t.Fatalf("/health = %d %s", code, body)
	}
	if code, body := get(t, base+"/ready"); code != 200 {
		t.Fatalf("/ready = %d %s", code, body)
	}
	code, body := get(t, base+"/metrics")
	if code != 200 || !strings.Contains(body, "orchestrator_http_requests_total") || !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "process_start_time_seconds") {
		t.Fatalf("/metrics = %d, missing families", code)
	}
	t.Logf("start to ready answers: %v", time.Since(start))
	if _, err := os.Stat(filepath.Join(dir, "orchestrator.db")); err != nil {
		t.Fatalf("database not in the data dir: %v", err)
	}

	cancel()
	<-exited
	if runErr != nil {
		t.Fatalf("serve returned %v after cancel", runErr)
	}
	if _, ok := logs.wait("stopped", exited); !ok {
		t.Fatal("no 'stopped' line after shutdown")
	}
}

func TestServe_WithoutAutoMigrateNeedsMigrateUpFirst(t *testing.T) {
	dir := t.TempDir()
	env := envOf(map[string]string{"ORCHESTRATOR_AUTO_CREATE_TABLES": "0"})
	args := []string{"serve", "--dev", "--addr", "127.0.0.1:0", "--data-dir", dir}
	err := run(context.Background(), args, env, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "orchestrator migrate up") {
		t.Fatalf("serve on an unmigrated database = %v", err)
	}
	if err := run(context.Background(), []string{"migrate", "up", "--data-dir", dir}, env, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs := newLineWaiter()
	exited := make(chan struct{})
	go func() {
		defer logs.cond.Broadcast()
		defer close(exited)
		_ = run(ctx, args, env, io.Discard, logs)
	}()
	if _, ok := logs.wait("started", exited); !ok {
		t.Fatalf("serve after migrate up exited:\n%s", logs)
	}
	l, _ := logs.wait("listening", exited)
	if code, _ := get(t, "http://"+l["addr"].(string)+"/ready"); code != 200 {
		t.Fatalf("/ready after migrate up = %d", code)
	}
	cancel()
	<-exited
}

func TestServe_BadConfigIsOneLineNamingTheVariable(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"serve", "--data-dir", t.TempDir()},
		envOf(map[string]string{"ORCHESTRATOR_DEV": "1", "ORCHESTRATOR_DISPATCH_WORKERS": "many"}), io.Discard, &stderr)
	if err == nil {
		t.Fatal("serve started with a bad value")
	}
	if code := exitCode(err, &stderr); code != 1 {
		t.Fatalf("exit code %d", code)
	}
	out := strings.TrimSpace(stderr.String())
	if strings.Count(out, "\n") != 0 || !strings.Contains(out, "ORCHESTRATOR_DISPATCH_WORKERS") {
		t.Fatalf("stderr = %q, want one line naming the variable", out)
	}
}

func TestServe_ProductionNeedsPeerURLs(t *testing.T) {
	err := run(context.Background(), []string{"serve", "--data-dir", t.TempDir()}, envOf(nil), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "CONFIG_SERVICE_URL") {
		t.Fatalf("err = %v", err)
	}
}

// child starts the test binary as the orchestrator with args.
func child(t testing.TB, env []string, args ...string) (*exec.Cmd, *bufio.Reader, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), append(env, "ORCHESTRATOR_TEST_MAIN=1")...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, bufio.NewReader(stderr), &stdout
}

// waitLine reads JSON log lines until one has msg.
func waitLine(t testing.TB, r *bufio.Reader, msg string) map[string]any {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("no %q line: %v", msg, err)
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			return m
		}
	}
}

func TestServe_SecondInstanceOnSameDataDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	first, firstLog, _ := child(t, nil, "serve", "--dev", "--addr", "127.0.0.1:0", "--data-dir", dir)
	waitLine(t, firstLog, "started")

	start := time.Now()
	second := exec.Command(os.Args[0], "serve", "--dev", "--addr", "127.0.0.1:0", "--data-dir", dir)
	second.Env = append(os.Environ(), "ORCHESTRATOR_TEST_MAIN=1")
	out, err := second.CombinedOutput()
	elapsed := time.Since(start)
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() == 0 {
		t.Fatalf("second instance: err=%v output=%s", err, out)
	}
	lockPath, _ := filepath.Abs(filepath.Join(dir, "orchestrator.lock"))
	msg := string(out)
	if !strings.Contains(msg, lockPath) || !strings.Contains(msg, fmt.Sprintf("pid %d", first.Process.Pid)) {
		t.Fatalf("second instance said %q; want the lock file %s and pid %d", msg, lockPath, first.Process.Pid)
	}
	t.Logf("second instance refused in %v: %s", elapsed, strings.TrimSpace(msg))
}

func TestServe_SIGTERMShutsDownCleanly(t *testing.T) {
	dir := t.TempDir()
	cmd, logs, _ := child(t, []string{"ORCHESTRATOR_SHUTDOWN_TIMEOUT_SECONDS=5"}, "serve", "--dev", "--addr", "127.0.0.1:0", "--data-dir", dir)
	listening := waitLine(t, logs, "listening")
	waitLine(t, logs, "started")
	if code, _ := get(t, "http://"+listening["addr"].(string)+"/ready"); code != 200 {
		t.Fatalf("/ready = %d", code)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLine(t, logs, "stopped")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	// The lock went with the process: the data dir can be served again.
	next, nextLogs, _ := child(t, nil, "serve", "--dev", "--addr", "127.0.0.1:0", "--data-dir", dir)
	waitLine(t, nextLogs, "started")
	_ = next.Process.Signal(syscall.SIGTERM)
	_ = next.Wait()
}

func TestMigrate_UpThenStatus(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"migrate", "status", "--data-dir", dir}, envOf(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`00001_initial.sql\s+pending`).MatchString(out.String()) || !regexp.MustCompile(`00002_events_by_source.sql\s+pending`).MatchString(out.String()) {
		t.Fatalf("status before up:\n%s", out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"migrate", "--data-dir", dir}, envOf(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "applied 00001") || !strings.Contains(out.String(), "applied 00002") {
		t.Fatalf("up:\n%s", out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"migrate", "up", "--data-dir", dir}, envOf(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "up to date") {
		t.Fatalf("second up:\n%s", out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"migrate", "status", "--data-dir", dir}, envOf(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`00001_initial.sql\s+applied`).MatchString(out.String()) {
		t.Fatalf("status after up:\n%s", out.String())
	}
}

func TestCLI_HelpAndUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"serve", "--help"}, {"migrate", "--help"}, {"version", "--help"}, {"serve", "-h"}} {
		var out bytes.Buffer
		err := run(context.Background(), args, envOf(nil), &out, io.Discard)
		if exitCode(err, io.Discard) != 0 || strings.Count(out.String(), "Usage") != 1 {
			t.Errorf("%v: err=%v out=%q, want the usage once", args, err, out.String())
		}
	}
	for _, args := range [][]string{{}, {"frobnicate"}, {"serve", "--nope"}, {"migrate", "sideways"}, {"migrate", "up", "status"}} {
		err := run(context.Background(), args, envOf(nil), io.Discard, io.Discard)
		if code := exitCode(err, io.Discard); code != 2 {
			t.Errorf("%v: exit code %d (err %v), want 2", args, code, err)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, envOf(nil), &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "orchestrator ") {
		t.Errorf("version: %v %q", err, out.String())
	}
}

// A mistake in the sources file stops start-up with one line naming the
// source and the field, and never echoes a secret.
func TestServe_BadSourcesFileIsOneLineNamingTheSourceAndField(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sources.yaml")
	cases := map[string]string{
		"sources: [{name: acme, verify: {kind: hmac, header: X-Sig, algorithm: md5, secret_env: ACME}}]": `source "acme": verify.algorithm`,
		"sources: [{name: acme, verify: {kind: hmac, header: X-Sig, secret: s3cr3t-inline}}]":            `source "acme": secret: secrets are never written in the file`,
		"slack_apps: [{slug: sre-bot, signing_secret_env: MISSING}]":                                     `slack app "sre-bot": signing_secret_env: MISSING is unset or empty`,
		"sources: [{name: acme, verify: {kind: token, secret_env: ACME}, routing: {service: no-slash}}]": `source "acme": routing.service`,
		// Round 4: what verified a delivery cannot be shifted or replaced.
		`sources: [{name: acme, verify: {kind: hmac, header: X-Sig, signed: "{body}{id}", id_header: X-Id, secret_env: ACME}}]`: `source "acme": verify.signed: {body}{id}: placeholders must be separated by literal text`,
		`sources: [{name: acme, verify: {kind: hmac, header: X-Sig, secret_env: ACME}, delivery_id: {header: X-Id}}]`:           `source "acme": delivery_id.header: X-Id is not signed`,
		`sources: [{name: acme, verify: {kind: hmac, header: X-Sig, timestamp_header: X-Ts, secret_env: ACME}}]`:                `source "acme": verify.timestamp_header: requires {timestamp} in verify.signed`,
		"sources:\n" + strings.Repeat("  - {name: acme, verify: {kind: token, secret_env: ACME}}\n", 257):                       `sources: 257 sources listed, at most 256`,
		"sources: []\n#" + strings.Repeat("x", 1<<20):                                                                           `ORCHESTRATOR_SOURCES_FILE: larger than 1048576 bytes (1 MiB)`,
	}
	for content, want := range cases {
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		err := run(context.Background(), []string{"serve", "--data-dir", dir},
			envOf(map[string]string{"ORCHESTRATOR_DEV": "1", "ORCHESTRATOR_SOURCES_FILE": file, "ACME": "acme-secret"}), io.Discard, &stderr)
		if err == nil {
			t.Fatalf("serve started with %s", content)
		}
		code := exitCode(err, &stderr)
		out := strings.TrimSpace(stderr.String())
		if code != 1 || strings.Count(out, "\n") != 0 || !strings.Contains(out, want) ||
			strings.Contains(out, "s3cr3t-inline") || strings.Contains(out, "acme-secret") {
			t.Errorf("%s\n  stderr %q (exit %d)\n  want one line with %s", content, out, code, want)
		}
	}
}

// A misspelt ORCHESTRATOR_* variable is not silently ignored: start-up
// warns naming it and the variable it most likely meant, and goes on.
func TestServe_MisspeltVariableIsNamedAtStart(t *testing.T) {
	dir := t.TempDir()
	proc, logs, _ := child(t, []string{"ORCHESTRATOR_DATADIR=/tmp/elsewhere", "ORCHESTRATOR_TEAM_AGENT_CALL_PER_DAY=3", "KUBECONFIG=/nonexistent"},
		"serve", "--dev", "--addr", "127.0.0.1:0", "--data-dir", dir)
	defer func() { _ = proc.Process.Signal(syscall.SIGTERM); _ = proc.Wait() }()
	want := map[string]string{"ORCHESTRATOR_DATADIR": "ORCHESTRATOR_DATA_DIR",
		"ORCHESTRATOR_TEAM_AGENT_CALL_PER_DAY": "ORCHESTRATOR_TEAM_AGENT_CALLS_PER_DAY"}
	for {
		line, err := logs.ReadString('\n')
		if err != nil {
			t.Fatalf("no warning for %v: %v", want, err)
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		if m["msg"] == "started" {
			t.Fatalf("started without warning about %v", want)
		}
		if name, _ := m["variable"].(string); want[name] != "" {
			if m["level"] != "WARN" || m["closest"] != want[name] || !strings.Contains(m["msg"].(string), "did you mean "+want[name]) {
				t.Errorf("warning: %s", line)
			}
			delete(want, name)
			if len(want) == 0 {
				return
			}
		}
	}
}

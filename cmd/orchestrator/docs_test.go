package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
)

// walkthroughBlock is a code block of the README or the guide marked to be
// run as written.
var walkthroughBlock = regexp.MustCompile("(?s)```sh walkthrough\n(.*?)```")

// runRecipe is the Makefile's `run` target's command.
var runRecipe = regexp.MustCompile(`(?m)^run: build\n\t(.+)$`)

// makeRun starts the Makefile's `run` recipe as make would (its `$$` and
// `$(BIN)` expanded), in bash, from root, whose ./bin/orchestrator is this
// build: what `make run` does after building. env is added to the test's
// environment, as a user's exported variables would be.
func makeRun(t *testing.T, root string, env ...string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	makefile, err := os.ReadFile(filepath.Join("..", "..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := runRecipe.FindStringSubmatch(string(makefile))
	if m == nil {
		t.Fatal("the Makefile has no `run: build` target with a one-line recipe")
	}
	recipe := strings.NewReplacer("$$", "$", "$(BIN)", "bin/orchestrator").Replace(m[1])
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper := "#!/bin/sh\nORCHESTRATOR_TEST_MAIN=1 exec " + os.Args[0] + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(root, "bin", "orchestrator"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	// One simple command: bash runs it in its own place (no fork), so the
	// signal below reaches the server.
	cmd := exec.Command("bash", "-c", recipe)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(os.Interrupt)
			_ = cmd.Wait()
		}
	})
	return cmd, bufio.NewReader(stderr)
}

// The README's walkthrough, run as written: a newcomer gets from `make run`
// to a delivered Slack mention and a provisioned team by following it top
// to bottom. The first step, `make run` with the dev admin token exported,
// is the Makefile's run recipe, started here the same way; every block
// marked `sh walkthrough` in the README and then in the guide (the silence
// and bulk redrive examples of docs/webhooks.md) runs in bash, from a
// folder whose ./bin/orchestrator is this build, with only the port changed.
func TestDocs_TheREADMEWalkthroughRunsAsWritten(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed (.ci/run installs it)")
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "export ORCHESTRATOR_DEV_ADMIN_TOKEN=dev-admin-token\nmake run") {
		t.Fatal("the README's first step changed: change this test with it")
	}
	blocks := walkthroughBlock.FindAllStringSubmatch(string(readme), -1)
	if len(blocks) < 5 {
		t.Fatalf("%d walkthrough blocks in the README", len(blocks))
	}
	pages, _ := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	guide := 0
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		found := walkthroughBlock.FindAllStringSubmatch(string(b), -1)
		guide += len(found)
		blocks = append(blocks, found...)
	}
	if guide < 2 {
		t.Fatalf("%d walkthrough blocks in docs/", guide)
	}

	// `make run`: the binary in dev mode on ./data of a fresh checkout,
	// with the FireHydrant source of docs/sources.md configured (its
	// hand-signed delivery is one of the guide's blocks).
	root := t.TempDir()
	sources, _ := os.ReadFile(filepath.Join("..", "..", "docs", "sources.md"))
	m := regexp.MustCompile("(?s)```yaml\n(sources:\n  - name: firehydrant\n.*?)```").FindSubmatch(sources)
	if m == nil {
		t.Fatal("docs/sources.md has no FireHydrant example")
	}
	sourcesFile := filepath.Join(t.TempDir(), "sources.yaml")
	if err := os.WriteFile(sourcesFile, m[1], 0o600); err != nil {
		t.Fatal(err)
	}
	const fhSecret = "FIREHYDRANT_WEBHOOK_SECRET=walkthrough-firehydrant-secret"
	_, logs := makeRun(t, root, "ORCHESTRATOR_DEV_ADMIN_TOKEN=dev-admin-token", "KUBECONFIG=/nonexistent",
		"ORCHESTRATOR_LISTEN_ADDR=127.0.0.1:0", "ORCHESTRATOR_SOURCES_FILE="+sourcesFile, fhSecret)
	listening := waitLine(t, logs, "listening")
	addr := listening["addr"].(string)
	go func() { _, _ = io.Copy(io.Discard, logs) }()
	if listening["data_dir"] != "./data" || listening["dev"] != true {
		t.Fatalf("make run started with data_dir %v, dev %v", listening["data_dir"], listening["dev"])
	}
	_, port, _ := net.SplitHostPort(addr)
	waitReady(t, "http://"+addr)

	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for _, b := range blocks {
		script.WriteString(strings.ReplaceAll(b[1], "localhost:8070", "localhost:"+port))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := script.String()
	if off := wallclock.Offset(); off != 0 {
		// The suite run at another date (docs/benchmarks.md): the server's
		// clock is moved, date(1) in the walkthrough's shell is not, so its
		// silence would end in the server's past. Move the one date the
		// guide computes by the same offset (GNU date adds relative items).
		const rel = "date -u -d '+2 hours'"
		if !strings.Contains(run, rel) {
			t.Fatalf("the guide no longer computes %q: change this test with it", rel)
		}
		run = strings.ReplaceAll(run, rel, fmt.Sprintf("date -u -d '+2 hours %d seconds'", int64(off/time.Second)))
	}
	cmd := exec.CommandContext(ctx, "bash", "-c", run)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "ORCHESTRATOR_LISTEN_ADDR=127.0.0.1:"+port, fhSecret)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the walkthrough failed: %v\n%s", err, out)
	}
	for _, want := range []string{`"status":"ready"`, "slack /webhooks/slack/events → 200", `"team_node_id":"payments"`,
		`"status":"succeeded"`, `"agent_result"`, `"deliveries":[{`, `"type":"slack"`, `"status":"posted"`, `/archives/C0A4967KRBM/p`,
		// docs/webhooks.md: the silence is made (201) and listed active, the
		// bulk redrive counts.
		`"comment":"checkout DB failover"`, `"state":"active"`, `"dry_run":true`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the walkthrough's output lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), `"error":`) {
		t.Errorf("a walkthrough step answered an error:\n%s", out)
	}
	// docs/sources.md: the hand-signed FireHydrant delivery was taken.
	if code, body := apiCall(t, "GET", "http://"+addr+"/api/v1/admin/events?source=firehydrant", "dev-admin-token", nil); code != 200 ||
		len(body["events"].([]any)) != 1 {
		t.Errorf("the hand-signed FireHydrant delivery: %d %v", code, body)
	}
	// The mention was delivered to the seeded team.
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := apiCall(t, "GET", base+"/api/v1/admin/events?source=slack&limit=1", "dev-admin-token", nil)
		events, _ := body["events"].([]any)
		if code == 200 && len(events) == 1 && events[0].(map[string]any)["status"] == "delivered" {
			if team := events[0].(map[string]any)["team_node_id"]; team != "platform-sre" {
				t.Fatalf("the mention went to %v", team)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mention was not delivered: %d %v", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// `make run` honours the variables a user exports: ORCHESTRATOR_DATA_DIR
// moves the data, and ORCHESTRATOR_DEV=0 is production (which then wants
// its peer URLs) instead of being overridden by a hard-coded flag.
func TestDocs_MakeRunHonoursDataDirAndDev(t *testing.T) {
	root := t.TempDir()
	elsewhere := filepath.Join(t.TempDir(), "elsewhere")
	_, logs := makeRun(t, root, "ORCHESTRATOR_DATA_DIR="+elsewhere, "KUBECONFIG=/nonexistent",
		"ORCHESTRATOR_LISTEN_ADDR=127.0.0.1:0")
	listening := waitLine(t, logs, "listening")
	if listening["data_dir"] != elsewhere || listening["dev"] != true {
		t.Fatalf("make run with ORCHESTRATOR_DATA_DIR started with data_dir %v, dev %v", listening["data_dir"], listening["dev"])
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "orchestrator.db")); err != nil {
		t.Errorf("no database in ORCHESTRATOR_DATA_DIR: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "data")); !os.IsNotExist(err) {
		t.Errorf("./data was made beside it: %v", err)
	}

	prod, logs := makeRun(t, t.TempDir(), "ORCHESTRATOR_DEV=0", "CONFIG_SERVICE_URL=", "AI_PIPELINE_API_URL=", "AGENT_API_URL=")
	rest, _ := io.ReadAll(logs)
	if err := prod.Wait(); err == nil || !strings.Contains(string(rest), "CONFIG_SERVICE_URL: is required") {
		t.Fatalf("make run with ORCHESTRATOR_DEV=0 did not start in production mode: %v\n%s", err, rest)
	}
}

// markdownLink is a relative link in the docs: [text](target).
var markdownLink = regexp.MustCompile(`\]\(([^)#:]+)(#[^)]*)?\)`)

// The front door and the guide hold together: every relative link (pages,
// pictures) names a file that is there, and every picture is the format its
// name says (a newcomer found a JPEG named .png).
func TestDocs_LinksResolveAndPicturesAreWhatTheySay(t *testing.T) {
	root := filepath.Join("..", "..")
	pages, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	pages = append(pages, filepath.Join(root, "README.md"))
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range markdownLink.FindAllStringSubmatch(string(b), -1) {
			if _, err := os.Stat(filepath.Join(filepath.Dir(page), m[1])); err != nil {
				t.Errorf("%s links to %s, which is not there", filepath.Base(page), m[1])
			}
		}
	}
	pictures, _ := filepath.Glob(filepath.Join(root, "docs", "*.png"))
	if len(pictures) < 3 {
		t.Fatalf("%d pictures in docs/", len(pictures))
	}
	for _, p := range pictures {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), "\x89PNG\r\n\x1a\n") {
			t.Errorf("%s is not a PNG", filepath.Base(p))
		}
	}
}

// The guide stands alone: a user's clone holds no product specification,
// so nothing a user reads — the README, docs/, the chart (values, NOTES,
// templates, dashboard), hack/ and the served OpenAPI document — may send
// them to one ("../shared/SPEC.md", "SPEC §6").
func TestDocs_NothingAUserReadsPointsOutsideTheRepository(t *testing.T) {
	root := filepath.Join("..", "..")
	var files []string
	for _, pattern := range []string{"README.md", "docs/*.md", "hack/*", "server/openapi.yaml"} {
		m, _ := filepath.Glob(filepath.Join(root, pattern))
		files = append(files, m...)
	}
	_ = filepath.WalkDir(filepath.Join(root, "charts"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(path, ".go") {
			files = append(files, path)
		}
		return nil
	})
	if len(files) < 20 {
		t.Fatalf("only %d files found to check", len(files))
	}
	outside := regexp.MustCompile(`\.\./shared|SPEC\.md|SPEC §`)
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.IsDir() {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if m := outside.FindString(line); m != "" {
				rel, _ := filepath.Rel(root, f)
				t.Errorf("%s:%d refers to %q, which a user's clone does not have", rel, i+1, m)
			}
		}
	}
}

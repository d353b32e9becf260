package main

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// walkthroughBlock is a README code block marked to be run as written.
var walkthroughBlock = regexp.MustCompile("(?s)```sh walkthrough\n(.*?)```")

// The README's walkthrough, run as written (SPEC §11: a newcomer gets from
// `make run` to a delivered Slack mention and a provisioned team by
// following it top to bottom). The first step, `make run` with the dev
// admin token exported, is the Makefile's run target, started here the same
// way; every block marked `sh walkthrough` then runs in bash, from a folder
// whose ./bin/orchestrator is this build, with only the port changed.
func TestDocs_TheREADMEWalkthroughRunsAsWritten(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed (.ci/run installs it)")
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	makefile, _ := os.ReadFile(filepath.Join("..", "..", "Makefile"))
	if !strings.Contains(string(makefile), "./$(BIN) serve --dev --data-dir ./data") ||
		!strings.Contains(string(readme), "export ORCHESTRATOR_DEV_ADMIN_TOKEN=dev-admin-token\nmake run") {
		t.Fatal("the README's first step or the Makefile's run target changed: change this test with them")
	}
	blocks := walkthroughBlock.FindAllStringSubmatch(string(readme), -1)
	if len(blocks) < 5 {
		t.Fatalf("%d walkthrough blocks in the README", len(blocks))
	}

	// `make run`: the binary in dev mode on ./data of a fresh checkout.
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper := "#!/bin/sh\nORCHESTRATOR_TEST_MAIN=1 exec " + os.Args[0] + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(root, "bin", "orchestrator"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	proc, logs, _ := child(t, []string{"ORCHESTRATOR_DEV_ADMIN_TOKEN=dev-admin-token", "KUBECONFIG=/nonexistent"},
		"serve", "--dev", "--addr", "127.0.0.1:0", "--data-dir", filepath.Join(root, "data"))
	addr := waitLine(t, logs, "listening")["addr"].(string)
	go func() { _, _ = io.Copy(io.Discard, logs) }()
	defer func() { _ = proc.Process.Signal(os.Interrupt); _ = proc.Wait() }()
	_, port, _ := net.SplitHostPort(addr)
	waitReady(t, "http://"+addr)

	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for _, b := range blocks {
		script.WriteString(strings.ReplaceAll(b[1], "localhost:8070", "localhost:"+port))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "ORCHESTRATOR_LISTEN_ADDR=127.0.0.1:"+port)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the walkthrough failed: %v\n%s", err, out)
	}
	for _, want := range []string{`"status":"ready"`, "slack /webhooks/slack/events → 200", `"team_node_id":"payments"`,
		`"status":"succeeded"`, `"agent_result"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the walkthrough's output lacks %s:\n%s", want, out)
		}
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

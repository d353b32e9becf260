package main

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

// SPEC §17: a database with every table filled — release 0.1.0's fixture,
// then a day's use (events of every source delivered with their agent
// calls, a provisioned team with its schedule, a page login, ack figures) —
// is copied into a real, empty PostgreSQL, verified table by table, and the
// server then serves the same events, runs and schedules from it. A second
// copy into the now non-empty target is refused. The day's use is the day
// the fixture was written, so retention leaves the fixture's events.
func TestMigrateToPostgres_EveryTableCopiedVerifiedAndServed(t *testing.T) {
	onFixtureDay(t)
	dir := fixtureDir(t)
	env := []string{"ORCHESTRATOR_DEV_ADMIN_TOKEN=" + fixtureAdmin, "KUBECONFIG=/nonexistent"}
	proc, logs, _ := child(t, env, "serve", "--dev", "--addr", "127.0.0.1:0", "--data-dir", dir)
	base := "http://" + waitLine(t, logs, "listening")["addr"].(string)
	waitLine(t, logs, "started")
	go drain(logs)
	for _, src := range webhook.Builtin {
		if code := sendSignedSample(t, base, src, devSecret(src)); code != 200 {
			t.Fatalf("%s sample = %d", src, code)
		}
	}
	if code, body := apiCall(t, "POST", base+"/api/v1/admin/provision/team", fixtureAdmin, map[string]any{"org_id": "acme", "team_node_id": "moving",
		"routing": map[string]any{"slack_channel_ids": []string{"C0MOVING"}}, "create_pipeline_schedule": true}); code != 200 {
		t.Fatalf("provision = %d %v", code, body)
	}
	form := strings.NewReader(url.Values{"token": {fixtureAdmin}}.Encode())
	req, _ := http.NewRequest("POST", base+"/ui/login", form)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	if resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req); err != nil || resp.StatusCode != 303 {
		t.Fatalf("login: %v", err)
	}
	waitDelivered(t, base, 5+len(webhook.Builtin))
	before, bodies := snapshotAPI(t, base), eventBodies(t, base)
	_ = proc.Process.Signal(syscall.SIGTERM) // flushes the ack figures
	_ = proc.Wait()

	target := pgtest.Database(t)
	var out, progress bytes.Buffer
	// A copy that fails part-way (here: cancelled once its first table is
	// in) leaves the target empty again, so the same command simply runs
	// again.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cut := &cancelOn{w: &progress, on: "rows copied and verified", cancel: cancel}
	err := run(ctx, []string{"migrate-to-postgres", "--to-env", "PG_TARGET", "--data-dir", dir}, envOf(map[string]string{"PG_TARGET": target}), &out, cut)
	if err == nil || !strings.Contains(err.Error(), "the target was emptied again: run this again") || !cut.done {
		t.Fatalf("an interrupted copy = %v\n%s", err, progress.String())
	}
	t.Logf("interrupted: %v", err)
	progress.Reset()
	// The target comes from the environment (a Secret), never argv.
	if err := run(context.Background(), []string{"migrate-to-postgres", "--to-env", "PG_TARGET", "--data-dir", dir},
		envOf(map[string]string{"PG_TARGET": target}), &out, &progress); err != nil {
		t.Fatalf("migrate-to-postgres: %v\n%s", err, progress.String())
	}
	for _, table := range []string{"orchestrator_webhook_events", "orchestrator_event_payloads", "orchestrator_agent_runs", "orchestrator_provisioning_runs",
		"orchestrator_pipeline_schedules", "orchestrator_ui_sessions", "orchestrator_ack_stats"} {
		if !strings.Contains(progress.String(), table+": ") || strings.Contains(progress.String(), table+": 0 rows copied") {
			t.Errorf("%s was not copied with rows:\n%s", table, progress.String())
		}
	}
	t.Logf("progress:\n%s\n%s", progress.String(), out.String())
	if !strings.Contains(out.String(), "every table verified") {
		t.Fatalf("summary: %s", out.String())
	}
	// Again into the same (now full) target: refused, nothing changed.
	err = run(context.Background(), []string{"migrate-to-postgres", "--data-dir", dir},
		envOf(map[string]string{"ORCHESTRATOR_MIGRATE_TO": target}), &out, &progress)
	if err == nil || !strings.Contains(err.Error(), "already holds data") {
		t.Fatalf("a second copy = %v", err)
	}

	// The server on PostgreSQL serves the same events, runs and schedules.
	proc, logs, _ = child(t, append(env, "DATABASE_URL="+target), "serve", "--dev", "--addr", "127.0.0.1:0", "--data-dir", dir)
	base = "http://" + waitLine(t, logs, "listening")["addr"].(string)
	waitLine(t, logs, "started")
	go drain(logs)
	if after := snapshotAPI(t, base); after != before {
		t.Fatalf("served from PostgreSQL:\n%s\nbefore, from SQLite:\n%s", after, before)
	}
	// Each event's headers and body (their own table) came along.
	if after := eventBodies(t, base); !maps.Equal(after, bodies) {
		t.Fatalf("bodies served from PostgreSQL:\n%v\nbefore, from SQLite:\n%v", after, bodies)
	}
	_ = proc.Process.Signal(syscall.SIGTERM)
	_ = proc.Wait()
}

// cancelOn writes to w and calls cancel once a write holds on.
type cancelOn struct {
	w      *bytes.Buffer
	on     string
	cancel context.CancelFunc
	done   bool
}

func (c *cancelOn) Write(p []byte) (int, error) {
	if !c.done && strings.Contains(string(p), c.on) {
		c.done = true
		c.cancel()
	}
	return c.w.Write(p)
}

// waitDelivered waits until at least n events are delivered.
func waitDelivered(t *testing.T, base string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body := apiCall(t, "GET", base+"/api/v1/admin/events?status=delivered&limit=200", fixtureAdmin, nil)
		if list, _ := body["events"].([]any); len(list) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d events delivered: %v", n, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventBodies is each event's headers and body as the API serves them
// (of the events that still have them: at least the day's samples).
func eventBodies(t *testing.T, base string) map[string]string {
	t.Helper()
	_, list := apiCall(t, "GET", base+"/api/v1/admin/events?limit=200", fixtureAdmin, nil)
	out := map[string]string{}
	items, _ := list["events"].([]any)
	for _, it := range items {
		id := it.(map[string]any)["id"].(string)
		code, ev := apiCall(t, "GET", base+"/api/v1/admin/events/"+id, fixtureAdmin, nil)
		if code != 200 {
			t.Fatalf("GET event %s = %d %v", id, code, ev)
		}
		if ev["body"] != nil {
			out[id] = fmt.Sprint(ev["headers"], " ", ev["body"])
		}
	}
	if len(out) < len(webhook.Builtin) {
		t.Fatalf("%d events with a body, want at least the %d samples", len(out), len(webhook.Builtin))
	}
	return out
}

// snapshotAPI is what the API serves of events, runs and schedules, as
// sorted lines: the same text before and after the move.
func snapshotAPI(t *testing.T, base string) string {
	t.Helper()
	var lines []string
	read := func(path, list string, fields ...string) {
		code, body := apiCall(t, "GET", base+path, fixtureAdmin, nil)
		items, _ := body[list].([]any)
		if code != 200 || len(items) == 0 {
			t.Fatalf("GET %s = %d %v", path, code, body)
		}
		for _, it := range items {
			m := it.(map[string]any)
			line := list
			for _, f := range fields {
				line += fmt.Sprintf(" %s=%v", f, m[f])
			}
			lines = append(lines, line)
		}
	}
	read("/api/v1/admin/events?limit=200", "events", "id", "source", "delivery_id", "status", "team_node_id", "received_at")
	read("/api/v1/admin/provision/runs?limit=200", "runs", "id", "kind", "status", "team_node_id", "created_at")
	read("/api/v1/admin/schedules", "schedules", "id", "team_node_id", "cron_expression", "enabled")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// The target URL may come from --to-env VAR or ORCHESTRATOR_MIGRATE_TO (so
// the password stays out of argv); a missing or wrong one is a usage error
// naming where it was read, never echoing its value.
func TestMigrateToPostgres_TargetFromTheEnvironment(t *testing.T) {
	for name, c := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"unset --to-env": {[]string{"--to-env", "PG_TARGET"}, nil, "--to-env PG_TARGET: the variable is empty or unset"},
		"not a URL":      {[]string{"--to-env", "PG_TARGET"}, map[string]string{"PG_TARGET": "mysql://u:hunter2@db/x"}, "PG_TARGET must hold a postgres://"},
		"both":           {[]string{"--to", "postgres://db/x", "--to-env", "PG_TARGET"}, nil, "not both"},
		"env not a URL":  {nil, map[string]string{"ORCHESTRATOR_MIGRATE_TO": "hunter2"}, "ORCHESTRATOR_MIGRATE_TO must hold a postgres://"},
		"nothing":        {nil, nil, "or ORCHESTRATOR_MIGRATE_TO) is required"},
	} {
		t.Run(name, func(t *testing.T) {
			var out, progress bytes.Buffer
			err := run(context.Background(), append([]string{"migrate-to-postgres", "--data-dir", t.TempDir()}, c.args...), envOf(c.env), &out, &progress)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

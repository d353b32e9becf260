package migrations_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"testing"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
	"github.com/incidentfox/orchestrator-edge/migrations"
	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" driver
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // "sqlite" driver
)

var wantTables = []string{
	"orchestrator_ack_stats",
	"orchestrator_admin_audit",
	"orchestrator_agent_run_feedback",
	"orchestrator_agent_runs",
	"orchestrator_answer_deliveries",
	"orchestrator_pipeline_schedules",
	"orchestrator_provisioning_runs",
	"orchestrator_run_prompts",
	"orchestrator_silences",
	"orchestrator_team_budgets",
	"orchestrator_ui_sessions",
	"orchestrator_webhook_events",
}

var wantIndexes = []string{
	"ix_ack_stats_at", "ix_admin_audit_at", "ix_agent_runs_answer", "ix_agent_runs_correlation", "ix_agent_runs_event", "ix_agent_runs_started", "ix_agent_runs_team",
	"ix_answer_deliveries_created", "ix_answer_deliveries_finished", "ix_answer_deliveries_queue",
	"ix_feedback_created",
	"ix_provisioning_runs_created", "ix_provisioning_runs_status", "ix_provisioning_runs_team", "ix_run_prompts_created", "ix_run_prompts_open", "ix_run_prompts_run", "ix_silences_ends",
	"ix_ui_sessions_seen",
	"ix_webhook_events_alert", "ix_webhook_events_held", "ix_webhook_events_labeled", "ix_webhook_events_matched_by", "ix_webhook_events_queue", "ix_webhook_events_received", "ix_webhook_events_source_received", "ix_webhook_events_status_received",
	"ix_webhook_events_suppressed", "ix_webhook_events_team", "ix_webhook_events_team_queue",
	"ux_agent_runs_feedback_ref", "ux_answer_deliveries_run", "ux_feedback_run_user",
	"ux_pipeline_schedules_cronjob", "ux_pipeline_schedules_team_type",
	"ux_provisioning_runs_idempotency", "ux_webhook_events_delivery", "ux_webhook_events_replay",
}

// dialect is what differs between the two databases in these tests.
type dialect struct {
	goose   goose.Dialect
	tables  string // lists our tables
	indexes string // lists our indexes
	param   func(n int) string
}

var sqlite = dialect{
	goose:   goose.DialectSQLite3,
	tables:  `SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'orchestrator_%' ORDER BY name`,
	indexes: `SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name LIKE 'orchestrator_%' AND name NOT LIKE 'sqlite_%' ORDER BY name`,
	param:   func(int) string { return "?" },
}

var postgres = dialect{
	goose:   goose.DialectPostgres,
	tables:  `SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'orchestrator_%' ORDER BY tablename`,
	indexes: `SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename LIKE 'orchestrator_%' AND indexname NOT LIKE '%_pkey' ORDER BY indexname`,
	param:   func(n int) string { return "$" + string(rune('0'+n)) },
}

func TestMigrations_SQLiteUpDownUp(t *testing.T) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "m.db")+"?_pragma=foreign_keys(ON)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	upDownUp(t, db, sqlite)
}

func TestMigrations_PostgreSQL15UpDownUp(t *testing.T) {
	db, err := sql.Open("pgx", pgtest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var version string
	if err := db.QueryRow("SHOW server_version").Scan(&version); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL %s", version)
	upDownUp(t, db, postgres)
}

// upDownUp applies every migration, checks the schema and that the values the
// application writes are accepted, rolls everything back, and applies again.
func upDownUp(t *testing.T, db *sql.DB, d dialect) {
	ctx := context.Background()
	p, err := goose.NewProvider(d.goose, db, migrations.FS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up: %v", err)
	}
	if got := list(t, db, d.tables); !slices.Equal(got, wantTables) {
		t.Fatalf("tables after up = %v, want %v", got, wantTables)
	}
	if got := list(t, db, d.indexes); !slices.Equal(got, wantIndexes) {
		t.Fatalf("indexes after up = %v, want %v", got, wantIndexes)
	}
	checkValues(t, db, d)

	if _, err := p.DownTo(ctx, 0); err != nil {
		t.Fatalf("down: %v", err)
	}
	if got := list(t, db, d.tables); len(got) != 0 {
		t.Fatalf("tables after down = %v, want none", got)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if got := list(t, db, d.tables); !slices.Equal(got, wantTables) {
		t.Fatalf("tables after second up = %v, want %v", got, wantTables)
	}
}

// checkValues writes rows the way the application does (UUID text, JSON
// text, fixed-width UTC timestamps, booleans, raw bytes) and checks the
// constraints both databases must enforce.
func checkValues(t *testing.T, db *sql.DB, d dialect) {
	t.Helper()
	q := func(query string, n int) string {
		out := query
		for i := n; i >= 1; i-- {
			out = replaceLast(out, "?", d.param(i))
		}
		return out
	}
	const ts = "2026-11-24T01:02:03.456789Z"
	insertRun := q(`INSERT INTO orchestrator_provisioning_runs
		(id, kind, org_id, team_node_id, idempotency_key, status, steps, created_at, updated_at)
		VALUES (?, 'provision', 'acme', 'sre', ?, 'running', '[{"name":"team_node"}]', ?, ?)`, 4)
	mustExec(t, db, insertRun, "0b8a4f0e-5d0c-4b8e-9a51-3c1d2e3f4a5b", nil, ts, ts)
	mustExec(t, db, insertRun, "1b8a4f0e-5d0c-4b8e-9a51-3c1d2e3f4a5b", nil, ts, ts) // NULL keys never collide
	mustExec(t, db, insertRun, "2b8a4f0e-5d0c-4b8e-9a51-3c1d2e3f4a5b", "key-1", ts, ts)
	if _, err := db.Exec(insertRun, "3b8a4f0e-5d0c-4b8e-9a51-3c1d2e3f4a5b", "key-1", ts, ts); err == nil {
		t.Fatal("a second run with the same (org, team, idempotency key) was accepted")
	}

	mustExec(t, db, q(`INSERT INTO orchestrator_pipeline_schedules
		(id, org_id, team_node_id, schedule_type, cron_expression, k8s_cronjob_name, enabled, created_at, updated_at)
		VALUES (?, 'acme', 'sre', 'ingestion', '0 2 * * *', 'ai-pipeline-acme-sre', ?, ?, ?)`, 4),
		"4b8a4f0e-5d0c-4b8e-9a51-3c1d2e3f4a5b", true, ts, ts)

	insertEvent := q(`INSERT INTO orchestrator_webhook_events
		(id, source, delivery_id, event_type, status, headers, body, received_at, updated_at)
		VALUES (?, 'slack', ?, 'app_mention', 'queued', '{"content-type":"application/json"}', ?, ?, ?)`, 5)
	body := []byte{'{', 0xff, 0x00, '}'} // raw bytes survive as they came
	mustExec(t, db, insertEvent, "5b8a4f0e-5d0c-4b8e-9a51-3c1d2e3f4a5b", "Ev1", body, ts, ts)
	if _, err := db.Exec(insertEvent, "6b8a4f0e-5d0c-4b8e-9a51-3c1d2e3f4a5b", "Ev1", body, ts, ts); err == nil {
		t.Fatal("a second event with the same (source, delivery_id) was accepted")
	}
	var got []byte
	if err := db.QueryRow(q(`SELECT body FROM orchestrator_webhook_events WHERE delivery_id = ?`, 1), "Ev1").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(body) {
		t.Fatalf("body round trip = %x, want %x", got, body)
	}

	mustExec(t, db, q(`INSERT INTO orchestrator_agent_runs
		(id, trigger_source, webhook_event_id, org_id, team_node_id, agent_name, status, duration_ms, started_at)
		VALUES (?, 'slack', ?, 'acme', 'sre', 'planner', 'succeeded', ?, ?)`, 4),
		"7b8a4f0e-5d0c-4b8e-9a51-3c1d2e3f4a5b", "5b8a4f0e-5d0c-4b8e-9a51-3c1d2e3f4a5b", int64(1234), ts)
	// A streamed run's summary (migration 21): text, read back whole.
	summary := "Tools: kubectl_logs ×2 · 1 approval: approved by U0ANA · 42 s"
	mustExec(t, db, q(`UPDATE orchestrator_agent_runs SET summary = ? WHERE id = ?`, 2), summary, "7b8a4f0e-5d0c-4b8e-9a51-3c1d2e3f4a5b")
	var gotSummary string
	if err := db.QueryRow(q(`SELECT summary FROM orchestrator_agent_runs WHERE id = ?`, 1), "7b8a4f0e-5d0c-4b8e-9a51-3c1d2e3f4a5b").Scan(&gotSummary); err != nil || gotSummary != summary {
		t.Fatalf("summary round trip = %q %v", gotSummary, err)
	}
	if _, err := db.Exec(q(`INSERT INTO orchestrator_agent_runs
		(id, trigger_source, webhook_event_id, org_id, team_node_id, agent_name, status, started_at)
		VALUES (?, 'slack', ?, 'acme', 'sre', 'planner', 'succeeded', ?)`, 3),
		"8b8a4f0e-5d0c-4b8e-9a51-3c1d2e3f4a5b", "9b8a4f0e-5d0c-4b8e-9a51-3c1d2e3f4a5b", ts); err == nil {
		t.Fatal("an agent run pointing at a missing webhook event was accepted")
	}
}

func mustExec(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func list(t *testing.T, db *sql.DB, query string) []string {
	t.Helper()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func replaceLast(s, old, repl string) string {
	for i := len(s) - len(old); i >= 0; i-- {
		if s[i:i+len(old)] == old {
			return s[:i] + repl + s[i+len(old):]
		}
	}
	return s
}

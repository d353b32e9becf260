package monitoring

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
)

// scenario is an hour of series, one sample a minute, in promqltest's load
// notation (0+5x60 counts up by 5 each minute). Every series carries the
// release's job and namespace, which the rendered rules select on.
type scenario []string

// alertScenarios: for each alert of the chart, an hour in which it must fire
// (and stay active for its whole `for`) and hours in which it must not.
var alertScenarios = map[string]struct{ fires, quiet []scenario }{
	"OrchestratorWebhooksAnswering503": {
		fires: []scenario{{`orchestrator_http_requests_total{route="/webhooks/slack/events",method="POST",code="503"} 0+5x60`}},
		quiet: []scenario{{
			`orchestrator_http_requests_total{route="/webhooks/slack/events",method="POST",code="503"} 0x60`,
			`orchestrator_http_requests_total{route="/webhooks/slack/events",method="POST",code="200"} 0+50x60`,
			`orchestrator_http_requests_total{route="/api/v1/admin/events",method="GET",code="503"} 0+5x60`,
		}},
	},
	"OrchestratorEventsDead": {
		fires: []scenario{{`orchestrator_dispatch_total{source="pagerduty",outcome="dead"} 0x50 1x10`}},
		quiet: []scenario{
			{`orchestrator_dispatch_total{source="pagerduty",outcome="dead"} 0x60`, `orchestrator_dispatch_total{source="pagerduty",outcome="delivered"} 0+10x60`},
			{`orchestrator_dispatch_total{source="pagerduty",outcome="dead"} 0x20 1x40`}, // an hour ago
		},
	},
	"OrchestratorAnswersDead": {
		fires: []scenario{{`orchestrator_answer_deliveries_total{type="slack",outcome="dead"} 0x50 1x10`}},
		quiet: []scenario{
			{`orchestrator_answer_deliveries_total{type="slack",outcome="dead"} 0x60`, `orchestrator_answer_deliveries_total{type="slack",outcome="posted"} 0+10x60`},
			{`orchestrator_answer_deliveries_total{type="slack",outcome="failed"} 0+1x60`},  // failed for good is on the page, not paged
			{`orchestrator_answer_deliveries_total{type="slack",outcome="dead"} 0x20 1x40`}, // an hour ago
		},
	},
	"OrchestratorTeamAgentBudgetSpent": {
		fires: []scenario{{`orchestrator_team_budget_exhausted_total 0x50 3x10`}},
		quiet: []scenario{{`orchestrator_team_budget_exhausted_total 0x60`}, {`orchestrator_team_budget_exhausted_total 0x10 4x50`}},
	},
	"OrchestratorEventsUnrouted": {
		fires: []scenario{{`orchestrator_dispatch_total{source="github",outcome="unrouted"} 0x50 2x10`}},
		quiet: []scenario{{`orchestrator_dispatch_total{source="github",outcome="unrouted"} 0x60`, `orchestrator_dispatch_total{source="github",outcome="delivered"} 0+3x60`}},
	},
	"OrchestratorDispatchQueueGrowing": {
		fires: []scenario{{`orchestrator_dispatch_queue_depth 0+20x60`}},
		quiet: []scenario{
			{`orchestrator_dispatch_queue_depth 800x60`},     // deep but not growing: draining at the rate it fills
			{`orchestrator_dispatch_queue_depth 0+5x60`},     // growing but shallow
			{`orchestrator_dispatch_queue_depth 1200-20x60`}, // deep and draining
		},
	},
	"OrchestratorSignatureFailuresSpiking": {
		fires: []scenario{{`orchestrator_webhook_events_total{source="github",outcome="bad_signature"} 0+10x60`}},
		quiet: []scenario{{
			`orchestrator_webhook_events_total{source="github",outcome="bad_signature"} 0+2x60`,
			`orchestrator_webhook_events_total{source="github",outcome="accepted"} 0+100x60`,
		}},
	},
	"OrchestratorAckLatencyHigh": {
		fires: []scenario{{
			`orchestrator_webhook_ack_seconds_bucket{source="slack",le="0.005"} 0x60`,
			`orchestrator_webhook_ack_seconds_bucket{source="slack",le="1"} 0x60`,
			`orchestrator_webhook_ack_seconds_bucket{source="slack",le="3"} 0+10x60`,
			`orchestrator_webhook_ack_seconds_bucket{source="slack",le="+Inf"} 0+10x60`,
		}},
		quiet: []scenario{{
			`orchestrator_webhook_ack_seconds_bucket{source="slack",le="0.005"} 0+10x60`,
			`orchestrator_webhook_ack_seconds_bucket{source="slack",le="1"} 0+10x60`,
			`orchestrator_webhook_ack_seconds_bucket{source="slack",le="3"} 0+10x60`,
			`orchestrator_webhook_ack_seconds_bucket{source="slack",le="+Inf"} 0+10x60`,
		}},
	},
	"OrchestratorPeerErrors": {
		fires: []scenario{{`orchestrator_peer_requests_total{peer="agent",code="503"} 0+10x60`, `orchestrator_peer_requests_total{peer="agent",code="200"} 0+10x60`}},
		quiet: []scenario{{`orchestrator_peer_requests_total{peer="agent",code="error"} 0+1x60`, `orchestrator_peer_requests_total{peer="agent",code="200"} 0+100x60`}},
	},
	"OrchestratorScheduledBackupFailed": {
		fires: []scenario{{`orchestrator_backups_total{trigger="scheduled",outcome="failed"} 0x30 1x30`}},
		quiet: []scenario{{
			`orchestrator_backups_total{trigger="scheduled",outcome="failed"} 0x60`,
			`orchestrator_backups_total{trigger="scheduled",outcome="ok"} 0x30 1x30`,
			`orchestrator_backups_total{trigger="manual",outcome="failed"} 0x30 1x30`,
		}},
	},
	"OrchestratorDataVolumeLow": {
		// 5 GiB volume, 300 MiB free: under 10 %; quiet at 30 %, and a
		// brief dip (a backup being written) that recovers.
		fires: []scenario{{`orchestrator_data_volume_available_bytes 314572800x60`, `orchestrator_data_volume_size_bytes 5368709120x60`}},
		quiet: []scenario{
			{`orchestrator_data_volume_available_bytes 1610612736x60`, `orchestrator_data_volume_size_bytes 5368709120x60`},
			{`orchestrator_data_volume_available_bytes 1610612736x30 314572800x5 1610612736x24`, `orchestrator_data_volume_size_bytes 5368709120x60`},
		},
	},
	"OrchestratorDataVolumeFilling": {
		// 2 GB free, losing 10 MB a minute: full in about 3.5 hours. Quiet:
		// losing 10 kB a minute (full in about 4 months), and flat.
		fires: []scenario{{`orchestrator_data_volume_available_bytes 2000000000-10000000x60`}},
		quiet: []scenario{
			{`orchestrator_data_volume_available_bytes 2000000000-10000x60`},
			{`orchestrator_data_volume_available_bytes 2000000000x60`},
		},
	},
	"OrchestratorScheduleDriftRepaired": {
		fires: []scenario{{`orchestrator_schedule_drift_total{kind="suspend"} 0x50 1x10`}},
		quiet: []scenario{{`orchestrator_schedule_drift_total{kind="suspend"} 0x60`}},
	},
	"OrchestratorSourcesFileRefused": {
		fires: []scenario{{`orchestrator_sources_file_ok 1x30 0x30`}},
		quiet: []scenario{{`orchestrator_sources_file_ok 1x60`}, {`orchestrator_sources_file_ok 1x40 0x5 1x15`}},
	},
	"OrchestratorNoLeader": {
		fires: []scenario{{`orchestrator_leader{instance="a"} 0x60`, `orchestrator_leader{instance="b"} 0x60`}},
		quiet: []scenario{{`orchestrator_leader{instance="a"} 1x60`, `orchestrator_leader{instance="b"} 0x60`}},
	},
}

// TestMonitoring_AlertsFireOnTheirScenarioOnly evaluates each rendered rule
// with Prometheus' own query engine over an hour of made-up series, as
// `promtool test rules` would: it must be active at the end of its firing
// hour and all through its `for` before that, and inactive at the end of
// each quiet hour. An alert without scenarios fails the test.
func TestMonitoring_AlertsFireOnTheirScenarioOnly(t *testing.T) {
	_, _, rules := chartQueries(t)
	groups, errs := rulefmt.Parse(rules, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, 1_000_000)
	end := time.Unix(0, 0).Add(60 * time.Minute)
	seen := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			seen[r.Alert] = true
			sc, ok := alertScenarios[r.Alert]
			if !ok || len(sc.fires) == 0 || len(sc.quiet) == 0 {
				t.Errorf("alert %s has no firing and quiet scenarios here", r.Alert)
				continue
			}
			for i, s := range sc.fires {
				storage := load(t, s)
				for at := end.Add(-time.Duration(r.For)); !at.After(end); at = at.Add(time.Minute) {
					if n := active(t, engine, storage, r.Expr, at); n == 0 {
						t.Errorf("%s does not fire at minute %d of firing scenario %d", r.Alert, at.Unix()/60, i+1)
						break
					}
				}
			}
			for i, s := range sc.quiet {
				if n := active(t, engine, load(t, s), r.Expr, end); n != 0 {
					t.Errorf("%s fires (%d series) in quiet scenario %d", r.Alert, n, i+1)
				}
			}
		}
	}
	for name := range alertScenarios {
		if !seen[name] {
			t.Errorf("scenarios for %s, which the chart does not ship", name)
		}
	}
	if !t.Failed() {
		t.Logf("%d alerts, each firing on its scenario and quiet otherwise", len(seen))
	}
}

// load puts a scenario's series into a fresh test storage, closed with the
// test.
func load(t *testing.T, s scenario) storage.Queryable {
	t.Helper()
	var load strings.Builder
	load.WriteString("load 1m\n")
	for _, series := range s {
		name, rest, _ := strings.Cut(series, " ")
		labels := `job="orch-orchestrator", namespace="sre"`
		if metric, l, ok := strings.Cut(name, "{"); ok {
			name = metric + "{" + labels + ", " + l
		} else {
			name += "{" + labels + "}"
		}
		load.WriteString("  " + name + " " + rest + "\n")
	}
	st := promqltest.LoadedStorage(t, load.String())
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// active returns how many series the expression yields at the time over
// the storage (0: the alert is inactive).
func active(t *testing.T, engine *promql.Engine, st storage.Queryable, expr string, at time.Time) int {
	t.Helper()
	q, err := engine.NewInstantQuery(context.Background(), st, nil, expr, at)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	defer q.Close()
	res := q.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("%s: %v", expr, res.Err)
	}
	v, err := res.Vector()
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return len(v)
}

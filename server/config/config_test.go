package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

// prod is the least a production start needs: the three peer URLs.
func prod(extra map[string]string) func(string) string {
	kv := map[string]string{
		"CONFIG_SERVICE_URL":  "http://config-service:8080",
		"AI_PIPELINE_API_URL": "http://ai-pipeline:8000/",
		"AGENT_API_URL":       "https://agent.example:8443",
	}
	for k, v := range extra {
		kv[k] = v
	}
	return env(kv)
}

func TestLoad_Defaults(t *testing.T) {
	c, err := Load(prod(nil))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"ListenAddr", c.ListenAddr, ":8070"},
		{"DataDir", c.DataDir, "./data"},
		{"DatabasePath", c.DatabasePath, "data/orchestrator.db"},
		{"AIPipelineURL trailing slash trimmed", c.AIPipelineURL, "http://ai-pipeline:8000"},
		{"AutoCreateTables", c.AutoCreateTables, true},
		{"AdminAuthCacheTTL", c.AdminAuthCacheTTL, 15 * time.Second},
		{"RequireAdminStar", c.RequireAdminStar, true},
		{"TeamLockTimeout", c.TeamLockTimeout, 30 * time.Second},
		{"IdempotencyKeyTTL", c.IdempotencyKeyTTL, 24 * time.Hour},
		{"WebhookRateLimit", c.WebhookRateLimit, 100.0},
		{"WebhookBurst", c.WebhookBurst, 200},
		{"TeamDispatchPerMinute", c.TeamDispatchPerMinute, 60},
		{"MaxBodyBytes", c.MaxBodyBytes, int64(1 << 20)},
		{"IngestBytesPerSecond", c.IngestBytesPerSecond, int64(8 << 20)},
		{"DispatchWorkers", c.DispatchWorkers, 8},
		{"EventBodyRetention", c.EventBodyRetention, 7 * 24 * time.Hour},
		{"ReconcileInterval", c.ReconcileInterval, 300 * time.Second},
		{"slack limits", c.AgentLimits["slack"], AgentLimits{Timeout: 300 * time.Second, MaxTurns: 50}},
		{"coralogix limits", c.AgentLimits["coralogix"], AgentLimits{Timeout: 300 * time.Second, MaxTurns: 50}},
		{"no slack secret", len(c.WebhookSecrets["slack"]), 0},
		{"Namespace (pod's own)", c.Namespace, ""},
		{"LogLevel", c.LogLevel, slog.LevelInfo},
		{"Dev", c.Dev, false},
		{"RoutingCacheTTL", c.RoutingCacheTTL, 30 * time.Second},
		{"CoalesceSources", strings.Join(c.CoalesceSources, ","), "pagerduty,incidentio,coralogix,github,alertmanager"},
		{"CoalesceMax", c.CoalesceMax, 50},
		{"BackupSchedule", c.BackupSchedule, "30 3 * * *"},
		{"BackupKeep", c.BackupKeep, 7},
		{"PostAnswers", c.PostAnswers, "orchestrator"},
		{"AgentProtocol", c.AgentProtocol, "run"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestLoad_Overrides(t *testing.T) {
	c, err := Load(prod(map[string]string{
		"ORCHESTRATOR_LISTEN_ADDR":                     "127.0.0.1:9000",
		"ORCHESTRATOR_DATA_DIR":                        "/var/lib/orch",
		"DATABASE_URL":                                 "sqlite:///data/x.db",
		"ORCHESTRATOR_AUTO_CREATE_TABLES":              "0",
		"ORCHESTRATOR_REQUIRE_ADMIN_STAR":              "false",
		"ORCHESTRATOR_GITHUB_AGENT_TIMEOUT_SECONDS":    "60",
		"ORCHESTRATOR_GITHUB_AGENT_MAX_TURNS":          "7",
		"ORCHESTRATOR_WEBHOOK_RATE_LIMIT":              "0",
		"SLACK_SIGNING_SECRET":                         "old-secret, new-secret",
		"PAGERDUTY_WEBHOOK_SECRETS":                    "pd1",
		"PAGERDUTY_WEBHOOK_SECRET":                     "pd2",
		"INCIDENTIO_WEBHOOK_SECRET":                    "whsec_c2VjcmV0",
		"K8S_NAMESPACE":                                "sre-tools",
		"ORCHESTRATOR_LOG_LEVEL":                       "debug",
		"ORCHESTRATOR_EVENT_BODY_RETENTION_DAYS":       "30",
		"ORCHESTRATOR_ADMIN_AUTH_CACHE_TTL_SECONDS":    "0",
		"ORCHESTRATOR_INTERNAL_TOKEN":                  "tok",
		"ORCHESTRATOR_SLACK_AGENT_TIMEOUT_SECONDS":     "120",
		"ORCHESTRATOR_INCIDENTIO_AGENT_MAX_TURNS":      "9",
		"ORCHESTRATOR_RECONCILE_INTERVAL_SECONDS":      "60",
		"ORCHESTRATOR_TEAM_DISPATCH_PER_MINUTE":        "5",
		"ORCHESTRATOR_DISPATCH_WORKERS":                "2",
		"ORCHESTRATOR_MAX_BODY_BYTES":                  "2048",
		"ORCHESTRATOR_WEBHOOK_RATE_LIMIT_BURST":        "3",
		"ORCHESTRATOR_IDEMPOTENCY_KEY_TTL_HOURS":       "48",
		"ORCHESTRATOR_TEAM_LOCK_TIMEOUT_SECONDS":       "5",
		"ORCHESTRATOR_SHUTDOWN_TIMEOUT_SECONDS":        "3",
		"ORCHESTRATOR_CORALOGIX_AGENT_TIMEOUT_SECONDS": "30",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != "127.0.0.1:9000" || c.DataDir != "/var/lib/orch" || c.DatabasePath != "/data/x.db" {
		t.Errorf("addr/dir/db = %q %q %q", c.ListenAddr, c.DataDir, c.DatabasePath)
	}
	if c.AutoCreateTables || c.RequireAdminStar {
		t.Error("boolean overrides not applied")
	}
	if got := c.AgentLimits["github"]; got != (AgentLimits{Timeout: time.Minute, MaxTurns: 7}) {
		t.Errorf("github limits = %+v", got)
	}
	if got := c.AgentLimits["slack"].Timeout; got != 2*time.Minute {
		t.Errorf("slack timeout = %v", got)
	}
	if c.WebhookRateLimit != 0 {
		t.Errorf("rate limit 0 (no limit) became %v", c.WebhookRateLimit)
	}
	if got := c.WebhookSecrets["slack"]; len(got) != 2 || got[0].Reveal() != "old-secret" || got[1].Reveal() != "new-secret" {
		t.Errorf("slack secrets = %d entries", len(got))
	}
	if got := c.WebhookSecrets["pagerduty"]; len(got) != 2 || got[0].Reveal() != "pd1" || got[1].Reveal() != "pd2" {
		t.Errorf("pagerduty secrets (both variable names) = %d entries", len(got))
	}
	if c.Namespace != "sre-tools" || c.LogLevel != slog.LevelDebug || c.EventBodyRetention != 30*24*time.Hour {
		t.Errorf("namespace/log level/retention = %q %v %v", c.Namespace, c.LogLevel, c.EventBodyRetention)
	}
	if c.AdminAuthCacheTTL != 0 || c.IdempotencyKeyTTL != 48*time.Hour || c.MaxBodyBytes != 2048 {
		t.Errorf("ttl/idempotency/max body = %v %v %v", c.AdminAuthCacheTTL, c.IdempotencyKeyTTL, c.MaxBodyBytes)
	}
}

// The storm and backup switches: "none"/"off" turn them off, lists are
// cleaned up.
func TestLoad_CoalescingAndBackupSwitches(t *testing.T) {
	c, err := Load(prod(map[string]string{"ORCHESTRATOR_COALESCE_SOURCES": " GitHub, pagerduty ,github", "ORCHESTRATOR_BACKUP_SCHEDULE": "@daily",
		"ORCHESTRATOR_ROUTING_CACHE_SECONDS": "0"}))
	if err != nil || strings.Join(c.CoalesceSources, ",") != "github,pagerduty" || c.BackupSchedule != "@daily" || c.RoutingCacheTTL != 0 {
		t.Fatalf("%v %v %q %v", err, c.CoalesceSources, c.BackupSchedule, c.RoutingCacheTTL)
	}
	c, err = Load(prod(map[string]string{"ORCHESTRATOR_COALESCE_SOURCES": "none", "ORCHESTRATOR_BACKUP_SCHEDULE": "off"}))
	if err != nil || c.CoalesceSources != nil || c.BackupSchedule != "" {
		t.Fatalf("%v %v %q", err, c.CoalesceSources, c.BackupSchedule)
	}
}

// The admin page's cookies are Secure by what the request came through
// (auto) unless ORCHESTRATOR_COOKIE_SECURE says otherwise; the older
// ORCHESTRATOR_UI_SECURE_COOKIE=1 still means always.
func TestLoad_CookieSecure(t *testing.T) {
	for _, c := range []struct {
		kv   map[string]string
		want string
	}{
		{nil, "auto"},
		{map[string]string{"ORCHESTRATOR_COOKIE_SECURE": "TRUE"}, "true"},
		{map[string]string{"ORCHESTRATOR_COOKIE_SECURE": "false"}, "false"},
		{map[string]string{"ORCHESTRATOR_UI_SECURE_COOKIE": "1"}, "true"},
		{map[string]string{"ORCHESTRATOR_UI_SECURE_COOKIE": "0"}, "auto"},
		{map[string]string{"ORCHESTRATOR_UI_SECURE_COOKIE": "1", "ORCHESTRATOR_COOKIE_SECURE": "auto"}, "auto"},
	} {
		cfg, err := Load(prod(c.kv))
		if err != nil || cfg.CookieSecure != c.want {
			t.Errorf("%v: CookieSecure = %q, %v; want %q", c.kv, cfg.CookieSecure, err, c.want)
		}
	}
}

func TestLoad_DevModeNeedsNoPeers(t *testing.T) {
	c, err := Load(env(map[string]string{"ORCHESTRATOR_DEV": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Dev || c.ConfigServiceURL != "" {
		t.Fatalf("dev = %v, config service = %q", c.Dev, c.ConfigServiceURL)
	}
}

// Each bad value stops start-up with one line that names the variable and
// does not echo a secret.
func TestLoad_BadValueNamesTheVariable(t *testing.T) {
	cases := []struct {
		name, value string
		want        string
	}{
		{"ORCHESTRATOR_LISTEN_ADDR", "8070", "not host:port"},
		{"ORCHESTRATOR_LISTEN_ADDR", ":99999", "invalid port"},
		{"ORCHESTRATOR_DISPATCH_WORKERS", "eight", "not a whole number"},
		{"ORCHESTRATOR_COALESCE_SOURCES", "pagerduty,slack", "every mention gets an answer of its own"},
		{"ORCHESTRATOR_COALESCE_SOURCES", "jira", "not a webhook source"},
		{"ORCHESTRATOR_COALESCE_MAX", "0", "out of range"},
		{"ORCHESTRATOR_POST_ANSWERS", "both", `"both" is not one of orchestrator, agent`},
		{"ORCHESTRATOR_AGENT_PROTOCOL", "sse", `"sse" is not one of run, investigate`},
		{"ORCHESTRATOR_COOKIE_SECURE", "yes", `"yes" is not one of auto, true, false`},
		{"ORCHESTRATOR_ROUTING_CACHE_SECONDS", "-1", "out of range"},
		{"ORCHESTRATOR_BACKUP_SCHEDULE", "every night", "not a cron expression"},
		{"ORCHESTRATOR_BACKUP_KEEP", "0", "out of range"},
		{"ORCHESTRATOR_DISPATCH_WORKERS", "0", "out of range"},
		{"ORCHESTRATOR_MAX_BODY_BYTES", "-1", "out of range"},
		{"ORCHESTRATOR_INGEST_BYTES_PER_SECOND", "-1", "out of range"},
		{"ORCHESTRATOR_INGEST_BYTES_PER_SECOND", "8MiB", "not a whole number"},
		{"ORCHESTRATOR_AUTO_CREATE_TABLES", "maybe", "not a boolean"},
		{"ORCHESTRATOR_REQUIRE_ADMIN_STAR", "2", "not a boolean"},
		{"ORCHESTRATOR_IDEMPOTENCY_KEY_TTL_HOURS", "1", "out of range"},
		{"ORCHESTRATOR_PAGERDUTY_AGENT_MAX_TURNS", "lots", "not a whole number"},
		{"ORCHESTRATOR_LOG_LEVEL", "loud", "not a log level"},
		{"CONFIG_SERVICE_URL", "config-service:8080", "not an absolute http(s) URL"},
		{"AGENT_API_URL", "ftp://agent", "not an absolute http(s) URL"},
		{"K8S_NAMESPACE", "SRE_Tools", "not a valid namespace"},
		{"DATABASE_URL", "postgres://u:hunter2@/orch", "must look like postgres://"},
		{"DATABASE_URL", "mysql://db", "must look like sqlite://"},
		{"INCIDENTIO_WEBHOOK_SECRET", "hunter2", "whsec_"},
		{"INCIDENTIO_WEBHOOK_SECRET", "whsec_c2VjcmV0,whsec_!!!hunter2", "entry 2"},
		{"GITHUB_API_URL", "ghe.example.com/api/v3", "not an absolute http(s) URL"},
		{"PAGERDUTY_API_URL", "ftp://api.pagerduty.com", "not an absolute http(s) URL"},
		{"PAGERDUTY_FROM_EMAIL", "oncall", "not an email address"},
	}
	for _, tc := range cases {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			_, err := Load(prod(map[string]string{tc.name: tc.value}))
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.name+":") || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q should name %s and say %q", msg, tc.name, tc.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("error echoes a secret: %q", msg)
			}
		})
	}
}

func TestLoad_PeersRequiredOutsideDevMode(t *testing.T) {
	_, err := Load(env(nil))
	if err == nil || !strings.Contains(err.Error(), "CONFIG_SERVICE_URL: is required") {
		t.Fatalf("err = %v", err)
	}
}

func TestSecret_NeverPrints(t *testing.T) {
	s := Secret("hunter2")
	var buf strings.Builder
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "secret", s, "list", []Secret{s})
	js, _ := json.Marshal(map[string]any{"s": s})
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s), buf.String(), string(js)} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("secret leaked: %s", out)
		}
	}
	if s.Reveal() != "hunter2" {
		t.Error("Reveal lost the value")
	}
}

// Every variable Load reads is in the operator's configuration table
// (docs/configuration.md): a newcomer found ORCHESTRATOR_UI_SECURE_COOKIE
// missing. Per-source variables may be written once with {SLACK,GITHUB,…}.
func TestLoad_EveryVariableIsDocumented(t *testing.T) {
	asked := map[string]bool{}
	get := prod(nil)
	if _, err := Load(func(k string) string { asked[k] = true; return get(k) }); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	// Expand ORCHESTRATOR_{A,B}_X into ORCHESTRATOR_A_X and ORCHESTRATOR_B_X.
	for _, m := range regexp.MustCompile(`([A-Z_]*)\{([A-Z,]+)\}([A-Z_]*)`).FindAllStringSubmatch(text, -1) {
		for _, part := range strings.Split(m[2], ",") {
			text += " " + m[1] + part + m[3]
		}
	}
	for name := range asked {
		if !regexp.MustCompile(`\b` + name + `\b`).MatchString(text) {
			t.Errorf("%s is read by config.Load but not in docs/configuration.md", name)
		}
	}
	if len(asked) < 40 {
		t.Fatalf("only %d variables read: the recording getenv saw too little", len(asked))
	}
}

// Package config turns the process environment into a typed, validated
// Config. It is the one place that knows the name of every environment
// variable of SPEC §2; a bad value stops start-up with one line naming the
// variable (and never echoing a secret).
package config

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/robfig/cron/v3"
)

// Sources are the built-in webhook sources, in the order they are
// documented (configured ones come from the sources file).
var Sources = webhook.Builtin

// Secret is a configured credential. It prints, logs and marshals as
// "[redacted]" so that it cannot leak by accident; Reveal returns the value.
type Secret string

// String redacts the secret.
func (s Secret) String() string { return "[redacted]" }

// GoString redacts the secret in %#v.
func (s Secret) GoString() string { return `"[redacted]"` }

// MarshalText redacts the secret in JSON and slog output.
func (s Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// Reveal returns the secret's value for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

// AgentLimits bound one agent call made for a webhook source.
type AgentLimits struct {
	Timeout  time.Duration
	MaxTurns int
}

// Config is the validated configuration of one orchestrator process.
type Config struct {
	ListenAddr string
	DataDir    string
	// DatabasePath is the SQLite file named by DATABASE_URL ("" with
	// PostgreSQL).
	DatabasePath string
	// DatabaseURL is DATABASE_URL when it names PostgreSQL (SPEC §13).
	DatabaseURL Secret
	Dev         bool
	LogLevel    slog.Level

	ConfigServiceURL string
	AIPipelineURL    string
	AgentURL         string

	InternalToken      Secret
	InternalAdminToken Secret
	DevAdminToken      Secret

	AutoCreateTables bool
	// CookieSecure says when the admin page's cookies are Secure: auto
	// (served over TLS, or a trusted proxy says X-Forwarded-Proto: https),
	// true (always) or false (never).
	CookieSecure      string
	AdminAuthCacheTTL time.Duration
	RequireAdminStar  bool
	TeamLockTimeout   time.Duration
	IdempotencyKeyTTL time.Duration
	ShutdownTimeout   time.Duration
	// DispatchLease is how long a claim holds its events before another
	// replica may take them (0: the longest agent timeout + 60 s).
	DispatchLease time.Duration

	// AgentLimits holds the timeout and max turns per webhook source.
	AgentLimits map[string]AgentLimits

	Namespace                string
	AIPipelineImage          string
	AIPipelineServiceAccount string
	AgentImage               string
	AgentServiceAccount      string

	// WebhookSecrets holds each source's accepted secrets (several during a
	// rotation); an empty list makes that source answer 401.
	WebhookSecrets map[string][]Secret
	// SourcesFile is ORCHESTRATOR_SOURCES_FILE: configured sources and more
	// Slack apps (SPEC §6); "" = none.
	SourcesFile string
	// SourcesReload is how often the sources file is read again for its
	// routing rules, time intervals, inhibit rules and destinations
	// (ORCHESTRATOR_SOURCES_RELOAD_SECONDS, default 10).
	SourcesReload time.Duration
	// AlertmanagerLabels map Alertmanager labels to routing identifier
	// types (ORCHESTRATOR_ALERTMANAGER_ROUTING_LABELS).
	AlertmanagerLabels map[string]string
	// SourceOrgs bind built-in sources to orgs (ORCHESTRATOR_SOURCE_ORGS,
	// e.g. slack=acme,github=acme;aaa): their events route only to teams
	// of those orgs. A source absent routes to any org.
	SourceOrgs map[string][]string

	WebhookRateLimit      float64
	WebhookBurst          int
	TeamDispatchPerMinute int
	MaxBodyBytes          int64
	// IngestBytesPerSecond bounds the body bytes each source may send a
	// second (0 = no limit), beside its request limit.
	IngestBytesPerSecond int64
	DispatchWorkers      int
	EventBodyRetention   time.Duration
	// EventRetention and AuditRetention bound finished events and the audit
	// trail (runs, agent calls) (SPEC §16).
	EventRetention    time.Duration
	AuditRetention    time.Duration
	ReconcileInterval time.Duration

	// RoutingCacheTTL: routing lookups (found or not) are reused this long;
	// 0 = off (SPEC §6 Storms).
	RoutingCacheTTL time.Duration
	// CoalesceSources are folded into one agent call per team slot; empty =
	// off. CoalesceMax bounds one digest.
	CoalesceSources []string
	CoalesceMax     int
	// AlertGroupWait holds new firing alerts; AlertRepeat is the repeat
	// window; TeamCallsPerDay the daily budget of alert-triggered calls
	// (SPEC §6 Noise).
	AlertGroupWait  time.Duration
	AlertRepeat     time.Duration
	TeamCallsPerDay int

	// BackupSchedule is the cron expression of scheduled backups ("" = off);
	// BackupKeep how many scheduled backups are kept (SPEC §14).
	BackupSchedule string
	BackupKeep     int
	// BackupKeepManual bounds the manual backups; DiskReservePercent of the
	// volume must stay free after any snapshot (SPEC §16).
	BackupKeepManual   int
	DiskReservePercent int

	// PostAnswers is who posts the agent's answers where the question was
	// asked (ORCHESTRATOR_POST_ANSWERS: orchestrator, the default, or
	// agent); team config output_config.posted_by overrides it.
	PostAnswers string
	// AgentProtocol is how the agent is called unless a team's config says
	// (ORCHESTRATOR_AGENT_PROTOCOL: run, the default — POST
	// /agents/{agent}/run —, or investigate — the streamed conversation).
	AgentProtocol string
	// PublicURL is where people reach the admin page
	// (ORCHESTRATOR_PUBLIC_URL): answers link their run there ("" = no link).
	PublicURL string
	// SlackBotToken is the default Slack app's bot token (SLACK_BOT_TOKEN):
	// it posts the answers to that app's mentions.
	SlackBotToken Secret
	// SlackAPIURL is SLACK_API_URL: Slack's Web API ("" = Slack's own, or
	// in dev mode the built-in fake).
	SlackAPIURL string
	// AnswerLease is how long a claim on an answer delivery holds before
	// another replica may take it (ORCHESTRATOR_ANSWER_LEASE_SECONDS, 120).
	AnswerLease time.Duration

	// TrustedProxies are the proxies whose X-Forwarded-For names the
	// client whose failed admin-token checks are limited (SPEC §18).
	TrustedProxies []netip.Prefix

	// GitHub and PagerDuty are the credentials and endpoints answers are
	// posted with (GITHUB_*, PAGERDUTY_*; answers.go).
	GitHub    GitHubAnswers
	PagerDuty PagerDutyAnswers

	// Tracing is the OpenTelemetry export, from the OTEL_* variables
	// (tracing.go; SPEC §22).
	Tracing Tracing
}

// Load reads the configuration through getenv (os.Getenv in production).
func Load(getenv func(string) string) (*Config, error) {
	p := &parser{getenv: getenv}
	// migrate-to-postgres reads ORCHESTRATOR_MIGRATE_TO itself; it is named
	// here so that a pod that sets it is not warned about a misspelling.
	_ = getenv("ORCHESTRATOR_MIGRATE_TO")
	c := &Config{
		ListenAddr: p.addr("ORCHESTRATOR_LISTEN_ADDR", ":8070"),
		DataDir:    p.str("ORCHESTRATOR_DATA_DIR", "./data"),
		Dev:        p.bool("ORCHESTRATOR_DEV", false),
		LogLevel:   p.logLevel("ORCHESTRATOR_LOG_LEVEL"),

		InternalToken:      p.secret("ORCHESTRATOR_INTERNAL_TOKEN"),
		InternalAdminToken: p.secret("ORCHESTRATOR_INTERNAL_ADMIN_TOKEN"),
		DevAdminToken:      p.secret("ORCHESTRATOR_DEV_ADMIN_TOKEN"),

		AutoCreateTables:  p.bool("ORCHESTRATOR_AUTO_CREATE_TABLES", true),
		CookieSecure:      p.cookieSecure(),
		AdminAuthCacheTTL: p.seconds("ORCHESTRATOR_ADMIN_AUTH_CACHE_TTL_SECONDS", 15, 0, 3600),
		RequireAdminStar:  p.bool("ORCHESTRATOR_REQUIRE_ADMIN_STAR", true),
		TeamLockTimeout:   p.seconds("ORCHESTRATOR_TEAM_LOCK_TIMEOUT_SECONDS", 30, 1, 600),
		IdempotencyKeyTTL: time.Duration(p.int("ORCHESTRATOR_IDEMPOTENCY_KEY_TTL_HOURS", 24, 24, 24*365)) * time.Hour,
		ShutdownTimeout:   p.seconds("ORCHESTRATOR_SHUTDOWN_TIMEOUT_SECONDS", 20, 1, 600),

		Namespace:                p.dnsLabel("K8S_NAMESPACE"),
		AIPipelineImage:          p.str("AI_PIPELINE_IMAGE", "incidentfox/ai-pipeline:latest"),
		AIPipelineServiceAccount: p.str("AI_PIPELINE_SERVICE_ACCOUNT", "ai-pipeline"),
		AgentImage:               p.str("AGENT_IMAGE", "incidentfox/agent:latest"),
		AgentServiceAccount:      p.str("AGENT_SERVICE_ACCOUNT", "agent"),

		WebhookRateLimit:      float64(p.int("ORCHESTRATOR_WEBHOOK_RATE_LIMIT", 100, 0, 1_000_000)),
		WebhookBurst:          p.int("ORCHESTRATOR_WEBHOOK_RATE_LIMIT_BURST", 200, 1, 1_000_000),
		TeamDispatchPerMinute: p.int("ORCHESTRATOR_TEAM_DISPATCH_PER_MINUTE", 60, 1, 1_000_000),
		MaxBodyBytes:          int64(p.int("ORCHESTRATOR_MAX_BODY_BYTES", 1<<20, 1024, 64<<20)),
		IngestBytesPerSecond:  int64(p.int("ORCHESTRATOR_INGEST_BYTES_PER_SECOND", 8<<20, 0, 1<<30)),
		DispatchWorkers:       p.int("ORCHESTRATOR_DISPATCH_WORKERS", 8, 1, 256),
		EventBodyRetention:    time.Duration(p.int("ORCHESTRATOR_EVENT_BODY_RETENTION_DAYS", 7, 1, 3650)) * 24 * time.Hour,
		EventRetention:        time.Duration(p.int("ORCHESTRATOR_EVENT_RETENTION_DAYS", 30, 1, 3650)) * 24 * time.Hour,
		AuditRetention:        time.Duration(p.int("ORCHESTRATOR_AUDIT_RETENTION_DAYS", 400, 30, 36500)) * 24 * time.Hour,
		ReconcileInterval:     p.seconds("ORCHESTRATOR_RECONCILE_INTERVAL_SECONDS", 300, 10, 86400),
		RoutingCacheTTL:       p.seconds("ORCHESTRATOR_ROUTING_CACHE_SECONDS", 30, 0, 3600),
		CoalesceSources:       p.coalesceSources("ORCHESTRATOR_COALESCE_SOURCES"),
		CoalesceMax:           p.int("ORCHESTRATOR_COALESCE_MAX", 50, 1, 500),
		AlertGroupWait:        p.seconds("ORCHESTRATOR_ALERT_GROUP_WAIT_SECONDS", 0, 0, 3600),
		AlertRepeat:           p.seconds("ORCHESTRATOR_ALERT_REPEAT_SECONDS", 14400, 0, 7*86400),
		TeamCallsPerDay:       p.int("ORCHESTRATOR_TEAM_AGENT_CALLS_PER_DAY", 0, 0, 1_000_000),
		BackupSchedule:        p.cron("ORCHESTRATOR_BACKUP_SCHEDULE", "30 3 * * *"),
		BackupKeep:            p.int("ORCHESTRATOR_BACKUP_KEEP", 7, 1, 1000),
		BackupKeepManual:      p.int("ORCHESTRATOR_BACKUP_KEEP_MANUAL", 5, 1, 1000),
		DiskReservePercent:    p.int("ORCHESTRATOR_DISK_RESERVE_PERCENT", 10, 1, 90),
		TrustedProxies:        p.prefixes("ORCHESTRATOR_TRUSTED_PROXIES"),
	}
	c.DatabasePath, c.DatabaseURL = p.database("DATABASE_URL", c.DataDir)
	// The claim lease (SPEC §13); 0 means the longest agent timeout + 60 s.
	c.DispatchLease = p.seconds("ORCHESTRATOR_DISPATCH_LEASE_SECONDS", 0, 0, 86400)

	// Peer services are required in production; dev mode brings its own fakes.
	c.ConfigServiceURL = p.url("CONFIG_SERVICE_URL", !c.Dev)
	c.AIPipelineURL = p.url("AI_PIPELINE_API_URL", !c.Dev)
	c.AgentURL = p.url("AGENT_API_URL", !c.Dev)

	c.AgentLimits = make(map[string]AgentLimits, len(Sources))
	for _, src := range Sources {
		prefix := "ORCHESTRATOR_" + strings.ToUpper(src) + "_AGENT_"
		c.AgentLimits[src] = AgentLimits{
			Timeout:  p.seconds(prefix+"TIMEOUT_SECONDS", 300, 1, 3600),
			MaxTurns: p.int(prefix+"MAX_TURNS", 50, 1, 1000),
		}
	}

	c.WebhookSecrets = map[string][]Secret{
		"slack":  p.secrets("SLACK_SIGNING_SECRET"),
		"github": p.secrets("GITHUB_WEBHOOK_SECRET"),
		// PAGERDUTY_WEBHOOK_SECRET is the reference implementation's name.
		"pagerduty":  append(p.secrets("PAGERDUTY_WEBHOOK_SECRETS"), p.secrets("PAGERDUTY_WEBHOOK_SECRET")...),
		"incidentio": p.standardWebhookSecrets("INCIDENTIO_WEBHOOK_SECRET"),
		"coralogix":  p.secrets("CORALOGIX_WEBHOOK_TOKEN"),
		// Alertmanager sends it as its http_config.authorization credentials.
		"alertmanager": p.secrets("ALERTMANAGER_WEBHOOK_TOKEN"),
	}
	c.SourcesFile = p.str("ORCHESTRATOR_SOURCES_FILE", "")
	c.SourcesReload = p.seconds("ORCHESTRATOR_SOURCES_RELOAD_SECONDS", 10, 1, 3600)
	c.AlertmanagerLabels = p.labelMap("ORCHESTRATOR_ALERTMANAGER_ROUTING_LABELS")
	c.SourceOrgs = p.sourceOrgs("ORCHESTRATOR_SOURCE_ORGS")
	c.PostAnswers = p.oneOf("ORCHESTRATOR_POST_ANSWERS", "orchestrator", "orchestrator", "agent")
	c.AgentProtocol = p.oneOf("ORCHESTRATOR_AGENT_PROTOCOL", "run", "run", "investigate")
	c.PublicURL = p.url("ORCHESTRATOR_PUBLIC_URL", false)
	c.SlackBotToken = p.secret("SLACK_BOT_TOKEN")
	c.SlackAPIURL = p.url("SLACK_API_URL", false)
	c.AnswerLease = p.seconds("ORCHESTRATOR_ANSWER_LEASE_SECONDS", 120, 10, 3600)
	c.GitHub, c.PagerDuty = p.github(), p.pagerDuty()
	c.Tracing = p.tracing()
	if p.err != nil {
		return nil, p.err
	}
	return c, nil
}

// parser reads variables and keeps the first error, so Load stays a flat list.
type parser struct {
	getenv func(string) string
	err    error
}

func (p *parser) fail(name, format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("config: %s: %s", name, fmt.Sprintf(format, args...))
	}
}

func (p *parser) raw(name string) string { return strings.TrimSpace(p.getenv(name)) }

// prefixes reads a comma-separated list of addresses or CIDR ranges.
func (p *parser) prefixes(name string) []netip.Prefix {
	var out []netip.Prefix
	for _, part := range strings.Split(p.raw(name), ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		pre, err := netip.ParsePrefix(part)
		if err != nil {
			addr, aerr := netip.ParseAddr(part)
			if aerr != nil {
				p.fail(name, "%q is not an address or a CIDR range", part)
				return nil
			}
			pre = netip.PrefixFrom(addr, addr.BitLen())
		}
		out = append(out, pre.Masked())
	}
	return out
}

// cookieSecure reads ORCHESTRATOR_COOKIE_SECURE (auto by default). The
// older ORCHESTRATOR_UI_SECURE_COOKIE=1 still reads as true when the newer
// variable is unset.
func (p *parser) cookieSecure() string {
	if p.raw("ORCHESTRATOR_COOKIE_SECURE") == "" && p.bool("ORCHESTRATOR_UI_SECURE_COOKIE", false) {
		return "true"
	}
	return p.oneOf("ORCHESTRATOR_COOKIE_SECURE", "auto", "auto", "true", "false")
}

// oneOf reads a value that must be one of a few words (def when unset).
func (p *parser) oneOf(name, def string, words ...string) string {
	v := strings.ToLower(p.raw(name))
	if v == "" {
		return def
	}
	if !slices.Contains(words, v) {
		p.fail(name, "%q is not one of %s", v, strings.Join(words, ", "))
	}
	return v
}

func (p *parser) str(name, def string) string {
	if v := p.raw(name); v != "" {
		return v
	}
	return def
}

// CronParser reads five-field cron expressions: the parser Kubernetes itself
// uses for CronJob schedules (also for the backup schedule).
var CronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// cron reads a cron expression; "none" or "off" turns the schedule off.
func (p *parser) cron(name, def string) string {
	v := strings.TrimSpace(p.raw(name))
	switch strings.ToLower(v) {
	case "":
		return def
	case "none", "off":
		return ""
	}
	if _, err := CronParser.Parse(v); err != nil {
		p.fail(name, "%q is not a cron expression: %v", v, err)
	}
	return v
}

// DefaultCoalesceSources are the alert sources folded into digests.
var DefaultCoalesceSources = []string{"pagerduty", "incidentio", "coralogix", "github", "alertmanager"}

// coalesceSources reads a comma-separated list of alert sources. Unset
// gives the default; "none" (or "off") turns coalescing off — an empty
// value cannot be told from an unset one through the environment. Slack is
// refused: a person's question always gets an answer of its own.
func (p *parser) coalesceSources(name string) []string {
	v := strings.TrimSpace(p.raw(name))
	switch strings.ToLower(v) {
	case "":
		return DefaultCoalesceSources
	case "none", "off":
		return nil
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		s = strings.ToLower(strings.TrimSpace(s))
		switch {
		case s == "":
		case s == "slack":
			p.fail(name, "slack cannot be coalesced: every mention gets an answer of its own")
		case !slices.Contains(Sources[:], s):
			p.fail(name, "%q is not a webhook source (%s)", s, strings.Join(Sources[1:], ", "))
		case !slices.Contains(out, s):
			out = append(out, s)
		}
	}
	return out
}

func (p *parser) int(name string, def, lo, hi int) int {
	v := p.raw(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		p.fail(name, "%q is not a whole number", v)
		return def
	}
	if n < lo || n > hi {
		p.fail(name, "%d is out of range [%d, %d]", n, lo, hi)
		return def
	}
	return n
}

func (p *parser) seconds(name string, def, lo, hi int) time.Duration {
	return time.Duration(p.int(name, def, lo, hi)) * time.Second
}

func (p *parser) bool(name string, def bool) bool {
	switch v := strings.ToLower(p.raw(name)); v {
	case "":
		return def
	case "1", "true", "yes", "on":
		return true
	case "0", "false", "no", "off":
		return false
	default:
		p.fail(name, "%q is not a boolean (use 1 or 0)", v)
		return def
	}
}

func (p *parser) logLevel(name string) slog.Level {
	var l slog.Level
	if v := p.raw(name); v != "" {
		if err := l.UnmarshalText([]byte(v)); err != nil {
			p.fail(name, "%q is not a log level (debug, info, warn, error)", v)
		}
	}
	return l
}

func (p *parser) addr(name, def string) string {
	v := p.str(name, def)
	if _, port, err := net.SplitHostPort(v); err != nil {
		p.fail(name, "%q is not host:port (%v)", v, err)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.fail(name, "%q has an invalid port", v)
	}
	return v
}

func (p *parser) url(name string, required bool) string {
	v := p.raw(name)
	if v == "" {
		if required {
			p.fail(name, "is required (or start with --dev to use the built-in fakes)")
		}
		return ""
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.fail(name, "%q is not an absolute http(s) URL", v)
		return ""
	}
	return strings.TrimRight(v, "/")
}

// dnsLabel reads a Kubernetes namespace name; empty means "the pod's own".
func (p *parser) dnsLabel(name string) string {
	v := p.raw(name)
	if v != "" && !isDNSLabel(v) {
		p.fail(name, "%q is not a valid namespace name (lowercase letters, digits and '-', at most 63)", v)
	}
	return v
}

func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func (p *parser) secret(name string) Secret { return Secret(p.raw(name)) }

// labelMap reads label=identifier_type pairs, comma-separated.
func (p *parser) labelMap(name string) map[string]string {
	out := map[string]string{}
	for _, part := range strings.Split(p.raw(name), ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		label, typ, ok := strings.Cut(part, "=")
		label, typ = strings.TrimSpace(label), strings.TrimSpace(typ)
		if !ok || !promLabel.MatchString(label) || !identifierType.MatchString(typ) {
			p.fail(name, "%q is not label=identifier_type (e.g. namespace=k8s_namespace)", part)
			return nil
		}
		out[label] = typ
	}
	return out
}

var (
	promLabel      = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]{0,127}$`)
	identifierType = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
)

// secrets reads a comma-separated list of secrets (several during a rotation).
func (p *parser) secrets(name string) []Secret {
	var out []Secret
	for _, part := range strings.Split(p.raw(name), ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, Secret(part))
		}
	}
	return out
}

// standardWebhookSecrets reads Standard Webhooks secrets: "whsec_" followed by
// the base64 of the signing key.
func (p *parser) standardWebhookSecrets(name string) []Secret {
	out := p.secrets(name)
	for i, s := range out {
		key, ok := strings.CutPrefix(s.Reveal(), "whsec_")
		if _, err := base64.StdEncoding.DecodeString(key); !ok || err != nil || key == "" {
			p.fail(name, "entry %d is not of the form whsec_<base64 key>", i+1)
		}
	}
	return out
}

// database resolves DATABASE_URL: the SQLite file it names, or a PostgreSQL
// URL (postgres:// or postgresql://, checked by pgx's parser at open).
func (p *parser) database(name, dataDir string) (string, Secret) {
	v := p.raw(name)
	if v == "" {
		return filepath.Join(dataDir, "orchestrator.db"), ""
	}
	scheme, rest, ok := strings.Cut(v, "://")
	switch {
	case ok && scheme == "sqlite" && rest != "" && !strings.ContainsAny(rest, "?#"):
		return rest, ""
	case ok && (scheme == "postgres" || scheme == "postgresql"):
		u, err := url.Parse(v)
		if err != nil || u.Host == "" {
			p.fail(name, "must look like postgres://user:password@host:5432/database?sslmode=require")
		}
		return "", Secret(v)
	default:
		p.fail(name, "must look like sqlite:///path/to/orchestrator.db or postgres://user:password@host:5432/database")
	}
	return "", ""
}

package peers_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func setup(t *testing.T, timeout time.Duration) (*peerstest.ConfigService, *peers.ConfigService, *prometheus.CounterVec) {
	t.Helper()
	fake := peerstest.NewConfigService()
	fake.AddAdmin("adm", peers.Identity{Role: "admin", Permissions: []string{"admin:*"}})
	fake.AddTeam("acme", "sre", nil)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	metric, err := peers.NewRequestsMetric(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return fake, peers.NewConfigService(peers.Options{BaseURL: srv.URL, Timeout: timeout, Requests: metric}), metric
}

func TestErrors_MappedOnceBySPEC(t *testing.T) {
	cases := []struct {
		name   string
		fault  peerstest.Fault
		kind   apperr.Kind
		code   string
		status int
	}{
		{"401", peerstest.Fault{Status: 401}, apperr.Forbidden, "peer_forbidden", 403},
		{"403", peerstest.Fault{Status: 403}, apperr.Forbidden, "peer_forbidden", 403},
		{"409", peerstest.Fault{Status: 409}, apperr.BadGateway, "peer_rejected", 502},
		{"500", peerstest.Fault{Status: 500}, apperr.BadGateway, "peer_unavailable", 502},
		{"closed connection", peerstest.Fault{Close: true}, apperr.BadGateway, "peer_unavailable", 502},
		{"no answer in time", peerstest.Fault{Hang: true}, apperr.GatewayTimeout, "peer_timeout", 504},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake, cs, _ := setup(t, 100*time.Millisecond)
			fake.Fail(peerstest.RoutePatchConfig, tc.fault)
			err := cs.PatchConfig(context.Background(), "adm", "acme", "sre", map[string]any{"a": 1})
			e, ok := apperr.As(err)
			if !ok || e.Kind != tc.kind || e.Code != tc.code || e.Kind.Status() != tc.status {
				t.Fatalf("err = %#v", err)
			}
		})
	}
}

func TestRefusedConnectionIsUnavailable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	cs := peers.NewConfigService(peers.Options{BaseURL: url})
	_, err := cs.AuthMe(context.Background(), "x")
	if e, ok := apperr.As(err); !ok || e.Code != "peer_unavailable" {
		t.Fatalf("err = %v", err)
	}
	if h, ok := peers.AsHTTPError(err); !ok || h.Status != 0 {
		t.Fatalf("no transport error underneath: %v", err)
	}
}

func TestConfigService_CallsFollowTheContract(t *testing.T) {
	fake, cs, metric := setup(t, time.Second)
	ctx := context.Background()
	id, err := cs.AuthMe(ctx, "adm")
	if err != nil || id.Role != "admin" {
		t.Fatalf("auth me = %+v %v", id, err)
	}
	if ok, err := cs.NodeExists(ctx, "adm", "acme", "new"); ok || err != nil {
		t.Fatalf("missing node = %v %v", ok, err)
	}
	if err := cs.CreateNode(ctx, "adm", "acme", "new", "acme", "team"); err != nil {
		t.Fatal(err)
	}
	if ok, err := cs.NodeExists(ctx, "adm", "acme", "new"); !ok || err != nil {
		t.Fatalf("created node = %v %v", ok, err)
	}
	issued, err := cs.IssueToken(ctx, "adm", "acme", "new")
	if err != nil || issued.TokenID() == "" || issued.TokenID() == issued.Token {
		t.Fatalf("issued = %+v %v", issued, err)
	}
	list, err := cs.ListTokens(ctx, "adm", "acme", "new")
	if err != nil || len(list) != 1 || !list[0].Active() || list[0].TokenID != issued.TokenID() {
		t.Fatalf("list = %+v %v", list, err)
	}
	if err := cs.RevokeToken(ctx, "adm", "acme", "new", issued.TokenID()); err != nil {
		t.Fatal(err)
	}
	list, _ = cs.ListTokens(ctx, "adm", "acme", "new")
	if list[0].Active() {
		t.Fatal("revoked token still active")
	}
	if err := cs.PatchConfig(ctx, "adm", "acme", "new", map[string]any{"routing": map[string]any{"slack_channel_ids": []string{"C1"}}}); err != nil {
		t.Fatal(err)
	}
	route, err := cs.RoutingLookup(ctx, "adm", map[string]string{"slack_channel_id": "C1"})
	if err != nil || !route.Found || route.TeamNodeID != "new" || route.MatchedBy != "slack_channel_id" {
		t.Fatalf("lookup = %+v %v", route, err)
	}
	if c := fake.CallsTo(peerstest.RouteRoutingLookup); len(c) != 1 || c[0].Header.Get("X-Internal-Service") != "orchestrator" {
		t.Fatal("routing lookup lacks X-Internal-Service")
	}
	imp, err := cs.ImpersonationToken(ctx, "adm", "acme", "new")
	if err != nil || imp.Token == "" || imp.ExpiresAt.IsZero() {
		t.Fatalf("impersonation = %+v %v", imp, err)
	}
	cfg, err := cs.ConfigMe(ctx, imp.Token)
	if err != nil || cfg["routing"] == nil {
		t.Fatalf("config/me (unwrapped) = %v %v", cfg, err)
	}
	for _, c := range fake.Calls() {
		if c.Route != peerstest.RouteConfigMe && c.Auth != "Bearer adm" {
			t.Errorf("%s sent %q", c.Route, c.Auth)
		}
	}
	if got := testutil.ToFloat64(metric.WithLabelValues("config_service", "200")); got < 5 {
		t.Errorf("peer metric 200 = %v", got)
	}
	if got := testutil.ToFloat64(metric.WithLabelValues("config_service", "404")); got != 1 {
		t.Errorf("peer metric 404 = %v", got)
	}
}

func TestAIPipeline_BootstrapAndRun(t *testing.T) {
	fake := peerstest.NewAIPipeline()
	srv := httptest.NewServer(fake)
	defer srv.Close()
	p := peers.NewAIPipeline(peers.Options{BaseURL: srv.URL})
	if err := p.Bootstrap(context.Background(), "adm", "sre"); err != nil {
		t.Fatal(err)
	}
	out, err := p.Run(context.Background(), "adm", "acme", "sre")
	if err != nil || out["status"] != "started" {
		t.Fatalf("run = %v %v", out, err)
	}
	if c := fake.CallsTo(peerstest.RoutePipelineRun); len(c) != 1 || string(c[0].Body) != `{"org_id":"acme","team_id":"sre"}` {
		t.Fatalf("run body = %v", c)
	}
}

func TestDedicatedURL_OnlyInClusterServices(t *testing.T) {
	cases := map[string]struct {
		url string
		ok  bool
	}{
		"http://agent-dedicated-acme-sre.incidentfox.svc.cluster.local:8000": {"http://agent-dedicated-acme-sre.incidentfox.svc.cluster.local:8000", true},
		"http://agent.ns.svc:8000/":                  {"http://agent.ns.svc:8000", true},
		"http://agent.ns.svc":                        {"http://agent.ns.svc", true},
		"http://169.254.169.254/latest/meta-data":    {"", false},
		"https://agent.ns.svc.cluster.local:8000":    {"", false},
		"http://agent.ns.svc.cluster.local.evil.com": {"", false},
		"http://user@agent.ns.svc:8000":              {"", false},
		"http://agent.ns.svc:8000/../../admin":       {"", false},
		"http://localhost:8000":                      {"", false},
		"http://agent.ns.svc.cluster.local:8000?x=1": {"", false},
	}
	for in, want := range cases {
		got, ok := peers.DedicatedURL(map[string]any{"agent": map[string]any{"dedicated_service_url": in}})
		if got != want.url || ok != want.ok {
			t.Errorf("%q → %q %v, want %q %v", in, got, ok, want.url, want.ok)
		}
	}
	if got, ok := peers.DedicatedURL(map[string]any{}); got != "" || !ok {
		t.Error("no dedicated url should be fine")
	}
}

// A peer answering 307 to another host is an upstream error: the request is
// not repeated there, so the team token and the body never reach a host
// that was not checked. Same client for dispatch and the admin agent proxy.
func TestAgent_RedirectsAreNeverFollowed(t *testing.T) {
	elsewhere := peerstest.NewAgent()
	other := httptest.NewServer(elsewhere)
	t.Cleanup(other.Close)
	agent := peerstest.NewAgent()
	agent.Fail(peerstest.RouteAgentRun, peerstest.Fault{RedirectTo: other.URL})
	srv := httptest.NewServer(agent)
	t.Cleanup(srv.Close)
	for _, hc := range []*http.Client{nil, {Timeout: time.Minute}} {
		c := peers.NewAgent(peers.Options{BaseURL: srv.URL, HTTPClient: hc})
		_, err := c.Run(context.Background(), "", "planner", "team-token-secret", "corr-1",
			peers.AgentRequest{Message: "hi"}, 5*time.Second)
		e, ok := apperr.As(err)
		h, _ := peers.AsHTTPError(err)
		if !ok || e.Code != "peer_rejected" || h == nil || h.Status != http.StatusTemporaryRedirect {
			t.Fatalf("redirect answer = %v", err)
		}
	}
	if n := len(agent.Calls()); n != 2 {
		t.Fatalf("the agent got %d calls, want 2", n)
	}
	if calls := elsewhere.Calls(); len(calls) != 0 {
		t.Fatalf("the redirect target received %d requests (token %q)", len(calls), calls[0].Header.Get("X-Incidentfox-Team-Token"))
	}
}

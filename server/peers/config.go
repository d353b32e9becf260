package peers

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
)

// ConfigService is the client of the Config Service (SPEC §3, §4, §6).
type ConfigService struct{ c client }

// NewConfigService returns a Config Service client.
func NewConfigService(o Options) *ConfigService {
	return &ConfigService{c: newClient(ConfigServicePeer, o)}
}

// Identity is what /api/v1/auth/me says about a token.
type Identity struct {
	Role        string   `json:"role"`
	Permissions []string `json:"permissions"`
	// OrgID, when set, confines the admin to that org.
	OrgID string `json:"org_id,omitempty"`
	// Subject names the admin for the audit trail, when the service says.
	Subject string `json:"subject,omitempty"`
}

// AuthMe asks who token belongs to.
func (s *ConfigService) AuthMe(ctx context.Context, token string) (Identity, error) {
	var id Identity
	err := s.c.call(ctx, http.MethodGet, "/api/v1/auth/me", token, nil, nil, &id)
	return id, err
}

func orgPath(org string, rest ...string) string {
	p := "/api/v1/admin/orgs/" + url.PathEscape(org)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// NodeExists reports whether the node exists in the org.
func (s *ConfigService) NodeExists(ctx context.Context, token, org, node string) (bool, error) {
	err := s.c.call(ctx, http.MethodGet, orgPath(org, "nodes", url.PathEscape(node)), token, nil, nil, nil)
	if h, ok := AsHTTPError(err); ok && h.Status == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

// CreateNode creates a node under parent.
func (s *ConfigService) CreateNode(ctx context.Context, token, org, node, parent, nodeType string) error {
	body := map[string]string{"node_id": node, "parent_id": parent, "node_type": nodeType}
	return s.c.call(ctx, http.MethodPost, orgPath(org, "nodes"), token, nil, body, nil)
}

// PatchConfig deep-merges patch into the node's config.
func (s *ConfigService) PatchConfig(ctx context.Context, token, org, node string, patch map[string]any) error {
	return s.c.call(ctx, http.MethodPut, orgPath(org, "nodes", url.PathEscape(node), "config"), token, nil,
		map[string]any{"patch": patch}, nil)
}

// TeamToken describes an issued team token (never its secret).
type TeamToken struct {
	TokenID   string     `json:"token_id"`
	IssuedAt  *time.Time `json:"issued_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Revoked   bool       `json:"revoked,omitempty"`
}

// Active reports whether the token is not revoked.
func (t TeamToken) Active() bool { return !t.Revoked && t.RevokedAt == nil }

// ListTokens lists a team's tokens. The answer may be a bare list or
// {"tokens":[…]}.
func (s *ConfigService) ListTokens(ctx context.Context, token, org, team string) ([]TeamToken, error) {
	var raw json.RawMessage
	if err := s.c.call(ctx, http.MethodGet, orgPath(org, "teams", url.PathEscape(team), "tokens"), token, nil, nil, &raw); err != nil {
		return nil, err
	}
	var list []TeamToken
	if err := json.Unmarshal(raw, &list); err != nil {
		var wrapped struct {
			Tokens []TeamToken `json:"tokens"`
		}
		if err := json.Unmarshal(raw, &wrapped); err != nil {
			return nil, apperr.Wrap(err, apperr.BadGateway, "peer_rejected", "config service: unreadable token list")
		}
		list = wrapped.Tokens
	}
	return list, nil
}

// IssuedToken is a new team token: Token is "<token_id>.<secret>" and is
// shown to the caller once, never stored.
type IssuedToken struct {
	Token    string    `json:"token"`
	IssuedAt time.Time `json:"issued_at"`
}

// TokenID is the public part of the token.
func (t IssuedToken) TokenID() string {
	id, _, _ := strings.Cut(t.Token, ".")
	return id
}

// IssueToken issues a new team token.
func (s *ConfigService) IssueToken(ctx context.Context, token, org, team string) (IssuedToken, error) {
	var out IssuedToken
	err := s.c.call(ctx, http.MethodPost, orgPath(org, "teams", url.PathEscape(team), "tokens"), token, nil, nil, &out)
	if err == nil && (out.Token == "" || !strings.Contains(out.Token, ".")) {
		err = apperr.New(apperr.BadGateway, "peer_rejected", "config service issued a token not of the form <token_id>.<secret>")
	}
	return out, err
}

// RevokeToken revokes a team token by id.
func (s *ConfigService) RevokeToken(ctx context.Context, token, org, team, tokenID string) error {
	return s.c.call(ctx, http.MethodPost,
		orgPath(org, "teams", url.PathEscape(team), "tokens", url.PathEscape(tokenID), "revoke"), token, nil, nil, nil)
}

// Impersonation is a short-lived team token minted for an admin.
type Impersonation struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// ImpersonationToken mints a token that acts as the team.
func (s *ConfigService) ImpersonationToken(ctx context.Context, token, org, team string) (Impersonation, error) {
	var out Impersonation
	err := s.c.call(ctx, http.MethodPost, orgPath(org, "teams", url.PathEscape(team), "impersonation-token"), token, nil, nil, &out)
	return out, err
}

// Route is the answer of a routing lookup.
type Route struct {
	Found      bool   `json:"found"`
	OrgID      string `json:"org_id"`
	TeamNodeID string `json:"team_node_id"`
	MatchedBy  string `json:"matched_by"`
}

// RoutingLookup finds the team that owns one of the identifiers
// (slack_channel_id, github_repo, …).
func (s *ConfigService) RoutingLookup(ctx context.Context, token string, identifiers map[string]string) (Route, error) {
	var out Route
	h := http.Header{"X-Internal-Service": {"orchestrator"}}
	err := s.c.call(ctx, http.MethodPost, "/api/v1/internal/routing/lookup", token, h,
		map[string]any{"identifiers": identifiers}, &out)
	return out, err
}

// ConfigMe returns the effective config of the team a team token belongs to,
// unwrapping {"effective_config": …} when the service wraps it.
func (s *ConfigService) ConfigMe(ctx context.Context, teamToken string) (map[string]any, error) {
	var out map[string]any
	if err := s.c.call(ctx, http.MethodGet, "/api/v1/config/me", teamToken, nil, nil, &out); err != nil {
		return nil, err
	}
	if inner, ok := out["effective_config"].(map[string]any); ok {
		return inner, nil
	}
	return out, nil
}

package peerstest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/peers"
)

// Config Service routes, usable with Fail.
const (
	RouteAuthMe        = "GET /api/v1/auth/me"
	RouteGetNode       = "GET /api/v1/admin/orgs/{org}/nodes/{node}"
	RouteCreateNode    = "POST /api/v1/admin/orgs/{org}/nodes"
	RoutePatchConfig   = "PUT /api/v1/admin/orgs/{org}/nodes/{node}/config"
	RouteListTokens    = "GET /api/v1/admin/orgs/{org}/teams/{team}/tokens"
	RouteIssueToken    = "POST /api/v1/admin/orgs/{org}/teams/{team}/tokens"
	RouteRevokeToken   = "POST /api/v1/admin/orgs/{org}/teams/{team}/tokens/{token_id}/revoke"
	RouteImpersonate   = "POST /api/v1/admin/orgs/{org}/teams/{team}/impersonation-token"
	RouteRoutingLookup = "POST /api/v1/internal/routing/lookup"
	RouteConfigMe      = "GET /api/v1/config/me"
)

// routingKeys maps a lookup identifier type to the routing list it matches.
var routingKeys = map[string]string{
	"slack_channel_id":           "slack_channel_ids",
	"github_repo":                "github_repos",
	"pagerduty_service_id":       "pagerduty_service_ids",
	"incidentio_alert_source_id": "incidentio_alert_source_ids",
	"coralogix_team_name":        "coralogix_team_names",
	"service":                    "services",
}

// ConfigService is a fake Config Service.
type ConfigService struct {
	faults
	mux *http.ServeMux

	mu             sync.Mutex
	admins         map[string]peers.Identity
	nodes          map[string]map[string]*node // org → node id → node
	tokens         map[teamKey][]*teamToken    // team → tokens
	impersonations map[string]impersonation    // token → team
	// ImpersonationTTL is the lifetime of minted impersonation tokens.
	ImpersonationTTL time.Duration
	// statePath, when set, is where the state is kept (Persist).
	statePath string
}

// teamKey names a team in the fake's maps (a struct: ids joined with a
// separator could collide).
type teamKey struct{ org, team string }

type node struct {
	ID     string         `json:"node_id"`
	Parent string         `json:"parent_id"`
	Type   string         `json:"node_type"`
	Config map[string]any `json:"config"`
}

type teamToken struct {
	ID string
	// Secret is known only for tokens issued since this process started
	// (IssuedSecrets); SecretSHA256 is what a presented token is checked
	// against, and what Persist keeps.
	Secret, SecretSHA256 string
	IssuedAt             time.Time
	RevokedAt            *time.Time
}

type impersonation struct {
	org, team string
	expires   time.Time
}

// TokenState is a team token as the fake holds it.
type TokenState struct {
	ID      string
	Revoked bool
}

// NewConfigService returns an empty fake; add admins, orgs and teams.
func NewConfigService() *ConfigService {
	f := &ConfigService{
		mux:              http.NewServeMux(),
		admins:           map[string]peers.Identity{},
		nodes:            map[string]map[string]*node{},
		tokens:           map[teamKey][]*teamToken{},
		impersonations:   map[string]impersonation{},
		ImpersonationTTL: time.Hour,
	}
	f.handle(RouteAuthMe, f.authMe)
	f.handle(RouteGetNode, f.admin(f.getNode))
	f.handle(RouteCreateNode, f.admin(f.createNode))
	f.handle(RoutePatchConfig, f.admin(f.patchConfig))
	f.handle(RouteListTokens, f.admin(f.listTokens))
	f.handle(RouteIssueToken, f.admin(f.issueToken))
	f.handle(RouteRevokeToken, f.admin(f.revokeToken))
	f.handle(RouteImpersonate, f.admin(f.impersonate))
	f.handle(RouteRoutingLookup, f.routingLookup)
	f.handle(RouteConfigMe, f.configMe)
	return f
}

// ServeHTTP serves the fake's API.
func (f *ConfigService) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.mux.ServeHTTP(w, r) }

func (f *ConfigService) handle(route string, h http.HandlerFunc) {
	f.mux.HandleFunc(route, f.wrap(route, h))
}

// AddAdmin makes token an admin token with the identity.
func (f *ConfigService) AddAdmin(token string, id peers.Identity) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.admins[token] = id
}

// AddOrg creates an org (its root node).
func (f *ConfigService) AddOrg(org string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addOrgLocked(org)
}

func (f *ConfigService) addOrgLocked(org string) {
	if f.nodes[org] == nil {
		f.nodes[org] = map[string]*node{org: {ID: org, Type: "org", Config: map[string]any{}}}
	}
}

// AddTeam creates a team node with a config.
func (f *ConfigService) AddTeam(org, team string, config map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addOrgLocked(org)
	if config == nil {
		config = map[string]any{}
	}
	f.nodes[org][team] = &node{ID: team, Parent: org, Type: "team", Config: config}
}

// NodeConfig returns a copy of a node's config.
func (f *ConfigService) NodeConfig(org, id string) (map[string]any, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.nodes[org][id]
	if n == nil {
		return nil, false
	}
	return clone(n.Config), true
}

// HasNode reports whether the node exists.
func (f *ConfigService) HasNode(org, id string) bool {
	_, ok := f.NodeConfig(org, id)
	return ok
}

// Tokens lists a team's tokens.
func (f *ConfigService) Tokens(org, team string) []TokenState {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []TokenState
	for _, t := range f.tokens[teamKey{org, team}] {
		out = append(out, TokenState{ID: t.ID, Revoked: t.RevokedAt != nil})
	}
	return out
}

func (f *ConfigService) authMe(w http.ResponseWriter, r *http.Request) {
	id, ok := f.identity(r)
	if !ok {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"detail": "invalid token"})
		return
	}
	writeJSON(w, http.StatusOK, id)
}

func (f *ConfigService) identity(r *http.Request) (peers.Identity, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return peers.Identity{}, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.admins[token]
	return id, ok
}

// admin checks the caller is an admin allowed in the path's org.
func (f *ConfigService) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := f.identity(r)
		switch {
		case !ok:
			writeJSON(w, http.StatusUnauthorized, map[string]string{"detail": "invalid token"})
		case id.Role != "admin" || (id.OrgID != "" && id.OrgID != r.PathValue("org")):
			writeJSON(w, http.StatusForbidden, map[string]string{"detail": "forbidden"})
		default:
			h(w, r)
		}
	}
}

func (f *ConfigService) getNode(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.nodes[r.PathValue("org")][r.PathValue("node")]
	if n == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "node not found"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"node_id": n.ID, "parent_id": n.Parent, "node_type": n.Type})
}

func (f *ConfigService) createNode(w http.ResponseWriter, r *http.Request) {
	var in struct {
		NodeID   string `json:"node_id"`
		ParentID string `json:"parent_id"`
		NodeType string `json:"node_type"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.NodeID == "" || in.NodeType == "" {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"detail": "node_id, parent_id and node_type are required"})
		return
	}
	org := r.PathValue("org")
	f.mu.Lock()
	defer f.mu.Unlock()
	nodes := f.nodes[org]
	switch {
	case nodes == nil:
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "org not found"})
	case nodes[in.ParentID] == nil:
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"detail": "parent not found"})
	case nodes[in.NodeID] != nil:
		writeJSON(w, http.StatusConflict, map[string]string{"detail": "node exists"})
	default:
		nodes[in.NodeID] = &node{ID: in.NodeID, Parent: in.ParentID, Type: in.NodeType, Config: map[string]any{}}
		if f.unsaved(w) {
			return
		}
		writeJSON(w, http.StatusCreated, map[string]any{"node_id": in.NodeID, "parent_id": in.ParentID, "node_type": in.NodeType})
	}
}

func (f *ConfigService) patchConfig(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Patch map[string]any `json:"patch"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Patch == nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"detail": "patch object required"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.nodes[r.PathValue("org")][r.PathValue("node")]
	if n == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "node not found"})
		return
	}
	merge(n.Config, in.Patch)
	if f.unsaved(w) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"config": n.Config})
}

// unsaved writes the state where Persist keeps it; if that fails it
// answers 500 and reports true (the change stays in memory only). The
// caller holds f.mu.
func (f *ConfigService) unsaved(w http.ResponseWriter) bool {
	if err := f.saveLocked(); err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"detail": err.Error()})
		return true
	}
	return false
}

func (f *ConfigService) teamExists(org, team string) bool {
	n := f.nodes[org][team]
	return n != nil && n.Type == "team"
}

func (f *ConfigService) listTokens(w http.ResponseWriter, r *http.Request) {
	org, team := r.PathValue("org"), r.PathValue("team")
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.teamExists(org, team) {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "team not found"})
		return
	}
	out := []map[string]any{}
	for _, t := range f.tokens[teamKey{org, team}] {
		out = append(out, map[string]any{"token_id": t.ID, "issued_at": t.IssuedAt, "revoked_at": t.RevokedAt})
	}
	writeJSON(w, http.StatusOK, out)
}

func (f *ConfigService) issueToken(w http.ResponseWriter, r *http.Request) {
	org, team := r.PathValue("org"), r.PathValue("team")
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.teamExists(org, team) {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "team not found"})
		return
	}
	t := &teamToken{ID: "tok_" + randomHex(8), Secret: randomHex(24), IssuedAt: wallclock.Now().UTC()}
	t.SecretSHA256 = secretHash(t.Secret)
	f.tokens[teamKey{org, team}] = append(f.tokens[teamKey{org, team}], t)
	if f.unsaved(w) {
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"token": t.ID + "." + t.Secret, "issued_at": t.IssuedAt})
}

func (f *ConfigService) revokeToken(w http.ResponseWriter, r *http.Request) {
	org, team, id := r.PathValue("org"), r.PathValue("team"), r.PathValue("token_id")
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.tokens[teamKey{org, team}] {
		if t.ID == id {
			if t.RevokedAt == nil {
				now := wallclock.Now().UTC()
				t.RevokedAt = &now
				if f.unsaved(w) {
					return
				}
			}
			writeJSON(w, http.StatusOK, map[string]any{"token_id": id, "revoked": true})
			return
		}
	}
	writeJSON(w, http.StatusNotFound, map[string]string{"detail": "token not found"})
}

func (f *ConfigService) impersonate(w http.ResponseWriter, r *http.Request) {
	org, team := r.PathValue("org"), r.PathValue("team")
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.teamExists(org, team) {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "team not found"})
		return
	}
	tok := "imp_" + randomHex(8) + "." + randomHex(24)
	exp := wallclock.Now().Add(f.ImpersonationTTL).UTC()
	f.impersonations[tok] = impersonation{org: org, team: team, expires: exp}
	writeJSON(w, http.StatusOK, map[string]any{"token": tok, "expires_at": exp})
}

func (f *ConfigService) routingLookup(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Internal-Service") == "" {
		writeJSON(w, http.StatusForbidden, map[string]string{"detail": "internal endpoint"})
		return
	}
	if _, ok := f.identity(r); !ok {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"detail": "invalid token"})
		return
	}
	var in struct {
		Identifiers map[string]string `json:"identifiers"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"detail": "identifiers object required"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	types := make([]string, 0, len(in.Identifiers))
	for t := range in.Identifiers {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, typ := range types {
		key, ok := routingKeys[typ]
		if !ok {
			// Any other identifier type (a configured source's, an
			// Alertmanager label's) matches the routing list of its plural.
			key = typ + "s"
		}
		for _, org := range sortedKeys(f.nodes) {
			for _, id := range sortedKeys(f.nodes[org]) {
				n := f.nodes[org][id]
				routing, _ := n.Config["routing"].(map[string]any)
				list, _ := routing[key].([]any)
				for _, v := range list {
					if s, _ := v.(string); s != "" && s == in.Identifiers[typ] {
						writeJSON(w, http.StatusOK, map[string]any{"found": true, "org_id": org, "team_node_id": id, "matched_by": typ})
						return
					}
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"found": false})
}

func (f *ConfigService) configMe(w http.ResponseWriter, r *http.Request) {
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	defer f.mu.Unlock()
	org, team := "", ""
	if imp, ok := f.impersonations[token]; ok && wallclock.Now().Before(imp.expires) {
		org, team = imp.org, imp.team
	} else {
		id, secret, _ := strings.Cut(token, ".")
		for key, list := range f.tokens {
			for _, t := range list {
				if t.ID == id && t.SecretSHA256 == secretHash(secret) && t.RevokedAt == nil {
					org, team = key.org, key.team
				}
			}
		}
	}
	n := f.nodes[org][team]
	if n == nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"detail": "invalid team token"})
		return
	}
	eff := clone(f.nodes[org][org].Config)
	merge(eff, n.Config)
	writeJSON(w, http.StatusOK, map[string]any{"effective_config": eff, "org_id": org, "team_node_id": team})
}

// merge deep-merges patch into dst (objects merge, everything else replaces).
func merge(dst, patch map[string]any) {
	for k, v := range patch {
		if pv, ok := v.(map[string]any); ok {
			if dv, ok := dst[k].(map[string]any); ok {
				merge(dv, pv)
				continue
			}
			dst[k] = clone(pv)
			continue
		}
		dst[k] = v
	}
}

func clone(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	out := map[string]any{}
	_ = json.Unmarshal(b, &out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// IssuedSecrets returns every credential the fake handed out (full team
// tokens and impersonation tokens), for tests that check none leaked.
func (f *ConfigService) IssuedSecrets() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, list := range f.tokens {
		for _, t := range list {
			if t.Secret != "" {
				out = append(out, t.ID+"."+t.Secret)
			}
		}
	}
	for tok := range f.impersonations {
		out = append(out, tok)
	}
	return out
}

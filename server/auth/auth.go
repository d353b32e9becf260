// Package auth checks admin tokens against the Config Service (SPEC §3): the
// token comes as "Authorization: Bearer" or "X-Admin-Token", /api/v1/auth/me
// says who it is, the role must be admin, and the permissions must include
// admin:* (or, with REQUIRE_ADMIN_STAR=0, the route's scoped permission).
// Successful answers are cached by the token's SHA-256 for a short TTL;
// failures never are.
package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/peers"
)

// Permissions named by the routes of SPEC §3.
const (
	PermAll            = "admin:*"
	PermProvision      = "admin:provision"
	PermProvisionRead  = "admin:provision:read"
	PermDeprovision    = "admin:deprovision"
	PermPipelineRead   = "admin:pipeline:read"
	PermPipelineRun    = "admin:pipeline:trigger"
	PermCronJobsSync   = "admin:cronjobs:sync"
	PermDeploymentRead = "admin:deployment:read"
	PermAgentRun       = "admin:agent:run"
	PermEventsRead     = "admin:events:read"
	PermEventsRedrive  = "admin:events:redrive"
	PermBackup         = "admin:backup"
)

// IdentityChecker is the Config Service call auth needs.
type IdentityChecker interface {
	AuthMe(ctx context.Context, token string) (peers.Identity, error)
}

// Admin is an authenticated admin.
type Admin struct {
	// Token is the admin's own token, forwarded to peers on its behalf.
	// It is never logged or returned.
	Token    string
	Identity peers.Identity
	// Actor names the admin in the audit trail without revealing the token.
	Actor string
}

// CanActOn refuses an org-scoped admin acting on another org.
func (a *Admin) CanActOn(org string) error {
	if a.Identity.OrgID != "" && a.Identity.OrgID != org {
		return apperr.New(apperr.Forbidden, "insufficient_permissions",
			"this admin token is limited to org %q", a.Identity.OrgID)
	}
	return nil
}

// Options configure an Authenticator.
type Options struct {
	Checker     IdentityChecker
	TTL         time.Duration // 0 disables the cache
	RequireStar bool
	MaxEntries  int // default 1024
	Now         func() time.Time
}

// Authenticator checks admin tokens.
type Authenticator struct {
	opts  Options
	mu    sync.Mutex
	cache map[[32]byte]cached
}

type cached struct {
	id      peers.Identity
	expires time.Time
}

// New returns an Authenticator.
func New(o Options) *Authenticator {
	if o.MaxEntries <= 0 {
		o.MaxEntries = 1024
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Authenticator{opts: o, cache: map[[32]byte]cached{}}
}

// TokenFromRequest returns the admin token of a request, or "".
func TokenFromRequest(r *http.Request) string {
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(v)
	}
	return strings.TrimSpace(r.Header.Get("X-Admin-Token"))
}

// Authenticate checks the request's admin token for a permission.
func (a *Authenticator) Authenticate(ctx context.Context, r *http.Request, perm string) (*Admin, error) {
	return a.Check(ctx, TokenFromRequest(r), perm)
}

// Check checks a token for a permission.
func (a *Authenticator) Check(ctx context.Context, token, perm string) (*Admin, error) {
	if token == "" {
		return nil, apperr.New(apperr.Unauthenticated, "missing_admin_token",
			"send the admin token as Authorization: Bearer <token> or X-Admin-Token")
	}
	key := sha256.Sum256([]byte(token))
	id, err := a.identity(ctx, token, key)
	if err != nil {
		return nil, err
	}
	if id.Role != "admin" {
		return nil, apperr.New(apperr.Forbidden, "insufficient_permissions", "role %q is not admin", id.Role)
	}
	if !a.allowed(id.Permissions, perm) {
		need := PermAll
		if !a.opts.RequireStar && perm != "" {
			need = perm + " or " + PermAll
		}
		return nil, apperr.New(apperr.Forbidden, "insufficient_permissions", "this action needs %s", need)
	}
	actor := id.Subject
	if actor == "" {
		actor = "token:" + hex.EncodeToString(key[:6])
	}
	return &Admin{Token: token, Identity: id, Actor: actor}, nil
}

// Permits reports whether an admin Check has let in also holds perm, by
// the same rule Check applies (the page uses it to decide which of its
// sections an admin may see).
func (a *Authenticator) Permits(adm *Admin, perm string) bool {
	return adm != nil && adm.Identity.Role == "admin" && a.allowed(adm.Identity.Permissions, perm)
}

// allowed: admin:* always; otherwise, without REQUIRE_ADMIN_STAR, the
// scoped permission — or, for perm "" (logging in to the page), any admin:
// permission.
func (a *Authenticator) allowed(perms []string, perm string) bool {
	if slices.Contains(perms, PermAll) {
		return true
	}
	if a.opts.RequireStar {
		return false
	}
	if perm == "" {
		return slices.ContainsFunc(perms, func(p string) bool { return strings.HasPrefix(p, "admin:") })
	}
	return slices.Contains(perms, perm)
}

func (a *Authenticator) identity(ctx context.Context, token string, key [32]byte) (peers.Identity, error) {
	now := a.opts.Now()
	if a.opts.TTL > 0 {
		a.mu.Lock()
		c, ok := a.cache[key]
		a.mu.Unlock()
		if ok && now.Before(c.expires) {
			return c.id, nil
		}
	}
	id, err := a.opts.Checker.AuthMe(ctx, token)
	if err != nil {
		if h, ok := peers.AsHTTPError(err); ok && (h.Status == http.StatusUnauthorized || h.Status == http.StatusForbidden) {
			return peers.Identity{}, apperr.Wrap(err, apperr.Unauthenticated, "invalid_admin_token", "the Config Service does not accept this admin token")
		}
		if ctx.Err() != nil {
			return peers.Identity{}, ctx.Err()
		}
		return peers.Identity{}, apperr.Wrap(err, apperr.Unavailable, "config_service_unavailable", "cannot check the admin token: the Config Service is unavailable")
	}
	if a.opts.TTL > 0 {
		a.store(key, cached{id: id, expires: now.Add(a.opts.TTL)}, now)
	}
	return id, nil
}

// store caches an identity, evicting expired entries (and, if still full,
// an arbitrary one) to stay within MaxEntries.
func (a *Authenticator) store(key [32]byte, c cached, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) >= a.opts.MaxEntries {
		for k, v := range a.cache {
			if !now.Before(v.expires) {
				delete(a.cache, k)
			}
		}
		for k := range a.cache {
			if len(a.cache) < a.opts.MaxEntries {
				break
			}
			delete(a.cache, k)
		}
	}
	a.cache[key] = c
}

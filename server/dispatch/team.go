package dispatch

import (
	"context"
	"net/http"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/store"
	"golang.org/x/time/rate"
)

// teamKey is the map key of a team.
func teamKey(org, team string) string { return org + "|" + team }

// limiter is the team's dispatch limit: TeamPerMinute calls a minute, with
// a burst of as many. It is the team gate: the dispatcher claims a team's
// events only while it has a token, so a held-back event is never touched.
func (d *Dispatcher) limiter(t store.TeamKey) *rate.Limiter {
	d.mu.Lock()
	defer d.mu.Unlock()
	lim := d.teams[teamKey(t.OrgID, t.TeamNodeID)]
	if lim == nil {
		lim = rate.NewLimiter(rate.Limit(float64(d.o.TeamPerMinute)/60), d.o.TeamPerMinute)
		d.teams[teamKey(t.OrgID, t.TeamNodeID)] = lim
	}
	return lim
}

// teamContext is what an agent call for a team needs from the Config
// Service: the impersonation token and the team's effective config, both
// kept for the token's life (SPEC §6 Storms: config/me is cached with it).
type teamContext struct {
	imp peers.Impersonation
	cfg map[string]any
}

// context returns the team's token and config, from the cache while the
// token has more than a minute left, else freshly minted and read.
func (d *Dispatcher) context(ctx context.Context, org, team string) (teamContext, error) {
	key := teamKey(org, team)
	d.mu.Lock()
	tc, ok := d.tctx[key]
	d.mu.Unlock()
	if ok && d.o.Now().Add(time.Minute).Before(tc.imp.ExpiresAt) {
		return tc, nil
	}
	imp, err := d.o.Config.ImpersonationToken(ctx, d.o.InternalAdminToken, org, team)
	if err != nil {
		return teamContext{}, &stepError{"impersonation token", err}
	}
	if imp.ExpiresAt.IsZero() {
		imp.ExpiresAt = d.o.Now().Add(5 * time.Minute)
	}
	cfg, err := d.o.Config.ConfigMe(ctx, imp.Token)
	if err != nil {
		return teamContext{}, &stepError{"team config", err}
	}
	tc = teamContext{imp: imp, cfg: cfg}
	d.mu.Lock()
	d.tctx[key] = tc
	d.mu.Unlock()
	return tc, nil
}

// forget drops a team's cached token and config when a peer refused them.
func (d *Dispatcher) forget(org, team string, err error) {
	if h, ok := peers.AsHTTPError(err); ok && (h.Status == http.StatusUnauthorized || h.Status == http.StatusForbidden) {
		d.mu.Lock()
		delete(d.tctx, teamKey(org, team))
		d.mu.Unlock()
	}
}

// stepError names the dispatch step a peer failure came from.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

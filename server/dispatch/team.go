package dispatch

import (
	"context"
	"net/http"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/tracing"
	"github.com/incidentfox/orchestrator-edge/store"
	"go.opentelemetry.io/otel/trace"
)

// teamID names a team in the dispatcher's maps: its ids alone (a struct,
// never the ids joined with a separator an id could contain), never a
// store.TeamKey, whose OldestDue changes from one scan to the next.
type teamID struct{ org, team string }

func idOf(t store.TeamKey) teamID { return teamID{t.OrgID, t.TeamNodeID} }

// The team gate's budget: TeamPerMinute calls a minute, with a burst of as
// many. The dispatcher claims a team's events only while its budget has a
// token, so a held-back event is never touched. On one replica the bucket
// is in memory; on a shared database (PostgreSQL, several replicas) it is
// the team's row, so the limit holds across replicas (SPEC §13).

// bucket is an in-memory token bucket.
type bucket struct {
	tokens float64
	at     time.Time
}

// take grants up to want calls to the team at now; with none granted, wait
// says when the next token comes.
func (d *Dispatcher) take(t store.TeamKey, want int, now time.Time) (int, time.Duration, error) {
	if d.o.SharedBudget {
		return d.o.Store.TakeTeamBudget(d.work, t.OrgID, t.TeamNodeID, want, d.o.TeamPerMinute, now.UTC())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.teams[idOf(t)]
	if b == nil {
		b = &bucket{tokens: float64(d.o.TeamPerMinute), at: now}
		d.teams[idOf(t)] = b
	}
	level := store.Refill(b.tokens, b.at, now, d.o.TeamPerMinute)
	got, wait := store.TakeTokens(level, want, d.o.TeamPerMinute)
	if got > 0 {
		b.tokens, b.at = level-float64(got), now
	}
	return got, wait, nil
}

// give returns n granted calls that found no event to carry.
func (d *Dispatcher) give(t store.TeamKey, n int, now time.Time) error {
	if n <= 0 {
		return nil
	}
	if d.o.SharedBudget {
		return d.o.Store.ReturnTeamBudget(d.work, t.OrgID, t.TeamNodeID, n, d.o.TeamPerMinute, now.UTC())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if b := d.teams[idOf(t)]; b != nil {
		b.tokens, b.at = store.Refill(b.tokens+float64(n), b.at, now, d.o.TeamPerMinute), now
	}
	return nil
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
	key := teamID{org, team}
	d.mu.Lock()
	tc, ok := d.tctx[key]
	d.mu.Unlock()
	if ok && d.o.Now().Add(time.Minute).Before(tc.imp.ExpiresAt) {
		trace.SpanFromContext(ctx).SetAttributes(tracing.AttrCached.Bool(true))
		return tc, nil
	}
	var imp peers.Impersonation
	err := d.step(ctx, "impersonation token", func(ctx context.Context) (err error) {
		imp, err = d.o.Config.ImpersonationToken(ctx, d.o.InternalAdminToken, org, team)
		return err
	})
	if err != nil {
		return teamContext{}, &stepError{"impersonation token", err}
	}
	if imp.ExpiresAt.IsZero() {
		imp.ExpiresAt = d.o.Now().Add(5 * time.Minute)
	}
	var cfg map[string]any
	err = d.step(ctx, "team config", func(ctx context.Context) (err error) {
		cfg, err = d.o.Config.ConfigMe(ctx, imp.Token)
		return err
	})
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
		delete(d.tctx, teamID{org, team})
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

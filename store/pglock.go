package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// advisoryLock is a PostgreSQL session advisory lock,
// pg_advisory_lock(hashtext(key)) as SPEC §13 names it, held on a
// connection of its own: the lock lives exactly as long as that session, so
// a replica that dies (even by SIGKILL) frees it when the server notices
// the connection is gone.
type advisoryLock struct {
	url, key string
	c        *pgx.Conn
	held     bool
}

func openAdvisoryLock(url, key string) (session, error) {
	return &advisoryLock{url: url, key: key}, nil
}

func (a *advisoryLock) try(ctx context.Context) (bool, error) {
	if a.c == nil {
		cfg, err := pgconnConfig(a.url)
		if err != nil {
			return false, err
		}
		cfg.RuntimeParams["application_name"] = "orchestrator-lock"
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return false, fmt.Errorf("store: lock %s: connect: %w", a.key, err)
		}
		a.c = c
	}
	var ok bool
	if err := a.c.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, a.key).Scan(&ok); err != nil {
		return false, fmt.Errorf("store: lock %s: %w", a.key, err)
	}
	a.held = ok
	return ok, nil
}

func (a *advisoryLock) check(ctx context.Context) error {
	if a.c == nil || !a.held {
		return fmt.Errorf("store: lock %s is not held", a.key)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.c.Ping(ctx); err != nil {
		return fmt.Errorf("store: lock %s may be lost: %w", a.key, err)
	}
	return nil
}

// close ends the session, which releases the lock; an explicit unlock first
// keeps the release prompt even if closing is slow.
func (a *advisoryLock) close() {
	if a.c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if a.held {
		_, _ = a.c.Exec(ctx, `SELECT pg_advisory_unlock(hashtext($1))`, a.key)
	}
	_ = a.c.Close(ctx)
	a.c, a.held = nil, false
}

package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSilences_AtMostAThousandPerOrgOnBothDatabases (SPEC §18, round 4):
// an org has at most MaxActiveSilences silences that have not ended; the
// next is refused (ErrLimit) while another org's are not; one that ends
// or is expired frees a place; two replicas creating silences for the
// last place at once take it once (on PostgreSQL the count and the insert
// hold the org's advisory lock).
func TestSilences_AtMostAThousandPerOrgOnBothDatabases(t *testing.T) {
	replicas(t, func(t *testing.T, one, other *DB, _ string) {
		ctx := context.Background()
		now := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
		// MaxActiveSilences-2 in force, written at once; one that has
		// ended and one expired by hand do not count.
		if _, err := one.write.ExecContext(ctx, `WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?)
				INSERT INTO orchestrator_silences (id, org_id, starts_at, ends_at, comment, created_by, created_at)
				SELECT 'seed-' || i, 'acme', ?, ?, 'window', 'alice', ? FROM seq`,
			MaxActiveSilences-2, ms(now), ms(now.Add(time.Hour)), ms(now)); err != nil {
			t.Fatal(err)
		}
		s := func(org string, ends time.Time) Silence {
			return Silence{OrgID: org, StartsAt: now, EndsAt: ends, Comment: "window", CreatedBy: "alice", CreatedAt: now}
		}
		if _, err := one.CreateSilence(ctx, Silence{OrgID: "acme", StartsAt: now.Add(-2 * time.Hour), EndsAt: now.Add(-time.Hour),
			Comment: "over", CreatedBy: "alice", CreatedAt: now.Add(-2 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		expired, err := one.CreateSilence(ctx, s("acme", now.Add(time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := one.ExpireSilence(ctx, expired.ID, "alice", now); err != nil {
			t.Fatal(err)
		}
		if _, err := one.CreateSilence(ctx, s("acme", now.Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
		// Two replicas race for the last place, sixteen creates.
		var wg sync.WaitGroup
		var mu sync.Mutex
		created, refused := 0, 0
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := []*DB{one, other}[i%2].CreateSilence(ctx, s("acme", now.Add(time.Hour)))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					created++
				case errors.Is(err, ErrLimit):
					refused++
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if created != 1 || refused != 15 {
			t.Fatalf("created %d, refused %d: want the last place taken once", created, refused)
		}
		if _, err := one.CreateSilence(ctx, s("acme", now.Add(time.Hour))); !errors.Is(err, ErrLimit) ||
			err.Error() != fmt.Sprintf("limit reached: org acme has %d silences that have not ended, the most an org may have", MaxActiveSilences) {
			t.Fatalf("the %dth = %v", MaxActiveSilences+1, err)
		}
		if _, err := one.CreateSilence(ctx, s("big", now.Add(time.Hour))); err != nil {
			t.Fatalf("another org's: %v", err)
		}
		// Expiring one frees its place; so does time.
		if _, err := one.ExpireSilence(ctx, "seed-1", "alice", now); err != nil {
			t.Fatal(err)
		}
		if _, err := one.CreateSilence(ctx, s("acme", now.Add(time.Hour))); err != nil {
			t.Fatalf("after one expired: %v", err)
		}
		later := s("acme", now.Add(3*time.Hour))
		later.StartsAt, later.CreatedAt = now.Add(2*time.Hour), now.Add(2*time.Hour)
		if _, err := one.CreateSilence(ctx, later); err != nil {
			t.Fatalf("once the others ended: %v", err)
		}
	})
}

// A recurring silence keeps its time intervals, in order, on both
// databases; a plain one has none.
func TestSilences_RecurringKeepsItsTimeIntervals(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		now := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
		rec, err := db.CreateSilence(ctx, Silence{OrgID: "acme", StartsAt: now, EndsAt: now.AddDate(1, 0, 0), Comment: "weekly",
			CreatedBy: "alice", CreatedAt: now, MuteTimeIntervals: []string{"sunday-maintenance", "nights"}})
		if err != nil {
			t.Fatal(err)
		}
		plain, err := db.CreateSilence(ctx, Silence{OrgID: "acme", StartsAt: now, EndsAt: now.Add(time.Hour), Comment: "once",
			CreatedBy: "alice", CreatedAt: now})
		if err != nil {
			t.Fatal(err)
		}
		got, err := db.GetSilence(ctx, rec.ID)
		if err != nil || strings.Join(got.MuteTimeIntervals, ",") != "sunday-maintenance,nights" {
			t.Fatalf("recurring = %+v %v", got, err)
		}
		active, err := db.ActiveSilences(ctx, now)
		if err != nil || len(active) != 2 {
			t.Fatalf("active = %+v %v", active, err)
		}
		for _, s := range active {
			if s.ID == plain.ID && s.MuteTimeIntervals != nil {
				t.Fatalf("plain silence = %+v", s)
			}
		}
	})
}

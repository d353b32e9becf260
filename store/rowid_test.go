package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// Migration 10: on SQLite the events indexes end in the rowid SQLite adds,
// not in a second copy of the id; down puts the id back; nothing stored
// moves. PostgreSQL keeps the id in them.
func TestMigration10_IndexesDoNotRepeatTheID(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, where string) {
		ctx := context.Background()
		var ids []string
		for i := range 5 {
			r, err := db.InsertEvent(ctx, newEvent("slack", fmt.Sprintf("m10-%d", i), t0))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, r.ID)
		}
		endsInID := func() map[string]bool {
			q := `SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'orchestrator_webhook_events' AND sql IS NOT NULL`
			if db.Shared() {
				q = `SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'orchestrator_webhook_events'`
			}
			rows, err := db.read.QueryContext(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			defs, err := collect(rows, func(s rowScanner) ([2]string, error) {
				var d [2]string
				return d, s.Scan(&d[0], &d[1])
			})
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]bool{}
			for _, d := range defs {
				out[d[0]] = strings.Contains(d[1], ", id)")
			}
			return out
		}
		check := func(state string, wantID bool) {
			t.Helper()
			got := endsInID()
			for _, ix := range rowidIndexes {
				if got[ix.name] != wantID {
					t.Errorf("%s, %s: %s ends in id = %v, want %v", where, state, ix.name, got[ix.name], wantID)
				}
			}
			// Read by key, not by GetEvent: at schema 9 the events table
			// lacks columns later migrations add (decision, 11).
			for _, id := range ids {
				cond, key, _ := eventRef(id)
				var n int
				if err := db.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM orchestrator_webhook_events WHERE `+cond, key).Scan(&n); err != nil || n != 1 {
					t.Errorf("%s, %s: event %s: %d rows, %v", where, state, id, n, err)
				}
			}
		}
		check("migrated", db.Shared())
		if _, err := db.goose.DownTo(ctx, rowidIndexesVersion-1); err != nil {
			t.Fatal(err)
		}
		check("down to 9", true)
		if _, err := db.goose.UpTo(ctx, rowidIndexesVersion); err != nil {
			t.Fatal(err)
		}
		check("up again", db.Shared())
	})
}

package store

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/incidentfox/orchestrator-edge/internal/pgtest"
)

// FuzzInsertEvent is the store's half of the insert path (SPEC §18; the
// webhook package's fuzz targets are the door's half: whatever a vendor
// sends, the event a verifier makes is clean text within bounds). Here, on
// SQLite and on a real PostgreSQL: an event of clean text within the
// columns' bounds is stored and reads back as written; any other is
// ErrInvalid before it reaches a batch — never a database error, which
// would fail the events committed with it.
func FuzzInsertEvent(f *testing.F) {
	f.Add("d-1", "app_mention", "slack_channel_id", "C0A4967KRBM", "application/json", []byte(`{"a":1}`))
	f.Add("d\x00", "issues\xff", "coralogix_team_name", "ac\x00me", "v\xc3", []byte{0, 0xff})
	f.Add(strings.Repeat("é", 255), strings.Repeat("a", 129), "k", strings.Repeat("ü", 300), "", []byte(nil))
	dbs := map[string]*DB{"sqlite": openMigrated(f, Options{Path: filepath.Join(f.TempDir(), "f.db")}),
		"postgres": openMigrated(f, Options{URL: pgtest.Database(f)})}
	f.Fuzz(func(t *testing.T, delivery, eventType, identKey, identValue, header string, body []byte) {
		e := Event{Source: "slack", DeliveryID: delivery, EventType: eventType, Status: EventQueued,
			Identifiers: map[string]string{identKey: identValue}, Headers: map[string]string{"x-h": header},
			Body: body, BodySHA256: strings.Repeat("ab", 32), ReceivedAt: t0}
		clean := func(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }
		valid := delivery != "" && clean(delivery) && clean(eventType) && clean(identKey) && clean(identValue) && clean(header) &&
			utf8.RuneCountInString(delivery) <= 255 && utf8.RuneCountInString(eventType) <= 128
		for name, db := range dbs {
			r, err := db.InsertEvent(context.Background(), e)
			switch {
			case !valid && !errors.Is(err, ErrInvalid):
				t.Fatalf("%s: unclean or oversized event: %v, want ErrInvalid", name, err)
			case !valid:
				continue
			case err != nil:
				t.Fatalf("%s: clean event refused: %v", name, err)
			}
			got, err := db.GetEvent(context.Background(), r.ID)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if r.Duplicate {
				continue // the same delivery id came before
			}
			if got.DeliveryID != delivery || got.EventType != eventType || !maps.Equal(got.Identifiers, e.Identifiers) ||
				!maps.Equal(got.Headers, e.Headers) || string(got.Body) != string(body) {
				t.Fatalf("%s: stored %+v, wrote %+v", name, got, e)
			}
		}
	})
}

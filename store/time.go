package store

import (
	"database/sql/driver"
	"fmt"
	"time"
)

// timeLayout is how times are written: fixed-width UTC text, so that text
// order is time order in SQLite and PostgreSQL reads it as a TIMESTAMP.
const timeLayout = "2006-01-02T15:04:05.000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// nullTime scans a TIMESTAMP column whichever way the driver hands it over
// (modernc parses TIMESTAMP text into time.Time; a plain read gives text).
type nullTime struct {
	Time  time.Time
	Valid bool
}

func (n *nullTime) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*n = nullTime{}
		return nil
	case time.Time:
		*n = nullTime{Time: v.UTC(), Valid: true}
		return nil
	case string:
		return n.parse(v)
	case []byte:
		return n.parse(string(v))
	}
	return fmt.Errorf("store: cannot scan %T into a time", v)
}

func (n *nullTime) parse(s string) error {
	for _, layout := range []string{timeLayout, time.RFC3339Nano, "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			*n = nullTime{Time: t.UTC(), Valid: true}
			return nil
		}
	}
	return fmt.Errorf("store: unreadable time %q", s)
}

// Value lets nullTime be written too.
func (n nullTime) Value() (driver.Value, error) {
	if !n.Valid {
		return nil, nil
	}
	return formatTime(n.Time), nil
}

func (n nullTime) ptr() *time.Time {
	if !n.Valid {
		return nil
	}
	t := n.Time
	return &t
}

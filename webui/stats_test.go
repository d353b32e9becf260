package webui

import "testing"

// "Full in about N days" only within a year: the newcomer's overview said
// "Full in about 2127124 days at this week's rate".
func TestOutlook_FullInDaysOnlyWithinAYear(t *testing.T) {
	const gb = int64(1) << 30
	for _, c := range []struct {
		name      string
		available int64
		perDay    float64
		filling   bool
		days      int
		farOff    bool
	}{
		{"fills in 10 days", 10 * gb, float64(gb), true, 10, false},
		{"fills in a year exactly", 365 * gb, float64(gb), true, 365, false},
		{"fills in 366 days", 366 * gb, float64(gb), false, 0, true},
		{"the newcomer's 2127124 days", 4 * gb, float64(4*gb) / 2127124, false, 0, true},
		{"shrinking", 10 * gb, -5, false, 0, false},
		{"no change", 10 * gb, 0, false, 0, false},
		{"already full", 0, float64(gb), false, 0, false},
	} {
		filling, days, farOff := outlook(c.available, c.perDay)
		if filling != c.filling || days != c.days || farOff != c.farOff {
			t.Errorf("%s: outlook = %v %d %v, want %v %d %v", c.name, filling, days, farOff, c.filling, c.days, c.farOff)
		}
	}
}

package server_test

import (
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// postPage posts a form as the browser would and returns the page it
// answers with (no redirect followed).
func postPage(t *testing.T, c *http.Client, base, path string, form url.Values) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err := noFollow(c).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The new-silence form takes hours, so its errors speak of hours: it used
// to answer about ends_at, a field the person never saw. Nothing is set.
func TestUI_SilenceFormErrorsSpeakOfTheHoursFilled(t *testing.T) {
	e, base := uiEnv(t, envOptions{})
	c := login(t, base, adminToken)
	errorOf := regexp.MustCompile(`<div class="error" id="error">([^<]*)</div>`)
	for hours, want := range map[string]string{
		"1000": "For how many hours: at most 720 (30 days); 1000 is more.",
		"721":  "For how many hours: at most 720 (30 days); 721 is more.",
		"0":    "For how many hours: a number of hours, e.g. 2 or 0.5.",
		"-3":   "For how many hours: a number of hours, e.g. 2 or 0.5.",
		"two":  "For how many hours: a number of hours, e.g. 2 or 0.5.",
	} {
		code, page := postPage(t, c, base, "/ui/silences", url.Values{"org_id": {"acme"}, "hours": {hours}, "comment": {"db failover"}})
		m := errorOf.FindStringSubmatch(page)
		if code != 400 || m == nil || html.UnescapeString(m[1]) != want || strings.Contains(page, "ends_at") {
			t.Errorf("hours %s = %d, error %v", hours, code, m)
		}
	}
	if r := e.do("GET", "/api/v1/admin/silences", adminToken, nil); len(r.body["silences"].([]any)) != 0 {
		t.Fatalf("a refused form set a silence: %s", r.raw)
	}
	// 720 hours is the most, and is set.
	if code, page := postPage(t, c, base, "/ui/silences", url.Values{"org_id": {"acme"}, "hours": {"720"}, "comment": {"db failover"}}); code != http.StatusSeeOther {
		t.Fatalf("720 hours = %d %s", code, errorOf.FindString(page))
	}
}

// A recurring silence set on the page: the form takes the time intervals'
// names (up to a year of hours), refuses a name the sources file lacks, and
// the list says when the next window opens.
func TestUI_RecurringSilenceFormAndItsNextWindow(t *testing.T) {
	e, base := uiEnv(t, envOptions{})
	e.setRoutes(sundayMaintenance)
	c := login(t, base, adminToken)
	errorOf := regexp.MustCompile(`<div class="error" id="error">([^<]*)</div>`)
	code, page := postPage(t, c, base, "/ui/silences", url.Values{"org_id": {"acme"}, "hours": {"2000"}, "comment": {"weekly"},
		"mute_time_intervals": {"sunday-maintenance, nope"}})
	if m := errorOf.FindStringSubmatch(page); code != 400 || m == nil ||
		!strings.Contains(html.UnescapeString(m[1]), `mute_time_intervals: "nope" is not a time interval (defined: sunday-maintenance)`) {
		t.Fatalf("unknown interval = %d, error %v", code, m)
	}
	if code, page := postPage(t, c, base, "/ui/silences", url.Values{"org_id": {"acme"}, "hours": {"9000"}, "comment": {"weekly"},
		"mute_time_intervals": {"sunday-maintenance"}}); code != 400 || !strings.Contains(page, "at most 8760 (a year, for a recurring silence)") {
		t.Fatalf("9000 hours = %d %s", code, errorOf.FindString(page))
	}
	if code, page := postPage(t, c, base, "/ui/silences", url.Values{"org_id": {"acme"}, "hours": {"2000"}, "comment": {"weekly"},
		"mute_time_intervals": {"sunday-maintenance"}}); code != http.StatusSeeOther {
		t.Fatalf("recurring = %d %s", code, errorOf.FindString(page))
	}
	r := e.do("GET", "/api/v1/admin/silences", adminToken, nil)
	sil := r.body["silences"].([]any)[0].(map[string]any)
	next := sil["next_window"].(map[string]any)
	starts, _ := time.Parse(time.RFC3339, next["starts_at"].(string))
	_, list := getPage(t, c, base+"/ui/silences")
	if !strings.Contains(list, "recurring, during <code>sunday-maintenance</code>") ||
		!strings.Contains(list, "next opens "+starts.UTC().Format("2006-01-02 15:04")) && !strings.Contains(list, "muting now") {
		t.Fatalf("the list does not show the recurrence (next window %v):\n%s", next, list)
	}
}

package server_test

import (
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
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

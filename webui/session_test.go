package webui

import "testing"

// A login returns only to a page of this admin page: never to another host
// however the address is written, never out of /ui/.
func TestSafeNext_OnlyPagesOfThisAdminPage(t *testing.T) {
	for next, want := range map[string]string{
		"/ui/events?source=slack&status=dead": "/ui/events?source=slack&status=dead",
		"/ui/teams/acme/platform-sre":         "/ui/teams/acme/platform-sre",
		"/ui/events/12?x=1#frag":              "/ui/events/12?x=1",
		"":                                    "",
		"//evil.example":                      "",
		"//evil.example/ui/events":            "",
		"https://evil.example/ui/events":      "",
		"https://evil":                        "",
		"http:/ui/events":                     "",
		"/\\evil.example":                     "",
		"/ui/\\evil.example":                  "",
		"/ui//evil.example":                   "",
		"/ui/../evil":                         "",
		"/ui/%2e%2e/evil":                     "",
		"/api/v1/admin/events":                "",
		"/ui/login":                           "",
		"/ui/events\r\nSet-Cookie: x=y":       "",
		"javascript:alert(1)":                 "",
		"/ui/events?next=//evil.example":      "/ui/events?next=//evil.example", // a query is only data for the page
		"\t/ui/events":                        "",
		"/ui/events\x00":                      "",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

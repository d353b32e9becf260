package webui

import (
	"crypto/tls"
	"net/http/httptest"
	"net/netip"
	"testing"
)

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

// The page's cookies are Secure over TLS, or when the proxy in front,
// trusted, says the browser used https: its own word (the last value), not
// one a client put before it. Never from an untrusted peer's header.
func TestSecure_TLSOrATrustedProxysWord(t *testing.T) {
	proxy := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, c := range []struct {
		mode   string
		peer   string
		tls    bool
		protos []string
		want   bool
	}{
		{"", "192.0.2.1:5000", true, nil, true},
		{"auto", "192.0.2.1:5000", false, nil, false},
		{"auto", "192.0.2.1:5000", false, []string{"https"}, false},
		{"auto", "10.1.2.3:5000", false, []string{"https"}, true},
		{"auto", "10.1.2.3:5000", false, []string{"HTTPS"}, true},
		{"auto", "10.1.2.3:5000", false, []string{"https, http"}, false},
		{"auto", "10.1.2.3:5000", false, []string{"http", "https"}, true},
		{"auto", "10.1.2.3:5000", false, []string{"http"}, false},
		{"true", "192.0.2.1:5000", false, nil, true},
		{"false", "10.1.2.3:5000", true, []string{"https"}, false},
	} {
		r := httptest.NewRequest("GET", "/ui/login", nil)
		r.RemoteAddr = c.peer
		if c.tls {
			r.TLS = &tls.ConnectionState{}
		}
		for _, p := range c.protos {
			r.Header.Add("X-Forwarded-Proto", p)
		}
		u := &UI{o: Options{Settings: Settings{CookieSecure: c.mode, TrustedProxies: proxy}}}
		if got := u.secure(r); got != c.want {
			t.Errorf("mode %q from %s, TLS %v, X-Forwarded-Proto %q: Secure = %v, want %v", c.mode, c.peer, c.tls, c.protos, got, c.want)
		}
	}
}

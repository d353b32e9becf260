package server_test

import (
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// Logging in from a deep link returns to the page asked for (it used to
// land on the overview), and only to a page of this admin page: a link
// whose next names another host — //evil.example, https://evil — logs in
// to the overview instead of sending the admin away (no open redirect).
func TestUI_LoginReturnsToTheDeepLinkAndNowhereElse(t *testing.T) {
	_, base := uiEnv(t, envOptions{})
	jar, _ := cookiejar.New(nil)
	c := noFollow(&http.Client{Jar: jar})

	resp, err := c.Get(base + "/ui/events?source=slack&status=dead")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || loc != "/ui/login?next=%2Fui%2Fevents%3Fsource%3Dslack%26status%3Ddead" {
		t.Fatalf("the deep link without a session = %d → %q", resp.StatusCode, loc)
	}
	code, page := getPage(t, &http.Client{Jar: jar}, base+loc)
	if code != 200 || !strings.Contains(page, `<input type="hidden" name="next" value="/ui/events?source=slack&amp;status=dead">`) {
		t.Fatalf("the login form does not carry the page asked for:\n%s", page)
	}
	resp = formPost(t, c, base, "/ui/login", url.Values{"token": {adminToken}, "next": {"/ui/events?source=slack&status=dead"}})
	if got := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || got != "/ui/events?source=slack&status=dead" {
		t.Fatalf("the login went to %d %q", resp.StatusCode, got)
	}
	// Already logged in, the login page with a next goes there at once.
	resp, _ = c.Get(base + "/ui/login?next=" + url.QueryEscape("/ui/teams"))
	if resp.Body.Close(); resp.Header.Get("Location") != "/ui/teams" {
		t.Fatalf("logged in, /ui/login?next=/ui/teams went to %q", resp.Header.Get("Location"))
	}

	// An attacker's next: the login works and goes to the overview.
	for _, evil := range []string{"//evil.example", "https://evil", "/\\evil.example", "/ui//evil.example", "/ui/../../evil"} {
		jar, _ := cookiejar.New(nil)
		c := noFollow(&http.Client{Jar: jar})
		code, page := getPage(t, &http.Client{Jar: jar}, base+"/ui/login?next="+url.QueryEscape(evil))
		if code != 200 || strings.Contains(page, `name="next"`) {
			t.Errorf("the login form keeps next=%q", evil)
		}
		resp := formPost(t, c, base, "/ui/login", url.Values{"token": {adminToken}, "next": {evil}})
		if got := resp.Header.Get("Location"); got != "/ui/overview" {
			t.Errorf("next=%q: the login went to %q", evil, got)
		}
	}
}

// The session cookie is Secure whenever the page is reached over HTTPS
// (SPEC §18, round 4): by default (auto) when a proxy the operator trusts
// says X-Forwarded-Proto: https; the same header from anyone else is not
// believed; ORCHESTRATOR_COOKIE_SECURE=true and false override. (Served
// over TLS itself, see webui's TestSecure_*.)
func TestUI_SessionCookieIsSecureBehindHTTPS(t *testing.T) {
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	for _, c := range []struct {
		name  string
		o     envOptions
		proto string
		want  bool
	}{
		{"auto, a trusted proxy says https", envOptions{trustedProxies: loopback}, "https", true},
		{"auto, a trusted proxy says http", envOptions{trustedProxies: loopback}, "http", false},
		{"auto, plain HTTP", envOptions{trustedProxies: loopback}, "", false},
		{"auto, an untrusted sender says https", envOptions{}, "https", false},
		{"true, plain HTTP", envOptions{cookieSecure: "true"}, "", true},
		{"false, a trusted proxy says https", envOptions{cookieSecure: "false", trustedProxies: loopback}, "https", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, base := uiEnv(t, c.o)
			req, _ := http.NewRequest("POST", base+"/ui/login", strings.NewReader(url.Values{"token": {adminToken}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", base)
			if c.proto != "" {
				req.Header.Set("X-Forwarded-Proto", c.proto)
			}
			resp, err := noFollow(&http.Client{}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			var session *http.Cookie
			for _, ck := range resp.Cookies() {
				if ck.Value != "" {
					session = ck
				}
			}
			if resp.StatusCode != http.StatusSeeOther || session == nil {
				t.Fatalf("login = %d, cookies %v", resp.StatusCode, resp.Cookies())
			}
			if session.Secure != c.want || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode {
				t.Fatalf("session cookie %q: Secure %v (want %v), HttpOnly %v, SameSite %v", session.Name, session.Secure, c.want,
					session.HttpOnly, session.SameSite)
			}
		})
	}
}

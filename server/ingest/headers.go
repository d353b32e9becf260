package ingest

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// credentialWords mark a header that may carry a credential: any header
// whose name holds one of them is stored as "[redacted]" (SPEC §18). A rule,
// not a list of names, so Proxy-Authorization, Authentication, X-Api-Key,
// X-Auth, X-Pass or a vendor's next header are covered too.
var credentialWords = []string{"auth", "token", "secret", "key", "pass", "cookie", "session", "credential"}

// credentialValue matches values shaped like credentials whatever their
// header's name: Bearer and Basic credentials, JWTs, Standard Webhooks
// secrets and Slack tokens.
var credentialValue = regexp.MustCompile(`(?i)(\bbearer\s|\bbasic\s)|eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.|whsec_|\bxox[a-z]-`)

// credentialHints are what every match of credentialValue contains, in
// lower case: a value without any of them cannot match, and most values
// (content types, user agents, timestamps) are cleared without the regular
// expression, which cost the door more than verifying the signature.
var credentialHints = []string{"bearer", "basic", "eyj", "whsec_", "xox"}

// credentialShaped is credentialValue.MatchString(val), cheaply. A value
// with any non-ASCII byte goes to the expression (its case folding knows
// that ſ is an s and K a k).
func credentialShaped(val string) bool {
	for i := 0; i < len(val); i++ {
		if val[i] >= utf8.RuneSelf {
			return credentialValue.MatchString(val)
		}
	}
	for _, h := range credentialHints {
		if containsFold(val, h) {
			return credentialValue.MatchString(val)
		}
	}
	return false
}

// containsFold reports whether s contains the lower-case ASCII sub in any
// case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// storedHeaders keeps the request's headers for the audit trail: the
// headers that verified the request (verify, in lower case: signature,
// token, timestamp, delivery id, basic auth — whatever their names) and any
// signature header left out (a replay needs only the body and them, and
// the body's hash is kept), credentials redacted by name and by the shape
// of the value, the size bounded.
func storedHeaders(h http.Header, verify []string) map[string]string {
	out := map[string]string{}
	size := 0
	for k, v := range h {
		lk := strings.ToLower(k)
		if strings.Contains(lk, "signature") || slices.Contains(verify, lk) {
			continue
		}
		val := strings.Join(v, ", ")
		if slices.ContainsFunc(credentialWords, func(w string) bool { return strings.Contains(lk, w) }) || credentialShaped(val) {
			val = "[redacted]"
		}
		if size += len(lk) + len(val); size > 16<<10 {
			break
		}
		out[lk] = val
	}
	return out
}

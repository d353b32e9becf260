package ingest

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
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

// storedHeaders keeps the request's headers for the audit trail: signature
// headers left out (a replay needs only the body and them, and the body's
// hash is kept), credentials redacted by name and by the shape of the
// value, the size bounded.
func storedHeaders(h http.Header) map[string]string {
	out := map[string]string{}
	size := 0
	for k, v := range h {
		lk := strings.ToLower(k)
		if strings.Contains(lk, "signature") {
			continue
		}
		val := strings.Join(v, ", ")
		if slices.ContainsFunc(credentialWords, func(w string) bool { return strings.Contains(lk, w) }) || credentialValue.MatchString(val) {
			val = "[redacted]"
		}
		if size += len(lk) + len(val); size > 16<<10 {
			break
		}
		out[lk] = val
	}
	return out
}

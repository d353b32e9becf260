package answers

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// runMarker is the text a post carries so that a retry can find it: the
// GitHub comment wraps it in an HTML comment, the PagerDuty note shows it
// on its last line.
func runMarker(runID string) string { return "orchestrator-edge:run=" + runID }

// retryAfterHeader reads Retry-After: delay-seconds or an HTTP date
// (RFC 9110 §10.2.3), as a wait from now.
func retryAfterHeader(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// maxErrorBody bounds what is read of a vendor's error answer.
const maxErrorBody = 64 << 10

// readBody reads at most limit bytes of an answer and closes it.
func readBody(resp *http.Response, limit int64) []byte {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, limit))
	// Drain a little more so that the connection can be reused.
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	return b
}

// cutRunes returns s cut to at most n characters (runes), preferring to
// end at a line break in the last tenth, and whether it was cut.
func cutRunes(s string, n int) (string, bool) {
	if utf8.RuneCountInString(s) <= n {
		return s, false
	}
	if n <= 0 {
		return "", true
	}
	i, count := 0, 0
	for i < len(s) && count < n {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
		count++
	}
	cut := s[:i]
	if nl := strings.LastIndexByte(cut, '\n'); nl > 0 && utf8.RuneCountInString(cut[nl:]) <= n/10 {
		cut = cut[:nl]
	}
	return strings.TrimRight(cut, " \t\r\n"), true
}

// oneLine makes a vendor's message fit one line of an error.
func oneLine(s string, limit int) string {
	s = strings.Join(strings.Fields(s), " ")
	if out, cut := cutRunes(s, limit); cut {
		return out + "…"
	}
	return s
}

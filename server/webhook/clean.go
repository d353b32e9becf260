package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"
)

// What the door stores is clean text (SPEC §18): headers, delivery ids,
// event types and identifiers are valid UTF-8 without NUL, and are cut only
// on character boundaries. A header that is not is the caller's mistake
// (400); a value read from a signed body is the vendor's, so it is
// repaired instead of refusing an authentic event.

// CheckHeaders reports the first header whose name or value is not clean
// text: not valid UTF-8, or holding a NUL.
func CheckHeaders(h http.Header) error {
	for name, values := range h {
		if !cleanText(name) {
			return fmt.Errorf("%w: a header name is not valid UTF-8 text", ErrPayload)
		}
		for _, v := range values {
			if !cleanText(v) {
				return fmt.Errorf("%w: header %s is not valid UTF-8 text without NUL", ErrPayload, name)
			}
		}
	}
	return nil
}

func cleanText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// clean repairs a value read from a payload and bounds it: invalid bytes
// and NUL become U+FFFD, and the result is at most n bytes, cut on a
// character boundary.
func clean(s string, n int) string {
	if !cleanText(s) {
		s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	}
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// githubEvent is what an X-GitHub-Event value looks like: GitHub's event
// names are lower-case words, digits and underscores (projects_v2_item).
var githubEvent = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

// blankParsedString is blankTopLevelString(body, key) for a body already
// parsed into m, without a second JSON decoder when it can be done
// exactly: the key's value in m is not a non-empty string, or the quoted
// key occurs once in the body and no \u escape could spell it another way,
// so that occurrence is the top-level key and its string is cut out
// directly. Every other body goes the decoder's way.
func blankParsedString(body []byte, m map[string]any, key string) []byte {
	quoted := []byte(`"` + key + `"`)
	n, escaped := bytes.Count(body, quoted), bytes.Contains(body, []byte(`\u`))
	v, _ := m[key].(string)
	switch {
	case escaped || n > 1:
		return blankTopLevelString(body, key)
	case n == 0 || v == "":
		return nil
	}
	i := bytes.Index(body, quoted) + len(quoted)
	space := func() {
		for i < len(body) && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r') {
			i++
		}
	}
	space()
	if i >= len(body) || body[i] != ':' {
		return blankTopLevelString(body, key)
	}
	i++
	space()
	if i >= len(body) || body[i] != '"' {
		return blankTopLevelString(body, key)
	}
	start := i
	for i++; i < len(body) && body[i] != '"'; i++ {
		if body[i] == '\\' {
			i++
		}
	}
	if i >= len(body) {
		return blankTopLevelString(body, key)
	}
	out := make([]byte, 0, len(body)-(i+1-start)+2)
	out = append(out, body[:start]...)
	out = append(out, `""`...)
	return append(out, body[i+1:]...)
}

// blankTopLevelString returns body with the string value of the top-level
// key replaced by "" (every other byte kept as it was), or nil when the
// body has no such string.
func blankTopLevelString(body []byte, key string) []byte {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil
		}
		start := dec.InputOffset()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil
		}
		end := dec.InputOffset()
		if k, _ := t.(string); k != key || len(raw) < 2 || raw[0] != '"' || string(raw) == `""` {
			continue
		}
		at := bytes.Index(body[start:end], raw)
		if at < 0 {
			return nil
		}
		out := make([]byte, 0, len(body)-len(raw)+2)
		out = append(out, body[:int(start)+at]...)
		out = append(out, `""`...)
		return append(out, body[int(start)+at+len(raw):]...)
	}
	return nil
}

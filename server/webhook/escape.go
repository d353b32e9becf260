package webhook

import (
	"fmt"
	"strings"
	"unicode"
)

// Text a sender wrote reaches the agent's message: alert names, labels,
// annotations, titles, a button's value. Written as it came, a label
// holding a newline and "- 3 alerts for acme/…" fakes a digest line, and an
// escape sequence or a right-to-left override hides what a person reading
// the message sees (SPEC §18, round 4). So the agent's message escapes every
// control character, the Unicode line and paragraph separators and the
// bidirectional formatting characters, as visible text (\n, \x1b, \u2028):
// one event is one line. A Slack mention is a person's own question, sent
// alone, never in a digest: its line breaks and tabs stay.

// EscapeText escapes control characters, line and paragraph separators and
// bidirectional formatting characters in s as visible text.
func EscapeText(s string) string { return escapeText(s, false) }

// escapeText is EscapeText; with keepBreaks, newlines and tabs stay.
func escapeText(s string, keepBreaks bool) string {
	if strings.IndexFunc(s, func(r rune) bool { return escaped(r, keepBreaks) }) < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		if !escaped(r, keepBreaks) {
			b.WriteRune(r)
			continue
		}
		switch r {
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x100 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		}
	}
	return b.String()
}

// escaped reports whether r is escaped in the agent's message.
func escaped(r rune, keepBreaks bool) bool {
	switch {
	case keepBreaks && (r == '\n' || r == '\t'):
		return false
	case unicode.IsControl(r), r == '\u2028', r == '\u2029':
		return true
	}
	// Bidirectional formatting: the Arabic letter mark, the LRM and RLM,
	// embeddings and overrides, isolates.
	return r == '\u061c' || r == '\u200e' || r == '\u200f' || r >= '\u202a' && r <= '\u202e' || r >= '\u2066' && r <= '\u2069'
}

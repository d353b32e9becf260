package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestAlertKey_ALongKeyIsADigestOfTheWholeKey: two Alertmanager groups
// whose keys share their first 255 characters were one alert when keys
// were cut to the column. A key longer than the column is now its head and
// the SHA-256 of the whole key: two such groups are two alerts, the same
// group is always the same alert, and what is stored fits the column.
func TestAlertKey_ALongKeyIsADigestOfTheWholeKey(t *testing.T) {
	prefix := `{}/{env="production"}:{alertname="KubePodCrashLooping", cluster="` + strings.Repeat("eu-west-1-", 25)
	a, b := prefix+`checkout"}`, prefix+`payments"}`
	var keys []string
	for _, group := range []string{a, b, a} {
		body := fmt.Appendf(nil, `{"version":"4","groupKey":%q,"status":"firing","alerts":[{"status":"firing","fingerprint":"f1"}]}`, group)
		ev, err := ParseAlertmanager(body, nil)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, ev.Alert.Key)
	}
	sum := sha256.Sum256([]byte(a))
	switch {
	case keys[0] == keys[1]:
		t.Fatalf("two groups sharing %d characters are one alert: %q", len(prefix), keys[0])
	case keys[0] != keys[2]:
		t.Fatalf("the same group is two alerts: %q, %q", keys[0], keys[2])
	case !strings.HasPrefix(keys[0], a[:alertKeyHead]) || !strings.HasSuffix(keys[0], "…sha256:"+hex.EncodeToString(sum[:])):
		t.Fatalf("stored key = %q, want the head and the whole key's digest", keys[0])
	}
	for _, k := range keys {
		if utf8.RuneCountInString(k) > MaxAlertKey || len(k) > MaxAlertKey || !utf8.ValidString(k) {
			t.Fatalf("stored key of %d bytes does not fit the column: %q", len(k), k)
		}
	}
	// A key that fits is kept as it is; one with bytes that are not text
	// is repaired and digested, so two that repair alike stay two alerts.
	for _, in := range []string{"INC-42", strings.Repeat("x", 255)} {
		if got := AlertKey(in); got != in {
			t.Errorf("AlertKey(%q) = %q", in, got)
		}
	}
	bad, worse := AlertKey("bad\xffbyte"), AlertKey("bad\xfebyte")
	if !strings.HasPrefix(bad, "bad\uFFFDbyte…sha256:") || bad == worse || !utf8.ValidString(bad) {
		t.Errorf("keys with invalid bytes = %q, %q", bad, worse)
	}
}

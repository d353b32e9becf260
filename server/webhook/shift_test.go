package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// A body is exactly one JSON object or array: bytes after it were signed
// and stored yet read by nobody, and with "{body}.{id}" they could move
// into the delivery id under the same signature.
func TestConfigured_ABodyIsExactlyOneJSONObjectOrArray(t *testing.T) {
	src := parseOne(t, `sources:
  - name: shifty
    verify: {kind: hmac, header: X-Sig, signed: "{body}.{id}", id_header: X-Id, secret_env: S}
    delivery_id: {header: X-Id}
`, map[string]string{"S": "k"})
	v := src.Routes[0].Verifier
	sign := func(body, id string) http.Header {
		m := hmac.New(sha256.New, []byte("k"))
		m.Write([]byte(body + "." + id))
		return http.Header{"X-Sig": {hex.EncodeToString(m.Sum(nil))}, "X-Id": {id}}
	}
	for _, ok := range []string{`{"a":1}`, "{\"a\":1}\n", ` [1,2] `, `{}`} {
		if ev, err := v.Verify([]byte(ok), sign(ok, "d-1"), now); err != nil || ev.DeliveryID != "d-1" {
			t.Errorf("%q: %+v %v", ok, ev, err)
		}
	}
	for _, bad := range []string{`{"a":1}{"a":2}`, `{"a":1} trailing`, `{"a":1},`, `1`, `"text"`, `true`, `null`, ``, `{"a":`} {
		if _, err := v.Verify([]byte(bad), sign(bad, "d-1"), now); !errors.Is(err, ErrPayload) {
			t.Errorf("%q: %v, want a payload error (400)", bad, err)
		}
	}
	// The captured delivery {"a":1}.x.y, sent again as body {"a":1}.x and
	// id y: the same signature, but the body is no longer one value.
	if _, err := v.Verify([]byte(`{"a":1}.x`), sign(`{"a":1}.x`, "y"), now); !errors.Is(err, ErrPayload) {
		t.Errorf("shifted body: %v", err)
	}
}

// The built-in JSON sources hold the same rule: a body with bytes after its
// JSON object is refused (400), whoever signed it.
func TestBuiltins_BytesAfterTheJSONBodyAreRefused(t *testing.T) {
	for _, src := range []string{Slack, GitHub, PagerDuty, IncidentIO, Coralogix, Alertmanager} {
		s1, _ := secretFor(src)
		v := verifierFor(src, s1)
		body := Sample(src, "trailing", now)
		if _, err := v.Verify(body, Sign(src, s1, body, now, "d-1"), now); err != nil {
			t.Fatalf("%s: the sample itself: %v", src, err)
		}
		for _, tail := range []string{`{"more":1}`, "x", ","} {
			b := append(append([]byte{}, body...), tail...)
			if _, err := v.Verify(b, Sign(src, s1, b, now, "d-1"), now); !errors.Is(err, ErrPayload) {
				t.Errorf("%s with %q after the body: %v, want a payload error", src, tail, err)
			}
		}
		b := append(append([]byte{}, body...), "\r\n"...)
		if _, err := v.Verify(b, Sign(src, s1, b, now, "d-1"), now); err != nil {
			t.Errorf("%s with a line end after the body: %v", src, err)
		}
	}
}

// shiftTemplates are signed templates a sources file may hold; each
// placeholder has a header.
var shiftTemplates = []string{"{id}.{timestamp}.{body}", "{body}.{id}", "{timestamp}:{body}:{id}", "{id} {body}",
	"v0:{timestamp}:{body}", "{id}.{body}", "{id}/{body}/{timestamp}"}

// splits cuts s along a template's parts in every way its literals allow
// (at most limit ways), giving placeholder → text for each.
func splits(s string, parts []string, limit int) []map[string]string {
	var out []map[string]string
	var walk func(rest string, i int, got map[string]string)
	walk = func(rest string, i int, got map[string]string) {
		if len(out) >= limit {
			return
		}
		if i == len(parts) {
			if rest == "" {
				cp := map[string]string{}
				for k, v := range got {
					cp[k] = v
				}
				out = append(out, cp)
			}
			return
		}
		p := parts[i]
		if !isPlaceholder(p) {
			if r, ok := strings.CutPrefix(rest, p); ok {
				walk(r, i+1, got)
			}
			return
		}
		if i == len(parts)-1 {
			got[p] = rest
			walk("", i+1, got)
			return
		}
		next := parts[i+1] // literal text: the rules require it
		for at := 0; at <= len(rest); {
			j := strings.Index(rest[at:], next)
			if j < 0 {
				break
			}
			got[p] = rest[:at+j]
			walk(rest[at+j:], i+1, got)
			at += j + 1
		}
		delete(got, p)
	}
	walk(s, 0, map[string]string{})
	return out
}

// FuzzConfiguredSignedOnce: one signature verifies one delivery. For every
// template the rules allow, the bytes one delivery signs are cut in every
// way the template's literal text allows; at most one of those cuts is
// accepted. (Before round 4, "{id}.{body}" accepted both id "a.0" with body
// 1 and id "a" with body 0.1, and "{body}{id}" any number of cuts.)
func FuzzConfiguredSignedOnce(f *testing.F) {
	f.Add(uint8(0), "a.0", []byte(`1`), int64(0))
	f.Add(uint8(5), "a.0", []byte(`1`), int64(0))
	f.Add(uint8(1), "x.y", []byte(`{"a":1}`), int64(3))
	f.Add(uint8(3), "a ", []byte(` {"a":"b c"}`), int64(-7))
	f.Add(uint8(5), `{"k":"`, []byte(`"}.{}`), int64(0))
	f.Add(uint8(6), "a/b", []byte(`["/1/"]`), int64(100))
	f.Add(uint8(2), "9", []byte(`[{"a":"b:c"}]`), int64(0))
	type compiled struct {
		parts []string
		v     Verifier
	}
	var tmpls []compiled
	for i, tmpl := range shiftTemplates {
		verify := `{kind: hmac, header: X-Sig, signed: "` + tmpl + `", secret_env: S`
		if strings.Contains(tmpl, "{id}") {
			verify += ", id_header: X-Id"
		}
		if strings.Contains(tmpl, "{timestamp}") {
			verify += ", timestamp_header: X-Ts"
		}
		file := "sources:\n  - name: t" + strconv.Itoa(i) + "\n    verify: " + verify + "}\n"
		if strings.Contains(tmpl, "{id}") {
			file += "    delivery_id: {header: X-Id}\n"
		}
		src := parseOne(f, file, map[string]string{"S": "k"})
		parts, err := cutTemplate(tmpl, func(string) bool { return true })
		if err != nil {
			f.Fatal(err)
		}
		tmpls = append(tmpls, compiled{parts, src.Routes[0].Verifier})
	}
	f.Fuzz(func(t *testing.T, which uint8, id string, body []byte, skew int64) {
		c := tmpls[int(which)%len(tmpls)]
		ts := strconv.FormatInt(now.Unix()+skew%300, 10)
		orig := map[string]string{"{id}": id, "{timestamp}": ts, "{body}": string(body)}
		var signed strings.Builder
		for _, p := range c.parts {
			if isPlaceholder(p) {
				signed.WriteString(orig[p])
			} else {
				signed.WriteString(p)
			}
		}
		m := hmac.New(sha256.New, []byte("k"))
		m.Write([]byte(signed.String()))
		sig := hex.EncodeToString(m.Sum(nil))
		var accepted []map[string]string
		for _, cut := range splits(signed.String(), c.parts, 2000) {
			h := http.Header{"X-Sig": {sig}}
			if v, ok := cut["{id}"]; ok {
				h["X-Id"] = []string{v}
			}
			if v, ok := cut["{timestamp}"]; ok {
				h["X-Ts"] = []string{v}
			}
			if _, err := c.v.Verify([]byte(cut["{body}"]), h, now); err == nil {
				accepted = append(accepted, cut)
			}
		}
		if len(accepted) > 1 {
			t.Fatalf("template %s: one signature verified %d deliveries: %q",
				shiftTemplates[int(which)%len(tmpls)], len(accepted), accepted)
		}
	})
}

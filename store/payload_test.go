package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// The dictionary of codec 1 decodes every payload ever stored with it: its
// bytes may never change (a new dictionary is a new codec).
func TestPayloadDictionaryIsFixed(t *testing.T) {
	sum := sha256.Sum256(payloadDict)
	if got, want := hex.EncodeToString(sum[:]), payloadDictSHA256; got != want {
		t.Fatalf("payload.dict changed (sha256 %s, codec 1 needs %s): add a new codec for a new dictionary", got, want)
	}
}

const payloadDictSHA256 = "1a804cd80e9c4936c2c08c54af1b6b9063b8e02854f90d24b7ab7c8e1ef1db03"

var slackBody = []byte(`{"token":"","team_id":"T0A1B2C3D","api_app_id":"A0A1B2C3D","event":{"type":"app_mention","user":"U0A1B2C3D","text":"<@U0BOT> why is checkout latency up on the eu-west cluster since the deploy at noon?","ts":"1764115200.000100","channel":"C0A4967KRBM","event_ts":"1764115200.000100"},"type":"event_callback","event_id":"Ev0A1B2C3D4E","event_time":1764115200}`)

var slackHeaders = map[string]string{"accept": "*/*", "accept-encoding": "gzip,deflate", "content-type": "application/json",
	"user-agent": "Slackbot 1.0 (+https://api.slack.com/robots)", "x-slack-request-timestamp": "1764115200"}

func TestPayloadRoundTrips(t *testing.T) {
	for _, c := range []struct {
		name    string
		headers map[string]string
		body    []byte
	}{
		{"slack", slackHeaders, slackBody},
		{"no headers", nil, []byte(`{}`)},
		{"empty body", map[string]string{"a": "b"}, []byte{}},
		{"incompressible", map[string]string{"x": "y"}, []byte("\x00\x01\xff\xfe\x80")},
		{"large", slackHeaders, bytes.Repeat(slackBody, 500)},
	} {
		p := encodePayload(c.headers, c.body)
		h, b, err := decodePayload(p)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !bytes.Equal(b, c.body) || fmt.Sprint(h) != fmt.Sprint(c.headers) {
			t.Fatalf("%s: round trip gave %v %q", c.name, h, b)
		}
		t.Logf("%s: %d bytes of body (+headers) stored in %d", c.name, len(c.body), len(p))
	}
	if p := encodePayload(nil, nil); p != nil {
		t.Fatalf("nothing to store gave %q", p)
	}
	for _, bad := range [][]byte{{9, 1}, {codecRaw, 5, 1}, {codecDict, 0xff, 0xff}, {codecS2Dict, 0xff, 0xff}} {
		if _, _, err := decodePayload(bad); err == nil {
			t.Errorf("decodePayload(%q) = no error", bad)
		}
	}
}

func FuzzDecodePayload(f *testing.F) {
	f.Add(encodePayload(slackHeaders, slackBody))
	f.Add([]byte{codecRaw, 1, 1, 'a', 1, 'b', 'x'})
	f.Fuzz(func(t *testing.T, p []byte) {
		h, b, err := decodePayload(p)
		if err != nil {
			return
		}
		// What decodes encodes back to the same headers and body.
		h2, b2, err := decodePayload(encodePayload(h, b))
		if err != nil || !bytes.Equal(b, b2) || fmt.Sprint(h) != fmt.Sprint(h2) {
			t.Fatalf("re-encoding %q: %v", p, err)
		}
	})
}

// Payloads stored with zstd (codec 1, written until S2 replaced it) are
// read for ever.
func TestPayloadCodec1StillDecodes(t *testing.T) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderDictRaw(1, payloadDict), zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
	if err != nil {
		t.Fatal(err)
	}
	packed := encodePayload(slackHeaders, slackBody)
	if packed[0] != codecS2Dict {
		t.Fatalf("a Slack payload is stored with codec %d, want %d", packed[0], codecS2Dict)
	}
	raw, err := s2Dict.Decode(nil, packed[1:])
	if err != nil {
		t.Fatal(err)
	}
	old := enc.EncodeAll(raw, []byte{codecDict})
	h, b, err := decodePayload(old)
	if err != nil || !bytes.Equal(b, slackBody) || fmt.Sprint(h) != fmt.Sprint(slackHeaders) {
		t.Fatalf("codec 1 payload read back as %v %q (%v)", h, b, err)
	}
}

func BenchmarkEncodePayload(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		encodePayload(slackHeaders, slackBody)
	}
	b.ReportMetric(float64(len(encodePayload(slackHeaders, slackBody))), "bytes")
}

func BenchmarkDecodePayload(b *testing.B) {
	p := encodePayload(slackHeaders, slackBody)
	b.ReportAllocs()
	for b.Loop() {
		_, _, _ = decodePayload(p)
	}
}

package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
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

// fuzzPayloadLimit bounds what one fuzz input may decode to: the check is
// the one decodePayload makes at MaxPayloadBytes, at a size that keeps the
// fuzzer's workers from spending their time zeroing buffers.
const fuzzPayloadLimit = 1 << 20

func FuzzDecodePayload(f *testing.F) {
	f.Add(encodePayload(slackHeaders, slackBody))
	f.Add([]byte{codecRaw, 1, 1, 'a', 1, 'b', 'x'})
	f.Fuzz(func(t *testing.T, p []byte) {
		h, b, err := decodePayloadMax(p, fuzzPayloadLimit)
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

// A 30-byte S2 payload that declares 1,771,251,276 decoded bytes (the input
// the fuzzer found, kept in testdata/fuzz) is refused before anything is
// allocated: it cost 1.7 GB when s2 was trusted with the length (issue 43).
func TestDecodePayload_DeclaredLengthIsBoundedBeforeAllocating(t *testing.T) {
	crafted := []byte("\x02\xcc\xcc\xcc\xcc\x06accept\xf3\xf3\xf3\xf3\x0f:,\x03\x00.-\x03\x00.02\\x")
	if n, err := s2.DecodedLen(crafted[1:]); err != nil || n != 1771251276 {
		t.Fatalf("the crafted payload declares %d bytes (%v), want 1771251276", n, err)
	}
	// A zstd frame (codec 1) that declares more than the bound.
	var frame []byte
	{
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderDictRaw(1, payloadDict), zstd.WithEncoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		frame = enc.EncodeAll(make([]byte, MaxPayloadBytes+1), []byte{codecDict})
	}
	// An S2 block that really decodes to one byte past the bound.
	s2Big := append([]byte{codecS2Dict}, s2Dict.Encode(nil, make([]byte, MaxPayloadBytes+1))...)
	for _, c := range []struct {
		name string
		p    []byte
	}{{"fuzzer's s2 input", crafted}, {"zstd frame past the bound", frame}, {"s2 block past the bound", s2Big}} {
		var err error
		allocated := bytesAllocated(func() { _, _, err = decodePayload(c.p) })
		if !errors.Is(err, errMalformedPayload) {
			t.Errorf("%s: decodePayload = %v, want the malformed payload error", c.name, err)
		}
		if allocated > 4<<20 {
			t.Errorf("%s: decoding it allocated %d bytes, want < 4 MiB", c.name, allocated)
		}
	}
	// The largest payload the door can write still reads back.
	body := bytes.Repeat([]byte("x"), 64<<20)
	h, b, err := decodePayload(encodePayload(slackHeaders, body))
	if err != nil || len(b) != len(body) || len(h) != len(slackHeaders) {
		t.Fatalf("a 64 MiB body read back as %d bytes, %d headers (%v)", len(b), len(h), err)
	}
}

// bytesAllocated is how many bytes f allocates on the heap.
func bytesAllocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
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

// corruptPayload overwrites the stored payload of the event with key.
func corruptPayload(t *testing.T, db *DB, key int64, p []byte) {
	t.Helper()
	res, err := db.write.ExecContext(context.Background(), `UPDATE orchestrator_event_payloads SET payload = ? WHERE event_id = ?`, p, key)
	if n, _ := affectedRows(res, err); n != 1 {
		t.Fatalf("corrupting the payload of event %d: %d rows changed (%v)", key, n, err)
	}
}

// A crafted or corrupt payload row is reported on its own event; the page,
// the list and a claim of many events still read the others (issue 43).
func TestConformance_UnreadablePayloadIsReportedOnItsEventOnly(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		ids := routed(t, db, "o", "t", "github", 3, t0)
		bad, err := db.GetEvent(ctx, ids[1])
		if err != nil {
			t.Fatal(err)
		}
		corruptPayload(t, db, bad.Key, []byte("\x02\xcc\xcc\xcc\xcc\x06accept\xf3\xf3\xf3\xf3\x0f:,\x03\x00.-\x03\x00.02\\x"))
		e, err := db.GetEvent(ctx, ids[1])
		if err != nil || e.PayloadError == "" || e.Body != nil || e.Headers != nil {
			t.Fatalf("GetEvent of the corrupt row = %+v, %v; want it with a payload error", e, err)
		}
		list, _, err := db.ListEvents(ctx, EventFilter{Limit: 10})
		if err != nil || len(list) != 3 {
			t.Fatalf("ListEvents = %d events, %v; want 3", len(list), err)
		}
		evs, err := db.ClaimTeamEvents(ctx, t0.Add(time.Second), t0.Add(time.Hour), TeamKey{OrgID: "o", TeamNodeID: "t"}, Kind{Exclude: true}, 3)
		if err != nil || len(evs) != 3 {
			t.Fatalf("claimed %d, %v; want all 3", len(evs), err)
		}
		for _, c := range evs {
			if (c.ID == ids[1]) != (c.PayloadError != "") || (c.ID != ids[1] && c.Body == nil) {
				t.Fatalf("claimed %s: payload error %q, body %q", c.ID, c.PayloadError, c.Body)
			}
		}
	})
}

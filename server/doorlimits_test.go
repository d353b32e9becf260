package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/backups"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
)

// readCounter is a request body that counts the bytes read from it.
type readCounter struct {
	r *bytes.Reader
	n int
}

func (c *readCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// fromAddr posts a GitHub delivery as the client at remote (headers given
// in pairs), returning the answer and how many body bytes the door read.
func (e *env) fromAddr(remote string, body []byte, h http.Header, header ...string) (response, int) {
	e.t.Helper()
	rc := &readCounter{r: bytes.NewReader(body)}
	req := httptest.NewRequest("POST", webhook.BuiltinPath(webhook.GitHub), rc)
	req.RemoteAddr = remote
	for k, v := range h {
		req.Header[k] = v
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	e.checkAPI(req, body, rec)
	r := response{code: rec.Code, header: rec.Header(), raw: rec.Body.String(), path: req.URL.Path}
	_ = json.Unmarshal(rec.Body.Bytes(), &r.body)
	return r, rc.n
}

// Failed signature checks are counted per client address: after 30 in a
// minute the address is answered 429 with Retry-After before its body is
// read (a valid delivery from it too, until its bucket refills), while
// another address — or another client behind a trusted proxy — is served.
// X-Forwarded-For from an untrusted peer changes nothing.
func TestDoor_FailedSignaturesAreLimitedPerClientAddress(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, noDispatch: true, fakeClock: true,
		trustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	body := []byte(`{"action":"opened","organization":{"login":"acme"}}`)
	signed := func(delivery string) http.Header {
		h := webhook.Sign(webhook.GitHub, githubSecret, body, e.clock.Now(), delivery)
		h.Set("X-GitHub-Event", "issues")
		return h
	}
	forged := func(delivery string) http.Header {
		h := signed(delivery)
		h.Set("X-Hub-Signature-256", "sha256="+fmt.Sprintf("%064x", 7))
		return h
	}
	for i := range 30 {
		r, read := e.fromAddr("203.0.113.7:4000", body, forged(fmt.Sprint("bad-", i)))
		if r.code != 401 || r.body["error"] != "signature_verification_failed" || read != len(body) {
			t.Fatalf("failure %d = %d %s (read %d)", i, r.code, r.raw, read)
		}
	}
	r, read := e.fromAddr("203.0.113.7:4000", body, signed("good-1"))
	if r.code != 429 || r.body["error"] != "too_many_signature_failures" || r.header.Get("Retry-After") != "2" || read != 0 {
		t.Fatalf("31st from the address = %d %s Retry-After %q, read %d bytes", r.code, r.raw, r.header.Get("Retry-After"), read)
	}
	// A forged X-Forwarded-For from an untrusted peer is the same client.
	if r, _ := e.fromAddr("203.0.113.7:4001", body, signed("good-2"), "X-Forwarded-For", "192.0.2.99"); r.code != 429 {
		t.Fatalf("forged X-Forwarded-For = %d %s", r.code, r.raw)
	}
	// Another address is served.
	if r, _ := e.fromAddr("198.51.100.2:4000", body, signed("good-3")); r.code != 200 {
		t.Fatalf("another address = %d %s", r.code, r.raw)
	}
	// Behind a trusted proxy, the client it forwards for has its own budget.
	for i := range 31 {
		r, _ := e.fromAddr("10.1.2.3:5000", body, forged(fmt.Sprint("proxied-", i)), "X-Forwarded-For", "192.0.2.50, 10.9.9.9")
		if want := map[bool]int{true: 401, false: 429}[i < 30]; r.code != want {
			t.Fatalf("proxied failure %d = %d, want %d", i, r.code, want)
		}
	}
	if r, _ := e.fromAddr("10.1.2.3:5000", body, signed("good-4"), "X-Forwarded-For", "192.0.2.51"); r.code != 200 {
		t.Fatalf("another client behind the proxy = %d %s", r.code, r.raw)
	}
	// Two seconds later the first address has one try again.
	e.clock.Add(2 * time.Second)
	if r, _ := e.fromAddr("203.0.113.7:4000", body, signed("good-5")); r.code != 200 {
		t.Fatalf("after the bucket refilled = %d %s", r.code, r.raw)
	}
}

// The door keeps room to drain: on a small volume (a real tmpfs where it
// can be mounted) whose free space falls below half the 10 % reserve, a
// delivery is answered 503 insufficient_storage with Retry-After before
// its body is read, while the store still writes what dispatch and
// retention write; once room comes back the same delivery is accepted.
func TestDoor_BelowHalfTheDiskReserveTheDoorRefusesAndTheStoreStillWrites(t *testing.T) {
	dir, statfs := smallVolume(t)
	e := newEnv(t, envOptions{dataDir: dir, backups: true, statfs: statfs, webhooks: true, noDispatch: true})
	if statfs == nil {
		statfs = backups.StatVolume
	}
	body := []byte(`{"action":"opened","organization":{"login":"acme"}}`)
	h := webhook.Sign(webhook.GitHub, githubSecret, body, wallclock.Now(), "low-disk-1")
	h.Set("X-GitHub-Event", "issues")
	if r, _ := e.fromAddr("198.51.100.9:1", body, h); r.code != 200 {
		t.Fatalf("with room = %d %s", r.code, r.raw)
	}
	h = webhook.Sign(webhook.GitHub, githubSecret, body, wallclock.Now(), "low-disk-2")
	h.Set("X-GitHub-Event", "issues")

	// Fill the volume to 200 KiB under half the reserve.
	vol, err := statfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, vol.Available-(vol.Size*10/200-200<<10)), 0o600); err != nil {
		t.Fatal(err)
	}
	r, read := e.fromAddr("198.51.100.9:1", body, h)
	if r.code != 503 || r.body["error"] != "insufficient_storage" || r.header.Get("Retry-After") != "60" || read != 0 {
		t.Fatalf("below half the reserve = %d %s Retry-After %q, read %d", r.code, r.raw, r.header.Get("Retry-After"), read)
	}
	if !e.metric(`orchestrator_webhook_events_total{outcome="insufficient_storage",source="github"} 1`) {
		t.Fatal("the refusal was not counted as insufficient_storage")
	}
	// What is accepted can still be written: an event's outcome, a purge.
	ctx := context.Background()
	if _, err := e.db.InsertEvent(ctx, store.Event{Source: "github", DeliveryID: "written-while-low", EventType: "push",
		Status: store.EventDelivered, Body: []byte(randomHex(64 << 10)), ReceivedAt: wallclock.Now()}); err != nil {
		t.Fatalf("the store could not write below half the reserve: %v", err)
	}
	// Room comes back: the same delivery is accepted.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if r, _ := e.fromAddr("198.51.100.9:1", body, h); r.code != 200 {
		t.Fatalf("after room came back = %d %s", r.code, r.raw)
	}
}

// Each source has a byte rate limit beside its request limit
// (ORCHESTRATOR_INGEST_BYTES_PER_SECOND): at 64 KiB/s, with a burst of one
// largest body (1 MiB), three verified 256 KiB GitHub deliveries are
// accepted and the fourth is 429 rate_limited with Retry-After; another
// source is not affected, and after Retry-After seconds on the test's
// clock the delivery is taken.
func TestDoor_EachSourceHasAByteRateLimit(t *testing.T) {
	e := newEnv(t, envOptions{webhooks: true, noDispatch: true, fakeClock: true, bytesPerSec: 64 << 10})
	body := []byte(`{"action":"opened","organization":{"login":"acme"},"pad":"` + strings.Repeat("x", 256<<10) + `"}`)
	send := func(delivery string) response {
		h := webhook.Sign(webhook.GitHub, githubSecret, body, e.clock.Now(), delivery)
		h.Set("X-GitHub-Event", "issues")
		r, _ := e.fromAddr("198.51.100.9:1", body, h)
		return r
	}
	for i := range 3 {
		if r := send(fmt.Sprint("bytes-", i)); r.code != 200 {
			t.Fatalf("delivery %d = %d %s", i, r.code, r.raw)
		}
	}
	r := send("bytes-3")
	wantRetry := (len(body) + 64<<10 - 1) / (64 << 10)
	if r.code != 429 || r.body["error"] != "rate_limited" || r.header.Get("Retry-After") != strconv.Itoa(wantRetry) {
		t.Fatalf("past the byte limit = %d %s Retry-After %q, want %d", r.code, r.raw, r.header.Get("Retry-After"), wantRetry)
	}
	pd := []byte(`{"event":{"id":"bytes-pd","event_type":"incident.triggered","data":{"id":"P1","service":{"id":"PSVC"}}}}`)
	if r := e.send(webhook.PagerDuty, pd, webhook.Sign(webhook.PagerDuty, pagerdutySecret, pd, e.clock.Now(), "")); r.code != 200 {
		t.Fatalf("another source = %d %s", r.code, r.raw)
	}
	e.clock.Add(time.Duration(wantRetry) * time.Second)
	if r := send("bytes-3"); r.code != 200 {
		t.Fatalf("after Retry-After = %d %s", r.code, r.raw)
	}
}

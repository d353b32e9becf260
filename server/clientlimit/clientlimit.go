// Package clientlimit counts failures per client address: refused admin
// tokens (server/auth) and failed webhook signatures (server/ingest). Each
// client has a token bucket of failures refilled at a steady rate; once it
// is empty, the client's next attempt is answered 429 without being tried.
// The client is the connection's address, or — behind a proxy the operator
// trusts (ORCHESTRATOR_TRUSTED_PROXIES) — the address that proxy forwarded
// for, so that one caller cannot pass for another by sending a header.
package clientlimit

import (
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// maxClients bounds the buckets kept.
const maxClients = 10000

// Limiter is a bucket of allowed failures per client address.
type Limiter struct {
	perMinute float64
	mu        sync.Mutex
	clients   map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// New returns a limiter allowing perMinute failures a minute per client,
// with a burst of as many (perMinute must be positive).
func New(perMinute int) *Limiter {
	return &Limiter{perMinute: float64(perMinute), clients: map[netip.Addr]*bucket{}}
}

// Wait says how long the client must wait before its next attempt may
// fail (0: it may try now). An unknown client is never limited.
func (l *Limiter) Wait(client netip.Addr, now time.Time) time.Duration {
	if !client.IsValid() {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.clients[client]
	if b == nil {
		return 0
	}
	return l.untilNext(l.level(b, now))
}

// Fail counts a failure of the client. It returns how long the client must
// wait when its bucket was already empty (the failure that empties it
// still returns 0: it is answered as what it is, the next one is 429).
func (l *Limiter) Fail(client netip.Addr, now time.Time) time.Duration {
	if !client.IsValid() {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.clients[client]
	if b == nil {
		if len(l.clients) >= maxClients {
			for k, v := range l.clients { // full buckets first, then any
				if l.level(v, now) >= l.perMinute {
					delete(l.clients, k)
				}
			}
			for k := range l.clients {
				if len(l.clients) < maxClients {
					break
				}
				delete(l.clients, k)
			}
		}
		b = &bucket{tokens: l.perMinute, at: now}
		l.clients[client] = b
	}
	level := l.level(b, now)
	if wait := l.untilNext(level); wait > 0 {
		return wait
	}
	b.tokens, b.at = level-1, now
	return 0
}

// untilNext is how long a bucket at level waits for its next token (0: it
// has one).
func (l *Limiter) untilNext(level float64) time.Duration {
	if level >= 1 {
		return 0
	}
	return time.Duration((1 - level) / l.perMinute * float64(time.Minute))
}

// level is the bucket's tokens at now, refilled at perMinute.
func (l *Limiter) level(b *bucket, now time.Time) float64 {
	return min(l.perMinute, b.tokens+now.Sub(b.at).Minutes()*l.perMinute)
}

// ClientAddr is the address a request's failures are counted against: the
// connection's peer, or — when that peer is a trusted proxy — the last
// address in X-Forwarded-For that is not a trusted proxy.
func ClientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	addr := peerAddr(r)
	if !contains(trusted, addr) {
		return addr
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return addr // a hop we cannot read: count the proxy itself
		}
		if hop = hop.Unmap(); !contains(trusted, hop) {
			return hop
		}
		addr = hop
	}
	return addr
}

// FromTrustedProxy reports whether the request came straight from a proxy
// the operator trusts, so that its X-Forwarded-* headers may be believed.
func FromTrustedProxy(r *http.Request, trusted []netip.Prefix) bool {
	return contains(trusted, peerAddr(r))
}

// peerAddr is the connection's peer address.
func peerAddr(r *http.Request) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	addr := peer.Addr()
	if err != nil {
		addr, _ = netip.ParseAddr(r.RemoteAddr)
	}
	return addr.Unmap()
}

func contains(trusted []netip.Prefix, addr netip.Addr) bool {
	for _, p := range trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

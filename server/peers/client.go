// Package peers holds the HTTP clients of the services the orchestrator talks
// to but does not own: the Config Service, the AI Pipeline and the Agent.
// Every failure comes back as an *apperr.Error whose Kind and Code follow
// SPEC §4 (peer 401/403 → peer_forbidden, other 4xx → peer_rejected, 5xx or
// refused → peer_unavailable, timeout → peer_timeout), with the peer's answer
// kept underneath as an *HTTPError for callers that need the details.
package peers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
)

// Peer names, used in errors and the peer metric's label.
const (
	ConfigServicePeer = "config_service"
	AIPipelinePeer    = "ai_pipeline"
	AgentPeer         = "agent"
)

// maxResponseBytes caps what is read from a peer's answer.
const maxResponseBytes = 4 << 20

// HTTPError is a peer's non-2xx answer, or a transport failure (Status 0).
type HTTPError struct {
	Peer    string
	Method  string
	Path    string
	Status  int    // 0 when no answer came
	Detail  string // the peer's own detail or error text, trimmed
	Timeout bool
	Err     error // transport error, if any
}

// Error describes the failure without any credential.
func (e *HTTPError) Error() string {
	switch {
	case e.Timeout:
		return fmt.Sprintf("%s %s %s: timed out", e.Peer, e.Method, e.Path)
	case e.Status == 0:
		return fmt.Sprintf("%s %s %s: %v", e.Peer, e.Method, e.Path, e.Err)
	}
	return fmt.Sprintf("%s %s %s: HTTP %d: %s", e.Peer, e.Method, e.Path, e.Status, e.Detail)
}

// Unwrap returns the transport error.
func (e *HTTPError) Unwrap() error { return e.Err }

// AsHTTPError finds the peer's answer in err's chain.
func AsHTTPError(err error) (*HTTPError, bool) {
	var h *HTTPError
	ok := errors.As(err, &h)
	return h, ok
}

// classify turns a peer failure into the product's vocabulary.
func classify(h *HTTPError) *apperr.Error {
	name := strings.ReplaceAll(h.Peer, "_", " ")
	switch {
	case h.Timeout:
		return apperr.Wrap(h, apperr.GatewayTimeout, "peer_timeout", "%s did not answer %s %s in time", name, h.Method, h.Path)
	case h.Status == 0 || h.Status >= 500:
		return apperr.Wrap(h, apperr.BadGateway, "peer_unavailable", "%s is unavailable (%s %s: %s)", name, h.Method, h.Path, statusOrErr(h))
	case h.Status == http.StatusUnauthorized || h.Status == http.StatusForbidden:
		return apperr.Wrap(h, apperr.Forbidden, "peer_forbidden", "%s refused %s %s with %d: %s", name, h.Method, h.Path, h.Status, h.Detail)
	}
	return apperr.Wrap(h, apperr.BadGateway, "peer_rejected", "%s rejected %s %s with %d: %s", name, h.Method, h.Path, h.Status, h.Detail)
}

func statusOrErr(h *HTTPError) string {
	if h.Status != 0 {
		return "HTTP " + strconv.Itoa(h.Status)
	}
	return "connection failed"
}

// Options configure a peer client.
type Options struct {
	// BaseURL is the peer's root, without a trailing slash.
	BaseURL string
	// HTTPClient defaults to one with Timeout.
	HTTPClient *http.Client
	// Timeout bounds each call unless the context is shorter (default 15 s).
	Timeout time.Duration
	// Requests, if set, counts calls as orchestrator_peer_requests_total{peer,code}.
	Requests *prometheus.CounterVec
}

// client is what the three peer clients share.
type client struct {
	peer    string
	base    string
	http    *http.Client
	timeout time.Duration
	metric  *prometheus.CounterVec
}

func newClient(peer string, o Options) client {
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Second
	}
	hc := &http.Client{}
	if o.HTTPClient != nil {
		copied := *o.HTTPClient
		hc = &copied
	}
	// A peer's redirect is never followed: the URL was checked (a dedicated
	// agent must be an in-cluster Service), and a 307 elsewhere would carry
	// the team token and the body to a host nobody checked. The 3xx itself
	// comes back as the answer, an upstream error.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return client{peer: peer, base: strings.TrimRight(o.BaseURL, "/"), http: hc, timeout: o.Timeout, metric: o.Requests}
}

// NewRequestsMetric returns orchestrator_peer_requests_total, registered on reg.
func NewRequestsMetric(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orchestrator_peer_requests_total",
		Help: "Calls to peer services by peer and HTTP status (or error).",
	}, []string{"peer", "code"})
	return c, reg.Register(c)
}

// traceContext writes W3C traceparent, the format every peer reads.
var traceContext = propagation.TraceContext{}

// call is one JSON request. token is sent as a Bearer credential; out may be
// nil. A non-2xx answer or a transport failure returns a classified error.
func (c client) call(ctx context.Context, method, path, token string, header http.Header, in, out any) error {
	return c.callURL(ctx, c.base+path, path, method, token, header, in, out, c.timeout)
}

func (c client) callURL(ctx context.Context, url, path, method, token string, header http.Header, in, out any, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := c.newRequest(ctx, method, url, "application/json", token, header, in)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.count("error")
		h := &HTTPError{Peer: c.peer, Method: method, Path: path, Err: err}
		var ne net.Error
		h.Timeout = errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
		if errors.Is(err, context.Canceled) && ctx.Err() != nil && !h.Timeout {
			return err // the caller went away; not the peer's fault
		}
		return classify(h)
	}
	defer resp.Body.Close()
	c.count(strconv.Itoa(resp.StatusCode))
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		h := &HTTPError{Peer: c.peer, Method: method, Path: path, Status: 0, Err: err}
		h.Timeout = errors.Is(err, context.DeadlineExceeded)
		return classify(h)
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return classify(&HTTPError{Peer: c.peer, Method: method, Path: path, Status: resp.StatusCode,
			Detail: "answered with a redirect, which is never followed"})
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return classify(&HTTPError{Peer: c.peer, Method: method, Path: path, Status: resp.StatusCode, Detail: detailOf(raw)})
	}
	if out != nil && len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return classify(&HTTPError{Peer: c.peer, Method: method, Path: path, Status: resp.StatusCode,
				Detail: "unreadable answer: " + err.Error()})
		}
	}
	return nil
}

// newRequest is a request to a peer as every call sends it: in (if any)
// as its JSON body, accept, the Bearer token (if any), header, and the
// event's trace (SPEC §22: traceparent names the span the call is made
// under; nothing when there is none).
func (c client) newRequest(ctx context.Context, method, url, accept, token string, header http.Header, in any) (*http.Request, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("%s: encode request: %w", c.peer, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, fmt.Errorf("%s: build request: %w", c.peer, err)
	}
	req.Header.Set("Accept", accept)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	traceContext.Inject(ctx, propagation.HeaderCarrier(req.Header))
	return req, nil
}

func (c client) count(code string) {
	if c.metric != nil {
		c.metric.WithLabelValues(c.peer, code).Inc()
	}
}

// detailOf pulls a human message out of a peer's error body.
func detailOf(raw []byte) string {
	var m struct {
		Detail  any    `json:"detail"`
		Error   any    `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &m) == nil {
		for _, v := range []any{m.Detail, m.Message, m.Error} {
			switch v := v.(type) {
			case string:
				if v != "" {
					return trim(v)
				}
			case nil:
			default:
				if b, err := json.Marshal(v); err == nil && string(b) != `""` {
					return trim(string(b))
				}
			}
		}
	}
	return trim(strings.TrimSpace(string(raw)))
}

func trim(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

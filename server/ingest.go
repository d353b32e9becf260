package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// webhookPaths maps each source to its route (SPEC §3).
var webhookPaths = map[string]string{
	webhook.Slack:      "/webhooks/slack/events",
	webhook.GitHub:     "/webhooks/github",
	webhook.PagerDuty:  "/webhooks/pagerduty",
	webhook.IncidentIO: "/webhooks/incidentio",
	webhook.Coralogix:  "/webhooks/coralogix",
}

// webhookSources lists the sources in their documented order.
var webhookSources = webhook.Sources[:]

// ingestOutcomes are the outcome label values of
// orchestrator_webhook_events_total.
var ingestOutcomes = []string{"accepted", "duplicate", "bad_signature", "rate_limited", "too_large", "bad_request", "store_error"}

// EventStore is the store of webhook events (store.DB implements it).
type EventStore interface {
	InsertEvent(ctx context.Context, e store.Event) (store.InsertResult, error)
	GetEvent(ctx context.Context, id string) (store.Event, error)
	ListEvents(ctx context.Context, f store.EventFilter) ([]store.Event, string, error)
	Redrive(ctx context.Context, id string, now time.Time) (store.Event, error)
	EventAgentRuns(ctx context.Context, eventID string) ([]store.AgentRun, error)
}

// ingestMetrics are the webhook metrics of SPEC §12.
type ingestMetrics struct {
	events *prometheus.CounterVec
	ack    *prometheus.HistogramVec
}

func newIngestMetrics(reg prometheus.Registerer) (*ingestMetrics, error) {
	m := &ingestMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orchestrator_webhook_events_total",
			Help: "Webhook requests by source and outcome (accepted, duplicate, bad_signature, rate_limited, too_large, bad_request, store_error).",
		}, []string{"source", "outcome"}),
		ack: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orchestrator_webhook_ack_seconds",
			Help:    "Time from the start of a webhook request to its answer.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 3},
		}, []string{"source"}),
	}
	for _, c := range []prometheus.Collector{m.events, m.ack} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Every known series exists from the start at 0, so an alert's rate()
	// or increase() counts the first bad signature too.
	for _, src := range append(slices.Clone(webhookSources), "internal") {
		for _, o := range ingestOutcomes {
			m.events.WithLabelValues(src, o)
		}
	}
	for _, src := range webhookSources {
		m.ack.WithLabelValues(src)
	}
	return m, nil
}

// newLimiters makes one token bucket per source; perSecond 0 means none.
func newLimiters(perSecond float64, burst int) map[string]*rate.Limiter {
	out := map[string]*rate.Limiter{}
	if perSecond <= 0 {
		return out
	}
	for src := range webhookPaths {
		out[src] = rate.NewLimiter(rate.Limit(perSecond), burst)
	}
	return out
}

// credentialWords mark a header that may carry a credential: any header
// whose name holds one of them is stored as "[redacted]" (SPEC §18). A rule,
// not a list of names, so Proxy-Authorization, Authentication, X-Api-Key,
// X-Auth, X-Pass or a vendor's next header are covered too.
var credentialWords = []string{"auth", "token", "secret", "key", "pass", "cookie", "session", "credential"}

// credentialValue matches values shaped like credentials whatever their
// header's name: Bearer and Basic credentials, JWTs, Standard Webhooks
// secrets and Slack tokens.
var credentialValue = regexp.MustCompile(`(?i)(\bbearer\s|\bbasic\s)|eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.|whsec_|\bxox[a-z]-`)

// storedHeaders keeps the request's headers for the audit trail: signature
// headers left out (a replay needs only the body and them, and the body's
// hash is kept), credentials redacted by name and by the shape of the
// value, the size bounded.
func storedHeaders(h http.Header) map[string]string {
	out := map[string]string{}
	size := 0
	for k, v := range h {
		lk := strings.ToLower(k)
		if strings.Contains(lk, "signature") {
			continue
		}
		val := strings.Join(v, ", ")
		if slices.ContainsFunc(credentialWords, func(w string) bool { return strings.Contains(lk, w) }) || credentialValue.MatchString(val) {
			val = "[redacted]"
		}
		if size += len(lk) + len(val); size > 16<<10 {
			break
		}
		out[lk] = val
	}
	return out
}

// handleWebhook is the ingest path: cap → verify → limit → dedupe+insert
// (group commit) → ack. Nothing slow happens before the ack; dispatch
// reads the durable queue afterwards.
func (s *Server) handleWebhook(source string) http.HandlerFunc {
	verifier := s.opts.Webhooks[source]
	limiter := s.limiters[source]
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		outcome := "accepted"
		defer func() {
			took := time.Since(start)
			s.ingest.events.WithLabelValues(source, outcome).Inc()
			s.ingest.ack.WithLabelValues(source).Observe(took.Seconds())
			if outcome == "accepted" && s.opts.Stats != nil {
				s.acks.observe(source, took)
			}
		}()
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				outcome = "too_large"
				s.out.Error(w, r, apperr.Wrap(err, apperr.TooLarge, "body_too_large", "the body exceeds %d bytes", tooLarge.Limit))
				return
			}
			outcome = "bad_request"
			s.out.Error(w, r, apperr.Wrap(err, apperr.Invalid, "bad_request", "the body could not be read"))
			return
		}
		// Everything the door stores is clean text (SPEC §18): a header that
		// is not valid UTF-8, or holds a NUL, is refused before anything else.
		if err := webhook.CheckHeaders(r.Header); err != nil {
			outcome = "bad_request"
			s.out.Error(w, r, apperr.Wrap(err, apperr.Invalid, "bad_request", "%v", err))
			return
		}
		ev, err := verifier.Verify(body, r.Header, s.now())
		switch {
		case errors.Is(err, webhook.ErrNoSecret), errors.Is(err, webhook.ErrSignature):
			outcome = "bad_signature"
			s.out.Error(w, r, apperr.Wrap(err, apperr.Unauthenticated, "signature_verification_failed", "%v", err))
			return
		case err != nil:
			outcome = "bad_request"
			s.out.Error(w, r, apperr.Wrap(err, apperr.Invalid, "bad_request", "%v", err))
			return
		}
		if ev.Challenge != "" {
			s.out.JSON(w, r, http.StatusOK, map[string]string{"challenge": ev.Challenge})
			return
		}
		if limiter != nil && !limiter.AllowN(s.now(), 1) {
			outcome = "rate_limited"
			retry := int(math.Ceil(1 / float64(limiter.Limit())))
			s.out.Error(w, r, &apperr.Error{Kind: apperr.RateLimited, Code: "rate_limited",
				Detail: "too many " + source + " events; retry later", RetryAfterSeconds: max(1, retry)})
			return
		}
		s.store(w, r, ev, storedHeaders(r.Header), body, &outcome, http.StatusOK)
	}
}

// store writes the event durably and only then answers.
func (s *Server) store(w http.ResponseWriter, r *http.Request, ev webhook.Event, headers map[string]string, body []byte, outcome *string, okStatus int) {
	status, lastErr := store.EventQueued, ""
	if ev.Ignore != "" {
		status, lastErr = store.EventIgnored, "ignored: "+ev.Ignore
	}
	sum := sha256.Sum256(body)
	if ev.StoredBody != nil {
		body = ev.StoredBody
	}
	e := store.Event{
		ID: uuid.NewString(), Source: ev.Source, DeliveryID: ev.DeliveryID, EventType: ev.EventType, Status: status,
		Identifiers: ev.Identifiers, Headers: headers, Body: body, LastError: lastErr, ReceivedAt: s.now(),
		BodySHA256: hex.EncodeToString(sum[:]),
	}
	// A route already in the dispatcher's cache is applied now, from memory:
	// in a storm every event after the first arrives knowing its team.
	if status == store.EventQueued && len(ev.Identifiers) > 0 && s.opts.CachedRoute != nil {
		e.OrgID, e.TeamNodeID, e.MatchedBy, _ = s.opts.CachedRoute(ev.Identifiers)
	}
	res, err := s.opts.Events.InsertEvent(r.Context(), e)
	if err != nil {
		*outcome = "store_error"
		s.out.Error(w, r, apperr.Wrap(err, apperr.Unavailable, "store_unavailable", "the event could not be stored; retry"))
		return
	}
	if res.Duplicate {
		*outcome = "duplicate"
		s.out.JSON(w, r, http.StatusOK, map[string]any{"ok": true, "duplicate": true, "event_id": res.ID})
		return
	}
	if status == store.EventQueued && s.opts.Notify != nil {
		s.opts.Notify(e.OrgID, e.TeamNodeID)
	}
	s.out.JSON(w, r, okStatus, map[string]any{"ok": true, "event_id": res.ID})
}

// triggerRequest is the body of POST /api/v1/internal/slack/trigger.
type triggerRequest struct {
	ChannelID string `json:"channel_id"`
	Text      string `json:"text"`
	UserID    string `json:"user_id,omitempty"`
	ThreadTS  string `json:"thread_ts,omitempty"`
	// EventID makes retries of the same trigger idempotent.
	EventID string `json:"event_id,omitempty"`
}

// handleSlackTrigger enqueues a Slack-style mention from another in-cluster
// service. The route exists only when the internal token is configured.
func (s *Server) handleSlackTrigger(w http.ResponseWriter, r *http.Request) {
	outcome := "accepted"
	defer func() { s.ingest.events.WithLabelValues("internal", outcome).Inc() }()
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		got = r.Header.Get("X-Internal-Token")
	}
	gotSum, wantSum := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(s.opts.InternalToken))
	if got == "" || subtle.ConstantTimeCompare(gotSum[:], wantSum[:]) != 1 {
		outcome = "bad_signature"
		s.out.Error(w, r, apperr.New(apperr.Unauthenticated, "invalid_internal_token", "send the internal token as Authorization: Bearer or X-Internal-Token"))
		return
	}
	var req triggerRequest
	if err := s.decode(w, r, &req); err != nil {
		outcome = "bad_request"
		s.out.Error(w, r, err)
		return
	}
	switch {
	case req.ChannelID == "" || len(req.ChannelID) > 64:
		err := apperr.New(apperr.Invalid, "invalid_channel_id", "channel_id is required (at most 64 characters)")
		outcome = "bad_request"
		s.out.Error(w, r, err)
		return
	case strings.TrimSpace(req.Text) == "" || len(req.Text) > 40000:
		outcome = "bad_request"
		s.out.Error(w, r, apperr.New(apperr.Invalid, "invalid_text", "text is required (at most 40000 characters)"))
		return
	case len(req.EventID) > 200 || len(req.UserID) > 64 || len(req.ThreadTS) > 64:
		outcome = "bad_request"
		s.out.Error(w, r, apperr.New(apperr.Invalid, "invalid_request", "event_id, user_id or thread_ts too long"))
		return
	}
	if req.EventID == "" {
		req.EventID = uuid.NewString()
	}
	body, _ := json.Marshal(map[string]any{
		"type": "event_callback", "event_id": "internal:" + req.EventID, "event_time": s.now().Unix(),
		"event": map[string]any{"type": "app_mention", "channel": req.ChannelID, "text": req.Text,
			"user": req.UserID, "thread_ts": req.ThreadTS, "ts": strconv.FormatInt(s.now().Unix(), 10)},
	})
	ev, err := webhook.ParseSlack(body)
	if err != nil {
		outcome = "bad_request"
		s.out.Error(w, r, err)
		return
	}
	s.store(w, r, ev, storedHeaders(r.Header), body, &outcome, http.StatusAccepted)
}

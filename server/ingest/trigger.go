package ingest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/clientlimit"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/incidentfox/orchestrator-edge/server/tracing"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"go.opentelemetry.io/otel/trace"
)

// triggerRequest is the body of POST /api/v1/internal/slack/trigger.
type triggerRequest struct {
	ChannelID string `json:"channel_id"`
	Text      string `json:"text"`
	UserID    string `json:"user_id,omitempty"`
	ThreadTS  string `json:"thread_ts,omitempty"`
	// EventID makes retries of the same trigger idempotent.
	EventID string `json:"event_id,omitempty"`
}

// triggerHeaders carry the internal token: never stored.
var triggerHeaders = []string{"authorization", "x-internal-token"}

// Trigger enqueues a Slack-style mention from another in-cluster service
// (POST /api/v1/internal/slack/trigger). Mount it only with an internal
// token configured.
func (d *Door) Trigger(w http.ResponseWriter, r *http.Request) {
	outcome := "accepted"
	defer func() { d.metrics.events.WithLabelValues("internal", outcome).Inc() }()
	client := clientlimit.ClientAddr(r, d.o.TrustedProxies)
	if wait := d.failures.Wait(client, d.now()); wait > 0 {
		outcome = "rate_limited"
		d.out.Error(w, r, tooManySignatureFailures(wait))
		return
	}
	if d.o.LowDisk != nil && d.o.LowDisk() {
		outcome = "insufficient_storage"
		d.out.Error(w, r, insufficientStorage())
		return
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		got = r.Header.Get("X-Internal-Token")
	}
	gotSum, wantSum := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(d.o.InternalToken))
	if got == "" || subtle.ConstantTimeCompare(gotSum[:], wantSum[:]) != 1 {
		outcome = "bad_signature"
		d.failures.Fail(client, d.now())
		d.out.Error(w, r, apperr.New(apperr.Unauthenticated, "invalid_internal_token", "send the internal token as Authorization: Bearer or X-Internal-Token"))
		return
	}
	var req triggerRequest
	if err := httpx.DecodeJSON(w, r, d.o.MaxBodyBytes, &req); err != nil {
		outcome = "bad_request"
		d.out.Error(w, r, err)
		return
	}
	switch {
	case req.ChannelID == "" || len(req.ChannelID) > 64:
		err := apperr.New(apperr.Invalid, "invalid_channel_id", "channel_id is required (at most 64 characters)")
		outcome = "bad_request"
		d.out.Error(w, r, err)
		return
	case strings.TrimSpace(req.Text) == "" || len(req.Text) > 40000:
		outcome = "bad_request"
		d.out.Error(w, r, apperr.New(apperr.Invalid, "invalid_text", "text is required (at most 40000 characters)"))
		return
	case len(req.EventID) > 200 || len(req.UserID) > 64 || len(req.ThreadTS) > 64:
		outcome = "bad_request"
		d.out.Error(w, r, apperr.New(apperr.Invalid, "invalid_request", "event_id, user_id or thread_ts too long"))
		return
	}
	if req.EventID == "" {
		req.EventID = uuid.NewString()
	}
	body, _ := json.Marshal(map[string]any{
		"type": "event_callback", "event_id": "internal:" + req.EventID, "event_time": d.now().Unix(),
		"event": map[string]any{"type": "app_mention", "channel": req.ChannelID, "text": req.Text,
			"user": req.UserID, "thread_ts": req.ThreadTS, "ts": strconv.FormatInt(d.now().Unix(), 10)},
	})
	ev, err := webhook.ParseSlack(body)
	if err != nil {
		outcome = "bad_request"
		d.out.Error(w, r, err)
		return
	}
	headers := storedHeaders(r.Header, triggerHeaders)
	// An internal trigger is trusted appliance-wide: bound to no org.
	headers[webhook.TriggerHeader] = "internal"
	ctx := r.Context()
	if d.o.Tracer != nil {
		var span trace.Span
		ctx, span = d.o.Tracer.Start(tracing.Extract(ctx, r.Header), "webhook internal",
			trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(tracing.AttrSource.String("internal")))
		defer func() { endDelivery(span, Answer{Outcome: outcome}) }()
	}
	a := d.store(ctx, ev, headers, body, http.StatusAccepted)
	outcome = a.Outcome
	d.answer(w, r, a)
}

// TriggerEnabled says whether the internal trigger has its token (its
// route exists only then).
func (d *Door) TriggerEnabled() bool { return d.o.InternalToken != "" }

package webhook

import (
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sign returns the headers a vendor would send with body, signed with
// secret at time now. deliveryID is used where the source carries it in a
// header (GitHub, incident.io). It serves `orchestrator send-sample` and
// the tests.
func Sign(source, secret string, body []byte, now time.Time, deliveryID string) http.Header {
	h := http.Header{"Content-Type": {"application/json"}}
	ts := strconv.FormatInt(now.Unix(), 10)
	switch source {
	case Slack:
		h.Set("X-Slack-Request-Timestamp", ts)
		h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(hmacSHA256([]byte(secret), []byte("v0:"+ts+":"), body)))
	case GitHub:
		h.Set("X-GitHub-Delivery", deliveryID)
		h.Set("X-GitHub-Event", "issues")
		h.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(hmacSHA256([]byte(secret), body)))
	case PagerDuty:
		h.Set("X-PagerDuty-Signature", "v1="+hex.EncodeToString(hmacSHA256([]byte(secret), body)))
	case IncidentIO:
		for k, v := range StandardWebhooksHeaders(secret, deliveryID, body, now) {
			h[k] = v
		}
	case Coralogix, Alertmanager:
		h.Set("Authorization", "Bearer "+secret)
	}
	return h
}

// StandardWebhooksHeaders signs body as Standard Webhooks
// (standardwebhooks.com) with a "whsec_" + base64(key) secret: webhook-id,
// webhook-timestamp (now) and webhook-signature "v1," + base64
// HMAC-SHA256(key, id + "." + timestamp + "." + body) — what
// verifyStandardWebhooks checks. It signs incident.io samples and the
// appliance's own webhook answers.
func StandardWebhooksHeaders(secret, id string, body []byte, now time.Time) http.Header {
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	ts := strconv.FormatInt(now.Unix(), 10)
	return http.Header{
		"Webhook-Id":        {id},
		"Webhook-Timestamp": {ts},
		"Webhook-Signature": {"v1," + base64.StdEncoding.EncodeToString(hmacSHA256(key, []byte(id+"."+ts+"."), body))},
	}
}

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
		key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
		h.Set("webhook-id", deliveryID)
		h.Set("webhook-timestamp", ts)
		h.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(hmacSHA256(key, []byte(deliveryID+"."+ts+"."), body)))
	case Coralogix, Alertmanager:
		h.Set("Authorization", "Bearer "+secret)
	}
	return h
}

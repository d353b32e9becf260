package answers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/incidentfox/orchestrator-edge/store"
)

// Text reads the agent's answer from its run response: the first of
// result, output and text that is set (a string as it is, anything else as
// compact JSON), or the response itself when it is a JSON string. "" when
// the response carries none.
func Text(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return ""
	}
	for _, k := range []string{"result", "output", "text"} {
		v := bytes.TrimSpace(m[k])
		if len(v) == 0 || string(v) == "null" {
			continue
		}
		if json.Unmarshal(v, &s) == nil {
			if s = strings.TrimSpace(s); s != "" {
				return s
			}
			continue
		}
		var out bytes.Buffer
		if json.Compact(&out, v) == nil {
			return out.String()
		}
	}
	return ""
}

// FromRun is the answer a delivery of run posts. A run that failed posts
// what went wrong, in words a person in the thread can act on (never the
// agent's raw error, which may name internal hosts): the text the
// dispatcher wrote for it, if any, else its HTTP status.
func FromRun(run store.AgentRun, text, publicURL string) Answer {
	a := Answer{RunID: run.ID, EventID: run.WebhookEventID, OrgID: run.OrgID, TeamNodeID: run.TeamNodeID,
		Text: text, Success: run.Status == "succeeded", RunURL: RunURL(publicURL, run.ID), FeedbackRef: run.FeedbackRef,
		Summary: run.Summary}
	if a.FeedbackRef == "" {
		// A run recorded before feedback references (migration 12) is
		// named by its id, which the feedback lookup still accepts.
		a.FeedbackRef = run.ID
	}
	if !a.Success && text != "" {
		// The appliance's own words (a streamed investigation that did
		// not finish says why), never the agent's raw error.
		return a
	}
	if !a.Success {
		why := "it did not answer"
		if run.UpstreamStatus != 0 {
			why = fmt.Sprintf("it answered HTTP %d %s", run.UpstreamStatus, http.StatusText(run.UpstreamStatus))
		}
		a.Text = "The agent could not answer this: " + why + ". An operator can see why on the orchestrator's admin page and redrive the event."
	}
	return a
}

// RunURL links an agent run on the admin page ("" without a public URL).
func RunURL(publicURL, runID string) string {
	if publicURL == "" {
		return ""
	}
	return strings.TrimRight(publicURL, "/") + "/ui/agent-runs/" + url.PathEscape(runID)
}

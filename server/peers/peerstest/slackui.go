package peerstest

// The fake Slack's people (dev mode): a channel page that shows the
// messages with their buttons, and a click on a button sent to the
// appliance's interactions door as Slack sends it — a block_actions
// payload, form-encoded, signed with the app's signing secret (Slack's
// "Verifying requests from Slack": v0 HMAC-SHA256 over
// v0:timestamp:body) — so a newcomer can answer the agent's question and
// approve what it asks in dev mode.

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
)

// RouteSlackClick is the fake's own route a person's click goes through
// (its channel page's buttons post there), usable with Fail.
const RouteSlackClick = "POST /archives/{channel}/{ts}/click"

// The fake Slack's people in dev mode: DevApprover is in the seeded team's
// approvals.approvers, DevBystander is not.
const (
	DevApprover  = "U0DEVANA"
	DevBystander = "U0DEVEVE"
)

// slackUsers are the people the fake knows, by id.
var slackUsers = map[string]string{DevApprover: "ana", DevBystander: "eve"}

// SetInteractions makes the fake send its people's clicks to url (an
// app's interactivity Request URL, e.g. …/webhooks/slack/interactions)
// signed with secret.
func (s *Slack) SetInteractions(url, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.interactionsURL, s.signingSecret = url, secret
}

// slackSign is Slack's request signature of body at ts.
func slackSign(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "v0:%s:%s", ts, body)
	return "v0=" + hex.EncodeToString(m.Sum(nil))
}

// click is a person's click on a button of a message: form fields user,
// action_id (the button's), and the page to go back to. The fake finds
// the button in the message (a click on a button the message does not
// hold is refused), sends the block_actions payload to the interactions
// URL, and answers with what the appliance said.
func (s *Slack) click(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "a click is a form", http.StatusBadRequest)
		return
	}
	ch, ts, user, action := r.PathValue("channel"), r.PathValue("ts"), r.PostForm.Get("user"), r.PostForm.Get("action_id")
	name, known := slackUsers[user]
	if !known {
		http.Error(w, "unknown user "+strconv.Quote(user), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	target, secret := s.interactionsURL, s.signingSecret
	var msg *SlackMessage
	if c := s.channels[ch]; c != nil {
		for _, m := range c.messages {
			if m.TS == ts {
				msg = m
			}
		}
	}
	var button map[string]any
	var blockID string
	if msg != nil {
		for _, b := range blockButtons(msg.Blocks) {
			if b.action == action {
				button, blockID = b.raw, b.block
			}
		}
	}
	view := map[string]any{}
	if msg != nil {
		view = s.view(msg, false)
	}
	s.mu.Unlock()
	switch {
	case target == "" || secret == "":
		http.Error(w, "this fake Slack sends no clicks: no interactions URL or signing secret (dev mode sets them when SLACK_SIGNING_SECRET or the dev secret is in force)", http.StatusConflict)
		return
	case msg == nil:
		http.Error(w, "no such message", http.StatusNotFound)
		return
	case button == nil:
		http.Error(w, "the message has no button "+strconv.Quote(action)+" (any more)", http.StatusConflict)
		return
	}
	s.mu.Lock()
	s.clock++
	now := s.clock
	s.mu.Unlock()
	threadTS := msg.ThreadTS
	container := map[string]any{"type": "message", "message_ts": ts, "channel_id": ch, "is_ephemeral": false}
	if threadTS != "" {
		container["thread_ts"] = threadTS
	}
	act := map[string]any{"type": "button", "action_id": action, "block_id": blockID, "text": button["text"],
		"value": button["value"], "action_ts": fmt.Sprintf("%d.000100", now)}
	payload, _ := json.Marshal(map[string]any{
		"type":       "block_actions",
		"user":       map[string]any{"id": user, "username": name, "name": name, "team_id": "T0DEVFAKE"},
		"api_app_id": "A0DEVFAKE",
		"team":       map[string]any{"id": "T0DEVFAKE", "domain": "dev"},
		"container":  container,
		"trigger_id": fmt.Sprintf("%d.%d.dev", now, now),
		"channel":    map[string]any{"id": ch, "name": strings.ToLower(ch)},
		"message":    view,
		"actions":    []any{act},
	})
	body := []byte(url.Values{"payload": {string(payload)}}.Encode())
	stamp := strconv.FormatInt(wallclock.Now().Unix(), 10)
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", stamp)
	req.Header.Set("X-Slack-Signature", slackSign(secret, stamp, body))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		http.Error(w, "the app's interactions URL did not answer: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if back := r.PostForm.Get("back"); back != "" && strings.HasPrefix(back, "/archives/") && resp.StatusCode < 300 {
		http.Redirect(w, r, back, http.StatusSeeOther)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(answer)
}

// slackButton is a button of a message's actions blocks.
type slackButton struct {
	block, action, label, style string
	raw                         map[string]any
}

func blockButtons(blocks json.RawMessage) []slackButton {
	var list []struct {
		Type     string           `json:"type"`
		BlockID  string           `json:"block_id"`
		Elements []map[string]any `json:"elements"`
	}
	_ = json.Unmarshal(blocks, &list)
	var out []slackButton
	for _, b := range list {
		if b.Type != "actions" {
			continue
		}
		for _, e := range b.Elements {
			if e["type"] != "button" {
				continue
			}
			action, _ := e["action_id"].(string)
			style, _ := e["style"].(string)
			label := ""
			if t, ok := e["text"].(map[string]any); ok {
				label, _ = t["text"].(string)
			}
			out = append(out, slackButton{block: b.BlockID, action: action, label: label, style: style, raw: e})
		}
	}
	return out
}

// blockTexts are the texts of a message's section and context blocks.
func blockTexts(blocks json.RawMessage) []string {
	var list []struct {
		Type string `json:"type"`
		Text *struct {
			Text string `json:"text"`
		} `json:"text"`
		Elements []struct {
			Text string `json:"text"`
		} `json:"elements"`
	}
	_ = json.Unmarshal(blocks, &list)
	var out []string
	for _, b := range list {
		switch {
		case b.Type == "section" && b.Text != nil:
			out = append(out, b.Text.Text)
		case b.Type == "context":
			for _, e := range b.Elements {
				if e.Text != "" {
					out = append(out, e.Text)
				}
			}
		}
	}
	return out
}

var channelPage = template.Must(template.New("c").Parse(`<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="3"><title>Fake Slack: #{{.Channel}}</title>
<style>body{font-family:sans-serif;max-width:50rem;margin:1rem auto}article{border-top:1px solid #ccc;padding:.5rem 0}
pre{white-space:pre-wrap;margin:.2rem 0}form{display:inline}button{margin:.2rem}.eph{background:#f4f0ff}</style></head>
<body><main><h1>#{{.Channel}}, the built-in fake Slack of dev mode</h1>
<p>You click as <strong>{{.UserName}} ({{.User}})</strong>{{if .Approver}}, one of the team's approvers{{else}}, not one of the team's approvers{{end}}.
{{range .Others}}<a href="?as={{.ID}}">Click as {{.Name}} ({{.ID}}) instead</a>. {{end}}
The page reloads every 3 seconds.</p>
{{range .Messages}}<article><p><small>{{.TS}}{{with .ThreadTS}} in thread {{.}}{{end}}{{if .Edited}} (edited){{end}}</small></p>
{{range .Texts}}<pre>{{.}}</pre>{{end}}
{{$m := .}}{{range .Buttons}}<form method="post" action="/archives/{{$.Channel}}/{{$m.TS}}/click"><input type="hidden" name="user" value="{{$.User}}">
<input type="hidden" name="action_id" value="{{.Action}}"><input type="hidden" name="back" value="/archives/{{$.Channel}}?as={{$.User}}">
<button type="submit">{{.Label}}</button></form>{{end}}</article>{{end}}
{{range .Ephemerals}}<article class="eph"><p><small>Only visible to you{{with .ThreadTS}}, in thread {{.}}{{end}}</small></p><pre>{{.Text}}</pre></article>{{end}}
</main></body></html>`))

// channelView is what the channel page shows.
type channelView struct {
	Channel, User, UserName string
	Approver                bool
	Others                  []struct{ ID, Name string }
	Messages                []pageMessage
	Ephemerals              []SlackEphemeral
}

type pageMessage struct {
	TS, ThreadTS string
	Edited       bool
	Texts        []string
	Buttons      []struct{ Action, Label string }
}

// showChannel is the channel page: every message with its buttons, and
// the messages only the person clicking sees (?as=USER, default
// DevApprover).
func (s *Slack) showChannel(w http.ResponseWriter, r *http.Request) {
	ch := r.PathValue("channel")
	user := r.URL.Query().Get("as")
	if _, ok := slackUsers[user]; !ok {
		user = DevApprover
	}
	v := channelView{Channel: ch, User: user, UserName: slackUsers[user], Approver: user == DevApprover}
	for _, id := range []string{DevApprover, DevBystander} {
		if id != user {
			v.Others = append(v.Others, struct{ ID, Name string }{id, slackUsers[id]})
		}
	}
	s.mu.Lock()
	c := s.channels[ch]
	if c == nil {
		s.mu.Unlock()
		http.NotFound(w, r)
		return
	}
	for _, m := range c.messages {
		pm := pageMessage{TS: m.TS, ThreadTS: m.ThreadTS, Edited: m.Edited, Texts: blockTexts(m.Blocks)}
		if len(pm.Texts) == 0 {
			pm.Texts = []string{m.Text}
		}
		for _, b := range blockButtons(m.Blocks) {
			pm.Buttons = append(pm.Buttons, struct{ Action, Label string }{b.action, b.label})
		}
		v.Messages = append(v.Messages, pm)
	}
	for _, e := range s.ephemerals {
		if e.Channel == ch && e.User == user {
			v.Ephemerals = append(v.Ephemerals, e)
		}
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = channelPage.Execute(w, v)
}

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
	trigger := s.triggerLocked(user)
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
		"trigger_id": trigger,
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
{{if not .Modals}}<meta http-equiv="refresh" content="3">{{end}}<title>Fake Slack: #{{.Channel}}</title>
<style>body{font-family:sans-serif;max-width:50rem;margin:1rem auto}article{border-top:1px solid #ccc;padding:.5rem 0}
pre{white-space:pre-wrap;margin:.2rem 0}form{display:inline}button{margin:.2rem}.eph{background:#f4f0ff}</style></head>
<body><main><h1>#{{.Channel}}, the built-in fake Slack of dev mode</h1>
<p>You click as <strong>{{.UserName}} ({{.User}})</strong>{{if .Approver}}, one of the team's approvers{{else}}, not one of the team's approvers{{end}}.
{{range .Others}}<a href="?as={{.ID}}">Click as {{.Name}} ({{.ID}}) instead</a>. {{end}}
{{if .Modals}}The page does not reload while a modal is open.{{else}}The page reloads every 3 seconds.{{end}}</p>
{{range .Messages}}<article><p><small>{{.TS}}{{with .ThreadTS}} in thread {{.}}{{end}}{{if .Edited}} (edited){{end}}</small></p>
{{range .Texts}}<pre>{{.}}</pre>{{end}}
{{$m := .}}{{range .Buttons}}<form method="post" action="/archives/{{$.Channel}}/{{$m.TS}}/click"><input type="hidden" name="user" value="{{$.User}}">
<input type="hidden" name="action_id" value="{{.Action}}"><input type="hidden" name="back" value="/archives/{{$.Channel}}?as={{$.User}}">
<button type="submit">{{.Label}}</button></form>{{end}}</article>{{end}}
{{range .Modals}}<article class="eph"><h2>{{.Title}}</h2><p><small>A modal, only you see it (reloading the page keeps it)</small></p>
{{range .Texts}}<pre>{{.}}</pre>{{end}}<form method="post" action="/views/{{.ID}}/submit"><input type="hidden" name="back" value="/archives/{{$.Channel}}?as={{$.User}}">
{{range .Inputs}}<label>{{.Label}}<br><textarea name="input_{{.Block}}" rows="3" cols="60"></textarea></label><br>{{end}}
<button type="submit">{{.Submit}}</button></form></article>{{end}}
{{range .Ephemerals}}<article class="eph"><p><small>Only visible to you{{with .ThreadTS}}, in thread {{.}}{{end}}</small></p><pre>{{.Text}}</pre></article>{{end}}
</main></body></html>`))

// channelView is what the channel page shows.
type channelView struct {
	Channel, User, UserName string
	Approver                bool
	Others                  []struct{ ID, Name string }
	Messages                []pageMessage
	Ephemerals              []SlackEphemeral
	Modals                  []pageModal
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
	v.Modals = s.openModalsLocked(user)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = channelPage.Execute(w, v)
}

// RouteSlackViewsOpen is views.open, usable with Fail.
const RouteSlackViewsOpen = "POST /views.open"

// SlackView is a modal the fake opened (views.open).
type SlackView struct {
	ID, TriggerID, User, CallbackID, PrivateMetadata string
	// View is the view as the app sent it.
	View json.RawMessage
	// Submitted: its submission was sent (SubmitView) and Slack closed it.
	Submitted bool
}

// Trigger issues a trigger id for user, as a click does: views.open takes
// it once.
func (s *Slack) Trigger(user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.triggerLocked(user)
}

func (s *Slack) triggerLocked(user string) string {
	if s.triggers == nil {
		s.triggers = map[string]string{}
	}
	s.clock++
	id := fmt.Sprintf("%d.%d.fake%d", s.clock, s.clock%1000, len(s.triggers)+1)
	s.triggers[id] = user
	return id
}

// Views returns the modals opened so far, oldest first.
func (s *Slack) Views() []SlackView {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SlackView, 0, len(s.views))
	for _, v := range s.views {
		out = append(out, *v)
	}
	return out
}

// modalView is the part of a view the fake checks and submits.
type modalView struct {
	Type            string          `json:"type"`
	Title           *slackText      `json:"title"`
	Submit          *slackText      `json:"submit"`
	Close           *slackText      `json:"close"`
	CallbackID      string          `json:"callback_id"`
	PrivateMetadata string          `json:"private_metadata"`
	Blocks          []modalBlock    `json:"blocks"`
	Raw             json.RawMessage `json:"-"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type modalBlock struct {
	Type    string     `json:"type"`
	BlockID string     `json:"block_id"`
	Label   *slackText `json:"label"`
	Element *struct {
		Type      string `json:"type"`
		ActionID  string `json:"action_id"`
		MaxLength int    `json:"max_length"`
	} `json:"element"`
	Text *slackText `json:"text"`
}

// checkModal holds a view to Slack's documented limits (Block Kit,
// "Modals"): a modal; a plain_text title of at most 24 characters; submit
// and close likewise, submit required with an input block; at most 100
// blocks; callback_id at most 255 and private_metadata at most 3,000
// characters; an input block's plain_text label (at most 2,000) and its
// element with an action_id (a plain_text_input's max_length at most
// 3,000).
func checkModal(raw string) (modalView, bool) {
	var v modalView
	if json.Unmarshal([]byte(raw), &v) != nil || v.Type != "modal" || len(v.Blocks) == 0 || len(v.Blocks) > 100 ||
		len(v.CallbackID) > 255 || len(v.PrivateMetadata) > 3000 {
		return v, false
	}
	short := func(t *slackText, required bool) bool {
		if t == nil {
			return !required
		}
		return t.Type == "plain_text" && t.Text != "" && len([]rune(t.Text)) <= 24
	}
	input := false
	for _, b := range v.Blocks {
		switch b.Type {
		case "input":
			input = true
			if b.Label == nil || b.Label.Type != "plain_text" || b.Label.Text == "" || len([]rune(b.Label.Text)) > 2000 ||
				b.Element == nil || b.Element.ActionID == "" || (b.Element.Type == "plain_text_input" && b.Element.MaxLength > 3000) {
				return v, false
			}
		case "section":
			if b.Text == nil || len([]rune(b.Text.Text)) > 3000 {
				return v, false
			}
		case "":
			return v, false
		}
	}
	if !short(v.Title, true) || !short(v.Submit, input) || !short(v.Close, false) {
		return v, false
	}
	v.Raw = json.RawMessage(raw)
	return v, true
}

// viewsOpen is views.open: a trigger the fake issued, used once; a view
// within Slack's limits.
func (s *Slack) viewsOpen(w http.ResponseWriter, args url.Values, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	trigger := args.Get("trigger_id")
	user, ok := s.triggers[trigger]
	switch {
	case trigger == "":
		slackError(w, "invalid_arguments")
		return
	case !ok:
		slackError(w, "invalid_trigger_id")
		return
	case user == "":
		slackError(w, "exchanged_trigger_id")
		return
	}
	v, ok := checkModal(args.Get("view"))
	if !ok {
		slackError(w, "invalid_arguments")
		return
	}
	s.triggers[trigger] = "" // used
	s.clock++
	sv := &SlackView{ID: fmt.Sprintf("V0FAKE%d", s.clock), TriggerID: trigger, User: user, CallbackID: v.CallbackID,
		PrivateMetadata: v.PrivateMetadata, View: v.Raw}
	s.views = append(s.views, sv)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "view": map[string]any{"id": sv.ID, "type": "modal",
		"callback_id": sv.CallbackID, "private_metadata": sv.PrivateMetadata}})
}

// ViewSubmission is the form body Slack sends to the interactions URL when
// the person submits the modal viewID: a view_submission payload whose
// state holds, for each input block, inputs[block_id] as the value of its
// element.
func (s *Slack) ViewSubmission(viewID string, inputs map[string]string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sv *SlackView
	for _, v := range s.views {
		if v.ID == viewID {
			sv = v
		}
	}
	if sv == nil {
		return nil, fmt.Errorf("no view %s", viewID)
	}
	v, _ := checkModal(string(sv.View))
	values := map[string]any{}
	for _, b := range v.Blocks {
		if b.Type == "input" {
			values[b.BlockID] = map[string]any{b.Element.ActionID: map[string]any{"type": b.Element.Type, "value": inputs[b.BlockID]}}
		}
	}
	var raw map[string]any
	_ = json.Unmarshal(sv.View, &raw)
	raw["id"], raw["state"], raw["hash"] = sv.ID, map[string]any{"values": values}, "1700000000.fakehash"
	payload, err := json.Marshal(map[string]any{
		"type":       "view_submission",
		"user":       map[string]any{"id": sv.User, "username": slackUsers[sv.User], "name": slackUsers[sv.User], "team_id": "T0DEVFAKE"},
		"api_app_id": "A0DEVFAKE",
		"team":       map[string]any{"id": "T0DEVFAKE", "domain": "dev"},
		"trigger_id": s.triggerLocked(sv.User),
		"view":       raw,
	})
	if err != nil {
		return nil, err
	}
	return []byte(url.Values{"payload": {string(payload)}}.Encode()), nil
}

// SubmitView sends a modal's submission, signed, to the interactions URL,
// as Slack does when the person presses its submit button; an empty 200
// (or a response_action of clear) closes it, anything else is Slack's
// "We had some trouble connecting" and the view stays open.
func (s *Slack) SubmitView(viewID string, inputs map[string]string) error {
	body, err := s.ViewSubmission(viewID, inputs)
	if err != nil {
		return err
	}
	s.mu.Lock()
	target, secret := s.interactionsURL, s.signingSecret
	s.mu.Unlock()
	if target == "" || secret == "" {
		return fmt.Errorf("this fake Slack sends no submissions: no interactions URL or signing secret")
	}
	req, err := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return err
	}
	stamp := strconv.FormatInt(wallclock.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", stamp)
	req.Header.Set("X-Slack-Signature", slackSign(secret, stamp, body))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err := ViewSubmissionAck(resp.StatusCode, answer); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.views {
		if v.ID == viewID {
			v.Submitted = true
		}
	}
	return nil
}

// ViewSubmissionAck says whether an app's answer to a view_submission
// closes the modal as Slack reads it: HTTP 200 with an empty body, or a
// JSON response_action clear.
func ViewSubmissionAck(status int, body []byte) error {
	if status != http.StatusOK {
		return fmt.Errorf("the app answered the submission %d: the modal shows an error", status)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	var ra struct {
		ResponseAction string `json:"response_action"`
	}
	if json.Unmarshal(body, &ra) == nil && ra.ResponseAction == "clear" {
		return nil
	}
	return fmt.Errorf("the app answered the submission with a body Slack does not read as a response_action (%.100s): the modal shows an error", body)
}

// submit is the channel page's modal form: the person's input for each
// input block (form fields input_<block_id>), sent as SubmitView does.
func (s *Slack) submit(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "a submission is a form", http.StatusBadRequest)
		return
	}
	inputs := map[string]string{}
	for k, v := range r.PostForm {
		if b, ok := strings.CutPrefix(k, "input_"); ok && len(v) > 0 {
			inputs[b] = v[0]
		}
	}
	if err := s.SubmitView(r.PathValue("id"), inputs); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if back := r.PostForm.Get("back"); strings.HasPrefix(back, "/archives/") {
		http.Redirect(w, r, back, http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}

// pageModal is an open modal as the channel page shows it.
type pageModal struct {
	ID, Title, Submit string
	Texts             []string
	Inputs            []struct{ Block, Label string }
}

func (s *Slack) openModalsLocked(user string) []pageModal {
	var out []pageModal
	for _, sv := range s.views {
		if sv.User != user || sv.Submitted {
			continue
		}
		v, _ := checkModal(string(sv.View))
		m := pageModal{ID: sv.ID}
		if v.Title != nil {
			m.Title = v.Title.Text
		}
		if v.Submit != nil {
			m.Submit = v.Submit.Text
		}
		for _, b := range v.Blocks {
			switch {
			case b.Type == "section" && b.Text != nil:
				m.Texts = append(m.Texts, b.Text.Text)
			case b.Type == "input":
				m.Inputs = append(m.Inputs, struct{ Block, Label string }{b.BlockID, b.Label.Text})
			}
		}
		out = append(out, m)
	}
	return out
}

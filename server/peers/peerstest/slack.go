package peerstest

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Routes of the fake Slack Web API, usable with Fail.
const (
	RouteSlackPostMessage = "POST /chat.postMessage"
	RouteSlackUpdate      = "POST /chat.update"
	RouteSlackReplies     = "POST /conversations.replies"
	RouteSlackHistory     = "POST /conversations.history"
	RouteSlackPermalink   = "GET /chat.getPermalink"
	RouteSlackEphemeral   = "POST /chat.postEphemeral"
)

// Slack is a strict stand-in for the part of Slack's Web API the
// appliance uses to post answers (api.slack.com/web), for tests and dev
// mode: every method needs a bot token — in the Authorization header as
// "Bearer xoxb-…" or as the token argument of a form POST, as Slack
// documents; never in a query string —, answers HTTP 200 with
// {"ok":false,"error":"…"} as Slack does (not_authed, invalid_auth,
// token_revoked, account_inactive, channel_not_found, not_in_channel,
// invalid_blocks, msg_too_long, message_not_found, thread_not_found), and,
// when told to (RateLimit), 429 with Retry-After.
//
// Methods: chat.postMessage (blocks, thread_ts, metadata), chat.update
// (text, blocks, metadata),
// chat.getPermalink, conversations.replies and conversations.history
// (include_all_metadata; metadata only when asked for, as Slack does).
// A permalink points back at the fake, which shows the message there.
type Slack struct {
	faults
	mux *http.ServeMux

	mu       sync.Mutex
	tokens   map[string]string // token → state: "ok", "revoked", "inactive"
	channels map[string]*slackChannel
	limited  int // the next this many calls answer 429
	retry    int // with Retry-After this many seconds
	// clock makes message timestamps: increasing, unrelated to the wall
	// clock (nothing in a test may depend on it).
	clock int64
	// base is the fake's own address, for permalinks (from the first
	// request's Host).
	base string
	// ephemerals are the chat.postEphemeral messages, in order.
	ephemerals []SlackEphemeral
	// interactionsURL and signingSecret: where a person's click goes, and
	// what signs it (SetInteractions).
	interactionsURL, signingSecret string
	// triggers are the trigger ids issued (by clicks): user, "" once used;
	// views the modals opened.
	triggers map[string]string
	views    []*SlackView
}

// SlackEphemeral is a message shown to one user only (chat.postEphemeral).
type SlackEphemeral struct {
	Channel, User, ThreadTS, Text string
}

// Ephemerals returns the ephemeral messages posted so far.
func (s *Slack) Ephemerals() []SlackEphemeral {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SlackEphemeral(nil), s.ephemerals...)
}

func (s *Slack) ephemeral(w http.ResponseWriter, args url.Values, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.channel(w, args.Get("channel"), true); c == nil {
		return
	}
	if args.Get("user") == "" {
		slackError(w, "user_not_in_channel")
		return
	}
	if args.Get("text") == "" && args.Get("blocks") == "" {
		slackError(w, "no_text")
		return
	}
	s.ephemerals = append(s.ephemerals, SlackEphemeral{Channel: args.Get("channel"), User: args.Get("user"),
		ThreadTS: args.Get("thread_ts"), Text: args.Get("text")})
	s.clock++
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "message_ts": fmt.Sprintf("%d.000000", s.clock)})
}

type slackChannel struct {
	member   bool
	messages []*SlackMessage
}

// SlackMessage is a message the fake holds.
type SlackMessage struct {
	Channel  string          `json:"-"`
	TS       string          `json:"ts"`
	ThreadTS string          `json:"thread_ts,omitempty"`
	Text     string          `json:"text"`
	Blocks   json.RawMessage `json:"blocks,omitempty"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// Token is the bot token it was posted with.
	Token  string `json:"-"`
	Edited bool   `json:"-"`
	// Updates counts the chat.update calls that changed it.
	Updates int `json:"-"`
}

// NewSlack returns the fake with no tokens and no channels.
func NewSlack() *Slack {
	s := &Slack{mux: http.NewServeMux(), tokens: map[string]string{}, channels: map[string]*slackChannel{}, clock: 1733312000}
	s.mux.HandleFunc(RouteSlackPostMessage, s.wrap(RouteSlackPostMessage, s.method(s.postMessage)))
	s.mux.HandleFunc(RouteSlackUpdate, s.wrap(RouteSlackUpdate, s.method(s.update)))
	s.mux.HandleFunc(RouteSlackReplies, s.wrap(RouteSlackReplies, s.method(s.replies)))
	s.mux.HandleFunc(RouteSlackHistory, s.wrap(RouteSlackHistory, s.method(s.history)))
	s.mux.HandleFunc(RouteSlackPermalink, s.wrap(RouteSlackPermalink, s.method(s.permalink)))
	s.mux.HandleFunc(RouteSlackEphemeral, s.wrap(RouteSlackEphemeral, s.method(s.ephemeral)))
	s.mux.HandleFunc("GET /archives/{channel}/{ts}", s.show)
	s.mux.HandleFunc("GET /archives/{channel}", s.showChannel)
	s.mux.HandleFunc(RouteSlackClick, s.wrap(RouteSlackClick, s.click))
	s.mux.HandleFunc(RouteSlackViewsOpen, s.wrap(RouteSlackViewsOpen, s.method(s.viewsOpen)))
	s.mux.HandleFunc("POST /views/{id}/submit", s.submit)
	return s
}

// DevSlackToken is the bot token dev mode gives its fake Slack.
const DevSlackToken = "xoxb-dev-orchestrator-bot"

// NewDevSlack returns the fake seeded for dev mode: the dev bot token, and
// the seeded team's channel with the bot in it.
func NewDevSlack() *Slack {
	s := NewSlack()
	s.AddToken(DevSlackToken)
	s.AddChannel("C0A4967KRBM", true)
	return s
}

// ServeHTTP serves the fake's API.
func (s *Slack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.base == "" {
		s.base = "http://" + r.Host
	}
	s.mu.Unlock()
	s.mux.ServeHTTP(w, r)
}

// AddToken accepts a bot token.
func (s *Slack) AddToken(token string) { s.setToken(token, "ok") }

// RevokeToken makes a token answer token_revoked.
func (s *Slack) RevokeToken(token string) { s.setToken(token, "revoked") }

func (s *Slack) setToken(token, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = state
}

// AddChannel creates a channel; member says whether the bot is in it.
func (s *Slack) AddChannel(id string, member bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.channels[id] = &slackChannel{member: member}
}

// RateLimit makes the next n calls answer 429 with Retry-After: seconds.
func (s *Slack) RateLimit(n, seconds int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limited, s.retry = n, seconds
}

// Messages returns a copy of a channel's messages, oldest first.
func (s *Slack) Messages(channel string) []SlackMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.channels[channel]
	if c == nil {
		return nil
	}
	out := make([]SlackMessage, 0, len(c.messages))
	for _, m := range c.messages {
		out = append(out, *m)
	}
	return out
}

// slackError is Slack's error answer: HTTP 200, ok false.
func slackError(w http.ResponseWriter, code string) {
	writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": code})
}

// method checks what every method checks — the rate limit and the token —
// then runs h with the request's arguments.
func (s *Slack) method(h func(w http.ResponseWriter, args url.Values, token string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		if s.limited > 0 {
			s.limited--
			retry := s.retry
			s.mu.Unlock()
			w.Header().Set("Retry-After", strconv.Itoa(retry))
			writeJSON(w, http.StatusTooManyRequests, map[string]any{"ok": false, "error": "ratelimited"})
			return
		}
		s.mu.Unlock()
		args := url.Values{}
		if r.Method == http.MethodPost {
			ct := r.Header.Get("Content-Type")
			switch {
			case strings.HasPrefix(ct, "application/x-www-form-urlencoded"):
				if err := r.ParseForm(); err != nil {
					slackError(w, "invalid_form_data")
					return
				}
				args = r.PostForm
			case strings.HasPrefix(ct, "application/json"):
				var m map[string]any
				if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
					slackError(w, "invalid_json")
					return
				}
				for k, v := range m {
					switch v := v.(type) {
					case string:
						args.Set(k, v)
					default:
						b, _ := json.Marshal(v)
						args.Set(k, string(b))
					}
				}
			default:
				slackError(w, "invalid_arguments")
				return
			}
		} else {
			args = r.URL.Query()
			args.Del("token") // never from a query string
		}
		token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if token == "" && r.Method == http.MethodPost {
			token = args.Get("token")
		}
		s.mu.Lock()
		state, known := s.tokens[token]
		s.mu.Unlock()
		switch {
		case token == "":
			slackError(w, "not_authed")
		case !known:
			slackError(w, "invalid_auth")
		case state == "revoked":
			slackError(w, "token_revoked")
		case state == "inactive":
			slackError(w, "account_inactive")
		default:
			h(w, args, token)
		}
	}
}

// channel finds a channel the bot may write to, or answers the error.
func (s *Slack) channel(w http.ResponseWriter, id string, write bool) *slackChannel {
	c := s.channels[id]
	switch {
	case c == nil:
		slackError(w, "channel_not_found")
		return nil
	case write && !c.member:
		slackError(w, "not_in_channel")
		return nil
	}
	return c
}

// checkBlocks enforces Block Kit's bounds the appliance relies on: at most
// 50 blocks, section text at most 3,000 characters.
func checkBlocks(raw string) (json.RawMessage, string) {
	if raw == "" {
		return nil, ""
	}
	var blocks []struct {
		Type string `json:"type"`
		Text *struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"text"`
	}
	if err := json.Unmarshal([]byte(raw), &blocks); err != nil {
		return nil, "invalid_blocks_format"
	}
	if len(blocks) > 50 {
		return nil, "invalid_blocks"
	}
	for _, b := range blocks {
		if b.Type == "" || (b.Type == "section" && (b.Text == nil || utf8.RuneCountInString(b.Text.Text) > 3000)) {
			return nil, "invalid_blocks"
		}
	}
	return json.RawMessage(raw), ""
}

func (s *Slack) postMessage(w http.ResponseWriter, args url.Values, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.channel(w, args.Get("channel"), true)
	if c == nil {
		return
	}
	blocks, bad := checkBlocks(args.Get("blocks"))
	if bad != "" {
		slackError(w, bad)
		return
	}
	text := args.Get("text")
	if text == "" && blocks == nil {
		slackError(w, "no_text")
		return
	}
	if utf8.RuneCountInString(text) > 40000 {
		slackError(w, "msg_too_long")
		return
	}
	var meta json.RawMessage
	if m := args.Get("metadata"); m != "" {
		var v struct {
			EventType    string         `json:"event_type"`
			EventPayload map[string]any `json:"event_payload"`
		}
		if json.Unmarshal([]byte(m), &v) != nil || v.EventType == "" {
			slackError(w, "invalid_metadata_format")
			return
		}
		meta = json.RawMessage(m)
	}
	s.clock++
	msg := &SlackMessage{Channel: args.Get("channel"), TS: fmt.Sprintf("%d.%06d", s.clock, len(c.messages)+1),
		ThreadTS: args.Get("thread_ts"), Text: text, Blocks: blocks, Metadata: meta, Token: token}
	c.messages = append(c.messages, msg)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "channel": msg.Channel, "ts": msg.TS, "message": s.view(msg, true)})
}

func (s *Slack) update(w http.ResponseWriter, args url.Values, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.channel(w, args.Get("channel"), true)
	if c == nil {
		return
	}
	blocks, bad := checkBlocks(args.Get("blocks"))
	if bad != "" {
		slackError(w, bad)
		return
	}
	var meta json.RawMessage
	if m := args.Get("metadata"); m != "" {
		var v struct {
			EventType string `json:"event_type"`
		}
		if json.Unmarshal([]byte(m), &v) != nil || v.EventType == "" {
			slackError(w, "invalid_metadata_format")
			return
		}
		meta = json.RawMessage(m)
	}
	for _, m := range c.messages {
		if m.TS == args.Get("ts") {
			m.Text, m.Edited = args.Get("text"), true
			if blocks != nil {
				m.Blocks = blocks
			}
			if meta != nil {
				m.Metadata = meta
			}
			m.Updates++
			writeJSON(w, http.StatusOK, map[string]any{"ok": true, "channel": m.Channel, "ts": m.TS, "text": m.Text})
			return
		}
	}
	slackError(w, "message_not_found")
}

func (s *Slack) permalink(w http.ResponseWriter, args url.Values, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.channel(w, args.Get("channel"), false)
	if c == nil {
		return
	}
	ts := args.Get("message_ts")
	if !slices.ContainsFunc(c.messages, func(m *SlackMessage) bool { return m.TS == ts }) {
		slackError(w, "message_not_found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "channel": args.Get("channel"),
		"permalink": s.base + "/archives/" + url.PathEscape(args.Get("channel")) + "/p" + strings.ReplaceAll(ts, ".", "")})
}

// view is a message as Slack returns it, with its metadata only when the
// caller asked for it (include_all_metadata).
func (s *Slack) view(m *SlackMessage, meta bool) map[string]any {
	v := map[string]any{"type": "message", "ts": m.TS, "text": m.Text, "bot_id": "B0FAKEBOT"}
	if m.ThreadTS != "" {
		v["thread_ts"] = m.ThreadTS
	}
	if m.Blocks != nil {
		v["blocks"] = m.Blocks
	}
	if meta && m.Metadata != nil {
		v["metadata"] = m.Metadata
	}
	return v
}

// page answers one page of messages, with Slack's cursor.
func (s *Slack) page(w http.ResponseWriter, args url.Values, list []*SlackMessage) {
	limit, _ := strconv.Atoi(args.Get("limit"))
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	start, _ := strconv.Atoi(args.Get("cursor"))
	if start < 0 || start > len(list) {
		slackError(w, "invalid_cursor")
		return
	}
	end := min(len(list), start+limit)
	meta := args.Get("include_all_metadata") == "1" || args.Get("include_all_metadata") == "true"
	out := make([]map[string]any, 0, end-start)
	for _, m := range list[start:end] {
		out = append(out, s.view(m, meta))
	}
	next := ""
	if end < len(list) {
		next = strconv.Itoa(end)
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "messages": out, "has_more": next != "",
		"response_metadata": map[string]any{"next_cursor": next}})
}

func (s *Slack) replies(w http.ResponseWriter, args url.Values, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.channel(w, args.Get("channel"), false)
	if c == nil {
		return
	}
	ts := args.Get("ts")
	if ts == "" {
		slackError(w, "invalid_arguments")
		return
	}
	// The thread: its parent (when the bot can see it) and its replies,
	// oldest first.
	var list []*SlackMessage
	for _, m := range c.messages {
		if m.TS == ts || m.ThreadTS == ts {
			list = append(list, m)
		}
	}
	if len(list) == 0 {
		slackError(w, "thread_not_found")
		return
	}
	s.page(w, args, list)
}

func (s *Slack) history(w http.ResponseWriter, args url.Values, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.channel(w, args.Get("channel"), false)
	if c == nil {
		return
	}
	// Newest first, top-level messages only, as Slack lists them.
	var list []*SlackMessage
	for i := len(c.messages) - 1; i >= 0; i-- {
		if m := c.messages[i]; m.ThreadTS == "" || m.ThreadTS == m.TS {
			list = append(list, m)
		}
	}
	s.page(w, args, list)
}

var showPage = template.Must(template.New("m").Parse(`<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Fake Slack: {{.Channel}}</title></head><body><h1>#{{.Channel}} (the built-in fake Slack of dev mode)</h1>
<p><a href="/archives/{{.Channel}}">The whole channel, with its buttons</a></p>
{{range .Messages}}<article><p><small>{{.TS}}{{with .ThreadTS}} in thread {{.}}{{end}}</small></p><pre>{{.Text}}</pre></article>{{end}}
</body></html>`))

// show is where a permalink leads: the channel's messages from that one
// on, as a plain page (dev mode's answers can be read in a browser).
func (s *Slack) show(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := r.PathValue("channel")
	c := s.channels[ch]
	if c == nil {
		http.NotFound(w, r)
		return
	}
	var list []SlackMessage
	for _, m := range c.messages {
		if "p"+strings.ReplaceAll(m.TS, ".", "") == r.PathValue("ts") || list != nil {
			list = append(list, *m)
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = showPage.Execute(w, struct {
		Channel  string
		Messages []SlackMessage
	}{ch, list})
}

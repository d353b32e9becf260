package answers

// The Slack destination: chat.postMessage in the thread the question was
// asked in, as Block Kit — the answer in sections of at most 3,000
// characters, at most 50 blocks, the feedback buttons, a link to the run
// on the admin page — with Slack message metadata as the run marker that
// Find looks for (conversations.replies / conversations.history with
// include_all_metadata). One bot token per Slack app.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/slack-go/slack"
)

// DefaultSlackAPIURL is Slack's Web API (SLACK_API_URL overrides it).
const DefaultSlackAPIURL = "https://slack.com/api/"

// Slack Block Kit bounds.
const (
	slackSectionChars = 3000
	slackMaxBlocks    = 50
	// slackFallbackChars bounds the message's plain text (what
	// notifications show; the blocks carry the answer).
	slackFallbackChars = 300
)

// SlackMarker is the metadata event type of an answer's message; its
// payload names the run (run_id).
const SlackMarker = "orchestrator_edge_answer"

// SlackOptions configure the Slack notifier.
type SlackOptions struct {
	// APIURL is SLACK_API_URL (default Slack's).
	APIURL string
	// Tokens are the bot tokens by Slack app slug ("" = the default app,
	// SLACK_BOT_TOKEN).
	Tokens map[string]string
	// TokenEnv names where each app's token comes from, for the reason
	// a destination without one gives.
	TokenEnv map[string]string
	// HTTPClient is the client the API is called with (default: one with
	// a 30 s timeout).
	HTTPClient *http.Client
}

// Slack posts answers to Slack threads.
type Slack struct {
	o       SlackOptions
	clients map[string]*slack.Client
}

// NewSlack returns the Slack notifier.
func NewSlack(o SlackOptions) *Slack {
	if o.APIURL == "" {
		o.APIURL = DefaultSlackAPIURL
	}
	if !strings.HasSuffix(o.APIURL, "/") {
		o.APIURL += "/"
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	s := &Slack{o: o, clients: map[string]*slack.Client{}}
	for app, tok := range o.Tokens {
		if tok != "" {
			s.clients[app] = slack.New(tok, slack.OptionAPIURL(o.APIURL), slack.OptionHTTPClient(o.HTTPClient))
		}
	}
	return s
}

// Check says why a Slack destination cannot be posted: no bot token for
// its app.
func (s *Slack) Check(d Destination) error {
	if s.clients[d.App] != nil {
		return nil
	}
	if d.App == "" {
		return errors.New("no Slack bot token for the default Slack app (SLACK_BOT_TOKEN is unset)")
	}
	if env := s.o.TokenEnv[d.App]; env != "" {
		return fmt.Errorf("no Slack bot token for Slack app %q (%s is unset)", d.App, env)
	}
	return fmt.Errorf("no Slack bot token for Slack app %q (give it bot_token_env in the sources file's slack_apps)", d.App)
}

// Post posts the answer in the destination's thread (or the channel).
func (s *Slack) Post(ctx context.Context, d Destination, a Answer) (Posted, error) {
	c := s.clients[d.App]
	if c == nil {
		return Posted{}, Permanent(s.Check(d))
	}
	opts := []slack.MsgOption{
		slack.MsgOptionText(slackFallback(a.Text), false),
		slack.MsgOptionBlocks(SlackBlocks(a)...),
		slack.MsgOptionMetadata(slack.SlackMetadata{EventType: SlackMarker, EventPayload: map[string]any{"run_id": a.RunID}}),
	}
	if d.ProgressTS != "" {
		// The progress message becomes the answer. Gone (deleted by
		// someone) or no longer editable, the answer is posted anew.
		_, _, _, err := c.UpdateMessageContext(ctx, d.ChannelID, d.ProgressTS, opts...)
		var se slack.SlackErrorResponse
		if err == nil {
			return Posted{MessageID: d.ProgressTS, Link: s.permalink(ctx, c, d.ChannelID, d.ProgressTS)}, nil
		}
		if !errors.As(err, &se) || (se.Err != "message_not_found" && se.Err != "cant_update_message" && se.Err != "edit_window_closed") {
			return Posted{}, slackFailure("chat.update", err)
		}
	}
	if d.ThreadTS != "" {
		opts = append(opts, slack.MsgOptionTS(d.ThreadTS))
	}
	_, ts, err := c.PostMessageContext(ctx, d.ChannelID, opts...)
	if err != nil {
		return Posted{}, slackFailure("chat.postMessage", err)
	}
	return Posted{MessageID: ts, Link: s.permalink(ctx, c, d.ChannelID, ts)}, nil
}

// permalink asks Slack for the message's link; a failure costs only the
// link (the post is done).
func (s *Slack) permalink(ctx context.Context, c *slack.Client, channel, ts string) string {
	link, err := c.GetPermalinkContext(ctx, &slack.PermalinkParameters{Channel: channel, Ts: ts})
	if err != nil {
		return ""
	}
	return link
}

// findPages bounds how far Find reads back (Slack pages of 200 messages).
const findPages = 5

// Find looks for the run's answer in the destination's thread (or, for a
// channel, among its newest messages) by the message metadata Post sets.
func (s *Slack) Find(ctx context.Context, d Destination, a Answer) (Posted, bool, error) {
	c := s.clients[d.App]
	if c == nil {
		return Posted{}, false, Permanent(s.Check(d))
	}
	cursor := ""
	for range findPages {
		var msgs []slack.Message
		var more bool
		var err error
		if d.ThreadTS != "" {
			msgs, more, cursor, err = c.GetConversationRepliesContext(ctx, &slack.GetConversationRepliesParameters{
				ChannelID: d.ChannelID, Timestamp: d.ThreadTS, Cursor: cursor, Limit: 200, IncludeAllMetadata: true})
		} else {
			var h *slack.GetConversationHistoryResponse
			h, err = c.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{
				ChannelID: d.ChannelID, Cursor: cursor, Limit: 200, IncludeAllMetadata: true})
			if h != nil {
				msgs, more, cursor = h.Messages, h.HasMore, h.ResponseMetaData.NextCursor
			}
		}
		var se slack.SlackErrorResponse
		if errors.As(err, &se) && se.Err == "thread_not_found" {
			return Posted{}, false, nil
		}
		if err != nil {
			return Posted{}, false, slackFailure("conversations.replies", err)
		}
		for _, m := range msgs {
			if m.Metadata.EventType == SlackMarker && fmt.Sprint(m.Metadata.EventPayload["run_id"]) == a.RunID {
				return Posted{MessageID: m.Timestamp, Link: s.permalink(ctx, c, d.ChannelID, m.Timestamp)}, true, nil
			}
		}
		if !more || cursor == "" {
			break
		}
	}
	return Posted{}, false, nil
}

// slackTransient are Slack's ok:false errors that a later try may not get.
var slackTransient = []string{"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}

// slackFailure reads a Slack failure for the retry stage (Alertmanager's
// notify/slack reads them the same way): a 429 is retried after its
// Retry-After; 5xx, timeouts and Slack's own transient errors are retried;
// any other ok:false answer (channel_not_found, not_in_channel,
// invalid_auth, account_inactive, token_revoked, invalid_blocks, …) and
// any other 4xx fail for good.
func slackFailure(method string, err error) error {
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return RetryAfter(fmt.Errorf("slack %s: rate limited (429), retry after %s", method, rl.RetryAfter), rl.RetryAfter)
	}
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		e := fmt.Errorf("slack %s: %s", method, se.Err)
		if slices.Contains(slackTransient, se.Err) {
			return e
		}
		return Permanent(e)
	}
	var sc slack.StatusCodeError
	if errors.As(err, &sc) {
		e := fmt.Errorf("slack %s: HTTP %d", method, sc.Code)
		if sc.Code >= 500 || sc.Code == http.StatusTooManyRequests || sc.Code == http.StatusRequestTimeout {
			return e
		}
		return Permanent(e)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("slack %s: timed out", method)
	}
	return fmt.Errorf("slack %s: %w", method, err)
}

// SlackBlocks lays an answer out as Block Kit: the text in sections of at
// most 3,000 characters (Slack's bound), the feedback buttons when it is
// an answer (their value the run's reference, which the interactions door
// records feedback on) after a streamed run's summary, and a link to the run when the admin page has a
// public address — at most 50 blocks in all; an answer longer than that
// holds ends with a note that the rest is on the admin page.
func SlackBlocks(a Answer) []slack.Block {
	reserved := 0
	if a.Success {
		reserved++
	}
	if a.Summary != "" {
		reserved++
	}
	if a.RunURL != "" {
		reserved++
	}
	room := slackMaxBlocks - reserved
	parts := splitEscaped(a.Text, slackSectionChars)
	if len(parts) > room {
		const note = "\n… (the answer is longer than a Slack message holds; the whole answer is on the orchestrator's admin page)"
		last := splitEscaped(unescape(parts[room-1]), slackSectionChars-utf8.RuneCountInString(note))[0]
		parts = append(parts[:room-1], last+note)
	}
	blocks := make([]slack.Block, 0, len(parts)+reserved)
	for _, p := range parts {
		blocks = append(blocks, slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, p, false, false), nil, nil))
	}
	if a.Summary != "" {
		blocks = append(blocks, slack.NewContextBlock("orchestrator_summary",
			slack.NewTextBlockObject(slack.MarkdownType, splitEscaped(a.Summary, 2900)[0], false, false)))
	}
	if a.Success {
		yes := slack.NewButtonBlockElement("feedback_positive", a.FeedbackRef, slack.NewTextBlockObject(slack.PlainTextType, "Helpful", false, false))
		no := slack.NewButtonBlockElement("feedback_negative", a.FeedbackRef, slack.NewTextBlockObject(slack.PlainTextType, "Not helpful", false, false))
		blocks = append(blocks, slack.NewActionBlock("orchestrator_feedback", yes, no))
	}
	if a.RunURL != "" {
		blocks = append(blocks, slack.NewContextBlock("orchestrator_run",
			slack.NewTextBlockObject(slack.MarkdownType, "<"+a.RunURL+"|See this run on the orchestrator>", false, false)))
	}
	return blocks
}

// escapeCost is what a character costs in Slack's mrkdwn once escaped:
// &, < and > are control characters there (a bare <!channel> would notify
// everyone), so an answer's text is escaped, never interpreted.
func escapeCost(r rune) (string, int) {
	switch r {
	case '&':
		return "&amp;", 5
	case '<':
		return "&lt;", 4
	case '>':
		return "&gt;", 4
	}
	return string(r), 1
}

// splitEscaped escapes text for mrkdwn and splits it into parts of at most
// limit characters once escaped, each cut after a line break (or else a
// space) where one falls in the part's second half, never inside an
// escape.
func splitEscaped(text string, limit int) []string {
	rs := []rune(strings.TrimSpace(text))
	if len(rs) == 0 {
		return []string{"(no answer text)"}
	}
	var parts []string
	for len(rs) > 0 {
		cost, end, lastNL, lastSP := 0, 0, -1, -1
		for ; end < len(rs); end++ {
			_, c := escapeCost(rs[end])
			if cost+c > limit {
				break
			}
			cost += c
			switch rs[end] {
			case '\n':
				lastNL = end
			case ' ':
				lastSP = end
			}
		}
		cut := max(end, 1)
		if end < len(rs) {
			if lastNL >= end/2 && lastNL > 0 {
				cut = lastNL + 1
			} else if lastSP >= end/2 && lastSP > 0 {
				cut = lastSP + 1
			}
		}
		if part := escape(strings.TrimSpace(string(rs[:cut]))); part != "" {
			parts = append(parts, part)
		}
		rs = rs[cut:]
		for len(rs) > 0 && unicode.IsSpace(rs[0]) {
			rs = rs[1:]
		}
	}
	return parts
}

// escape escapes text for mrkdwn.
func escape(text string) string {
	var b strings.Builder
	for _, r := range text {
		esc, _ := escapeCost(r)
		b.WriteString(esc)
	}
	return b.String()
}

// unescape reverses escape (to cut an escaped part again).
func unescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">").Replace(s)
}

// slackFallback is the message's plain text: the answer's beginning.
func slackFallback(text string) string {
	text = strings.Join(strings.Fields(text), " ")
	if utf8.RuneCountInString(text) > slackFallbackChars {
		r := []rune(text)
		text = string(r[:slackFallbackChars-1]) + "…"
	}
	return escape(text)
}

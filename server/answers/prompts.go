package answers

// The agent's questions and approvals in the Slack thread (SPEC §19, "The
// conversation, streamed"): a question is posted with one button per
// option, an approval with Approve and Reject; once decided (or expired)
// the message is updated to say what was decided, by whom, without the
// buttons. The buttons' values name the prompt's row (its UUID), which
// the interactions door brings back.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// Action ids of the conversation's buttons.
const (
	// ActionAnswer prefixes an option's button (prompt_answer_<n>); its
	// value is "<prompt id>:<n>".
	ActionAnswer  = "prompt_answer"
	ActionApprove = "prompt_approve"
	ActionReject  = "prompt_reject"
	// ActionStop is the progress message's Stop button; its value is the
	// run's id.
	ActionStop = "run_stop"
	// ActionText is a free-text question's "Answer…" button (its value the
	// prompt's id): it opens a modal (views.open) whose submission, of
	// callback id TextCallback, is the answer.
	ActionText   = "prompt_text"
	TextCallback = "prompt_text"
	// TextBlock and TextInput name the modal's input (its state's
	// values[TextBlock][TextInput].value); MaxTextAnswer bounds it.
	TextBlock     = "answer"
	TextInput     = "text"
	MaxTextAnswer = 2000
)

// maxOptions bounds the buttons of one question (Slack allows 25 elements
// in an actions block; more than a handful is no longer a question).
const maxOptions = 10

// Question is one question of a question event.
type Question struct {
	Text    string   `json:"question"`
	Header  string   `json:"header,omitempty"`
	Options []string `json:"options"`
	// FreeText: the agent takes an answer in words (allow_free_text),
	// given in a modal.
	FreeText bool `json:"free_text,omitempty"`
}

// ParseQuestions reads a question event's data: {"questions":[{"question":
// …, "options":[…], "allow_free_text": true}]}, an option a string or
// {"label": …}; or one question at the top level. A question without
// text, or with neither options nor allow_free_text, is refused.
func ParseQuestions(data json.RawMessage) ([]Question, error) {
	type rawQ struct {
		Question      string            `json:"question"`
		Text          string            `json:"text"`
		Header        string            `json:"header"`
		Options       []json.RawMessage `json:"options"`
		AllowFreeText bool              `json:"allow_free_text"`
	}
	var in struct {
		Questions []rawQ `json:"questions"`
		rawQ
	}
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, fmt.Errorf("a question event's data is not a JSON object: %w", err)
	}
	raw := in.Questions
	if len(raw) == 0 && (in.Question != "" || in.Text != "") {
		raw = []rawQ{in.rawQ}
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("a question event names no questions")
	}
	var out []Question
	for i, r := range raw {
		q := Question{Text: strings.TrimSpace(strings.ToValidUTF8(or(r.Question, r.Text), "?")), Header: cut(strings.ToValidUTF8(r.Header, "?"), 80),
			FreeText: r.AllowFreeText}
		for _, o := range r.Options {
			var s string
			var obj struct {
				Label string `json:"label"`
				Value string `json:"value"`
			}
			if json.Unmarshal(o, &s) != nil && json.Unmarshal(o, &obj) == nil {
				s = or(obj.Label, obj.Value)
			}
			if s = cut(strings.TrimSpace(strings.ToValidUTF8(s, "?")), 75); s != "" && len(q.Options) < maxOptions {
				q.Options = append(q.Options, s)
			}
		}
		if q.Text == "" || (len(q.Options) == 0 && !q.FreeText) {
			return nil, fmt.Errorf("question %d has no text, or neither options nor allow_free_text", i+1)
		}
		q.Text = cut(q.Text, 2000)
		out = append(out, q)
	}
	return out, nil
}

// Approval is an approval event's data.
type Approval struct {
	ID        string `json:"approval_id"`
	Action    string `json:"action"`
	Target    string `json:"target"`
	Reason    string `json:"reason"`
	ExpiresIn int    `json:"expires_in"` // seconds
}

// ParseApproval reads an approval event's data; approval_id and action are
// required.
func ParseApproval(data json.RawMessage) (Approval, error) {
	var a Approval
	if err := json.Unmarshal(data, &a); err != nil {
		return Approval{}, fmt.Errorf("an approval event's data does not read: %w", err)
	}
	a.ID, a.Action = strings.TrimSpace(a.ID), strings.TrimSpace(a.Action)
	if a.ID == "" || a.Action == "" || len(a.ID) > 255 {
		return Approval{}, fmt.Errorf("an approval event needs approval_id (at most 255 bytes) and action")
	}
	a.Action, a.Target, a.Reason = cut(a.Action, 500), cut(a.Target, 500), cut(a.Reason, 2000)
	return a, nil
}

// QuestionBlocks lays out an open question: its text and one button per
// option.
func QuestionBlocks(promptID string, q Question) []slack.Block {
	text := "*The agent asks:* " + escape(q.Text)
	if q.Header != "" {
		text = "*" + escape(q.Header) + "* — " + text
	}
	var buttons []slack.BlockElement
	for i, o := range q.Options {
		buttons = append(buttons, slack.NewButtonBlockElement(fmt.Sprintf("%s_%d", ActionAnswer, i), fmt.Sprintf("%s:%d", promptID, i),
			slack.NewTextBlockObject(slack.PlainTextType, o, false, false)))
	}
	if q.FreeText {
		buttons = append(buttons, slack.NewButtonBlockElement(ActionText, promptID,
			slack.NewTextBlockObject(slack.PlainTextType, "Answer…", false, false)))
	}
	return []slack.Block{
		slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, text, false, false), nil, nil),
		slack.NewActionBlock("prompt_"+promptID, buttons...),
	}
}

// ApprovalBlocks lays out an open approval: what the agent wants to do,
// why, until when, and Approve / Reject.
func ApprovalBlocks(promptID string, a Approval, expires time.Time) []slack.Block {
	text := "*The agent asks for approval:* " + escape(a.Action)
	if a.Target != "" {
		text += " on `" + strings.ReplaceAll(escape(a.Target), "`", "'") + "`"
	}
	if a.Reason != "" {
		text += "\n> " + strings.ReplaceAll(escape(a.Reason), "\n", "\n> ")
	}
	if !expires.IsZero() {
		text += fmt.Sprintf("\nDenied unless decided by <!date^%d^{time}|%s>. Only the team's approvers may decide.",
			expires.Unix(), expires.UTC().Format("15:04 UTC"))
	}
	yes := slack.NewButtonBlockElement(ActionApprove, promptID, slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false))
	yes.Style = slack.StylePrimary
	no := slack.NewButtonBlockElement(ActionReject, promptID, slack.NewTextBlockObject(slack.PlainTextType, "Reject", false, false))
	no.Style = slack.StyleDanger
	return []slack.Block{
		slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, text, false, false), nil, nil),
		slack.NewActionBlock("prompt_"+promptID, yes, no),
	}
}

// DecidedBlocks lays out a decided or expired prompt: what was asked and
// what became of it, without buttons.
func DecidedBlocks(asked, outcome string) []slack.Block {
	return []slack.Block{
		slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, asked, false, false), nil, nil),
		slack.NewContextBlock("prompt_outcome", slack.NewTextBlockObject(slack.MarkdownType, outcome, false, false)),
	}
}

// AskedText is how a decided prompt recalls what was asked.
func AskedText(kind string, payload json.RawMessage) string {
	if kind == "approval" {
		a, err := ParseApproval(payload)
		if err != nil {
			return "*The agent asked for approval.*"
		}
		s := "*The agent asked for approval:* " + escape(a.Action)
		if a.Target != "" {
			s += " on `" + strings.ReplaceAll(escape(a.Target), "`", "'") + "`"
		}
		return s
	}
	var q Question
	if json.Unmarshal(payload, &q) != nil || q.Text == "" {
		return "*The agent asked a question.*"
	}
	return "*The agent asked:* " + escape(q.Text)
}

// textModalMeta is a free-text modal's private_metadata: the question
// and the channel it was asked in (a view_submission names no channel;
// Slack hands back what the app set, under its signature).
type textModalMeta struct {
	Prompt  string `json:"prompt"`
	Channel string `json:"channel"`
}

// TextModal is the modal a free-text question's "Answer…" button opens:
// the question and one text input (views.open, callback id TextCallback).
func TextModal(promptID, channel string, q Question) slack.ModalViewRequest {
	meta, _ := json.Marshal(textModalMeta{Prompt: promptID, Channel: channel})
	in := slack.NewPlainTextInputBlockElement(slack.NewTextBlockObject(slack.PlainTextType, "Your answer", false, false), TextInput)
	in.Multiline, in.MaxLength = true, MaxTextAnswer
	input := slack.NewInputBlock(TextBlock, slack.NewTextBlockObject(slack.PlainTextType, "Your answer", false, false), nil, in)
	return slack.ModalViewRequest{
		Type:            slack.VTModal,
		CallbackID:      TextCallback,
		PrivateMetadata: string(meta),
		Title:           slack.NewTextBlockObject(slack.PlainTextType, "The agent asks", false, false),
		Submit:          slack.NewTextBlockObject(slack.PlainTextType, "Send", false, false),
		Close:           slack.NewTextBlockObject(slack.PlainTextType, "Cancel", false, false),
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, cut(escape(q.Text), 3000), false, false), nil, nil),
			input,
		}},
	}
}

// OpenView opens a modal for the person whose click gave triggerID
// (views.open; Slack honours a trigger for 3 s after the click).
func (s *Slack) OpenView(ctx context.Context, app, triggerID string, view slack.ModalViewRequest) error {
	c := s.clients[app]
	if c == nil {
		return Permanent(s.Check(Destination{Type: TypeSlack, App: app}))
	}
	if _, err := c.OpenViewContext(ctx, triggerID, view); err != nil {
		return slackFailure("views.open", err)
	}
	return nil
}

// Quote is a person's text quoted in a message: on one line, escaped,
// at most n characters.
func Quote(text string, n int) string {
	return "“" + escape(cut(strings.Join(strings.Fields(text), " "), n)) + "”"
}

// UserRef is how a message names a Slack user.
func UserRef(id string) string {
	if id == "" {
		return "someone"
	}
	return "<@" + escape(id) + ">"
}

// PostBlocks posts a message in d's thread and returns its ts.
func (s *Slack) PostBlocks(ctx context.Context, d Destination, text string, blocks []slack.Block) (string, error) {
	c := s.clients[d.App]
	if c == nil {
		return "", Permanent(s.Check(d))
	}
	opts := []slack.MsgOption{slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...)}
	if d.ThreadTS != "" {
		opts = append(opts, slack.MsgOptionTS(d.ThreadTS))
	}
	_, ts, err := c.PostMessageContext(ctx, d.ChannelID, opts...)
	if err != nil {
		return "", slackFailure("chat.postMessage", err)
	}
	return ts, nil
}

// UpdateBlocks replaces a message's text and blocks.
func (s *Slack) UpdateBlocks(ctx context.Context, d Destination, ts, text string, blocks []slack.Block) error {
	c := s.clients[d.App]
	if c == nil {
		return Permanent(s.Check(d))
	}
	if _, _, _, err := c.UpdateMessageContext(ctx, d.ChannelID, ts, slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...)); err != nil {
		return slackFailure("chat.update", err)
	}
	return nil
}

// Ephemeral shows text to one user in d's channel (and thread).
func (s *Slack) Ephemeral(ctx context.Context, d Destination, user, text string) error {
	c := s.clients[d.App]
	if c == nil {
		return Permanent(s.Check(d))
	}
	opts := []slack.MsgOption{slack.MsgOptionText(text, false)}
	if d.ThreadTS != "" {
		opts = append(opts, slack.MsgOptionTS(d.ThreadTS))
	}
	if _, err := c.PostEphemeralContext(ctx, d.ChannelID, user, opts...); err != nil {
		return slackFailure("chat.postEphemeral", err)
	}
	return nil
}

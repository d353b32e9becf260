package webhook

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Feedback values.
const (
	FeedbackPositive = "positive"
	FeedbackNegative = "negative"
)

// Feedback is a click on one of an answer's feedback buttons.
type Feedback struct {
	// Run names the agent run the answer came from, as the button's value
	// carries it: the run's feedback reference (or, on an older button,
	// the run's UUID).
	Run string
	// Value is positive or negative.
	Value string
	// User and UserName say who clicked.
	User, UserName string
}

// Click is a click on one of the conversation's buttons (SPEC §19, "The
// conversation, streamed").
type Click struct {
	// Action is ClickAnswer, ClickApprove, ClickReject or ClickStop.
	Action string
	// Prompt is the question's or approval's id (the buttons' value);
	// Option the answer's option number. Run is the run a Stop names.
	Prompt string
	Option int
	Run    string
	// User and UserName say who clicked; Channel, MessageTS and ThreadTS
	// where.
	User, UserName, Channel, MessageTS, ThreadTS string
	// TriggerID is the click's, for the modal a ClickText opens; Text is
	// a ClickTextAnswer's answer.
	TriggerID, Text string
}

// Click actions.
const (
	ClickAnswer  = "answer"
	ClickApprove = "approve"
	ClickReject  = "reject"
	ClickStop    = "stop"
	// ClickText is the "Answer…" button of a question that takes an answer
	// in words: it opens a modal. ClickTextAnswer is that modal's
	// submission (a view_submission of callback id prompt_text).
	ClickText       = "text"
	ClickTextAnswer = "text_answer"
)

// maxTextAnswer bounds a free-text answer (the modal's input says so too).
const maxTextAnswer = 2000

// ClickEventType is the event type of a click on a conversation's button.
const ClickEventType = "block_actions.conversation"

// parseClick reads a conversation button's action (nil: not one).
func parseClick(actionID, value string) *Click {
	value = strings.TrimSpace(value)
	switch {
	case strings.HasPrefix(actionID, "prompt_answer_"):
		id, n, ok := strings.Cut(value, ":")
		opt, err := strconv.Atoi(n)
		if !ok || err != nil || opt < 0 || opt > 100 {
			return nil
		}
		return &Click{Action: ClickAnswer, Prompt: clean(id, 64), Option: opt}
	case actionID == "prompt_approve":
		return &Click{Action: ClickApprove, Prompt: clean(value, 64)}
	case actionID == "prompt_reject":
		return &Click{Action: ClickReject, Prompt: clean(value, 64)}
	case actionID == "run_stop":
		return &Click{Action: ClickStop, Run: clean(value, 64)}
	case actionID == "prompt_text":
		return &Click{Action: ClickText, Prompt: clean(value, 64)}
	}
	return nil
}

// FeedbackEventType is the event type of a click on a feedback button.
const FeedbackEventType = "block_actions.feedback"

// feedbackActions map the buttons' action ids to feedback values.
var feedbackActions = map[string]string{"feedback_positive": FeedbackPositive, "feedback_negative": FeedbackNegative}

// slackInteraction is the part of Slack's interactivity payload the
// orchestrator reads.
type slackInteraction struct {
	Type       string `json:"type"`
	TriggerID  string `json:"trigger_id"`
	ActionTS   string `json:"action_ts"`
	CallbackID string `json:"callback_id"`
	User       struct {
		ID       string `json:"id"`
		Username string `json:"username"`
		Name     string `json:"name"`
	} `json:"user"`
	Channel struct {
		ID string `json:"id"`
	} `json:"channel"`
	Container struct {
		ChannelID string `json:"channel_id"`
		MessageTS string `json:"message_ts"`
		ThreadTS  string `json:"thread_ts"`
	} `json:"container"`
	Message struct {
		TS       string `json:"ts"`
		ThreadTS string `json:"thread_ts"`
		Text     string `json:"text"`
	} `json:"message"`
	Actions []struct {
		ActionID string `json:"action_id"`
		Value    string `json:"value"`
		Text     struct {
			Text string `json:"text"`
		} `json:"text"`
		ActionTS string `json:"action_ts"`
	} `json:"actions"`
	View struct {
		ID              string `json:"id"`
		CallbackID      string `json:"callback_id"`
		PrivateMetadata string `json:"private_metadata"`
		State           struct {
			Values map[string]map[string]struct {
				Value string `json:"value"`
			} `json:"values"`
		} `json:"state"`
	} `json:"view"`
}

// parseInteractionBody reads the form-encoded payload=… body.
func parseInteractionBody(body []byte) (slackInteraction, error) {
	form, err := url.ParseQuery(string(body))
	if err != nil || form.Get("payload") == "" {
		return slackInteraction{}, fmt.Errorf("%w: a Slack interaction is a form with a payload field", ErrPayload)
	}
	var in slackInteraction
	if err := json.Unmarshal([]byte(form.Get("payload")), &in); err != nil || in.Type == "" {
		return slackInteraction{}, fmt.Errorf("%w: the interaction's payload is not Slack's JSON", ErrPayload)
	}
	return in, nil
}

// ParseSlackInteraction reads a verified Slack interactivity request. A
// click on feedback_positive or feedback_negative carries Feedback (the
// door records it on the run its value names); any other interaction goes
// to the agent as an event of the team of its channel.
func ParseSlackInteraction(body []byte) (Event, error) {
	in, err := parseInteractionBody(body)
	if err != nil {
		return Event{}, err
	}
	ev := Event{Source: Slack, EventType: clean(in.Type, 128), Identifiers: map[string]string{}}
	id := in.TriggerID
	if id == "" && len(in.Actions) > 0 {
		id = in.Actions[0].ActionTS
	}
	if id == "" {
		ev.DeliveryID = bodyHash(body)
	} else {
		ev.DeliveryID = clean("interaction:"+id, 255)
	}
	ch := in.Channel.ID
	if ch == "" {
		ch = in.Container.ChannelID
	}
	if ch != "" {
		ev.Identifiers["slack_channel_id"] = clean(ch, 128)
	}
	if in.Type == "view_submission" {
		// Slack reads the answer's body as a response_action: only an
		// empty 200 closes the modal.
		ev.AckEmpty = true
		if in.View.CallbackID == "prompt_text" {
			var meta struct {
				Prompt  string `json:"prompt"`
				Channel string `json:"channel"`
			}
			if json.Unmarshal([]byte(in.View.PrivateMetadata), &meta) == nil && meta.Prompt != "" && meta.Channel != "" {
				ch = clean(meta.Channel, 128)
				ev.Identifiers["slack_channel_id"] = ch
				text := clean(strings.TrimSpace(in.View.State.Values["answer"]["text"].Value), maxTextAnswer)
				ev.Click = &Click{Action: ClickTextAnswer, Prompt: clean(meta.Prompt, 64), Text: text, Channel: ch,
					User: clean(in.User.ID, 64), UserName: clean(or(in.User.Username, in.User.Name), 128)}
				ev.EventType = ClickEventType
			}
		}
	}
	if in.Type == "block_actions" {
		for _, a := range in.Actions {
			if c := parseClick(a.ActionID, a.Value); c != nil {
				c.User, c.UserName, c.Channel = clean(in.User.ID, 64), clean(or(in.User.Username, in.User.Name), 128), clean(ch, 128)
				c.MessageTS, c.ThreadTS = clean(or(in.Container.MessageTS, in.Message.TS), 64), clean(or(in.Container.ThreadTS, in.Message.ThreadTS), 64)
				c.TriggerID = clean(in.TriggerID, 255)
				ev.Click = c
				ev.EventType = ClickEventType
				break
			}
			if v, ok := feedbackActions[a.ActionID]; ok {
				name := in.User.Username
				if name == "" {
					name = in.User.Name
				}
				ev.Feedback = &Feedback{Run: clean(strings.TrimSpace(a.Value), 128), Value: v,
					User: clean(in.User.ID, 64), UserName: clean(name, 128)}
				ev.EventType = FeedbackEventType
				break
			}
		}
	}
	return ev, nil
}

// describeSlackInteraction: who did what where, for the agent.
func describeSlackInteraction(eventType string, body []byte, meta map[string]any) string {
	in, err := parseInteractionBody(body)
	if err != nil {
		return "Slack interaction " + eventType
	}
	who := or(in.User.Username, or(in.User.Name, in.User.ID))
	msg := "Slack " + in.Type + " by " + who
	var acts []string
	for _, a := range in.Actions {
		s := a.ActionID
		if a.Value != "" {
			s += "=" + a.Value
		}
		acts = append(acts, s)
	}
	if len(acts) > 0 {
		msg += ": " + strings.Join(acts, ", ")
	}
	if cb := or(in.CallbackID, in.View.CallbackID); cb != "" {
		msg += " (" + cb + ")"
	}
	ch := in.Channel.ID
	if ch == "" {
		ch = in.Container.ChannelID
	}
	for k, v := range map[string]string{"channel": ch, "user": in.User.ID, "ts": or(in.Container.MessageTS, in.Message.TS),
		"thread_ts": or(in.Container.ThreadTS, in.Message.ThreadTS), "interaction": in.Type} {
		if v != "" {
			meta[k] = v
		}
	}
	if len(acts) > 0 {
		meta["actions"] = acts
	}
	return msg
}

// or is a if it is set, else b.
func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

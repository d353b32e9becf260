package dispatch

// The conversation, streamed (SPEC §19): a streamed run's questions and
// approvals are posted in its Slack thread with buttons and kept as rows
// (store.Prompt); a click comes back through the Slack interactions door
// as an event, which the router carries out here once the click's channel
// has a team — for a prompt of that team, in that channel only — and
// never sends to the agent as an event. An approval is decided only by
// the Slack users in team config approvals.approvers; one nobody decided
// before its deadline is denied by the expiry loop, which reads the store
// (so it fires after a restart, and once across replicas: the decision is
// written only while the row is open).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/server/answers"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/slack-go/slack"
)

// conversant makes the calls back to a streaming agent (peers.Agent).
type conversant interface {
	Converse(ctx context.Context, baseURL, teamToken, correlationID, path string, req peers.ConverseRequest, timeout time.Duration) error
}

// Bounds of the conversation.
const (
	converseTimeout = 15 * time.Second
	// defaultApprovalExpiry is an approval's deadline when the agent names
	// none; maxApprovalExpiry bounds what it may name.
	defaultApprovalExpiry = 15 * time.Minute
	maxApprovalExpiry     = 24 * time.Hour
	expiryBatch           = 100
	// clickClaim is how long a router holds a click it carries out
	// before another may take it (the holder died).
	clickClaim = time.Minute
)

// stream is one streamed run's side of the conversation.
type stream struct {
	d     *Dispatcher
	runID string
	team  store.TeamKey
	// dest is the Slack thread the run answers in (ChannelID "" = none:
	// its questions and approvals cannot be shown).
	dest answers.Destination
}

func (d *Dispatcher) slack() *answers.Slack {
	if d.o.Progress == nil {
		return nil
	}
	return d.o.Progress.Slack
}

// begin keeps the run's Stop button as a row (so a click on any replica
// finds the run's team).
func (s *stream) begin(ctx context.Context) {
	if s.dest.ChannelID == "" {
		return
	}
	if _, err := s.d.o.Store.InsertPrompt(ctx, store.Prompt{ID: s.runID, AgentRunID: s.runID, OrgID: s.team.OrgID,
		TeamNodeID: s.team.TeamNodeID, SlackApp: s.dest.App, ChannelID: s.dest.ChannelID, ThreadTS: s.dest.ThreadTS,
		Kind: store.PromptStop, Payload: json.RawMessage(`{}`), CreatedAt: s.d.now()}); err != nil {
		s.d.log.Warn("the run's Stop button is not kept", "agent_run_id", s.runID, "error", err)
	}
}

// end closes what is still open once the stream ended: the Stop button,
// questions nobody answered (expired), approvals nobody decided (expired;
// the agent that asked is gone).
func (s *stream) end(ctx context.Context) {
	open, err := s.d.o.Store.OpenRunPrompts(ctx, s.runID)
	if err != nil {
		s.d.log.Warn("the run's open questions are not closed", "agent_run_id", s.runID, "error", err)
		return
	}
	for _, p := range open {
		s.d.expire(ctx, p, true, "The investigation ended before this was decided.")
	}
}

// event takes a question, question_timeout or approval event.
func (s *stream) event(ctx context.Context, ev peers.StreamEvent) {
	switch ev.Type {
	case peers.StreamQuestion:
		qs, err := answers.ParseQuestions(ev.Data)
		if err != nil {
			s.d.log.Warn("agent stream: question skipped", "reason", err.Error(), "agent_run_id", s.runID)
			return
		}
		for _, q := range qs {
			payload, _ := json.Marshal(q)
			s.post(ctx, store.PromptQuestion, "", payload, nil, func(id string) ([]slack.Block, string) {
				return answers.QuestionBlocks(id, q), "The agent asks: " + q.Text
			})
		}
	case peers.StreamApproval:
		a, err := answers.ParseApproval(ev.Data)
		if err != nil {
			s.d.log.Warn("agent stream: approval skipped", "reason", err.Error(), "agent_run_id", s.runID)
			return
		}
		in := time.Duration(a.ExpiresIn) * time.Second
		if in <= 0 {
			in = defaultApprovalExpiry
		}
		expires := s.d.now().Add(min(in, maxApprovalExpiry))
		payload, _ := json.Marshal(a)
		s.post(ctx, store.PromptApproval, a.ID, payload, &expires, func(id string) ([]slack.Block, string) {
			return answers.ApprovalBlocks(id, a, expires), "The agent asks for approval: " + a.Action
		})
	case peers.StreamQuestionTimeout:
		open, err := s.d.o.Store.OpenRunPrompts(ctx, s.runID)
		if err != nil {
			s.d.log.Warn("question_timeout not applied", "agent_run_id", s.runID, "error", err)
			return
		}
		for _, p := range open {
			if p.Kind == store.PromptQuestion {
				s.d.expire(ctx, p, true, "No answer in time: the question expired.")
			}
		}
	}
}

// post keeps a prompt and posts it in the thread.
func (s *stream) post(ctx context.Context, kind, ref string, payload []byte, expires *time.Time, layout func(id string) ([]slack.Block, string)) {
	sl := s.d.slack()
	if s.dest.ChannelID == "" || sl == nil {
		s.d.log.Warn("agent stream: the agent's "+kind+" cannot be shown: the run answers in no Slack thread the appliance posts",
			"agent_run_id", s.runID, "org_id", s.team.OrgID, "team_node_id", s.team.TeamNodeID)
		return
	}
	p, err := s.d.o.Store.InsertPrompt(ctx, store.Prompt{AgentRunID: s.runID, OrgID: s.team.OrgID, TeamNodeID: s.team.TeamNodeID,
		SlackApp: s.dest.App, ChannelID: s.dest.ChannelID, ThreadTS: s.dest.ThreadTS, Kind: kind, Ref: ref, Payload: payload,
		ExpiresAt: expires, CreatedAt: s.d.now()})
	if err != nil {
		s.d.log.Error("agent stream: the agent's "+kind+" is not kept", "agent_run_id", s.runID, "error", err)
		return
	}
	blocks, text := layout(p.ID)
	ts, err := sl.PostBlocks(ctx, s.dest, text, blocks)
	if err == nil {
		err = s.d.o.Store.SetPromptMessage(ctx, p.ID, ts)
	}
	if err != nil {
		s.d.log.Warn("agent stream: the agent's "+kind+" is not posted", "agent_run_id", s.runID, "prompt_id", p.ID, "error", err)
	}
}

// dest is where a prompt's message is.
func promptDest(p store.Prompt) answers.Destination {
	return answers.Destination{Type: answers.TypeSlack, ChannelID: p.ChannelID, ThreadTS: p.ThreadTS, App: p.SlackApp}
}

// settle updates a decided prompt's message: what was asked, what became
// of it, no buttons.
func (d *Dispatcher) settle(ctx context.Context, p store.Prompt, outcome string) {
	sl := d.slack()
	if sl == nil || p.MessageTS == "" || p.Kind == store.PromptStop {
		return
	}
	if err := sl.UpdateBlocks(ctx, promptDest(p), p.MessageTS, outcome, answers.DecidedBlocks(answers.AskedText(p.Kind, p.Payload), outcome)); err != nil {
		d.log.Warn("the decided "+p.Kind+"'s message is not updated", "prompt_id", p.ID, "agent_run_id", p.AgentRunID, "error", err)
	}
}

// expire ends an open prompt undecided: by its deadline (ended false) or
// because the agent or the run ended it. An approval's expiry is the
// agent's deny (sent only when its deadline passed: an ended stream has
// nobody to tell).
func (d *Dispatcher) expire(ctx context.Context, p store.Prompt, ended bool, outcome string) {
	decision := ""
	if p.Kind == store.PromptApproval {
		decision = "deny"
	}
	p, ok, err := d.o.Store.DecidePrompt(ctx, p.ID, store.PromptDecision{State: store.PromptExpired, Decision: decision, At: d.now(), Ended: ended})
	if err != nil || !ok {
		if err != nil {
			d.log.Warn("the "+p.Kind+" is not expired", "prompt_id", p.ID, "error", err)
		}
		return
	}
	d.log.Info("conversation: "+p.Kind+" expired", "prompt_id", p.ID, "agent_run_id", p.AgentRunID, "org_id", p.OrgID,
		"team_node_id", p.TeamNodeID)
	if p.Kind == store.PromptApproval && !ended {
		if err := d.tellAgent(ctx, p, peers.ApprovePath, peers.ConverseRequest{ThreadID: p.AgentRunID, ApprovalID: p.Ref,
			Decision: "deny", By: "expiry"}); err != nil {
			outcome += " The agent could not be told: " + err.Error()
		}
	}
	d.settle(ctx, p, outcome)
}

// tellAgent makes one call back to the run's agent with the team's token.
func (d *Dispatcher) tellAgent(ctx context.Context, p store.Prompt, path string, req peers.ConverseRequest) error {
	c, ok := d.o.Agent.(conversant)
	if !ok {
		return errors.New("this appliance's agent client cannot answer a streaming agent")
	}
	tc, err := d.context(ctx, p.OrgID, p.TeamNodeID)
	if err != nil {
		return err
	}
	_, base := d.agentTarget(tc.cfg, store.TeamKey{OrgID: p.OrgID, TeamNodeID: p.TeamNodeID})
	err = c.Converse(ctx, base, tc.imp.Token, p.AgentRunID, path, req, converseTimeout)
	if err != nil {
		d.log.Warn("conversation: the agent was not told", "path", path, "prompt_id", p.ID, "agent_run_id", p.AgentRunID, "error", err)
	}
	return err
}

// expiries denies, on time, the approvals nobody decided: it reads the
// store, so it fires after a restart, and the conditional decision makes
// it once across replicas.
func (d *Dispatcher) expiries() {
	defer close(d.expiryDone)
	every := max(d.o.Poll, 200*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		due, err := d.o.Store.DuePrompts(d.work, d.now(), expiryBatch)
		if err != nil {
			if d.work.Err() == nil {
				d.log.Warn("conversation: expiries not read", "error", err)
			}
			continue
		}
		for _, p := range due {
			outcome := "No decision in time: denied."
			if p.Kind != store.PromptApproval {
				outcome = "No answer in time: expired."
			}
			d.expire(context.WithoutCancel(d.work), p, false, outcome)
		}
	}
}

// approvers reads team config approvals.approvers: Slack user ids.
func approvers(cfg map[string]any) []string {
	a, _ := cfg["approvals"].(map[string]any)
	list, _ := a["approvers"].([]any)
	var out []string
	for _, v := range list {
		if s, ok := v.(string); ok {
			s = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "<@"), ">")
			if s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// recordClick carries out a click on a conversation's button whose Slack
// app and channel routed to the team of o: for a prompt of that team, in
// that channel. The click's event ends ignored, with why in its last
// error when nothing was done. ok is false when the returned outcome is
// the router's to write (always, here: a click is never retried — a
// decision is final, and one not written is told to the clicker).
func (d *Dispatcher) recordClick(e store.Event, o store.Outcome) store.Outcome {
	o.Status, o.Attempts, o.At = store.EventIgnored, e.Attempts, d.now()
	ev, err := webhook.ParseSlackInteraction(e.Body)
	if err != nil || ev.Click == nil {
		o.LastError = "ignored: the click's stored payload does not read as one"
		return o
	}
	ctx := context.WithoutCancel(d.work)
	c := ev.Click
	id := c.Prompt
	if c.Action == webhook.ClickStop {
		id = c.Run
	}
	why := func(reason string) store.Outcome {
		o.LastError = "ignored: " + reason
		d.log.Info("conversation: click not carried out", "event_id", e.ID, "action", c.Action, "reason", reason,
			"org_id", o.OrgID, "team_node_id", o.TeamNodeID)
		return o
	}
	if _, err := uuid.Parse(id); err != nil {
		return why("the button names no question, approval or run")
	}
	p, err := d.o.Store.GetPrompt(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return why("the button names no question, approval or run this appliance keeps")
	case err != nil:
		return why("the question or approval could not be read: " + err.Error())
	case p.OrgID != o.OrgID || p.TeamNodeID != o.TeamNodeID || p.ChannelID != c.Channel:
		return why("the question or approval is not of the team and channel this click came from")
	case c.User == "":
		return why("the click names no Slack user")
	}
	want := map[string]string{webhook.ClickAnswer: store.PromptQuestion, webhook.ClickApprove: store.PromptApproval,
		webhook.ClickReject: store.PromptApproval, webhook.ClickStop: store.PromptStop,
		webhook.ClickText: store.PromptQuestion, webhook.ClickTextAnswer: store.PromptQuestion}[c.Action]
	if p.Kind != want {
		return why("a " + c.Action + " button on a " + p.Kind)
	}
	tell := func(text string) {
		if sl := d.slack(); sl != nil {
			if err := sl.Ephemeral(ctx, promptDest(p), c.User, text); err != nil {
				d.log.Warn("conversation: the clicker was not told", "prompt_id", p.ID, "error", err)
			}
		}
	}
	if c.Action == webhook.ClickText {
		return d.openTextModal(ctx, p, c, tell, why, o)
	}
	dec := store.PromptDecision{By: c.User, ByName: c.UserName, At: d.now()}
	var path, outcome string
	var req peers.ConverseRequest
	switch c.Action {
	case webhook.ClickAnswer:
		var q answers.Question
		if json.Unmarshal(p.Payload, &q) != nil || c.Option >= len(q.Options) {
			return why("the answer names no option of the question")
		}
		label := q.Options[c.Option]
		dec.State, path = store.PromptAnswered, peers.AnswerPath
		answersJSON, _ := json.Marshal(map[string]string{q.Text: label})
		dec.Decision = string(answersJSON)
		req = peers.ConverseRequest{ThreadID: p.AgentRunID, Answers: map[string]string{q.Text: label}}
		outcome = fmt.Sprintf("Answered *%s* by %s.", label, answers.UserRef(c.User))
	case webhook.ClickTextAnswer:
		var q answers.Question
		if json.Unmarshal(p.Payload, &q) != nil || !q.FreeText {
			return why("the question takes no answer in words")
		}
		if c.Text == "" {
			tell("Your answer was empty: nothing was sent to the agent.")
			return why("the answer in words was empty")
		}
		dec.State, path = store.PromptAnswered, peers.AnswerPath
		answersJSON, _ := json.Marshal(map[string]string{q.Text: c.Text})
		dec.Decision = string(answersJSON)
		req = peers.ConverseRequest{ThreadID: p.AgentRunID, Answers: map[string]string{q.Text: c.Text}}
		outcome = fmt.Sprintf("Answered by %s: %s", answers.UserRef(c.User), answers.Quote(c.Text, 500))
	case webhook.ClickApprove, webhook.ClickReject:
		tc, err := d.context(ctx, p.OrgID, p.TeamNodeID)
		if err != nil {
			tell("Your decision could not be checked (the team's configuration could not be read); try again.")
			return why("the team's approvers could not be read: " + err.Error())
		}
		if !slices.Contains(approvers(tc.cfg), c.User) {
			tell("Only the team's approvers (team config approvals.approvers) may approve or reject what the agent asks.")
			return why("Slack user " + c.User + " is not one of the team's approvers")
		}
		dec.State, dec.Decision, outcome = store.PromptApproved, "approve", "Approved by "+answers.UserRef(c.User)+"."
		if c.Action == webhook.ClickReject {
			dec.State, dec.Decision, outcome = store.PromptDenied, "deny", "Rejected by "+answers.UserRef(c.User)+"."
		}
		path = peers.ApprovePath
		req = peers.ConverseRequest{ThreadID: p.AgentRunID, ApprovalID: p.Ref, Decision: dec.Decision, By: c.User}
	case webhook.ClickStop:
		dec.State, dec.Decision, path = store.PromptStopped, "interrupt", peers.InterruptPath
		req = peers.ConverseRequest{ThreadID: p.AgentRunID}
	}
	decided, ok, err := d.o.Store.DecidePrompt(ctx, p.ID, dec)
	if err != nil {
		tell("Your click could not be recorded; try again.")
		return why("the decision could not be written: " + err.Error())
	}
	if !ok {
		switch {
		case decided.State == store.PromptOpen:
			tell("Too late: this is no longer open.")
		case decided.Kind == store.PromptStop:
			tell("The investigation was already stopped, or has ended.")
		case decided.DecidedBy != "":
			tell(fmt.Sprintf("Already decided: %s by %s.", decided.State, answers.UserRef(decided.DecidedBy)))
		default:
			tell("Too late: this " + decided.Kind + " has " + decided.State + ".")
		}
		return why("the " + p.Kind + " was already " + decided.State + " (a decision is final)")
	}
	d.log.Info("conversation: "+p.Kind+" "+dec.State, "prompt_id", p.ID, "agent_run_id", p.AgentRunID, "by", c.User,
		"org_id", p.OrgID, "team_node_id", p.TeamNodeID)
	if err := d.tellAgent(ctx, decided, path, req); err != nil {
		outcome += " The agent could not be told: " + err.Error()
		tell("The agent could not be told: " + err.Error())
	}
	if c.Action == webhook.ClickStop {
		tell("Stopping the investigation.")
	}
	d.settle(ctx, decided, outcome)
	o.LastError = ""
	return o
}

// openTextModal answers a click on a free-text question's "Answer…"
// button: the modal (views.open with the click's trigger) whose submission
// is the answer. Nothing is decided here; the question must still be
// open.
func (d *Dispatcher) openTextModal(ctx context.Context, p store.Prompt, c *webhook.Click, tell func(string),
	why func(string) store.Outcome, o store.Outcome) store.Outcome {
	var q answers.Question
	if json.Unmarshal(p.Payload, &q) != nil || !q.FreeText {
		return why("the question takes no answer in words")
	}
	if p.State != store.PromptOpen {
		if p.DecidedBy != "" {
			tell(fmt.Sprintf("Already decided: %s by %s.", p.State, answers.UserRef(p.DecidedBy)))
		} else {
			tell("Too late: this question has " + p.State + ".")
		}
		return why("the question was already " + p.State + " (a decision is final)")
	}
	sl := d.slack()
	if sl == nil || c.TriggerID == "" {
		return why("no modal can be opened: no Slack client, or the click carries no trigger")
	}
	if err := sl.OpenView(ctx, p.SlackApp, c.TriggerID, answers.TextModal(p.ID, p.ChannelID, q)); err != nil {
		d.log.Warn("conversation: the answer form was not opened", "prompt_id", p.ID, "agent_run_id", p.AgentRunID, "error", err)
		tell("The answer form could not be opened (Slack allows 3 seconds after a click); click Answer… again.")
		return why("the answer form was not opened: " + err.Error())
	}
	d.log.Info("conversation: answer form opened", "prompt_id", p.ID, "agent_run_id", p.AgentRunID, "by", c.User,
		"org_id", p.OrgID, "team_node_id", p.TeamNodeID)
	o.LastError = ""
	return o
}

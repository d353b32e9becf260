package webui

// Answers on the page: where each agent call's answer went (the event and
// agent-run pages), the agent-run page itself, and redelivery of a failed
// or dead delivery.

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/answers"
	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/julienschmidt/httprouter"
)

// AnswerStore is what the page reads and changes of the answers outbox
// (store.DB implements it).
type AnswerStore interface {
	GetAnswerDelivery(ctx context.Context, id string) (store.AnswerDelivery, error)
	RunDeliveries(ctx context.Context, runIDs []string) (map[string][]store.AnswerDelivery, error)
	Redeliver(ctx context.Context, id, actor string, now time.Time) (store.AnswerDelivery, error)
	GetAgentRun(ctx context.Context, id string) (store.RunAnswer, error)
	AnswerCounts(ctx context.Context, since time.Time, org string) (posted, failed int, err error)
}

// deliveryRow is one delivery as the page lists it.
type deliveryRow struct {
	store.AnswerDelivery
	// Where is the destination in words; PostedByAgent says the
	// appliance left it to the agent.
	Where string
	// CanRedeliver: failed or dead, and the admin may redrive.
	CanRedeliver bool
}

// deliveryRows reads the deliveries of runs for the page.
func (u *UI) deliveryRows(ctx context.Context, a *auth.Admin, runIDs []string) map[string][]deliveryRow {
	if u.o.Answers == nil || len(runIDs) == 0 {
		return nil
	}
	got, err := u.o.Answers.RunDeliveries(ctx, runIDs)
	if err != nil {
		u.log.Warn("cannot read answer deliveries", "error", err)
		return nil
	}
	may := u.o.Auth.Permits(a, auth.PermEventsRedrive)
	out := map[string][]deliveryRow{}
	for run, ds := range got {
		for _, d := range ds {
			dest, _ := answers.DecodeDestination(d.Destination)
			out[run] = append(out[run], deliveryRow{AnswerDelivery: d, Where: dest.Where(), CanRedeliver: may && d.Redeliverable()})
		}
	}
	return out
}

// uiAgentRun is one agent call: what it was, its answer, where the answer
// went and the feedback on it. Another org's run is not found.
func (u *UI) uiAgentRun(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermEventsRead, "events")
	if a == nil {
		return
	}
	run, err := u.reads.AgentRun(r.Context(), a, httprouter.ParamsFromContext(r.Context()).ByName("id"))
	if err != nil {
		u.render(w, r, httpx.Classify(err).Kind.Status(), "notfound", page{Session: se, Nav: "events", Error: apperr.Message(err)})
		return
	}
	feedback, _ := u.o.Events.RunFeedback(r.Context(), []string{run.Run.ID})
	u.render(w, r, http.StatusOK, "agentrun", page{Session: se, Nav: "events", Data: struct {
		Run        store.AgentRun
		Answer     string
		Purged     bool
		Deliveries []deliveryRow
		Feedback   []store.Feedback
		Prompts    []promptRow
	}{run.Run, run.Answer, run.Purged, u.deliveryRows(r.Context(), a, []string{run.Run.ID})[run.Run.ID], feedback[run.Run.ID],
		u.promptRows(r.Context(), run.Run)}})
}

// promptReader reads a run's questions and approvals (store.DB).
type promptReader interface {
	RunPrompts(ctx context.Context, runID string) ([]store.Prompt, error)
}

// promptRow is one question, approval or Stop of a run, as its page
// lists it.
type promptRow struct {
	store.Prompt
	// Asked says what the agent asked, in words.
	Asked string
}

// promptRows reads the run's questions, approvals and Stop presses; only
// those of the run's own org and team (the run is the admin's already).
func (u *UI) promptRows(ctx context.Context, run store.AgentRun) []promptRow {
	pr, ok := u.o.Answers.(promptReader)
	if !ok {
		return nil
	}
	list, err := pr.RunPrompts(ctx, run.ID)
	if err != nil {
		u.log.Warn("cannot read the run's questions and approvals", "agent_run_id", run.ID, "error", err)
		return nil
	}
	var out []promptRow
	for _, p := range list {
		if p.OrgID != run.OrgID || p.TeamNodeID != run.TeamNodeID || (p.Kind == store.PromptStop && p.State != store.PromptStopped) {
			continue
		}
		asked := "Stop"
		switch p.Kind {
		case store.PromptQuestion:
			var q answers.Question
			_ = json.Unmarshal(p.Payload, &q)
			asked = q.Text
		case store.PromptApproval:
			a, _ := answers.ParseApproval(p.Payload)
			asked = strings.TrimSpace(a.Action + " " + a.Target)
			if a.ID != "" {
				asked += " (" + a.ID + ")"
			}
		}
		out = append(out, promptRow{Prompt: p, Asked: asked})
	}
	return out
}

// uiRedeliver queues a failed or dead delivery again (admin:events:redrive,
// org-scoped, audited) and goes back to its run.
func (u *UI) uiRedeliver(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiAdmin(w, r, se, auth.PermEventsRedrive, "events")
	if a == nil {
		return
	}
	d, err := u.reads.Delivery(r.Context(), a, httprouter.ParamsFromContext(r.Context()).ByName("id"))
	if err != nil {
		u.render(w, r, httpx.Classify(err).Kind.Status(), "notfound", page{Session: se, Nav: "events", Error: apperr.Message(err)})
		return
	}
	if _, err := u.o.Answers.Redeliver(r.Context(), d.ID, a.Actor, u.now()); err != nil {
		u.setFlash(r, se, "Not redelivered: "+err.Error())
	} else {
		u.setFlash(r, se, "Answer queued again for "+d.Type+".")
		u.log.Info("answer delivery queued again", "delivery_id", d.ID, "agent_run_id", d.AgentRunID, "actor", a.Actor)
		if u.o.Redelivered != nil {
			u.o.Redelivered()
		}
	}
	http.Redirect(w, r, "/ui/agent-runs/"+d.AgentRunID, http.StatusSeeOther)
}

// answersToday counts the answers that ended since the UTC day began.
func (u *UI) answersToday(ctx context.Context, org string) *answerCounts {
	if u.o.Answers == nil {
		return nil
	}
	now := u.now()
	posted, failed, err := u.o.Answers.AnswerCounts(ctx, time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC), org)
	if err != nil {
		return nil
	}
	return &answerCounts{Posted: posted, Failed: failed}
}

// answerCounts is the overview's answers of the day.
type answerCounts struct{ Posted, Failed int }

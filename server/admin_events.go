package server

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/incidentfox/orchestrator-edge/server/routing"
	"github.com/incidentfox/orchestrator-edge/server/scoped"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/julienschmidt/httprouter"
)

// EventStore is the store of webhook events (store.DB implements it).
type EventStore interface {
	InsertEvent(ctx context.Context, e store.Event) (store.InsertResult, error)
	GetEvent(ctx context.Context, id string) (store.Event, error)
	ListEvents(ctx context.Context, f store.EventFilter) ([]store.Event, string, error)
	Redrive(ctx context.Context, id string, now time.Time) (store.Event, error)
	EventAgentRuns(ctx context.Context, eventID string) ([]store.AgentRun, error)
	RunFeedback(ctx context.Context, runIDs []string) (map[string][]store.Feedback, error)
	EventFeedback(ctx context.Context, eventID string) ([]store.Feedback, error)
}

// eventView is an event as the admin API shows it.
type eventView struct {
	ID            string            `json:"id"`
	Source        string            `json:"source"`
	DeliveryID    string            `json:"delivery_id"`
	EventType     string            `json:"event_type"`
	Status        string            `json:"status"`
	Identifiers   map[string]string `json:"routing_identifiers,omitempty"`
	OrgID         string            `json:"org_id,omitempty"`
	TeamNodeID    string            `json:"team_node_id,omitempty"`
	MatchedBy     string            `json:"matched_by,omitempty"`
	Attempts      int               `json:"attempts"`
	NextAttemptAt *time.Time        `json:"next_attempt_at,omitempty"`
	LastError     string            `json:"last_error,omitempty"`
	ReceivedAt    time.Time         `json:"received_at"`
	UpdatedAt     time.Time         `json:"updated_at"`
	FinishedAt    *time.Time        `json:"finished_at,omitempty"`
	// Digest is the agent call this event was folded into with others;
	// absent for a lone delivery (SPEC §6 Storms).
	Digest *digestView `json:"digest,omitempty"`
	// Alert is an alert event's identity (SPEC §6 Noise).
	Alert *alertView `json:"alert,omitempty"`
	// SuppressedReason and SuppressedBy: why noise control kept the event
	// from the agent and what caused it (an event id, a silence id, a day).
	SuppressedReason string `json:"suppressed_reason,omitempty"`
	SuppressedBy     string `json:"suppressed_by,omitempty"`
	// Redriven: an operator queued the event again (it went alone, past
	// noise control); a suppressed_reason it still carries is why it had
	// been kept back before.
	Redriven bool `json:"redriven,omitempty"`
	// ReleasedBy: what ended the hold on the event (SuppressedBy held
	// it; SPEC §21) — the inhibitor's resolve, or store.Released*. On an
	// event still suppressed: the hold ended, but a newer event of its
	// alert (or its resolve) carried on, so it was not queued again.
	ReleasedBy string `json:"released_by,omitempty"`
	// Detail only.
	Headers      map[string]string `json:"headers,omitempty"`
	Body         *string           `json:"body,omitempty"`
	BodyEncoding string            `json:"body_encoding,omitempty"`
	BodyPurgedAt *time.Time        `json:"body_purged_at,omitempty"`
	// PayloadError: the stored headers and body could not be read.
	PayloadError string         `json:"payload_error,omitempty"`
	AgentRuns    []agentRunView `json:"agent_runs,omitempty"`
	// Decision is where the event went and why, step by step (SPEC §20);
	// DecisionSummary says it in one line. Detail only; absent for an
	// event not routed yet or stored before decisions were.
	Decision        *routing.Decision `json:"decision,omitempty"`
	DecisionSummary string            `json:"decision_summary,omitempty"`
	// Recorded is the feedback a click's event recorded on an agent run
	// (the event is ignored: it is not for the agent).
	Recorded []recordedView `json:"recorded_feedback,omitempty"`
}

type recordedView struct {
	Value      string `json:"value"`
	AgentRunID string `json:"agent_run_id"`
}

type alertView struct {
	Key   string `json:"key"`
	State string `json:"state"`
}

type digestView struct {
	AgentRunID string `json:"agent_run_id"`
	Size       int    `json:"size"`
}

type agentRunView struct {
	ID             string    `json:"id"`
	AgentName      string    `json:"agent_name"`
	Status         string    `json:"status"`
	UpstreamStatus int       `json:"upstream_status,omitempty"`
	Error          string    `json:"error,omitempty"`
	DurationMS     int64     `json:"duration_ms"`
	StartedAt      time.Time `json:"started_at"`
	TriggerSource  string    `json:"trigger_source"`
	EventCount     int       `json:"event_count"`
	// Feedback lists the clicks on the answer's feedback buttons.
	Feedback []feedbackView `json:"feedback,omitempty"`
	// Deliveries are the answer's deliveries, one per destination.
	Deliveries []deliveryView `json:"deliveries,omitempty"`
}

type feedbackView struct {
	Value     string    `json:"value"`
	UserID    string    `json:"user_id,omitempty"`
	UserName  string    `json:"user_name,omitempty"`
	SlackApp  string    `json:"slack_app,omitempty"`
	EventID   string    `json:"event_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func viewEvent(e store.Event) eventView {
	v := eventView{ID: e.ID, Source: e.Source, DeliveryID: e.DeliveryID, EventType: e.EventType, Status: e.Status,
		Identifiers: e.Identifiers, OrgID: e.OrgID, TeamNodeID: e.TeamNodeID, MatchedBy: e.MatchedBy,
		Attempts: e.Attempts, LastError: e.LastError, ReceivedAt: e.ReceivedAt, UpdatedAt: e.UpdatedAt,
		FinishedAt: e.FinishedAt, BodyPurgedAt: e.BodyPurgedAt, PayloadError: e.PayloadError}
	if e.DigestRunID != "" {
		v.Digest = &digestView{AgentRunID: e.DigestRunID, Size: e.DigestSize}
	}
	if e.AlertKey != "" {
		v.Alert = &alertView{Key: e.AlertKey, State: e.AlertState}
	}
	v.SuppressedReason, v.SuppressedBy, v.Redriven, v.ReleasedBy = e.SuppressedReason, e.SuppressedBy, e.Solo, e.ReleasedBy
	if e.Status == store.EventQueued && !e.NextAttemptAt.IsZero() {
		t := e.NextAttemptAt
		v.NextAttemptAt = &t
	}
	return v
}

func (s *Server) handleListEvents(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermEventsRead)
	if a == nil {
		return
	}
	f, err := scoped.EventFilter(r.URL.Query(), s.sourceNames())
	if err == nil {
		f.Limit, err = scoped.ListQuery(r, a, &f.OrgID)
	}
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	events, next, err := s.opts.Events.ListEvents(r.Context(), f)
	if err != nil {
		s.out.Error(w, r, httpx.CursorError(err))
		return
	}
	views := make([]eventView, 0, len(events))
	for _, e := range events {
		views = append(views, viewEvent(e))
	}
	s.out.JSON(w, r, http.StatusOK, map[string]any{"events": views, "next_cursor": next})
}

// event loads the path's event for an admin, answering the error itself.
func (s *Server) event(w http.ResponseWriter, r *http.Request, a *auth.Admin) (store.Event, bool) {
	e, err := s.reads.Event(r.Context(), a, httprouter.ParamsFromContext(r.Context()).ByName("id"))
	if err != nil {
		s.out.Error(w, r, err)
		return store.Event{}, false
	}
	return e, true
}

func (s *Server) handleGetEvent(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermEventsRead)
	if a == nil {
		return
	}
	e, ok := s.event(w, r, a)
	if !ok {
		return
	}
	v := viewEvent(e)
	v.Headers = e.Headers
	if dec := routing.DecodeDecision(e.Decision); len(dec.Steps) > 0 {
		v.Decision, v.DecisionSummary = &dec, dec.Sentence()
	}
	if e.Body != nil {
		body, enc := string(e.Body), "utf-8"
		if !utf8.Valid(e.Body) {
			body, enc = base64.StdEncoding.EncodeToString(e.Body), "base64"
		}
		v.Body, v.BodyEncoding = &body, enc
	}
	runs, err := s.opts.Events.EventAgentRuns(r.Context(), e.ID)
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	ids := make([]string, len(runs))
	for i, run := range runs {
		ids[i] = run.ID
	}
	feedback, err := s.opts.Events.RunFeedback(r.Context(), ids)
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	deliveries := map[string][]store.AnswerDelivery{}
	if s.opts.Answers != nil {
		if deliveries, err = s.opts.Answers.RunDeliveries(r.Context(), ids); err != nil {
			s.out.Error(w, r, err)
			return
		}
	}
	for _, run := range runs {
		rv := agentRunView{ID: run.ID, AgentName: run.AgentName, Status: run.Status,
			UpstreamStatus: run.UpstreamStatus, Error: run.Error, DurationMS: run.Duration.Milliseconds(), StartedAt: run.StartedAt,
			TriggerSource: run.TriggerSource, EventCount: run.EventCount}
		for _, f := range feedback[run.ID] {
			rv.Feedback = append(rv.Feedback, feedbackView{Value: f.Value, UserID: f.UserID, UserName: f.UserName,
				SlackApp: f.SlackApp, EventID: f.EventID, CreatedAt: f.CreatedAt})
		}
		for _, d := range deliveries[run.ID] {
			rv.Deliveries = append(rv.Deliveries, viewDelivery(d))
		}
		v.AgentRuns = append(v.AgentRuns, rv)
	}
	if e.Status == store.EventIgnored {
		recorded, err := s.opts.Events.EventFeedback(r.Context(), e.ID)
		if err != nil {
			s.out.Error(w, r, err)
			return
		}
		for _, f := range recorded {
			v.Recorded = append(v.Recorded, recordedView{Value: f.Value, AgentRunID: f.AgentRunID})
		}
	}
	s.out.JSON(w, r, http.StatusOK, v)
}

func (s *Server) handleRedrive(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermEventsRedrive)
	if a == nil {
		return
	}
	e, ok := s.event(w, r, a)
	if !ok {
		return
	}
	e, err := s.opts.Events.Redrive(r.Context(), e.ID, s.now())
	switch {
	case errors.Is(err, store.ErrBodyPurged):
		err = apperr.Wrap(err, apperr.Conflict, "body_purged", "the event's body was purged by retention; it cannot be dispatched again")
	case errors.Is(err, store.ErrConflict):
		err = apperr.Wrap(err, apperr.Conflict, "not_redrivable", "only unrouted, failed, dead and suppressed events can be redriven")
	}
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	if s.opts.Notify != nil {
		s.opts.Notify(e.OrgID, e.TeamNodeID)
	}
	s.logger.Info("event redriven", "event_id", e.ID, "actor", a.Actor)
	s.out.JSON(w, r, http.StatusOK, viewEvent(e))
}

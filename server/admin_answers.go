package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/julienschmidt/httprouter"
)

// AnswerStore is the store of answer deliveries (store.DB implements it).
type AnswerStore interface {
	GetAnswerDelivery(ctx context.Context, id string) (store.AnswerDelivery, error)
	RunDeliveries(ctx context.Context, runIDs []string) (map[string][]store.AnswerDelivery, error)
	Redeliver(ctx context.Context, id, actor string, now time.Time) (store.AnswerDelivery, error)
}

// deliveryView is an answer delivery as the admin API shows it.
type deliveryView struct {
	ID            string          `json:"id"`
	AgentRunID    string          `json:"agent_run_id"`
	Type          string          `json:"type"`
	Destination   json.RawMessage `json:"destination"`
	Status        string          `json:"status"`
	Attempts      int             `json:"attempts"`
	NextAttemptAt *time.Time      `json:"next_attempt_at,omitempty"`
	LastError     string          `json:"last_error,omitempty"`
	MessageID     string          `json:"message_id,omitempty"`
	Link          string          `json:"link,omitempty"`
	CreatedAt     time.Time       `json:"created_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
	FinishedAt    *time.Time      `json:"finished_at,omitempty"`
}

func viewDelivery(d store.AnswerDelivery) deliveryView {
	v := deliveryView{ID: d.ID, AgentRunID: d.AgentRunID, Type: d.Type, Destination: json.RawMessage(d.Destination),
		Status: d.Status, Attempts: d.Attempts, LastError: d.LastError, MessageID: d.MessageID, Link: d.Link,
		CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, FinishedAt: d.FinishedAt}
	if !json.Valid(v.Destination) {
		v.Destination = json.RawMessage(`{}`)
	}
	if d.Status == store.AnswerQueued && !d.NextAttemptAt.IsZero() {
		t := d.NextAttemptAt
		v.NextAttemptAt = &t
	}
	return v
}

// handleRedeliver queues a failed or dead answer delivery again (SPEC §19):
// org-scoped like an event's redrive, with the same permission, and
// recorded in the admin audit.
func (s *Server) handleRedeliver(w http.ResponseWriter, r *http.Request) {
	a := s.admin(w, r, auth.PermEventsRedrive)
	if a == nil {
		return
	}
	d, err := s.reads.Delivery(r.Context(), a, httprouter.ParamsFromContext(r.Context()).ByName("id"))
	if err == nil {
		d, err = s.opts.Answers.Redeliver(r.Context(), d.ID, a.Actor, s.now())
	}
	switch {
	case errors.Is(err, store.ErrAnswerPurged):
		err = apperr.Wrap(err, apperr.Conflict, "answer_purged", "the run's answer was purged by retention (or the run is gone); it cannot be posted again")
	case errors.Is(err, store.ErrConflict):
		err = apperr.Wrap(err, apperr.Conflict, "not_redeliverable", "only failed and dead answer deliveries can be redelivered")
	}
	if err != nil {
		s.out.Error(w, r, err)
		return
	}
	if s.opts.Redelivered != nil {
		s.opts.Redelivered()
	}
	s.logger.Info("answer delivery queued again", "delivery_id", d.ID, "agent_run_id", d.AgentRunID, "actor", a.Actor)
	s.out.JSON(w, r, http.StatusOK, viewDelivery(d))
}

package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// answerRun records an agent run with its answer and deliveries as the
// dispatcher's completer does: one transaction.
func answerRun(t *testing.T, db *DB, at time.Time, answer string, deliveries ...AnswerDelivery) AgentRun {
	t.Helper()
	run := AgentRun{ID: uuid.NewString(), TriggerSource: "slack", WebhookEventID: "42", OrgID: "acme", TeamNodeID: "sre",
		AgentName: "planner", Status: "succeeded", StartedAt: at, Duration: time.Second, Answer: answer}
	for i := range deliveries {
		d := &deliveries[i]
		d.ID, d.AgentRunID, d.Seq, d.OrgID, d.TeamNodeID, d.EventID, d.CreatedAt = uuid.NewString(), run.ID, i, "acme", "sre", "42", at
		if d.Type == "" {
			d.Type = "slack"
		}
		if d.Destination == nil {
			d.Destination = []byte(`{"type":"slack","channel_id":"C1"}`)
		}
	}
	if err := db.RecordOutcomes(context.Background(), nil, []AgentRun{run}, deliveries); err != nil {
		t.Fatal(err)
	}
	return run
}

// The outbox is a queue on the events queue's machinery: deliveries are
// recorded with their run (posting: claimed by the recording process, or
// failed with a reason), claimed when due, leased, taken back when a lease
// passes, and outcomes apply only to what is still posting.
func TestConformance_AnswerDeliveriesQueue(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		run := answerRun(t, db, t0, "The checkout pods are OOM-killed.",
			AnswerDelivery{Status: AnswerPosting, NextAttemptAt: t0.Add(2 * time.Minute)},
			AnswerDelivery{Status: AnswerFailed, Type: "invalid", Destination: []byte(`{"type":"teams"}`), LastError: "unknown destination type"})
		got, err := db.RunDeliveries(ctx, []string{run.ID})
		if err != nil {
			t.Fatal(err)
		}
		ds := got[run.ID]
		if len(ds) != 2 || ds[0].Status != AnswerPosting || ds[1].Status != AnswerFailed || ds[1].FinishedAt == nil ||
			ds[1].LastError != "unknown destination type" || string(ds[1].Destination) != `{"type":"teams"}` || ds[0].EventID != "42" {
			t.Fatalf("recorded deliveries = %+v", ds)
		}
		// The answer is kept with the run, once.
		answers, err := db.AgentRunAnswers(ctx, []string{run.ID, run.ID, uuid.NewString()})
		if err != nil || len(answers) != 1 || answers[run.ID].Answer != "The checkout pods are OOM-killed." || answers[run.ID].Purged {
			t.Fatalf("answers = %+v, %v", answers, err)
		}
		// Nothing is due while the recording process holds its claim.
		if _, ok, err := db.NextAnswerDue(ctx); ok || err != nil {
			t.Fatalf("due with nothing queued: %v %v", ok, err)
		}
		if c, err := db.ClaimAnswerDeliveries(ctx, t0.Add(time.Minute), t0.Add(3*time.Minute), 10); err != nil || len(c) != 0 {
			t.Fatalf("claimed a posting delivery: %v %v", c, err)
		}
		// A retry: queued for later; not due before then.
		retryAt := t0.Add(90 * time.Second)
		if err := db.RecordAnswerOutcomes(ctx, []AnswerOutcome{{ID: ds[0].ID, Status: AnswerQueued, Attempts: 1,
			NextAttemptAt: retryAt, LastError: "slack: 503", At: t0.Add(time.Minute)}}); err != nil {
			t.Fatal(err)
		}
		if due, ok, err := db.NextAnswerDue(ctx); !ok || err != nil || !due.Equal(retryAt) {
			t.Fatalf("next due = %v %v %v, want %v", due, ok, err, retryAt)
		}
		if c, _ := db.ClaimAnswerDeliveries(ctx, retryAt.Add(-time.Millisecond), retryAt.Add(time.Minute), 10); len(c) != 0 {
			t.Fatal("claimed before it was due")
		}
		c, err := db.ClaimAnswerDeliveries(ctx, retryAt, retryAt.Add(time.Minute), 10)
		if err != nil || len(c) != 1 || c[0].ID != ds[0].ID || c[0].Status != AnswerPosting || c[0].Attempts != 1 ||
			!c[0].NextAttemptAt.Equal(retryAt.Add(time.Minute)) {
			t.Fatalf("claim = %+v, %v", c, err)
		}
		// Its replica dies: the lease passes and the delivery is queued again.
		if n, err := db.RequeueExpiredAnswers(ctx, retryAt.Add(59*time.Second)); n != 0 || err != nil {
			t.Fatalf("requeued a live claim: %d %v", n, err)
		}
		if n, err := db.RequeueExpiredAnswers(ctx, retryAt.Add(time.Minute)); n != 1 || err != nil {
			t.Fatalf("requeued %d, %v", n, err)
		}
		// The dead replica's late outcome no longer applies.
		if err := db.RecordAnswerOutcomes(ctx, []AnswerOutcome{{ID: ds[0].ID, Status: AnswerPosted, Attempts: 1, MessageID: "late", At: retryAt}}); err != nil {
			t.Fatal(err)
		}
		d, _ := db.GetAnswerDelivery(ctx, ds[0].ID)
		if d.Status != AnswerQueued || d.MessageID != "" {
			t.Fatalf("a stale outcome applied: %+v", d)
		}
		c, _ = db.ClaimAnswerDeliveries(ctx, retryAt.Add(2*time.Minute), retryAt.Add(3*time.Minute), 10)
		if len(c) != 1 {
			t.Fatalf("claim after requeue = %d", len(c))
		}
		if err := db.RecordAnswerOutcomes(ctx, []AnswerOutcome{{ID: c[0].ID, Status: AnswerPosted, Attempts: 1, MessageID: "1733312345.000200",
			Link: "https://slack.example/archives/C1/p1733312345000200", At: retryAt.Add(2 * time.Minute)}}); err != nil {
			t.Fatal(err)
		}
		d, _ = db.GetAnswerDelivery(ctx, c[0].ID)
		if d.Status != AnswerPosted || d.MessageID != "1733312345.000200" || d.FinishedAt == nil || !d.FinishedAt.Equal(retryAt.Add(2*time.Minute)) ||
			d.Link == "" || d.LastError != "" {
			t.Fatalf("posted delivery = %+v", d)
		}
		posted, failed, err := db.AnswerCounts(ctx, t0, "")
		if err != nil || posted != 1 || failed != 1 {
			t.Fatalf("counts = %d posted, %d failed, %v", posted, failed, err)
		}
		if posted, failed, _ := db.AnswerCounts(ctx, t0, "globex"); posted+failed != 0 {
			t.Fatal("another org's answers counted")
		}
		// On a database of its own, what a crash left posting is queued at start.
		run2 := answerRun(t, db, t0, "x", AnswerDelivery{Status: AnswerPosting, NextAttemptAt: t0.Add(time.Hour)})
		if n, err := db.RequeuePostingAnswers(ctx, t0.Add(time.Second)); n != 1 || err != nil {
			t.Fatalf("requeued %d, %v", n, err)
		}
		got, _ = db.RunDeliveries(ctx, []string{run2.ID})
		if got[run2.ID][0].Status != AnswerQueued || !got[run2.ID][0].NextAttemptAt.Equal(t0.Add(time.Second)) {
			t.Fatalf("after requeue: %+v", got[run2.ID][0])
		}
	})
}

// Replicas claiming at once never take the same delivery.
func TestConformance_AnswerClaimsDoNotOverlap(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		var ds []AnswerDelivery
		for range 40 {
			ds = append(ds, AnswerDelivery{Status: AnswerPosting, NextAttemptAt: t0})
		}
		answerRun(t, db, t0, "x", ds...)
		if _, err := db.RequeuePostingAnswers(ctx, t0); err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		results := make(chan []AnswerDelivery, 8)
		for range 8 {
			go func() {
				c, err := db.ClaimAnswerDeliveries(ctx, t0, t0.Add(time.Minute), 7)
				if err != nil {
					t.Error(err)
				}
				results <- c
			}()
		}
		for range 8 {
			for _, d := range <-results {
				seen[d.ID]++
			}
		}
		if len(seen) != 40 {
			t.Fatalf("%d of 40 claimed", len(seen))
		}
		for id, n := range seen {
			if n != 1 {
				t.Fatalf("delivery %s claimed %d times", id, n)
			}
		}
	})
}

// Redeliver queues a failed or dead delivery again, due now with its
// attempts reset, audited with who asked; nothing else is redeliverable,
// and neither is an answer retention emptied.
func TestConformance_RedeliverIsAuditedAndGuarded(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		run := answerRun(t, db, t0, "answer", AnswerDelivery{Status: AnswerPosting, NextAttemptAt: t0.Add(time.Minute)})
		ds, _ := db.RunDeliveries(ctx, []string{run.ID})
		d := ds[run.ID][0]
		if _, err := db.Redeliver(ctx, d.ID, "alice", t0); !errors.Is(err, ErrConflict) {
			t.Fatalf("redelivered a posting delivery: %v", err)
		}
		if err := db.RecordAnswerOutcomes(ctx, []AnswerOutcome{{ID: d.ID, Status: AnswerDead, Attempts: 6, LastError: "slack: 503", At: t0}}); err != nil {
			t.Fatal(err)
		}
		got, err := db.Redeliver(ctx, d.ID, "alice", t0.Add(time.Hour))
		if err != nil || got.Status != AnswerQueued || got.Attempts != 0 || !got.NextAttemptAt.Equal(t0.Add(time.Hour)) || got.FinishedAt != nil {
			t.Fatalf("redeliver = %+v, %v", got, err)
		}
		stored, _ := db.GetAnswerDelivery(ctx, d.ID)
		if stored.Status != AnswerQueued || stored.Attempts != 0 || stored.FinishedAt != nil || stored.LastError != "slack: 503" {
			t.Fatalf("stored after redeliver = %+v", stored)
		}
		audit, _ := db.ListAudit(ctx, "acme", 10)
		if len(audit) != 1 || audit[0].Action != "answer.redeliver" || audit[0].Actor != "alice" || audit[0].Detail["delivery_id"] != d.ID {
			t.Fatalf("audit = %+v", audit)
		}
		if _, err := db.Redeliver(ctx, uuid.NewString(), "alice", t0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a missing delivery: %v", err)
		}
		if _, err := db.GetAnswerDelivery(ctx, "../x"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a malformed id: %v", err)
		}
		// Retention empties the answer once nothing waits to post it; then
		// a failed delivery of it cannot be posted again.
		if n, err := db.PurgeAnswers(ctx, t0.Add(time.Hour), t0.Add(2*time.Hour), 10); n != 0 || err != nil {
			t.Fatalf("purged an answer a queued delivery waits for: %d %v", n, err)
		}
		if err := db.RecordAnswerOutcomes(ctx, nil); err != nil {
			t.Fatal(err)
		}
		c, _ := db.ClaimAnswerDeliveries(ctx, t0.Add(time.Hour), t0.Add(2*time.Hour), 1)
		_ = db.RecordAnswerOutcomes(ctx, []AnswerOutcome{{ID: c[0].ID, Status: AnswerFailed, LastError: "channel_not_found", At: t0.Add(time.Hour)}})
		if n, err := db.PurgeAnswers(ctx, t0.Add(-time.Second), t0.Add(2*time.Hour), 10); n != 0 || err != nil {
			t.Fatalf("purged an answer younger than the cutoff: %d %v", n, err)
		}
		if n, err := db.PurgeAnswers(ctx, t0.Add(time.Hour), t0.Add(2*time.Hour), 10); n != 1 || err != nil {
			t.Fatalf("purged %d answers, %v", n, err)
		}
		a, _ := db.AgentRunAnswers(ctx, []string{run.ID})
		if !a[run.ID].Purged || a[run.ID].Answer != "" {
			t.Fatalf("after purge: %+v", a[run.ID])
		}
		if _, err := db.Redeliver(ctx, d.ID, "alice", t0.Add(3*time.Hour)); !errors.Is(err, ErrAnswerPurged) {
			t.Fatalf("redelivered a purged answer: %v", err)
		}
		// The deliveries go with the runs, by the audit retention; never
		// one still waiting.
		waiting := answerRun(t, db, t0, "y", AnswerDelivery{Status: AnswerPosting, NextAttemptAt: t0})
		if n, err := db.PurgeAnswerDeliveries(ctx, t0.Add(time.Hour), 10); n != 1 || err != nil {
			t.Fatalf("purged %d deliveries, %v", n, err)
		}
		left, _ := db.RunDeliveries(ctx, []string{run.ID, waiting.ID})
		if len(left[run.ID]) != 0 || len(left[waiting.ID]) != 1 {
			t.Fatalf("after purge: %v", left)
		}
	})
}

// An answer longer than the appliance keeps is cut on a character
// boundary, with a note.
func TestConformance_LongAnswersAreCut(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		long := strings.Repeat("é", MaxAnswerBytes) // 2 bytes each
		run := answerRun(t, db, t0, long)
		a, err := db.GetAgentRun(context.Background(), run.ID)
		if err != nil || len(a.Answer) > MaxAnswerBytes || !strings.HasSuffix(a.Answer, "(answer cut: it was longer than the appliance keeps)") ||
			!strings.HasPrefix(a.Answer, "éé") || strings.ContainsRune(a.Answer, '\uFFFD') {
			t.Fatalf("kept %d bytes, %v", len(a.Answer), err)
		}
	})
}

// A streamed run's summary is written with it (with or without an
// answer), read back by GetAgentRun and AgentRunAnswers, and cut on a
// character boundary; a run without one reads "".
func TestConformance_RunSummaryKept(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		with := AgentRun{ID: uuid.NewString(), TriggerSource: "slack", OrgID: "acme", TeamNodeID: "sre", AgentName: "planner",
			Status: "failed", StartedAt: t0, Duration: 42 * time.Second, Summary: "Tools: kubectl_logs ×2 · 42 s"}
		long := with
		long.ID, long.Answer, long.Summary = uuid.NewString(), "done", strings.Repeat("é", MaxSummaryBytes)
		plain := answerRun(t, db, t0, "no summary")
		if err := db.RecordOutcomes(context.Background(), nil, []AgentRun{with, long}, nil); err != nil {
			t.Fatal(err)
		}
		got, err := db.AgentRunAnswers(context.Background(), []string{with.ID, long.ID, plain.ID})
		if err != nil || got[with.ID].Run.Summary != with.Summary || got[plain.ID].Run.Summary != "" || got[long.ID].Answer != "done" ||
			len(got[long.ID].Run.Summary) != MaxSummaryBytes || strings.ContainsRune(got[long.ID].Run.Summary, '\uFFFD') {
			t.Fatalf("summaries %q %q %d bytes, %v", got[with.ID].Run.Summary, got[plain.ID].Run.Summary, len(got[long.ID].Run.Summary), err)
		}
		if a, err := db.GetAgentRun(context.Background(), with.ID); err != nil || a.Run.Summary != with.Summary {
			t.Fatalf("GetAgentRun %q %v", a.Run.Summary, err)
		}
	})
}

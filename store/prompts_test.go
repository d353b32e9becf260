package store

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestConformance_PromptsDecideOnceAndExpireOnTime, on both databases: a
// run's question and approval are kept open; a decision is written once —
// a second one, from this or another replica (two at once), is refused;
// a person's decision after the deadline is refused, and the expiry is
// written only once the deadline passed, once; each decision and expiry of
// an approval is in the admin audit with who and when; a reopened store
// (a restart) still has them.
func TestConformance_PromptsDecideOnceAndExpireOnTime(t *testing.T) {
	replicas(t, func(t *testing.T, one, other *DB, where string) {
		ctx := context.Background()
		now := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
		exp := now.Add(10 * time.Minute)
		q, err := one.InsertPrompt(ctx, Prompt{AgentRunID: "6f1c1e1a-4b8e-4d7a-9a55-3b0e2f6d9c01", OrgID: "acme", TeamNodeID: "sre",
			SlackApp: "main", ChannelID: "C1", ThreadTS: "1.1", MessageTS: "1.2", Kind: PromptQuestion,
			Payload: json.RawMessage(`{"questions":[{"question":"Which cluster?","options":["a","b"]}]}`), CreatedAt: now})
		if err != nil {
			t.Fatal(err)
		}
		a, err := one.InsertPrompt(ctx, Prompt{AgentRunID: q.AgentRunID, OrgID: "acme", TeamNodeID: "sre", ChannelID: "C1",
			ThreadTS: "1.1", Kind: PromptApproval, Ref: "ap-1", Payload: json.RawMessage(`{"action":"restart","target":"pod/x"}`),
			ExpiresAt: &exp, CreatedAt: now.Add(time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := one.InsertPrompt(ctx, Prompt{AgentRunID: q.AgentRunID, OrgID: "acme", TeamNodeID: "sre", ChannelID: "C1",
			Kind: "poll", Payload: json.RawMessage(`{}`)}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("a poll was kept: %v", err)
		}
		if err := other.SetPromptMessage(ctx, a.ID, "1.3"); err != nil {
			t.Fatal(err)
		}

		// Two replicas answer the question at once: one wins.
		var wg sync.WaitGroup
		wins := make([]bool, 2)
		for i, db := range []*DB{one, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, ok, err := db.DecidePrompt(ctx, q.ID, PromptDecision{State: PromptAnswered, Decision: `{"0":"a"}`,
					By: "U" + string(rune('1'+i)), At: now.Add(time.Minute)})
				if err != nil {
					t.Error(err)
				}
				wins[i] = ok
			}()
		}
		wg.Wait()
		if wins[0] == wins[1] {
			t.Fatalf("two answers at once: wins %v", wins)
		}
		got, err := other.GetPrompt(ctx, q.ID)
		if err != nil || got.State != PromptAnswered || got.DecidedAt == nil || got.DecidedBy == "" || got.MessageTS != "1.2" {
			t.Fatalf("question %+v %v", got, err)
		}

		// An expiry before the deadline is not written.
		if _, ok, err := one.DecidePrompt(ctx, a.ID, PromptDecision{State: PromptExpired, Decision: "deny", At: exp.Add(-time.Millisecond)}); ok || err != nil {
			t.Fatalf("expired early: %v %v", ok, err)
		}
		if due, err := one.DuePrompts(ctx, exp.Add(-time.Millisecond), 10); err != nil || len(due) != 0 {
			t.Fatalf("due early %+v %v", due, err)
		}
		if next, err := one.NextPromptExpiry(ctx); err != nil || next == nil || !next.Equal(exp) {
			t.Fatalf("next expiry %v %v", next, err)
		}
		// A person's decision after the deadline is refused.
		if _, ok, err := one.DecidePrompt(ctx, a.ID, PromptDecision{State: PromptApproved, Decision: "approve", By: "U1", At: exp}); ok || err != nil {
			t.Fatalf("approved after expiry: %v %v", ok, err)
		}
		// A restart: the row is there, due.
		reopened := other
		if !one.Shared() {
			one.Close()
			reopened = openMigrated(t, Options{Path: where})
		}
		due, err := reopened.DuePrompts(ctx, exp, 10)
		if err != nil || len(due) != 1 || due[0].ID != a.ID || due[0].MessageTS != "1.3" || due[0].Ref != "ap-1" {
			t.Fatalf("due %+v %v", due, err)
		}
		if p, ok, err := reopened.DecidePrompt(ctx, a.ID, PromptDecision{State: PromptExpired, Decision: "deny", At: exp}); !ok || err != nil || p.State != PromptExpired {
			t.Fatalf("expiry %+v %v %v", p, ok, err)
		}
		if _, ok, err := reopened.DecidePrompt(ctx, a.ID, PromptDecision{State: PromptExpired, Decision: "deny", At: exp.Add(time.Second)}); ok || err != nil {
			t.Fatalf("expired twice: %v %v", ok, err)
		}
		if _, _, err := reopened.DecidePrompt(ctx, "6f1c1e1a-4b8e-4d7a-9a55-000000000000", PromptDecision{State: PromptApproved, At: exp}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown prompt: %v", err)
		}
		list, err := reopened.RunPrompts(ctx, q.AgentRunID)
		if err != nil || len(list) != 2 || list[0].ID != q.ID || list[1].State != PromptExpired {
			t.Fatalf("run prompts %+v %v", list, err)
		}
		audit, err := reopened.ListAudit(ctx, "acme", 10)
		if err != nil || len(audit) != 2 || audit[0].Action != "approval.expired" || audit[0].Actor != "expiry" ||
			!audit[0].At.Equal(exp) || audit[1].Action != "question.answered" || audit[1].Detail["prompt_id"] != q.ID {
			t.Fatalf("audit %+v %v", audit, err)
		}
		if n, err := reopened.PurgeAgentRuns(ctx, now.Add(time.Hour), 10); err != nil || n != 0 {
			t.Fatalf("purge %d %v", n, err)
		}
		if list, _ := reopened.RunPrompts(ctx, q.AgentRunID); len(list) != 0 {
			t.Fatalf("%d prompts after retention", len(list))
		}
	})
}

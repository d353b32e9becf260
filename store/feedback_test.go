package store

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFeedback_BoundToTheRunsTeamOneRowAPersonLastClickWins (SPEC §18,
// round 4), on both databases: a click counts only on a run of the team
// its channel routes to, named by the run's feedback reference (or, for an
// older button, the run's UUID; never a sequential correlation id); one
// person's clicks on one run are one row, the latest click's; two replicas
// recording at once — the same click, or two clicks of one person — leave
// one row.
func TestFeedback_BoundToTheRunsTeamOneRowAPersonLastClickWins(t *testing.T) {
	replicas(t, func(t *testing.T, one, other *DB, _ string) {
		ctx := context.Background()
		now := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
		ours := AgentRun{ID: "6f1c1e1a-4b8e-4d7a-9a55-3b0e2f6d9c01", CorrelationID: "41", FeedbackRef: NewFeedbackRef(), OrgID: "acme", TeamNodeID: "sre"}
		legacy := AgentRun{ID: "0d3f5b7e-8a5c-4c1e-b0b2-9f7e6d5c4b3a", CorrelationID: "42", OrgID: "acme", TeamNodeID: "sre"}
		theirs := AgentRun{ID: "2a9d7c4e-1f3b-4e5a-8c6d-7b8a9e0f1d2c", CorrelationID: "43", FeedbackRef: NewFeedbackRef(), OrgID: "big", TeamNodeID: "intruder"}
		for _, r := range []AgentRun{ours, legacy, theirs} {
			r.TriggerSource, r.AgentName, r.Status, r.StartedAt = "slack", "planner", "succeeded", now
			if err := one.InsertAgentRun(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if ours.FeedbackRef == theirs.FeedbackRef || !feedbackRefPattern.MatchString(ours.FeedbackRef) {
			t.Fatalf("refs %q %q", ours.FeedbackRef, theirs.FeedbackRef)
		}
		n := 0
		click := func(ref, user, value string, at time.Time) FeedbackClick {
			t.Helper()
			n++
			res, err := one.InsertEvent(ctx, Event{Source: "slack", DeliveryID: fmt.Sprint("interaction:", n), EventType: "block_actions.feedback",
				Status: EventQueued, ReceivedAt: at, Identifiers: map[string]string{"slack_channel_id": "C1"}})
			if err != nil {
				t.Fatal(err)
			}
			return FeedbackClick{EventID: res.ID, OrgID: "acme", TeamNodeID: "sre", MatchedBy: "slack_channel_id", Ref: ref,
				Value: value, UserID: user, UserName: strings.ToLower(user), At: at, Now: now}
		}
		record := func(c FeedbackClick, want *AgentRun, reason string) {
			t.Helper()
			res, err := one.RecordFeedback(ctx, c)
			if err != nil || !res.Applied || (want == nil) != (res.Run == nil) || want != nil && res.Run.ID != want.ID || !strings.Contains(res.Reason, reason) {
				t.Fatalf("click %s on %q = %+v %v", c.EventID, c.Ref, res, err)
			}
			ev, _ := one.GetEvent(ctx, c.EventID)
			if ev.Status != EventIgnored || ev.OrgID != "acme" || ev.TeamNodeID != "sre" || ev.FinishedAt == nil {
				t.Fatalf("click event = %s %s/%s", ev.Status, ev.OrgID, ev.TeamNodeID)
			}
		}
		rows := func(run string) []Feedback {
			t.Helper()
			fb, err := one.RunFeedback(ctx, []string{run})
			if err != nil {
				t.Fatal(err)
			}
			return fb[run]
		}
		record(click(ours.FeedbackRef, "U1", FeedbackPositive, now), &ours, "")
		record(click(ours.FeedbackRef, "U1", FeedbackNegative, now.Add(time.Second)), &ours, "")
		// A click that arrived earlier but is recorded later loses.
		record(click(ours.FeedbackRef, "U1", FeedbackPositive, now.Add(-time.Second)), &ours, "")
		record(click(ours.FeedbackRef, "U2", FeedbackPositive, now), &ours, "")
		// Oldest first: U2's, then U1's latest.
		if got := rows(ours.ID); len(got) != 2 || got[1].UserID != "U1" || got[1].Value != FeedbackNegative ||
			!got[1].CreatedAt.Equal(now.Add(time.Second)) || got[0].UserID != "U2" || got[0].Value != FeedbackPositive {
			t.Fatalf("rows = %+v", got)
		}
		// An older button: the run's UUID still names it.
		record(click(legacy.ID, "U1", FeedbackPositive, now), &legacy, "")
		// A sequential correlation id names nothing; another team's run
		// takes no feedback from this team's channel; nor a click of
		// nobody.
		record(click("41", "U3", FeedbackPositive, now), nil, `the button's value "41" is not an agent run's feedback reference`)
		record(click(theirs.FeedbackRef, "U3", FeedbackNegative, now), nil, "not of the team this channel routes to")
		record(click(theirs.ID, "U3", FeedbackNegative, now), nil, "not of the team this channel routes to")
		record(click(NewFeedbackRef(), "U3", FeedbackNegative, now), nil, "names no agent run")
		record(click(ours.FeedbackRef, "", FeedbackNegative, now), nil, "names no Slack user")
		if got := rows(theirs.ID); len(got) != 0 {
			t.Fatalf("another team's run took feedback: %+v", got)
		}

		// Two replicas: the same click recorded at once by both is
		// applied once; two clicks of one person at once are one row.
		same := click(ours.FeedbackRef, "U4", FeedbackPositive, now)
		var clicks []FeedbackClick
		for i := range 8 {
			clicks = append(clicks, click(ours.FeedbackRef, "U5", []string{FeedbackPositive, FeedbackNegative}[i%2], now.Add(time.Duration(i)*time.Millisecond)))
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		applied := 0
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				db := []*DB{one, other}[i%2]
				c := same
				if i >= 8 {
					c = clicks[i-8]
				}
				res, err := db.RecordFeedback(ctx, c)
				if err != nil {
					t.Error(err)
					return
				}
				if i < 8 && res.Applied {
					mu.Lock()
					applied++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		by := map[string][]Feedback{}
		for _, f := range rows(ours.ID) {
			by[f.UserID] = append(by[f.UserID], f)
		}
		if applied != 1 || len(by["U4"]) != 1 || len(by["U5"]) != 1 || by["U5"][0].Value != FeedbackNegative ||
			!by["U5"][0].CreatedAt.Equal(now.Add(7*time.Millisecond)) {
			t.Fatalf("applied %d, rows %+v", applied, by)
		}
		teams, err := one.FeedbackSince(ctx, "acme", now.Add(-time.Hour))
		if err != nil || len(teams) != 1 || teams[0].Positive != 3 || teams[0].Negative != 2 {
			t.Fatalf("per team = %+v %v", teams, err)
		}
	})
}

// TestFeedback_Migration12KeepsEachPersonsLatestClick: on a database
// where one person clicked a run's buttons several times (several rows, as
// migration 8 kept them), migration 12 keeps that person's latest row and
// every other person's, then holds one row a person and run; down and up
// again work. Both databases.
func TestFeedback_Migration12KeepsEachPersonsLatestClick(t *testing.T) {
	conform(t, func(t *testing.T, db *DB, _ string) {
		ctx := context.Background()
		if _, err := db.goose.DownTo(ctx, 11); err != nil {
			t.Fatal(err)
		}
		for i, row := range []struct {
			id, run, user, value string
			at                   int64
		}{
			{"a", "run-1", "U1", "positive", 1000}, {"b", "run-1", "U1", "negative", 3000}, {"c", "run-1", "U1", "positive", 2000},
			{"d", "run-1", "U2", "positive", 1000}, {"e", "run-2", "U1", "positive", 1000},
			{"f", "run-1", "", "positive", 1000}, {"g", "run-1", "", "negative", 2000},
		} {
			var user any
			if row.user != "" {
				user = row.user
			}
			if _, err := db.write.ExecContext(ctx, `INSERT INTO orchestrator_agent_run_feedback
				(id, agent_run_id, webhook_event_id, org_id, team_node_id, value, user_id, created_at) VALUES (?, ?, ?, 'o', 't', ?, ?, ?)`,
				row.id, row.run, fmt.Sprint(i), row.value, user, row.at); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.goose.UpTo(ctx, 12); err != nil {
			t.Fatal(err)
		}
		rows, err := db.read.QueryContext(ctx, `SELECT id FROM orchestrator_agent_run_feedback ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		kept, err := collect(rows, func(r rowScanner) (string, error) {
			var id string
			return id, r.Scan(&id)
		})
		if err != nil || strings.Join(kept, ",") != "b,d,e,f,g" {
			t.Fatalf("kept %v %v, want U1's latest on run-1 (b) and every other", kept, err)
		}
		if _, err := db.write.ExecContext(ctx, `INSERT INTO orchestrator_agent_run_feedback
			(id, agent_run_id, org_id, team_node_id, value, user_id, created_at) VALUES ('h', 'run-1', 'o', 't', 'positive', 'U1', 4000)`); err == nil {
			t.Fatal("a second row of one person on one run was accepted")
		}
		if _, err := db.goose.DownTo(ctx, 11); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

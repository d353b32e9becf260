package answers_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/migrations"
	"github.com/incidentfox/orchestrator-edge/server/answers"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
	"github.com/incidentfox/orchestrator-edge/store"
	"github.com/prometheus/client_golang/prometheus"
)

// counting is a notifier that says when the n-th post has been made.
type counting struct {
	answers.Notifier
	n, want int64
	done    chan struct{}
}

func (c *counting) Post(ctx context.Context, d answers.Destination, a answers.Answer) (answers.Posted, error) {
	p, err := c.Notifier.Post(ctx, d, a)
	if err == nil && atomic.AddInt64(&c.n, 1) == c.want {
		close(c.done)
	}
	return p, err
}

// outboxAnswers is how many answers one round of the benchmark posts.
const outboxAnswers = 2000

// BenchmarkOutbox_AnswersPostedPerSecond prints answers posted per second
// through the outbox — the store's delivery queue, the worker pool (4
// workers, the default) and the batched outcome writes — to the GitHub
// REST stand-in over loopback HTTP with the go-github notifier, on a SQLite
// file. Each round records outboxAnswers agent runs with one delivery each,
// as the dispatcher does, then times until every answer is posted and its
// outcome written:
//
//   - handed: the runs' deliveries recorded posting and handed to the
//     outbox (the path of every answer the agent just gave);
//   - claimed: the deliveries recorded queued and claimed from the queue
//     (a retry, or what a restart finds), each first looking for an
//     earlier post (one comments list) before it posts.
func BenchmarkOutbox_AnswersPostedPerSecond(b *testing.B) {
	for _, path := range []string{"handed", "claimed"} {
		b.Run(path, func(b *testing.B) {
			clk := newClock()
			fake, srv := githubFake(b, "", clk)
			for i := 1; i <= outboxAnswers; i++ {
				fake.AddIssue("acme/payments", 1000+i)
			}
			gh, err := answers.NewGitHub(answers.GitHubOptions{BaseURL: srv.URL, Token: ghToken})
			if err != nil {
				b.Fatal(err)
			}
			var posted, elapsed float64
			for b.Loop() {
				n, d := outboxRound(b, gh, path == "claimed")
				posted += float64(n)
				elapsed += d.Seconds()
			}
			// Each answer was posted once.
			if n := len(fake.CallsTo(peerstest.RouteGitHubCreateComment)); n != int(posted) {
				b.Fatalf("%d comments for %d answers", n, int(posted))
			}
			b.ReportMetric(posted/elapsed, "answers/s")
			fmt.Printf("outbox %s: %d answers posted to the GitHub stand-in in %.2fs, %.0f answers/s\n",
				path, int(posted), elapsed, posted/elapsed)
		})
	}
}

// outboxRound records outboxAnswers runs on a fresh store and times the
// outbox posting them all and writing their outcomes.
func outboxRound(b *testing.B, gh answers.Notifier, claimed bool) (int, time.Duration) {
	b.StopTimer()
	defer b.StartTimer()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{Path: filepath.Join(b.TempDir(), "orchestrator.db"), Migrations: migrations.FS})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	c := &counting{Notifier: gh, want: outboxAnswers, done: make(chan struct{})}
	notifiers := map[string]answers.Notifier{answers.TypeGitHubIssueComment: c}
	box, err := answers.NewOutbox(answers.OutboxOptions{Store: db, Notifiers: notifiers,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	runs := make([]store.AgentRun, outboxAnswers)
	ds := make([]store.AnswerDelivery, outboxAnswers)
	for i := range runs {
		runs[i] = store.AgentRun{ID: uuid.NewString(), TriggerSource: "github", OrgID: "acme", TeamNodeID: "platform-sre",
			AgentName: "planner", Status: "succeeded", StartedAt: now, EventCount: 1, UpstreamStatus: 200,
			FeedbackRef: store.NewFeedbackRef(), Answer: "The deploy at 09:12 broke **checkout**: roll back `payments@4.2.0`."}
		dest := answers.Destination{Type: answers.TypeGitHubIssueComment, Repo: "acme/payments", IssueNumber: 1001 + i,
			PostedBy: answers.PostedByOrchestrator}
		ds[i] = store.AnswerDelivery{ID: uuid.NewString(), AgentRunID: runs[i].ID, OrgID: "acme", TeamNodeID: "platform-sre",
			Type: dest.Type, Destination: answers.EncodeDestination(dest), CreatedAt: now, Status: store.AnswerPosting,
			NextAttemptAt: now.Add(box.Lease())}
		if claimed {
			ds[i].Status, ds[i].NextAttemptAt = store.AnswerQueued, now
		}
	}
	// The handed path's outbox runs before its runs are recorded, as in
	// the appliance (Start queues again what a crash left posting).
	if !claimed {
		if err := box.Start(ctx); err != nil {
			b.Fatal(err)
		}
	}
	// Recorded in batches of 100, as the dispatcher's completer writes.
	for i := 0; i < outboxAnswers; i += 100 {
		if err := db.RecordOutcomes(ctx, nil, runs[i:i+100], ds[i:i+100]); err != nil {
			b.Fatal(err)
		}
	}

	b.StartTimer()
	start := time.Now()
	if claimed {
		if err := box.Start(ctx); err != nil {
			b.Fatal(err)
		}
	} else {
		for i := range runs {
			box.Hand(runs[i], ds[i:i+1])
		}
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Minute):
		b.Fatalf("%d of %d answers posted", atomic.LoadInt64(&c.n), outboxAnswers)
	}
	box.Stop(ctx) // writes every outcome before it returns
	took := time.Since(start)
	b.StopTimer()

	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	got, err := db.RunDeliveries(ctx, ids)
	if err != nil {
		b.Fatal(err)
	}
	for _, id := range ids {
		if len(got[id]) != 1 || got[id][0].Status != store.AnswerPosted {
			b.Fatalf("run %s: deliveries %+v", id, got[id])
		}
	}
	return outboxAnswers, took
}

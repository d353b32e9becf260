package answers_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/incidentfox/orchestrator-edge/server/answers"
)

// BenchmarkNotifiers_Post prints answers posted per second by each
// notifier against its stand-in over loopback HTTP (one poster at a time):
// the cost of a post on the appliance's side, not the vendor's latency.
func BenchmarkNotifiers_Post(b *testing.B) {
	clk := newClock()
	_, ghSrv := githubFake(b, "", clk)
	gh, _ := answers.NewGitHub(answers.GitHubOptions{BaseURL: ghSrv.URL, Token: ghToken, Now: clk.Now})
	_, pdSrv := pagerDutyFake(b)
	pd, _ := answers.NewPagerDuty(answers.PagerDutyOptions{BaseURL: pdSrv.URL, Token: pdToken, From: pdFrom})
	_, hookSrv := newReceiver(b)
	hook := answers.NewWebhook(answers.WebhookOptions{Destinations: declared("ops-feed", hookSrv.URL)})
	for _, bc := range []struct {
		name string
		n    answers.Notifier
		d    answers.Destination
	}{{"github", gh, issue12}, {"pagerduty", pd, incident}, {"webhook", hook, opsFeed}} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			i := 0
			for b.Loop() {
				i++
				if _, err := bc.n.Post(ctx, bc.d, answer(fmt.Sprintf("run-%d", i), "The deploy at 09:12 broke checkout; roll back payments@4.2.0.")); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "posts/s")
		})
	}
}

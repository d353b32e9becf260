// Package answers takes an agent's answer back to where the question was
// asked — a Slack thread, a GitHub issue or pull request, a PagerDuty
// incident, an operator's webhook — and keeps trying until it is there
// (SPEC §19, "Answers where the question was asked").
//
// Its shape follows Alertmanager's notify package: one small Notifier per
// destination kind behind one interface, and whether a failure is retried,
// and when, decided in one shared place (Permanent, RetryAfter) rather than
// in each notifier.
package answers

import (
	"context"
	"errors"
	"time"
)

// Destination kinds (the `type` of an output destination).
const (
	TypeSlack              = "slack"
	TypeGitHubIssueComment = "github_issue_comment"
	TypeGitHubPRComment    = "github_pr_comment"
	TypePagerDutyNote      = "pagerduty_note"
	TypeWebhook            = "webhook"
)

// PostedByOrchestrator marks a destination the appliance posts itself, so
// that the agent does not post it too (never both).
const PostedByOrchestrator = "orchestrator"

// Destination is one place an answer goes: as resolved for an agent run,
// passed to the agent in output_destinations, and stored with its delivery.
type Destination struct {
	Type string `json:"type"`
	// Slack: the channel and thread asked in, and the Slack app it came
	// through ("" = the default app), whose bot token posts.
	ChannelID string `json:"channel_id,omitempty"`
	ThreadTS  string `json:"thread_ts,omitempty"`
	App       string `json:"app,omitempty"`
	// GitHub: owner/name and the issue or pull request number.
	Repo        string `json:"repo,omitempty"`
	IssueNumber int    `json:"issue_number,omitempty"`
	PRNumber    int    `json:"pr_number,omitempty"`
	// PagerDuty: the incident.
	IncidentID string `json:"incident_id,omitempty"`
	// Webhook: the name of a destination the operator declared in the
	// sources file (never a URL: team config cannot point the appliance at
	// a host).
	Name string `json:"name,omitempty"`
	// PostedBy is "orchestrator" when the appliance posts it.
	PostedBy string `json:"posted_by,omitempty"`
	// ProgressTS is the Slack message that showed a streamed run's
	// progress: the answer replaces it (chat.update) instead of being
	// posted anew. Never sent to the agent.
	ProgressTS string `json:"progress_ts,omitempty"`
}

// Answer is what is posted for one agent run.
type Answer struct {
	// RunID is the agent run; it is the run marker a retry looks for.
	RunID string
	// EventID is the event that asked ("" for a digest).
	EventID    string
	OrgID      string
	TeamNodeID string
	// Text is the agent's answer (or, when Success is false, what went
	// wrong, in words a person in the thread can act on).
	Text    string
	Success bool
	// RunURL links the run on the admin page ("" without
	// ORCHESTRATOR_PUBLIC_URL).
	RunURL string
	// FeedbackRef is the unguessable reference of the run that the Slack
	// feedback buttons carry.
	FeedbackRef string
	// Summary is a streamed run's summary (tools, questions, approvals,
	// duration), shown under a Slack answer ("" = none).
	Summary string
}

// Posted says where a post landed.
type Posted struct {
	// MessageID is the Slack message ts, the GitHub comment id or the
	// PagerDuty note id.
	MessageID string
	// Link is a URL of the posted message, when the API gives one.
	Link string
}

// Notifier posts answers to one kind of destination.
type Notifier interface {
	// Post posts the answer. A failure is retried with backoff unless it
	// is Permanent; RetryAfter says when the API asked to be called again.
	Post(ctx context.Context, d Destination, a Answer) (Posted, error)
	// Find looks for a post of this run already made at d (its run
	// marker), so that a retry after a crash between a post and its record
	// does not post twice. ok is false when there is none, or when the API
	// gives no way to look (then the delivery is at least once).
	Find(ctx context.Context, d Destination, a Answer) (p Posted, ok bool, err error)
}

// Checker is what a Notifier may also implement: it says, before any
// call and without I/O, why the appliance cannot post to d — no credential
// for it (no bot token for that Slack app, no GitHub token or App, no
// PagerDuty token or From email), a webhook name the sources file does not
// declare. Resolution asks it: a destination it refuses is not marked
// posted_by orchestrator (the agent may post it) and its delivery is
// recorded failed with that reason, visible on the event page. A Notifier
// without Check is taken to be able to post every destination of its type.
type Checker interface {
	Check(d Destination) error
}

// permanent is a failure that retrying cannot fix (a bad credential, a
// channel the bot is not in, a destination that does not exist).
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as not worth retrying: the delivery ends failed.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// retryAfter is a failure the API asked to retry no sooner than after.
type retryAfter struct {
	err   error
	after time.Duration
}

func (r retryAfter) Error() string { return r.err.Error() }
func (r retryAfter) Unwrap() error { return r.err }

// RetryAfter marks err as retryable no sooner than after (Slack's and
// PagerDuty's 429 Retry-After, GitHub's secondary rate limit).
func RetryAfter(err error, after time.Duration) error {
	if err == nil {
		return nil
	}
	return retryAfter{err, after}
}

// RetryDelay is the delay RetryAfter asked for, if any.
func RetryDelay(err error) (time.Duration, bool) {
	var r retryAfter
	if errors.As(err, &r) {
		return r.after, true
	}
	return 0, false
}

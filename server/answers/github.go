package answers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/go-github/v81/github"
)

// GitHubMaxBody is the longest comment GitHub takes, in characters ("body
// is too long (maximum is 65536 characters)").
const GitHubMaxBody = 65536

// DefaultGitHubAPIURL is GitHub's REST API; GitHub Enterprise Server's is
// https://HOST/api/v3/.
const DefaultGitHubAPIURL = "https://api.github.com/"

// GitHubOptions configure the GitHub notifier: a token, or a GitHub App
// whose installation tokens are minted per repository.
type GitHubOptions struct {
	// BaseURL is GITHUB_API_URL (default DefaultGitHubAPIURL).
	BaseURL string
	// Token is GITHUB_TOKEN: it may comment on issues and pull requests.
	Token string
	// AppID and AppKeyFile are a GitHub App's id and the PEM file of its
	// private key (GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY_FILE); used when
	// Token is empty. The key file is read when a token is minted, so a
	// rotated key is taken without a restart.
	AppID      string
	AppKeyFile string
	// HTTPClient makes the calls (default: a 30 s timeout).
	HTTPClient *http.Client
	// Now is the clock of App tokens and rate-limit resets (default
	// time.Now).
	Now func() time.Time
	// FindPages bounds the pages of 100 comments Find reads (default 10):
	// the first, then the newest backwards.
	FindPages int
}

// GitHub posts answers as issue and pull request comments (a pull
// request's conversation is its issue's comments), each carrying the run
// marker <!-- orchestrator-edge:run=RUNID --> that Find looks for.
type GitHub struct {
	o    GitHubOptions
	base *github.Client
	app  *appTokens // nil unless a GitHub App is configured
}

// NewGitHub returns the GitHub notifier. Without a token or an App it
// still serves Check, which says what is missing.
func NewGitHub(o GitHubOptions) (*GitHub, error) {
	if o.BaseURL == "" {
		o.BaseURL = DefaultGitHubAPIURL
	}
	if !strings.HasSuffix(o.BaseURL, "/") {
		o.BaseURL += "/"
	}
	u, err := url.Parse(o.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("github: %q is not an absolute http(s) URL", o.BaseURL)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.FindPages <= 0 {
		o.FindPages = 10
	}
	g := &GitHub{o: o, base: github.NewClient(o.HTTPClient)}
	g.base.BaseURL = u
	if o.Token == "" && o.AppID != "" {
		g.app = newAppTokens(o.AppID, o.AppKeyFile, o.Now)
	}
	return g, nil
}

// repoPattern is an owner/name GitHub accepts (owner: letters, digits and
// hyphens; name: letters, digits, '.', '_', '-').
var repoPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$`)

// target checks d and returns where its comment goes.
func (g *GitHub) target(d Destination) (owner, repo string, number int, err error) {
	switch d.Type {
	case TypeGitHubIssueComment:
		number = d.IssueNumber
		if number <= 0 {
			return "", "", 0, errors.New("github_issue_comment: issue_number is required (a positive number)")
		}
	case TypeGitHubPRComment:
		number = d.PRNumber
		if number <= 0 {
			return "", "", 0, errors.New("github_pr_comment: pr_number is required (a positive number)")
		}
	default:
		return "", "", 0, fmt.Errorf("the GitHub notifier does not post %q destinations", d.Type)
	}
	owner, repo, _ = strings.Cut(d.Repo, "/")
	if !repoPattern.MatchString(d.Repo) || repo == "." || repo == ".." {
		return "", "", 0, fmt.Errorf("%s: repo %q is not owner/name", d.Type, d.Repo)
	}
	if g.o.Token == "" && g.app == nil {
		return "", "", 0, errors.New("no GitHub credential: set GITHUB_TOKEN, or GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_FILE")
	}
	return owner, repo, number, nil
}

// Check says, without a call, why d cannot be posted: a missing
// credential, or a destination that names no issue.
func (g *GitHub) Check(d Destination) error {
	_, _, _, err := g.target(d)
	return err
}

// Post comments the answer on the issue or pull request.
func (g *GitHub) Post(ctx context.Context, d Destination, a Answer) (Posted, error) {
	owner, repo, n, err := g.target(d)
	if err != nil {
		return Posted{}, Permanent(err)
	}
	body := githubBody(a)
	var c *github.IssueComment
	err = g.call(ctx, owner, repo, func(cl *github.Client) error {
		var err error
		c, _, err = cl.Issues.CreateComment(ctx, owner, repo, n, &github.IssueComment{Body: &body})
		return err
	})
	if err != nil {
		return Posted{}, fmt.Errorf("comment on %s#%d: %w", d.Repo, n, err)
	}
	return Posted{MessageID: strconv.FormatInt(c.GetID(), 10), Link: c.GetHTMLURL()}, nil
}

// Find looks for this run's comment: the first page of the issue's
// comments (which says how many pages there are), then the newest pages
// backwards, at most FindPages in all. GitHub lists an issue's comments
// oldest first and offers no other order for one issue.
func (g *GitHub) Find(ctx context.Context, d Destination, a Answer) (Posted, bool, error) {
	owner, repo, n, err := g.target(d)
	if err != nil {
		return Posted{}, false, Permanent(err)
	}
	marker := githubMarker(a.RunID)
	var found *github.IssueComment
	err = g.call(ctx, owner, repo, func(cl *github.Client) error {
		page, read := 1, 0
		for page > 0 && read < g.o.FindPages {
			comments, resp, err := cl.Issues.ListComments(ctx, owner, repo, n,
				&github.IssueListCommentsOptions{ListOptions: github.ListOptions{Page: page, PerPage: 100}})
			if err != nil {
				return err
			}
			read++
			for i := len(comments) - 1; i >= 0; i-- {
				if strings.Contains(comments[i].GetBody(), marker) {
					found = comments[i]
					return nil
				}
			}
			switch {
			case page == 1:
				page = resp.LastPage // 0: page 1 was the only one
			case resp.PrevPage > 1:
				page = resp.PrevPage
			default:
				page = 0
			}
		}
		return nil
	})
	if err != nil {
		return Posted{}, false, fmt.Errorf("list comments of %s#%d: %w", d.Repo, n, err)
	}
	if found == nil {
		return Posted{}, false, nil
	}
	return Posted{MessageID: strconv.FormatInt(found.GetID(), 10), Link: found.GetHTMLURL()}, true, nil
}

// call runs fn with a client authenticated for owner/repo and reads its
// failure. With a GitHub App, a 401 drops the cached installation token
// and tries once more with a new one (the App may have been reinstalled).
func (g *GitHub) call(ctx context.Context, owner, repo string, fn func(*github.Client) error) error {
	for attempt := 0; ; attempt++ {
		token := g.o.Token
		if g.app != nil {
			var err error
			if token, err = g.app.token(ctx, g.base, owner, repo); err != nil {
				return err
			}
		}
		err := fn(g.base.WithAuthToken(token))
		if err == nil {
			return nil
		}
		if g.app != nil && attempt == 0 && githubStatus(err) == http.StatusUnauthorized {
			g.app.forget(owner, repo)
			continue
		}
		return githubFailure(err, g.o.Now())
	}
}

// githubStatus is the HTTP status of a go-github failure (0 when the call
// got no answer).
func githubStatus(err error) int {
	if resp := githubResponse(err); resp != nil {
		return resp.StatusCode
	}
	return 0
}

// githubResponse is the answer a go-github failure carries.
func githubResponse(err error) *http.Response {
	var rl *github.RateLimitError
	var ab *github.AbuseRateLimitError
	var er *github.ErrorResponse
	switch {
	case errors.As(err, &rl):
		return rl.Response
	case errors.As(err, &ab):
		return ab.Response
	case errors.As(err, &er):
		return er.Response
	}
	return nil
}

// githubMessage is GitHub's own words for a failure ({message, errors}).
func githubMessage(err error) string {
	var rl *github.RateLimitError
	var ab *github.AbuseRateLimitError
	var er *github.ErrorResponse
	switch {
	case errors.As(err, &rl):
		return rl.Message
	case errors.As(err, &ab):
		return ab.Message
	case errors.As(err, &er):
		msg := er.Message
		for _, e := range er.Errors {
			detail := e.Message
			if detail == "" {
				detail = strings.TrimSpace(e.Field + " " + e.Code)
			}
			if detail != "" {
				msg += "; " + detail
			}
		}
		return msg
	}
	return ""
}

// githubFailure reads a GitHub failure as the retry stage needs it:
// a bad credential, a missing or locked issue, a refused comment are
// Permanent; rate limits say when to come back; 5xx and network failures
// are retried.
func githubFailure(err error, now time.Time) error {
	var rl *github.RateLimitError
	if errors.As(err, &rl) && rl.Response != nil && rl.Response.Header.Get("X-RateLimit-Reset") == "" {
		// go-github refused before calling: it remembers the exhausted
		// primary limit until its reset.
		return RetryAfter(fmt.Errorf("GitHub rate limit exhausted until %s", rl.Rate.Reset.UTC().Format(time.RFC3339)),
			max(rl.Rate.Reset.Sub(now), time.Second))
	}
	resp := githubResponse(err)
	if resp == nil {
		return err // no answer: a network failure or a timeout, retried
	}
	msg := oneLine(githubMessage(err), 300)
	status := resp.StatusCode
	say := func(format string, args ...any) error {
		e := fmt.Sprintf(format, args...)
		if msg != "" {
			e += ": " + msg
		}
		return errors.New(e)
	}
	switch {
	case status == http.StatusUnauthorized:
		return Permanent(say("GitHub refused the credential (401; check GITHUB_TOKEN or the GitHub App)"))
	case status == http.StatusForbidden || status == http.StatusTooManyRequests:
		var ab *github.AbuseRateLimitError
		if wait, ok := githubRateWait(resp, msg, errors.As(err, &ab), now); ok {
			return RetryAfter(say("GitHub rate limit (%d)", status), wait)
		}
		if status == http.StatusTooManyRequests {
			return RetryAfter(say("GitHub rate limit (429)"), time.Minute)
		}
		return Permanent(say("GitHub refused the comment (403: the credential may lack permission, or the issue is locked)"))
	case status == http.StatusNotFound:
		return Permanent(say("not found on GitHub (404: no such repository, issue or pull request, or the credential cannot see it)"))
	case status == http.StatusGone:
		return Permanent(say("gone on GitHub (410: the issue was deleted or issues are turned off)"))
	case status == http.StatusUnprocessableEntity:
		return Permanent(say("GitHub refused the comment (422)"))
	case status >= 500:
		return say("GitHub answered %d", status)
	}
	return Permanent(say("GitHub answered %d", status))
}

// githubRateWait reads how long GitHub asked to wait: Retry-After, or an
// exhausted primary limit's x-ratelimit-reset, or a secondary limit's
// minute (GitHub: "wait for at least one minute" when neither is sent).
func githubRateWait(resp *http.Response, msg string, secondary bool, now time.Time) (time.Duration, bool) {
	if wait, ok := retryAfterHeader(resp.Header, now); ok {
		return wait, true
	}
	if resp.Header.Get("X-RateLimit-Remaining") == "0" {
		if reset, err := strconv.ParseInt(resp.Header.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			return max(time.Unix(reset, 0).Sub(now), time.Second), true
		}
		return time.Minute, true
	}
	if secondary || strings.Contains(strings.ToLower(msg), "secondary rate limit") {
		return time.Minute, true
	}
	return 0, false
}

// githubMarker is the run marker of a comment (invisible when rendered).
func githubMarker(runID string) string { return "<!-- " + runMarker(runID) + " -->" }

// githubBody is the comment: the answer in markdown, a link to the run
// when there is one, and the run marker, within GitHubMaxBody characters.
// A longer answer is cut with a note saying so (and where the whole of it
// is); a code block left open by the cut is closed.
func githubBody(a Answer) string {
	footer := "\n\n" + githubMarker(a.RunID)
	if a.RunURL != "" {
		footer = "\n\n<sub>[The run on Orchestrator Edge](" + a.RunURL + ")</sub>" + footer
	}
	text := strings.TrimSpace(a.Text)
	if utf8.RuneCountInString(text)+utf8.RuneCountInString(footer) <= GitHubMaxBody {
		return text + footer
	}
	note := "\n\n> **This answer was cut** to fit GitHub's limit of 65,536 characters; the whole answer is kept with the run on the admin page."
	if a.RunURL != "" {
		note = "\n\n> **This answer was cut** to fit GitHub's limit of 65,536 characters; [the whole answer is on the run's page](" + a.RunURL + ")."
	}
	const fence = "\n```"
	budget := GitHubMaxBody - utf8.RuneCountInString(note) - utf8.RuneCountInString(footer) - len(fence)
	cut, _ := cutRunes(text, budget)
	if strings.Count(cut, "```")%2 == 1 {
		cut += fence
	}
	return cut + note + footer
}

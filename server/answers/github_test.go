package answers_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/incidentfox/orchestrator-edge/server/answers"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
)

// clock is a time the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const ghToken = "ghp_test0123456789"

// githubFake starts the GitHub stand-in under prefix with a token and an
// issue (acme/payments#12) and a pull request (acme/payments#34).
func githubFake(t testing.TB, prefix string, clk *clock) (*peerstest.GitHub, *httptest.Server) {
	t.Helper()
	fake := peerstest.NewGitHub(prefix)
	fake.Now = clk.Now
	fake.AddToken(ghToken)
	fake.AddIssue("acme/payments", 12)
	fake.AddPull("acme/payments", 34)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	return fake, srv
}

func newGitHub(t *testing.T, o answers.GitHubOptions) *answers.GitHub {
	t.Helper()
	g, err := answers.NewGitHub(o)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

var (
	issue12 = answers.Destination{Type: answers.TypeGitHubIssueComment, Repo: "acme/payments", IssueNumber: 12}
	pull34  = answers.Destination{Type: answers.TypeGitHubPRComment, Repo: "acme/payments", PRNumber: 34}
)

func answer(run, text string) answers.Answer {
	return answers.Answer{RunID: run, EventID: "ev-1", OrgID: "acme", TeamNodeID: "platform-sre", Text: text, Success: true,
		RunURL: "https://edge.example.com/ui/runs/" + run}
}

func TestGitHub_PostsOneCommentWithTheRunMarkerAndFindsIt(t *testing.T) {
	clk := newClock()
	fake, srv := githubFake(t, "", clk)
	g := newGitHub(t, answers.GitHubOptions{BaseURL: srv.URL, Token: ghToken, Now: clk.Now})
	ctx := context.Background()
	a := answer("run-7f3a", "The deploy at 09:12 broke **checkout**: roll back `payments@4.2.0`.")

	if _, ok, err := g.Find(ctx, issue12, a); err != nil || ok {
		t.Fatalf("Find before the post = %v, %v; want nothing", ok, err)
	}
	p, err := g.Post(ctx, issue12, a)
	if err != nil {
		t.Fatal(err)
	}
	comments := fake.Comments("acme/payments", 12)
	if len(comments) != 1 {
		t.Fatalf("%d comments, want 1", len(comments))
	}
	want := a.Text + "\n\n<sub>[The run on Orchestrator Edge](" + a.RunURL + ")</sub>\n\n<!-- orchestrator-edge:run=run-7f3a -->"
	if comments[0].Body != want {
		t.Fatalf("body = %q\nwant   %q", comments[0].Body, want)
	}
	id := strconv.FormatInt(comments[0].ID, 10)
	if p.MessageID != id || p.Link != "https://github.com/acme/payments/issues/12#issuecomment-"+id {
		t.Fatalf("Posted = %+v", p)
	}
	// A retry after a crash between the post and its record finds it.
	got, ok, err := g.Find(ctx, issue12, a)
	if err != nil || !ok || got != p {
		t.Fatalf("Find = %+v, %v, %v; want %+v", got, ok, err, p)
	}
	// Another run's marker is not this one.
	if _, ok, _ := g.Find(ctx, issue12, answer("run-7f3", "")); ok {
		t.Fatal("a run whose id is a prefix of another found its comment")
	}
	auth := fake.CallsTo(peerstest.RouteGitHubCreateComment)[0].Auth
	if auth != "Bearer "+ghToken {
		t.Fatalf("Authorization = %q", auth)
	}
}

func TestGitHub_PullRequestAnswerGoesToItsConversation(t *testing.T) {
	clk := newClock()
	fake, srv := githubFake(t, "", clk)
	g := newGitHub(t, answers.GitHubOptions{BaseURL: srv.URL, Token: ghToken, Now: clk.Now})
	p, err := g.Post(context.Background(), pull34, answer("run-pr", "LGTM, the flaky test is unrelated."))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(fake.Comments("acme/payments", 34)); n != 1 {
		t.Fatalf("%d comments on the PR", n)
	}
	if !strings.HasPrefix(p.Link, "https://github.com/acme/payments/pull/34#issuecomment-") {
		t.Fatalf("link %q", p.Link)
	}
}

func TestGitHub_FindReadsTheNewestPagesFirstAndIsBounded(t *testing.T) {
	clk := newClock()
	fake, srv := githubFake(t, "", clk)
	g := newGitHub(t, answers.GitHubOptions{BaseURL: srv.URL, Token: ghToken, Now: clk.Now, FindPages: 3})
	ctx := context.Background()
	chatter := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("comment %d", i)
		}
		return out
	}
	// 950 comments, then ours: it is on page 10 of 10.
	fake.AddComments("acme/payments", 12, chatter(950)...)
	a := answer("run-late", "answer")
	p, err := g.Post(ctx, issue12, a)
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := g.Find(ctx, issue12, a)
	if err != nil || !ok || got.MessageID != p.MessageID {
		t.Fatalf("Find = %+v %v %v", got, ok, err)
	}
	calls := fake.CallsTo(peerstest.RouteGitHubListComments)
	if len(calls) != 2 {
		t.Fatalf("%d list calls, want 2 (page 1, then the last)", len(calls))
	}
	// A marker on page 2 of a 21-page thread is beyond 3 pages read
	// newest first: page 1, 21, 20.
	fake.AddIssue("acme/payments", 13)
	old := answers.Destination{Type: answers.TypeGitHubIssueComment, Repo: "acme/payments", IssueNumber: 13}
	fake.AddComments("acme/payments", 13, chatter(150)...)
	b := answer("run-old", "answer")
	if _, err := g.Post(ctx, old, b); err != nil {
		t.Fatal(err)
	}
	fake.AddComments("acme/payments", 13, chatter(1850)...)
	before := len(fake.CallsTo(peerstest.RouteGitHubListComments))
	if _, ok, err := g.Find(ctx, old, b); err != nil || ok {
		t.Fatalf("Find beyond its bound = %v, %v", ok, err)
	}
	var pages []string
	for _, c := range fake.CallsTo(peerstest.RouteGitHubListComments)[before:] {
		pages = append(pages, c.Query.Get("page")+"/"+c.Query.Get("per_page"))
	}
	if got := strings.Join(pages, " "); got != "1/100 21/100 20/100" {
		t.Fatalf("pages read %s, want 1/100 21/100 20/100", got)
	}
}

func TestGitHub_ErrorsAreReadAsGitHubMeansThem(t *testing.T) {
	clk := newClock()
	fake, srv := githubFake(t, "", clk)
	fake.Lock("acme/payments", 34)
	ctx := context.Background()
	g := newGitHub(t, answers.GitHubOptions{BaseURL: srv.URL, Token: ghToken, Now: clk.Now})
	bad := newGitHub(t, answers.GitHubOptions{BaseURL: srv.URL, Token: "ghp_revoked", Now: clk.Now})
	missing := answers.Destination{Type: answers.TypeGitHubIssueComment, Repo: "acme/payments", IssueNumber: 999}

	type want struct {
		permanent bool
		delay     time.Duration // 0: no delay asked
		says      string
	}
	cases := []struct {
		name  string
		g     *answers.GitHub
		d     answers.Destination
		fault *peerstest.Fault
		want  want
	}{
		{"bad credential", bad, issue12, nil, want{permanent: true, says: "Bad credentials"}},
		{"locked", g, pull34, nil, want{permanent: true, says: "issue is locked"}},
		{"no such issue", g, missing, nil, want{permanent: true, says: "404"}},
		{"gone", g, issue12, ptr(peerstest.GitHubError(410, "Issues are disabled for this repo")), want{permanent: true, says: "410"}},
		{"refused", g, issue12, ptr(peerstest.GitHubError(422, "Validation Failed")), want{permanent: true, says: "422"}},
		{"secondary rate limit", g, issue12, ptr(peerstest.GitHubSecondaryRateLimit(45 * time.Second)), want{delay: 45 * time.Second, says: "secondary rate limit"}},
		{"secondary rate limit without Retry-After", g, issue12, &peerstest.Fault{Status: 403, Body: map[string]string{
			"message": "You have exceeded a secondary rate limit.", "documentation_url": "https://docs.github.com/rest"}}, want{delay: time.Minute, says: "secondary rate limit"}},
		{"primary rate limit", g, issue12, ptr(peerstest.GitHubPrimaryRateLimit(clk.Now().Add(90 * time.Second))), want{delay: 90 * time.Second, says: "rate limit"}},
		{"429", g, issue12, ptr(peerstest.GitHubTooManyRequests(20 * time.Second)), want{delay: 20 * time.Second, says: "429"}},
		{"5xx", g, issue12, ptr(peerstest.GitHubError(502, "Server Error")), want{says: "502"}},
		{"connection closed", g, issue12, &peerstest.Fault{Close: true}, want{says: "EOF"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fault != nil {
				f := *tc.fault
				f.Times = 1
				fake.Fail(peerstest.RouteGitHubCreateComment, f)
			}
			_, err := tc.g.Post(ctx, tc.d, answer("run-err", "x"))
			if err == nil {
				t.Fatal("posted")
			}
			delay, hasDelay := answers.RetryDelay(err)
			if answers.IsPermanent(err) != tc.want.permanent || delay != tc.want.delay || hasDelay != (tc.want.delay != 0) {
				t.Fatalf("permanent=%v delay=%v,%v; want %+v (%v)", answers.IsPermanent(err), delay, hasDelay, tc.want, err)
			}
			if !strings.Contains(err.Error(), tc.want.says) {
				t.Fatalf("error %q does not say %q", err, tc.want.says)
			}
			if strings.Contains(err.Error(), ghToken) {
				t.Fatal("the token is in the error")
			}
		})
	}
	if n := len(fake.Comments("acme/payments", 12)); n != 0 {
		t.Fatalf("%d comments after failures only", n)
	}
}

func ptr[T any](v T) *T { return &v }

func TestGitHub_LongAnswerIsCutWithANoteAndTheMarkerKept(t *testing.T) {
	clk := newClock()
	fake, srv := githubFake(t, "", clk)
	g := newGitHub(t, answers.GitHubOptions{BaseURL: srv.URL, Token: ghToken, Now: clk.Now})
	ctx := context.Background()
	// 70,000 two-byte characters, ending inside a code block.
	long := strings.Repeat("é", 40000) + "\n```\n" + strings.Repeat("ü", 30000)
	a := answer("run-long", long)
	if _, err := g.Post(ctx, issue12, a); err != nil {
		t.Fatalf("the fake refused the cut comment: %v", err)
	}
	body := fake.Comments("acme/payments", 12)[0].Body
	if n := utf8.RuneCountInString(body); n > answers.GitHubMaxBody || n < answers.GitHubMaxBody-400 {
		t.Fatalf("body is %d characters, want just under %d", n, answers.GitHubMaxBody)
	}
	for _, part := range []string{
		"\n```\n\n> **This answer was cut** to fit GitHub's limit of 65,536 characters; [the whole answer is on the run's page](" + a.RunURL + ").",
		"<!-- orchestrator-edge:run=run-long -->",
	} {
		if !strings.Contains(body, part) {
			t.Fatalf("the cut body lacks %q (ends %q)", part, body[len(body)-400:])
		}
	}
	if !strings.HasPrefix(body, strings.Repeat("é", 40000)) {
		t.Fatal("the answer's start was not kept")
	}
	// Without a run link the note says where the answer is kept.
	a.RunURL = ""
	a.RunID = "run-long-2"
	if _, err := g.Post(ctx, issue12, a); err != nil {
		t.Fatal(err)
	}
	if body := fake.Comments("acme/payments", 12)[1].Body; !strings.Contains(body, "the whole answer is kept with the run on the admin page") {
		t.Fatal("no note without a run link")
	}
	// An answer that fits is not cut.
	fits := strings.Repeat("a", answers.GitHubMaxBody-100)
	if _, err := g.Post(ctx, issue12, answers.Answer{RunID: "r", Text: fits}); err != nil {
		t.Fatal(err)
	}
	if body := fake.Comments("acme/payments", 12)[2].Body; body != fits+"\n\n<!-- orchestrator-edge:run=r -->" {
		t.Fatal("an answer that fits was changed")
	}
}

func TestGitHub_EnterpriseServerBaseURL(t *testing.T) {
	clk := newClock()
	fake, srv := githubFake(t, "/api/v3", clk)
	ghes := newGitHub(t, answers.GitHubOptions{BaseURL: srv.URL + "/api/v3", Token: ghToken, Now: clk.Now})
	if _, err := ghes.Post(context.Background(), issue12, answer("run-ghes", "hi")); err != nil {
		t.Fatal(err)
	}
	if calls := fake.CallsTo(peerstest.RouteGitHubCreateComment); len(calls) != 1 || calls[0].Path != "/api/v3/repos/acme/payments/issues/12/comments" {
		t.Fatalf("calls %+v", calls)
	}
	// The same server at its root is not the API: the base URL matters.
	root := newGitHub(t, answers.GitHubOptions{BaseURL: srv.URL, Token: ghToken, Now: clk.Now})
	if _, err := root.Post(context.Background(), issue12, answer("run-root", "hi")); !answers.IsPermanent(err) {
		t.Fatalf("posting outside /api/v3 = %v", err)
	}
	if _, err := answers.NewGitHub(answers.GitHubOptions{BaseURL: "ftp://ghe.example.com"}); err == nil {
		t.Fatal("a non-http base URL was taken")
	}
}

// appKey writes a new RSA key as GitHub hands it out (PKCS #1 PEM).
func appKey(t *testing.T) (*rsa.PrivateKey, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "app.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return key, path
}

func TestGitHub_AppTokensAreMintedPerInstallationAndCachedUntilShortlyBeforeExpiry(t *testing.T) {
	clk := newClock()
	fake, srv := githubFake(t, "", clk)
	key, keyFile := appKey(t)
	fake.AddApp("4242", &key.PublicKey)
	fake.Install("4242", "acme/payments", 77)
	fake.Install("4242", "acme/web", 77) // the same installation
	fake.Install("4242", "globex/api", 88)
	fake.AddIssue("acme/web", 1)
	fake.AddIssue("globex/api", 1)
	g := newGitHub(t, answers.GitHubOptions{BaseURL: srv.URL, AppID: "4242", AppKeyFile: keyFile, Now: clk.Now})
	ctx := context.Background()
	post := func(repo string, n int) {
		t.Helper()
		if _, err := g.Post(ctx, answers.Destination{Type: answers.TypeGitHubIssueComment, Repo: repo, IssueNumber: n}, answer("run-app", "hi")); err != nil {
			t.Fatal(err)
		}
	}
	counts := func() (lookups, mints int) {
		return len(fake.CallsTo(peerstest.RouteGitHubInstallation)), len(fake.CallsTo(peerstest.RouteGitHubAccessToken))
	}
	check := func(wantLookups, wantMints int) {
		t.Helper()
		if l, m := counts(); l != wantLookups || m != wantMints {
			t.Fatalf("installation lookups %d, mints %d; want %d, %d", l, m, wantLookups, wantMints)
		}
	}

	post("acme/payments", 12)
	check(1, 1)
	post("acme/payments", 12) // cached
	check(1, 1)
	post("acme/web", 1) // same installation: looked up, token reused
	check(2, 1)
	post("globex/api", 1) // another installation: its own token
	check(3, 2)
	clk.Add(54 * time.Minute) // the hour-long token is still good
	post("acme/payments", 12)
	check(3, 2)
	clk.Add(2 * time.Minute) // 56 min: within 5 min of expiry, replaced
	post("acme/payments", 12)
	check(3, 3)

	// The App's JWT is what GitHub asks for.
	call := fake.CallsTo(peerstest.RouteGitHubAccessToken)[0]
	if !strings.HasPrefix(call.Auth, "Bearer ey") {
		t.Fatalf("App endpoint auth %q", call.Auth)
	}
	// Comments are made with installation tokens, never the JWT.
	for _, c := range fake.CallsTo(peerstest.RouteGitHubCreateComment) {
		if !strings.HasPrefix(c.Auth, "Bearer ghs_") {
			t.Fatalf("comment auth %q", c.Auth)
		}
	}
}

func TestGitHub_AppTokenRefusedIsMintedAgainOnce(t *testing.T) {
	clk := newClock()
	fake, srv := githubFake(t, "", clk)
	key, keyFile := appKey(t)
	fake.AddApp("4242", &key.PublicKey)
	fake.Install("4242", "acme/payments", 77)
	g := newGitHub(t, answers.GitHubOptions{BaseURL: srv.URL, AppID: "4242", AppKeyFile: keyFile, Now: clk.Now})
	ctx := context.Background()
	if _, err := g.Post(ctx, issue12, answer("run-1", "one")); err != nil {
		t.Fatal(err)
	}
	fake.RevokeInstallationTokens() // the App was reinstalled
	if _, err := g.Post(ctx, issue12, answer("run-2", "two")); err != nil {
		t.Fatal(err)
	}
	if n, m := len(fake.Comments("acme/payments", 12)), len(fake.CallsTo(peerstest.RouteGitHubAccessToken)); n != 2 || m != 2 {
		t.Fatalf("%d comments, %d mints; want 2, 2", n, m)
	}
}

func TestGitHub_AppMistakesArePermanentWithTheReason(t *testing.T) {
	clk := newClock()
	fake, srv := githubFake(t, "", clk)
	key, keyFile := appKey(t)
	_, otherKeyFile := appKey(t)
	fake.AddApp("4242", &key.PublicKey)
	ctx := context.Background()

	notInstalled := newGitHub(t, answers.GitHubOptions{BaseURL: srv.URL, AppID: "4242", AppKeyFile: keyFile, Now: clk.Now})
	_, err := notInstalled.Post(ctx, issue12, answer("run-1", "x"))
	if !answers.IsPermanent(err) || !strings.Contains(err.Error(), "not installed on this repository") {
		t.Fatalf("not installed: %v", err)
	}
	fake.Install("4242", "acme/payments", 77)
	wrongKey := newGitHub(t, answers.GitHubOptions{BaseURL: srv.URL, AppID: "4242", AppKeyFile: otherKeyFile, Now: clk.Now})
	_, err = wrongKey.Post(ctx, issue12, answer("run-1", "x"))
	if !answers.IsPermanent(err) || !strings.Contains(err.Error(), "check GITHUB_APP_ID and the private key") {
		t.Fatalf("wrong key: %v", err)
	}
	gone := newGitHub(t, answers.GitHubOptions{BaseURL: srv.URL, AppID: "4242", AppKeyFile: filepath.Join(t.TempDir(), "missing.pem"), Now: clk.Now})
	_, err = gone.Post(ctx, issue12, answer("run-1", "x"))
	if err == nil || answers.IsPermanent(err) || !strings.Contains(err.Error(), "GITHUB_APP_PRIVATE_KEY_FILE") {
		t.Fatalf("unreadable key: %v (want a retried failure naming the variable)", err)
	}
	if n := len(fake.CallsTo(peerstest.RouteGitHubCreateComment)); n != 0 {
		t.Fatalf("%d comment calls", n)
	}
}

func TestGitHub_CheckSaysWhatIsMissingWithoutACall(t *testing.T) {
	none := newGitHub(t, answers.GitHubOptions{})
	if err := none.Check(issue12); err == nil || !strings.Contains(err.Error(), "set GITHUB_TOKEN, or GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_FILE") {
		t.Fatalf("no credential: %v", err)
	}
	g := newGitHub(t, answers.GitHubOptions{Token: ghToken})
	for d, says := range map[answers.Destination]string{
		issue12: "",
		pull34:  "",
		{Type: answers.TypeGitHubIssueComment, Repo: "acme/payments"}:                          "issue_number is required",
		{Type: answers.TypeGitHubPRComment, Repo: "acme/payments", IssueNumber: 3}:             "pr_number is required",
		{Type: answers.TypeGitHubIssueComment, Repo: "https://evil.example/x", IssueNumber: 1}: "is not owner/name",
		{Type: answers.TypeGitHubIssueComment, Repo: "acme/..", IssueNumber: 1}:                "is not owner/name",
		{Type: answers.TypeSlack, ChannelID: "C1"}:                                             "does not post",
	} {
		err := g.Check(d)
		if (says == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), says)) {
			t.Errorf("Check(%+v) = %v; want %q", d, err, says)
		}
	}
	// Post refuses what Check refuses, permanently, without a call.
	if _, err := none.Post(context.Background(), issue12, answer("r", "x")); !answers.IsPermanent(err) {
		t.Fatalf("Post without a credential = %v", err)
	}
}

// A burst of first posts mints one installation token, not one each.
func TestGitHub_ConcurrentFirstPostsMintOnce(t *testing.T) {
	clk := newClock()
	fake, srv := githubFake(t, "", clk)
	key, keyFile := appKey(t)
	fake.AddApp("4242", &key.PublicKey)
	fake.Install("4242", "acme/payments", 77)
	g := newGitHub(t, answers.GitHubOptions{BaseURL: srv.URL, AppID: "4242", AppKeyFile: keyFile, Now: clk.Now})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := g.Post(context.Background(), issue12, answer(fmt.Sprintf("run-%d", i), "hi"))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n, m := len(fake.Comments("acme/payments", 12)), len(fake.CallsTo(peerstest.RouteGitHubAccessToken)); n != 16 || m != 1 {
		t.Fatalf("%d comments, %d mints; want 16, 1", n, m)
	}
}

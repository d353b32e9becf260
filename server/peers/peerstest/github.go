package peerstest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// GitHub REST routes the fake serves, usable with Fail and CallsTo.
const (
	RouteGitHubCreateComment = "POST /repos/{owner}/{repo}/issues/{number}/comments"
	RouteGitHubListComments  = "GET /repos/{owner}/{repo}/issues/{number}/comments"
	RouteGitHubInstallation  = "GET /repos/{owner}/{repo}/installation"
	RouteGitHubAccessToken   = "POST /app/installations/{id}/access_tokens"
)

// GitHubMaxCommentBody is the longest comment GitHub accepts, in characters.
const GitHubMaxCommentBody = 65536

// GitHub is a strict stand-in for the parts of GitHub's REST API that
// answers use, following GitHub's published API: issue comments (create;
// list with page/per_page and a Link header), a repository's App
// installation and installation access tokens. It checks credentials as
// GitHub does — a token (Authorization: Bearer or token), an installation
// token only for its installation's repositories and until it expires, an
// App's RS256 JWT (iss = the App id, iat in the past, exp at most ten
// minutes ahead) on the App endpoints — and answers errors in GitHub's
// shape {message, documentation_url}. Rate limits are injected with Fail
// and the GitHub*RateLimit faults.
type GitHub struct {
	faults
	mux    *http.ServeMux
	prefix string
	// Now is the fake's clock for JWTs and token expiry (default time.Now).
	Now func() time.Time

	mu       sync.Mutex
	tokens   map[string]bool
	apps     map[string]*rsa.PublicKey
	installs map[string]ghInstall // lower-case owner/repo → installation
	minted   map[string]ghMinted  // installation token → what it may do
	issues   map[string]*ghIssue  // lower-case owner/repo#number
	nextID   int64
}

type ghInstall struct {
	app string
	id  int64
}

type ghMinted struct {
	installation int64
	expires      time.Time
}

type ghIssue struct {
	pull     bool
	locked   bool
	comments []GitHubComment
}

// GitHubComment is a comment the fake holds.
type GitHubComment struct {
	ID   int64
	Body string
}

// NewGitHub returns the fake serving GitHub's REST API under prefix: ""
// for api.github.com's shape, "/api/v3" for GitHub Enterprise Server's.
func NewGitHub(prefix string) *GitHub {
	g := &GitHub{mux: http.NewServeMux(), prefix: strings.TrimRight(prefix, "/"), Now: time.Now,
		tokens: map[string]bool{}, apps: map[string]*rsa.PublicKey{}, installs: map[string]ghInstall{},
		minted: map[string]ghMinted{}, issues: map[string]*ghIssue{}, nextID: 1000001}
	for route, h := range map[string]http.HandlerFunc{
		RouteGitHubCreateComment: g.createComment,
		RouteGitHubListComments:  g.listComments,
		RouteGitHubInstallation:  g.installation,
		RouteGitHubAccessToken:   g.accessToken,
	} {
		method, path, _ := strings.Cut(route, " ")
		g.mux.HandleFunc(method+" "+g.prefix+path, g.wrap(route, h))
	}
	g.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		ghError(w, http.StatusNotFound, "Not Found")
	})
	return g
}

// ServeHTTP serves the fake's API.
func (g *GitHub) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.mux.ServeHTTP(w, r) }

// AddToken accepts token (a personal access token) for every repository.
func (g *GitHub) AddToken(token string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.tokens[token] = true
}

// AddApp registers a GitHub App by id and the public half of its key.
func (g *GitHub) AddApp(appID string, key *rsa.PublicKey) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.apps[appID] = key
}

// Install installs the App on repo (owner/name) as installation id.
func (g *GitHub) Install(appID, repo string, id int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.installs[strings.ToLower(repo)] = ghInstall{app: appID, id: id}
}

// AddIssue creates issue number of repo; AddPull a pull request (whose
// conversation comments are its issue's).
func (g *GitHub) AddIssue(repo string, number int) { g.add(repo, number, false) }

// AddPull creates pull request number of repo.
func (g *GitHub) AddPull(repo string, number int) { g.add(repo, number, true) }

func (g *GitHub) add(repo string, number int, pull bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.issues[issueKey(repo, number)] = &ghIssue{pull: pull}
}

// Lock locks the issue's conversation: new comments are refused.
func (g *GitHub) Lock(repo string, number int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if is := g.issues[issueKey(repo, number)]; is != nil {
		is.locked = true
	}
}

// AddComments appends comments as other people's (e.g. a long thread).
func (g *GitHub) AddComments(repo string, number int, bodies ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	is := g.issues[issueKey(repo, number)]
	for _, b := range bodies {
		is.comments = append(is.comments, GitHubComment{ID: g.nextID, Body: b})
		g.nextID++
	}
}

// Comments returns the issue's comments, oldest first.
func (g *GitHub) Comments(repo string, number int) []GitHubComment {
	g.mu.Lock()
	defer g.mu.Unlock()
	if is := g.issues[issueKey(repo, number)]; is != nil {
		return append([]GitHubComment(nil), is.comments...)
	}
	return nil
}

func issueKey(repo string, number int) string {
	return strings.ToLower(repo) + "#" + strconv.Itoa(number)
}

// GitHubSecondaryRateLimit is GitHub's answer to too many requests at
// once: 403, Retry-After, and the secondary-rate-limit message.
func GitHubSecondaryRateLimit(retryAfter time.Duration) Fault {
	return Fault{Status: http.StatusForbidden,
		Header: http.Header{"Retry-After": {strconv.Itoa(int(retryAfter / time.Second))}},
		Body: map[string]string{
			"message":           "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
			"documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
		}}
}

// GitHubPrimaryRateLimit is GitHub's answer once the hourly budget is
// spent: 403 with x-ratelimit-remaining: 0 and the reset time.
func GitHubPrimaryRateLimit(reset time.Time) Fault {
	return Fault{Status: http.StatusForbidden,
		Header: http.Header{
			"X-Ratelimit-Limit":     {"5000"},
			"X-Ratelimit-Remaining": {"0"},
			"X-Ratelimit-Used":      {"5000"},
			"X-Ratelimit-Reset":     {strconv.FormatInt(reset.Unix(), 10)},
			"X-Ratelimit-Resource":  {"core"},
		},
		Body: map[string]string{
			"message":           "API rate limit exceeded for installation.",
			"documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting",
		}}
}

// GitHubTooManyRequests is a 429 with Retry-After.
func GitHubTooManyRequests(retryAfter time.Duration) Fault {
	return Fault{Status: http.StatusTooManyRequests,
		Header: http.Header{"Retry-After": {strconv.Itoa(int(retryAfter / time.Second))}},
		Body:   map[string]string{"message": "Too Many Requests", "documentation_url": "https://docs.github.com/rest"}}
}

// GitHubError is an error of status in GitHub's shape.
func GitHubError(status int, message string) Fault {
	return Fault{Status: status, Body: map[string]string{"message": message, "documentation_url": "https://docs.github.com/rest"}}
}

func ghError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]string{"message": message, "documentation_url": "https://docs.github.com/rest", "status": strconv.Itoa(status)})
}

// bearer is the credential of Authorization: Bearer X or token X.
func bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	for _, p := range []string{"Bearer ", "bearer ", "token "} {
		if v, ok := strings.CutPrefix(a, p); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// repoAccess checks that the request's token may write to the repository:
// false (and GitHub's answer written) when it may not.
func (g *GitHub) repoAccess(w http.ResponseWriter, r *http.Request) bool {
	tok := bearer(r)
	if tok == "" {
		ghError(w, http.StatusUnauthorized, "Requires authentication")
		return false
	}
	repo := strings.ToLower(r.PathValue("owner") + "/" + r.PathValue("repo"))
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tokens[tok] {
		return true
	}
	m, ok := g.minted[tok]
	if !ok || !g.Now().Before(m.expires) {
		ghError(w, http.StatusUnauthorized, "Bad credentials")
		return false
	}
	if inst, ok := g.installs[repo]; !ok || inst.id != m.installation {
		ghError(w, http.StatusForbidden, "Resource not accessible by integration")
		return false
	}
	return true
}

func (g *GitHub) issue(w http.ResponseWriter, r *http.Request) (*ghIssue, int, bool) {
	n, err := strconv.Atoi(r.PathValue("number"))
	if err != nil {
		ghError(w, http.StatusNotFound, "Not Found")
		return nil, 0, false
	}
	is := g.issues[issueKey(r.PathValue("owner")+"/"+r.PathValue("repo"), n)]
	if is == nil {
		ghError(w, http.StatusNotFound, "Not Found")
		return nil, 0, false
	}
	return is, n, true
}

func (g *GitHub) commentJSON(r *http.Request, is *ghIssue, n int, c GitHubComment) map[string]any {
	owner, repo := r.PathValue("owner"), r.PathValue("repo")
	kind := "issues"
	if is.pull {
		kind = "pull"
	}
	return map[string]any{
		"id":                 c.ID,
		"node_id":            fmt.Sprintf("IC_%d", c.ID),
		"url":                fmt.Sprintf("https://api.github.com/repos/%s/%s/issues/comments/%d", owner, repo, c.ID),
		"html_url":           fmt.Sprintf("https://github.com/%s/%s/%s/%d#issuecomment-%d", owner, repo, kind, n, c.ID),
		"issue_url":          fmt.Sprintf("https://api.github.com/repos/%s/%s/issues/%d", owner, repo, n),
		"body":               c.Body,
		"user":               map[string]any{"login": "orchestrator-edge[bot]", "type": "Bot"},
		"created_at":         g.Now().UTC().Format(time.RFC3339),
		"updated_at":         g.Now().UTC().Format(time.RFC3339),
		"author_association": "NONE",
	}
}

func (g *GitHub) createComment(w http.ResponseWriter, r *http.Request) {
	if !g.repoAccess(w, r) {
		return
	}
	var in struct {
		Body *string `json:"body"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		ghError(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	is, n, ok := g.issue(w, r)
	if !ok {
		return
	}
	switch {
	case is.locked:
		ghError(w, http.StatusForbidden, "Unable to create comment because issue is locked.")
		return
	case in.Body == nil || *in.Body == "":
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"message": "Validation Failed",
			"errors":            []map[string]string{{"resource": "IssueComment", "code": "missing_field", "field": "body"}},
			"documentation_url": "https://docs.github.com/rest/issues/comments#create-an-issue-comment", "status": "422"})
		return
	case utf8.RuneCountInString(*in.Body) > GitHubMaxCommentBody:
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"message": "Validation Failed",
			"errors": []map[string]string{{"resource": "IssueComment", "code": "custom", "field": "body",
				"message": "body is too long (maximum is 65536 characters)"}},
			"documentation_url": "https://docs.github.com/rest/issues/comments#create-an-issue-comment", "status": "422"})
		return
	}
	c := GitHubComment{ID: g.nextID, Body: *in.Body}
	g.nextID++
	is.comments = append(is.comments, c)
	writeJSON(w, http.StatusCreated, g.commentJSON(r, is, n, c))
}

func (g *GitHub) listComments(w http.ResponseWriter, r *http.Request) {
	if !g.repoAccess(w, r) {
		return
	}
	q := r.URL.Query()
	perPage, page := 30, 1
	if v, err := strconv.Atoi(q.Get("per_page")); err == nil && v > 0 {
		perPage = min(v, 100)
	}
	if v, err := strconv.Atoi(q.Get("page")); err == nil && v > 0 {
		page = v
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	is, n, ok := g.issue(w, r)
	if !ok {
		return
	}
	last := max((len(is.comments)+perPage-1)/perPage, 1)
	out := []map[string]any{}
	for i := (page - 1) * perPage; i < len(is.comments) && i < page*perPage; i++ {
		out = append(out, g.commentJSON(r, is, n, is.comments[i]))
	}
	// GitHub's Link header: next and last after page 1, first and prev
	// before the last page.
	self := "http://" + r.Host + r.URL.Path
	link := func(p int, rel string) string {
		return fmt.Sprintf(`<%s?per_page=%d&page=%d>; rel="%s"`, self, perPage, p, rel)
	}
	var links []string
	if page < last {
		links = append(links, link(page+1, "next"), link(last, "last"))
	}
	if page > 1 {
		links = append(links, link(1, "first"), link(page-1, "prev"))
	}
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	writeJSON(w, http.StatusOK, out)
}

// appJWT checks the App's JWT as GitHub does and returns the App id.
func (g *GitHub) appJWT(w http.ResponseWriter, r *http.Request) (string, bool) {
	tok := bearer(r)
	if tok == "" {
		ghError(w, http.StatusUnauthorized, "Requires authentication")
		return "", false
	}
	now := g.Now()
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(tok, &claims, func(t *jwt.Token) (any, error) {
		iss, _ := t.Claims.GetIssuer()
		g.mu.Lock()
		defer g.mu.Unlock()
		key, ok := g.apps[iss]
		if !ok {
			return nil, fmt.Errorf("no App %q", iss)
		}
		return key, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithIssuedAt(), jwt.WithExpirationRequired())
	if err != nil {
		ghError(w, http.StatusUnauthorized, "A JSON web token could not be decoded")
		return "", false
	}
	if claims.ExpiresAt.Sub(now) > 10*time.Minute {
		ghError(w, http.StatusUnauthorized, "'Expiration time' claim ('exp') is too far in the future")
		return "", false
	}
	return claims.Issuer, true
}

func (g *GitHub) installation(w http.ResponseWriter, r *http.Request) {
	app, ok := g.appJWT(w, r)
	if !ok {
		return
	}
	g.mu.Lock()
	inst, found := g.installs[strings.ToLower(r.PathValue("owner")+"/"+r.PathValue("repo"))]
	g.mu.Unlock()
	if !found || inst.app != app {
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	appID, _ := strconv.ParseInt(app, 10, 64)
	writeJSON(w, http.StatusOK, map[string]any{"id": inst.id, "app_id": appID,
		"account": map[string]any{"login": r.PathValue("owner")}, "repository_selection": "selected",
		"access_tokens_url": fmt.Sprintf("https://api.github.com/app/installations/%d/access_tokens", inst.id),
		"permissions":       map[string]string{"issues": "write", "pull_requests": "write", "metadata": "read"}})
}

func (g *GitHub) accessToken(w http.ResponseWriter, r *http.Request) {
	app, ok := g.appJWT(w, r)
	if !ok {
		return
	}
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	g.mu.Lock()
	defer g.mu.Unlock()
	owned := false
	for _, inst := range g.installs {
		owned = owned || (inst.id == id && inst.app == app)
	}
	if !owned {
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	tok := "ghs_" + hex.EncodeToString(b)
	exp := g.Now().Add(time.Hour).UTC().Truncate(time.Second)
	g.minted[tok] = ghMinted{installation: id, expires: exp}
	writeJSON(w, http.StatusCreated, map[string]any{"token": tok, "expires_at": exp.Format(time.RFC3339),
		"permissions":          map[string]string{"issues": "write", "pull_requests": "write", "metadata": "read"},
		"repository_selection": "selected"})
}

// RevokeInstallationTokens invalidates every installation token minted so
// far (as uninstalling and reinstalling the App does).
func (g *GitHub) RevokeInstallationTokens() {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(g.minted)
}

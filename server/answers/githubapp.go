package answers

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-github/v81/github"
)

// GitHub App tokens, minted the way GitHub documents it: an RS256 JWT
// signed with the App's private key (iss = the App id, at most ten minutes
// long) finds the installation on a repository (GET
// /repos/{owner}/{repo}/installation) and mints its installation token
// (POST /app/installations/{id}/access_tokens), which lasts an hour.
//
// Written here rather than taken from ghinstallation: that library pins
// another go-github major version and jwt/v4, reads the wall clock (the
// tests need a clock they control), and still leaves the per-repository
// installation lookup to the caller.
const (
	// appJWTLife is the JWT's lifetime (GitHub refuses more than 10 min);
	// appJWTSkew backdates iat against clock drift, as GitHub advises.
	appJWTLife = 9 * time.Minute
	appJWTSkew = time.Minute
	// appTokenMargin: a cached installation token is replaced this long
	// before it expires, so that no call carries a token about to lapse.
	appTokenMargin = 5 * time.Minute
	// appInstallTTL: how long a repository's installation is remembered.
	appInstallTTL = time.Hour
)

// appTokens mints and caches one GitHub App's installation tokens.
type appTokens struct {
	appID, keyFile string
	now            func() time.Time

	// mint is held while a token is looked up and minted, so that a burst
	// of first posts mints once (mints are rare: one an hour per
	// installation); mu guards the maps and is never held across a call.
	mint     sync.Mutex
	mu       sync.Mutex
	installs map[string]appInstall // lower-case owner/repo → installation
	tokens   map[int64]appToken    // installation id → its token
}

type appInstall struct {
	id    int64
	until time.Time
}

type appToken struct {
	token string
	until time.Time // replaced from here on
}

func newAppTokens(appID, keyFile string, now func() time.Time) *appTokens {
	return &appTokens{appID: appID, keyFile: keyFile, now: now,
		installs: map[string]appInstall{}, tokens: map[int64]appToken{}}
}

// cached returns the cached installation and, when still good, its token.
func (t *appTokens) cached(key string, now time.Time) (appInstall, bool, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	inst, ok := t.installs[key]
	if !ok || !now.Before(inst.until) {
		return appInstall{}, false, ""
	}
	if tok, ok := t.tokens[inst.id]; ok && now.Before(tok.until) {
		return inst, true, tok.token
	}
	return inst, true, ""
}

// token returns an installation token that may write to owner/repo.
func (t *appTokens) token(ctx context.Context, base *github.Client, owner, repo string) (string, error) {
	key := strings.ToLower(owner + "/" + repo)
	if _, _, tok := t.cached(key, t.now()); tok != "" {
		return tok, nil
	}
	t.mint.Lock()
	defer t.mint.Unlock()
	now := t.now()
	inst, ok, tok := t.cached(key, now) // another caller may have minted it
	if tok != "" {
		return tok, nil
	}
	jwtToken, err := t.appJWT(now)
	if err != nil {
		return "", err
	}
	app := base.WithAuthToken(jwtToken)
	if !ok {
		found, _, err := app.Apps.FindRepositoryInstallation(ctx, owner, repo)
		if err != nil {
			return "", appFailure(err, fmt.Sprintf("find the GitHub App's installation on %s/%s", owner, repo), now)
		}
		inst = appInstall{id: found.GetID(), until: now.Add(appInstallTTL)}
		// Another repository of the same installation may have minted
		// its token already.
		t.mu.Lock()
		tok, ok := t.tokens[inst.id]
		if ok && now.Before(tok.until) {
			t.installs[key] = inst
			t.mu.Unlock()
			return tok.token, nil
		}
		t.mu.Unlock()
	}
	minted, _, err := app.Apps.CreateInstallationToken(ctx, inst.id, nil)
	if err != nil {
		return "", appFailure(err, fmt.Sprintf("mint a token for installation %d", inst.id), now)
	}
	until := now.Add(time.Hour - appTokenMargin)
	if exp := minted.GetExpiresAt().Time; !exp.IsZero() {
		until = exp.Add(-appTokenMargin)
	}
	t.mu.Lock()
	t.installs[key] = inst
	t.tokens[inst.id] = appToken{token: minted.GetToken(), until: until}
	t.mu.Unlock()
	return minted.GetToken(), nil
}

// forget drops what is cached for owner/repo (after GitHub refused it).
func (t *appTokens) forget(owner, repo string) {
	key := strings.ToLower(owner + "/" + repo)
	t.mu.Lock()
	defer t.mu.Unlock()
	if inst, ok := t.installs[key]; ok {
		delete(t.tokens, inst.id)
		delete(t.installs, key)
	}
}

// appJWT signs the App's JWT with the key read from its file now (a
// rotated key is taken without a restart).
func (t *appTokens) appJWT(now time.Time) (string, error) {
	key, err := LoadGitHubAppKey(t.keyFile)
	if err != nil {
		// Retried: the operator can fix the file while the delivery waits.
		return "", fmt.Errorf("GITHUB_APP_PRIVATE_KEY_FILE: %w", err)
	}
	claims := jwt.RegisteredClaims{
		Issuer:    t.appID,
		IssuedAt:  jwt.NewNumericDate(now.Add(-appJWTSkew)),
		ExpiresAt: jwt.NewNumericDate(now.Add(appJWTLife)),
	}
	return jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(key)
}

// LoadGitHubAppKey reads a GitHub App's private key: a PEM file holding an
// RSA key (PKCS #1, as GitHub hands it out, or PKCS #8).
func LoadGitHubAppKey(path string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, errors.Unwrap(err))
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s is not a PEM-encoded RSA private key (%v)", path, err)
	}
	return key, nil
}

// appFailure words a failure of the App's own calls: 401 is a wrong App id
// or key, 404 an App not installed on the repository.
func appFailure(err error, what string, now time.Time) error {
	switch githubStatus(err) {
	case http.StatusUnauthorized:
		return Permanent(fmt.Errorf("%s: GitHub refused the App's JWT (401): check GITHUB_APP_ID and the private key: %s", what, oneLine(githubMessage(err), 200)))
	case http.StatusNotFound:
		return Permanent(fmt.Errorf("%s: the GitHub App is not installed on this repository (404)", what))
	}
	return fmt.Errorf("%s: %w", what, githubFailure(err, now))
}

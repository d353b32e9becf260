package webui

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/incidentfox/orchestrator-edge/store"
)

// Admin page sessions live in the database (SPEC §13), so that a login is
// valid on every replica and survives restarts. The browser holds the
// session id; the database holds only its hash, and the admin token sealed
// with a key derived from the id: a copy of the database (a backup, a
// replica's view) opens no session and reveals no token.

// SessionStore keeps admin page logins (store.DB implements it).
type SessionStore interface {
	CreateSession(ctx context.Context, s store.Session) error
	GetSession(ctx context.Context, idHash string) (store.Session, error)
	TouchSession(ctx context.Context, idHash string, seen time.Time) error
	SetSessionFlash(ctx context.Context, idHash, flash string) error
	DeleteSession(ctx context.Context, idHash string) error
}

// sessionHash is what the database knows a session by.
func sessionHash(id string) string {
	sum := sha256.Sum256([]byte("orchestrator-session-id|" + id))
	return hex.EncodeToString(sum[:])
}

// sessionAEAD is AES-256-GCM under a key only the session id gives.
func sessionAEAD(id string) (cipher.AEAD, error) {
	key := sha256.Sum256([]byte("orchestrator-session-seal|" + id))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealToken encrypts the admin token for the session's row.
func sealToken(id, token string) ([]byte, error) {
	aead, err := sessionAEAD(id)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, []byte(token), []byte(sessionHash(id))), nil
}

// openToken decrypts a row's token with the browser's session id.
func openToken(id string, sealed []byte) (string, error) {
	aead, err := sessionAEAD(id)
	if err != nil {
		return "", err
	}
	if len(sealed) < aead.NonceSize() {
		return "", errors.New("sealed token too short")
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(sessionHash(id)))
	return string(plain), err
}

// newTokenCookie carries a newly issued team token from the provisioning
// form's POST to the run page it redirects to (redirect after POST), once.
// The token is never stored by the orchestrator: the cookie holds it sealed
// with the session's key (only the browser holding the session id can
// open it), for one run, for five minutes, and the run page clears it as it
// shows the token.
const newTokenCookie = "orchestrator_new_token"

// newTokenTTL bounds how long a new token waits for its run page.
const newTokenTTL = 5 * time.Minute

// sealNewToken seals run id and token for the session's browser.
func sealNewToken(sessionID, runID, token string) (string, error) {
	sealed, err := sealToken(sessionID, runID+"\n"+token)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

// openNewToken opens a sealed new token for runID ("" if it is not that
// run's, or not sealed by this session).
func openNewToken(sessionID, runID, value string) string {
	sealed, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		return ""
	}
	plain, err := openToken(sessionID, sealed)
	if err != nil {
		return ""
	}
	run, token, ok := strings.Cut(plain, "\n")
	if !ok || run != runID {
		return ""
	}
	return token
}

// session finds the request's live session, touching it.
func (u *UI) session(r *http.Request) *uiSession {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil
	}
	ctx := r.Context()
	now := u.sessionNow()
	hash := sessionHash(c.Value)
	row, err := u.o.Sessions.GetSession(ctx, hash)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			u.log.Warn("cannot read a page session", "error", err)
		}
		return nil
	}
	if now.Sub(row.SeenAt) > SessionIdle || now.Sub(row.CreatedAt) > SessionMax {
		_ = u.o.Sessions.DeleteSession(ctx, hash)
		return nil
	}
	token, err := openToken(c.Value, row.Sealed)
	if err != nil {
		return nil
	}
	// The last-seen time moves at most once a minute: a page view is then
	// not a write.
	if now.Sub(row.SeenAt) > time.Minute {
		if err := u.o.Sessions.TouchSession(ctx, hash, now); err != nil {
			u.log.Warn("cannot touch a page session", "error", err)
		}
	}
	return &uiSession{id: c.Value, hash: hash, token: token, actor: row.Actor, created: row.CreatedAt, seen: now, flash: row.Flash}
}

// setFlash keeps a notice for the session's next page.
func (u *UI) setFlash(r *http.Request, se *uiSession, msg string) {
	u.setFlashResult(r, se, msg, "")
}

// maxFlashResult bounds a result kept for the next page.
const maxFlashResult = 64 << 10

// setFlashResult keeps a notice and a result (the agent's answer) for the
// session's next page: the redirect after a POST carries them.
func (u *UI) setFlashResult(r *http.Request, se *uiSession, msg, result string) {
	if len(result) > maxFlashResult {
		result = strings.ToValidUTF8(result[:maxFlashResult], "") + "\n… (cut at 64 KiB)"
	}
	se.flash = encodeFlash(msg, result)
	if err := u.o.Sessions.SetSessionFlash(r.Context(), se.hash, se.flash); err != nil {
		u.log.Warn("cannot keep a page notice", "error", err)
	}
}

// A flash is a notice, or a notice and a result kept as JSON.
func encodeFlash(notice, result string) string {
	if result == "" {
		return notice
	}
	b, _ := json.Marshal(struct{ Notice, Result string }{notice, result})
	return string(b)
}

func decodeFlash(flash string) (notice, result string) {
	var f struct{ Notice, Result string }
	if strings.HasPrefix(flash, "{") && json.Unmarshal([]byte(flash), &f) == nil && f.Result != "" {
		return f.Notice, f.Result
	}
	return flash, ""
}

// uiPage wraps a page handler: a live session is required (else the login
// page), and POSTs must come from this site.
func (u *UI) uiPage(h func(http.ResponseWriter, *http.Request, *uiSession)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && !sameOrigin(r) {
			u.render(w, r, http.StatusForbidden, "login", page{Error: "This form was not sent from this site."})
			return
		}
		se := u.session(r)
		if se == nil {
			// A page asked for by its address (a bookmark, a link in a
			// chat) is where the login returns.
			to := "/ui/login"
			if next := safeNext(r.URL.RequestURI()); r.Method == http.MethodGet && next != "" {
				to += "?" + url.Values{"next": {next}}.Encode()
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		h(w, r, se)
	}
}

// safeNext is where a login may send the browser: a page of this admin
// page, as a path and query on this site ("/ui/events?source=slack"), or ""
// for anything else — another host however written (//evil.example,
// https://evil.example, /\evil.example), a path that leaves /ui/ once
// cleaned, control characters — so a link cannot make the login an open
// redirect.
func safeNext(next string) string {
	if next == "" || len(next) > 2048 || !strings.HasPrefix(next, "/ui/") || strings.ContainsAny(next, "\\\x00\r\n\t") {
		return ""
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" ||
		path.Clean(u.Path) != u.Path || !strings.HasPrefix(u.Path, "/ui/") || u.Path == "/ui/login" {
		return ""
	}
	return u.RequestURI()
}

// admin checks the session's token for one action, as the API does.
func (u *UI) uiAdmin(w http.ResponseWriter, r *http.Request, se *uiSession, perm, nav string) *auth.Admin {
	a, err := u.o.Auth.Check(r.Context(), se.token, perm)
	if err != nil {
		u.render(w, r, httpx.Classify(err).Kind.Status(), "notfound", page{Session: se, Nav: nav, Error: apperr.Message(err)})
		return nil
	}
	return a
}

// loginData is the login form's: where it returns after the login.
type loginData struct{ Next string }

// afterLogin is where a login sends the browser: next if it is safe, else
// the overview.
func afterLogin(next string) string {
	if next = safeNext(next); next != "" {
		return next
	}
	return "/ui/overview"
}

func (u *UI) uiLoginForm(w http.ResponseWriter, r *http.Request) {
	next := r.URL.Query().Get("next")
	if u.session(r) != nil {
		http.Redirect(w, r, afterLogin(next), http.StatusSeeOther)
		return
	}
	u.render(w, r, http.StatusOK, "login", page{Data: loginData{Next: safeNext(next)}})
}

func (u *UI) uiLogin(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		u.render(w, r, http.StatusForbidden, "login", page{Error: "This form was not sent from this site."})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	token := strings.TrimSpace(r.PostFormValue("token"))
	next := safeNext(r.PostFormValue("next"))
	a, err := u.o.Auth.CheckFrom(r.Context(), u.o.Auth.ClientAddr(r), token, "")
	if err != nil {
		u.render(w, r, httpx.Classify(err).Kind.Status(), "login", page{Error: "Login refused: " + apperr.Message(err),
			Data: loginData{Next: next}})
		return
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	now := u.sessionNow()
	id := base64.RawURLEncoding.EncodeToString(b[:])
	sealed, err := sealToken(id, a.Token)
	if err == nil {
		err = u.o.Sessions.CreateSession(r.Context(), store.Session{IDHash: sessionHash(id), Actor: a.Actor, Sealed: sealed,
			CreatedAt: now, SeenAt: now})
	}
	if err != nil {
		u.log.Error("cannot store a page session", "error", err)
		u.render(w, r, http.StatusServiceUnavailable, "login", page{Error: "Login failed: the session could not be stored; try again."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/ui/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: u.secure(r), MaxAge: int(SessionMax / time.Second)})
	u.log.Info("admin page login", "actor", a.Actor)
	http.Redirect(w, r, afterLogin(next), http.StatusSeeOther)
}

func (u *UI) uiLogout(w http.ResponseWriter, r *http.Request, se *uiSession) {
	if err := u.o.Sessions.DeleteSession(r.Context(), se.hash); err != nil {
		u.log.Warn("cannot end a page session", "error", err)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/ui/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: u.secure(r), MaxAge: -1})
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

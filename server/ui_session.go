package server

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"time"

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

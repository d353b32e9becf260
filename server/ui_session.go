package server

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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

package peerstest

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// The fake Config Service's state on disk, for dev mode: with it, a
// restart of `make run` is a restart — the teams provisioned before it, their
// routing and their tokens are there after it, as they would be in a real
// Config Service — instead of a fake that forgot them beside a database that
// did not. Admin tokens (seeded at every start) and impersonation tokens
// (short-lived, minted again on demand) are not kept. Team tokens are kept
// as the SHA-256 of their secret, never the secret.

// savedConfigService is the file's shape.
type savedConfigService struct {
	Nodes  map[string]map[string]*node `json:"nodes"`
	Tokens []savedToken                `json:"tokens"`
}

type savedToken struct {
	Org          string     `json:"org_id"`
	Team         string     `json:"team_node_id"`
	ID           string     `json:"token_id"`
	SecretSHA256 string     `json:"secret_sha256"`
	IssuedAt     time.Time  `json:"issued_at"`
	RevokedAt    *time.Time `json:"revoked_at,omitempty"`
}

// Persist loads the state kept at path, if there is any, and from then on
// writes it there after every change (atomically, mode 0600). Without a
// call to Persist the fake lives in memory only, as tests want it.
func (f *ConfigService) Persist(path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("dev config service state: %w", err)
	default:
		var s savedConfigService
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("dev config service state %s: %w (delete the file to start afresh)", path, err)
		}
		if s.Nodes != nil {
			f.nodes = s.Nodes
		}
		f.tokens = map[teamKey][]*teamToken{}
		for _, t := range s.Tokens {
			k := teamKey{t.Org, t.Team}
			f.tokens[k] = append(f.tokens[k], &teamToken{ID: t.ID, SecretSHA256: t.SecretSHA256, IssuedAt: t.IssuedAt, RevokedAt: t.RevokedAt})
		}
	}
	f.statePath = path
	return f.saveLocked()
}

// saveLocked writes the state to the Persist path (nothing without one).
// The caller holds f.mu.
func (f *ConfigService) saveLocked() error {
	if f.statePath == "" {
		return nil
	}
	s := savedConfigService{Nodes: f.nodes, Tokens: []savedToken{}}
	for _, k := range sortedTeamKeys(f.tokens) {
		for _, t := range f.tokens[k] {
			s.Tokens = append(s.Tokens, savedToken{Org: k.org, Team: k.team, ID: t.ID, SecretSHA256: t.SecretSHA256,
				IssuedAt: t.IssuedAt, RevokedAt: t.RevokedAt})
		}
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(f.statePath, b)
}

// writeFileAtomic replaces path with b, never leaving half a file.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("dev state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("dev state: %w", err)
	}
	return nil
}

func sortedTeamKeys(m map[teamKey][]*teamToken) []teamKey {
	keys := make([]teamKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b teamKey) int { return cmp.Or(cmp.Compare(a.org, b.org), cmp.Compare(a.team, b.team)) })
	return keys
}

func secretHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

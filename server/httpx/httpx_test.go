package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/store"
)

func decodeError(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var e ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q: %v", rec.Body.String(), err)
	}
	return e.Error
}

func TestWriteError_OneMapForEveryKind(t *testing.T) {
	var logs bytes.Buffer
	wr := Writer{Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{apperr.New(apperr.Invalid, "invalid_org_id", "bad"), 400, "invalid_org_id"},
		{apperr.New(apperr.Unauthenticated, "missing_admin_token", "x"), 401, "missing_admin_token"},
		{apperr.New(apperr.Forbidden, "insufficient_permissions", "x"), 403, "insufficient_permissions"},
		{apperr.New(apperr.Unprocessable, "idempotency_key_reused", "x"), 422, "idempotency_key_reused"},
		{apperr.New(apperr.BadGateway, "peer_unavailable", "x"), 502, "peer_unavailable"},
		{apperr.New(apperr.GatewayTimeout, "peer_timeout", "x"), 504, "peer_timeout"},
		{fmt.Errorf("run 7: %w", store.ErrNotFound), 404, "not_found"},
		{fmt.Errorf("key: %w", store.ErrConflict), 409, "conflict"},
		{fmt.Errorf("%w: provision|a|b", store.ErrLockTimeout), 409, "team_busy"},
		{&http.MaxBytesError{Limit: 1024}, 413, "body_too_large"},
		{errors.New("disk on fire"), 500, "internal_error"},
	}
	for _, tc := range cases {
		rec := httptest.NewRecorder()
		wr.Error(rec, httptest.NewRequest("GET", "/", nil), tc.err)
		if rec.Code != tc.status || decodeError(t, rec) != tc.code {
			t.Errorf("%v → %d %s, want %d %s", tc.err, rec.Code, rec.Body, tc.status, tc.code)
		}
	}
	rl := &apperr.Error{Kind: apperr.RateLimited, Code: "rate_limited", Detail: "slow down", RetryAfterSeconds: 2}
	rec := httptest.NewRecorder()
	wr.Error(rec, httptest.NewRequest("GET", "/", nil), rl)
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "2" {
		t.Errorf("rate limited = %d Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	// Only server errors are logged, and internals never reach the client.
	if strings.Contains(logs.String(), "invalid_org_id") || !strings.Contains(logs.String(), "disk on fire") {
		t.Error("want 5xx logged and 4xx not")
	}
}

// Package httpx is what every HTTP room shares — the API, the webhook door
// and the admin page: the one error → status map (Classify), the one JSON
// writer, the strict JSON body decoder, query errors and the request id.
package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/store"
)

type ctxKey int

const requestIDKey ctxKey = iota

// RequestID returns the id of the request ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// WithRequestID returns ctx carrying the request id (the server's
// middleware sets it on every request).
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// ErrorBody is the JSON of every error response.
type ErrorBody struct {
	Error  string `json:"error"`
	Detail string `json:"detail"`
}

// Writer writes answers: JSON bodies, and errors through the one error →
// status map. It logs server errors (5xx) only: client errors are the
// client's business and already in the access log.
type Writer struct{ Logger *slog.Logger }

// JSON writes v as the JSON body with the status.
func (wr Writer) JSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		wr.Error(w, r, fmt.Errorf("encode response: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// Classify turns any error into the product's vocabulary.
func Classify(err error) *apperr.Error {
	if e, ok := apperr.As(err); ok {
		return e
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return apperr.Wrap(err, apperr.TooLarge, "body_too_large", "request body exceeds %d bytes", tooLarge.Limit)
	case errors.Is(err, store.ErrNotFound):
		return apperr.Wrap(err, apperr.NotFound, "not_found", "not found")
	case errors.Is(err, store.ErrConflict):
		return apperr.Wrap(err, apperr.Conflict, "conflict", "conflicts with existing state")
	case errors.Is(err, store.ErrInvalid):
		return apperr.Wrap(err, apperr.Invalid, "invalid_request", "%s", err.Error())
	case errors.Is(err, store.ErrLockTimeout):
		return apperr.Wrap(err, apperr.Conflict, "team_busy", "another operation on this team is in progress; retry later")
	case errors.Is(err, store.ErrNotMigrated):
		return apperr.Wrap(err, apperr.Unavailable, "not_ready", "database migrations are pending")
	}
	return apperr.Wrap(err, apperr.Internal, "internal_error", "internal error")
}

// Error writes err as {"error","detail"} with its status.
func (wr Writer) Error(w http.ResponseWriter, r *http.Request, err error) {
	e := Classify(err)
	status := e.Kind.Status()
	detail := e.Detail
	if status >= 500 {
		id := RequestID(r.Context())
		wr.Logger.Error("request failed", "request_id", id, "code", e.Code, "error", err)
		if e.Kind == apperr.Internal {
			detail = "internal error (request id " + id + ")"
		}
	}
	if e.RetryAfterSeconds > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfterSeconds))
	}
	wr.JSON(w, r, status, ErrorBody{Error: e.Code, Detail: detail})
}

// maxJSONDepth bounds nesting in request bodies.
const maxJSONDepth = 32

// DecodeJSON reads a JSON request body into dst strictly: the body is capped
// (413), must be UTF-8 JSON with no unknown fields, no duplicate keys, no
// deep nesting and nothing after the value (400), and a non-JSON
// Content-Type is refused (415).
func DecodeJSON(w http.ResponseWriter, r *http.Request, maxBytes int64, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return apperr.New(apperr.Unsupported, "unsupported_media_type", "send the body as application/json")
		}
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return apperr.Wrap(err, apperr.TooLarge, "body_too_large", "the body exceeds %d bytes", tooLarge.Limit)
		}
		return apperr.Wrap(err, apperr.Invalid, "invalid_body", "the body could not be read")
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return apperr.New(apperr.Invalid, "empty_body", "a JSON object is required")
	}
	if !utf8.Valid(raw) {
		return apperr.New(apperr.Invalid, "invalid_json", "the body is not valid UTF-8")
	}
	if err := checkJSONShape(raw); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return apperr.New(apperr.Invalid, "invalid_json", "unexpected data after the JSON object")
	}
	return nil
}

// jsonError turns a decoding error into a clear 400.
func jsonError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return apperr.New(apperr.Invalid, "invalid_json", "the body must be a JSON object")
		}
		return apperr.New(apperr.Invalid, "invalid_field_type", "%s must be of type %s", field, typeErr.Type)
	case errors.As(err, &syntaxErr):
		return apperr.New(apperr.Invalid, "invalid_json", "malformed JSON at byte %d", syntaxErr.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return apperr.New(apperr.Invalid, "unknown_field", "%s is not a known field", strings.TrimPrefix(err.Error(), "json: unknown field "))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return apperr.New(apperr.Invalid, "invalid_json", "the JSON ends too early")
	}
	return apperr.Wrap(err, apperr.Invalid, "invalid_json", "the body is not valid JSON")
}

// checkJSONShape refuses duplicate keys (which decoders resolve
// differently) and nesting deeper than maxJSONDepth, and requires an object.
func checkJSONShape(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	type frame struct {
		object  bool
		keys    map[string]bool
		wantKey bool
	}
	var stack []*frame
	first := true
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return jsonError(err)
		}
		if first {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return apperr.New(apperr.Invalid, "invalid_json", "the body must be a JSON object")
			}
			first = false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.wantKey {
			if key, ok := tok.(string); ok {
				if top.keys[key] {
					return apperr.New(apperr.Invalid, "duplicate_key", "the key %q appears twice", key)
				}
				top.keys[key] = true
				top.wantKey = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) >= maxJSONDepth {
				return apperr.New(apperr.Invalid, "invalid_json", "the JSON is nested deeper than %d levels", maxJSONDepth)
			}
			stack = append(stack, &frame{object: tok == json.Delim('{'), keys: map[string]bool{}, wantKey: true})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].wantKey = true
		}
	}
}

// QueryError is a 400 for a bad query parameter.
func QueryError(name, format string, args ...any) error {
	return apperr.New(apperr.Invalid, "invalid_query", "%s: %s", name, fmt.Sprintf(format, args...))
}

// CursorError turns the store's refusal of a cursor into a 400.
func CursorError(err error) error {
	if errors.Is(err, store.ErrInvalid) {
		return QueryError("cursor", "is not a cursor this API returned")
	}
	return err
}

package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/ids"
	"github.com/incidentfox/orchestrator-edge/store"
)

// maxJSONDepth bounds nesting in request bodies.
const maxJSONDepth = 32

// decodeJSON reads a JSON request body into dst strictly: the body is capped
// (413), must be UTF-8 JSON with no unknown fields, no duplicate keys, no
// deep nesting and nothing after the value (400), and a non-JSON
// Content-Type is refused (415).
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return apperr.New(apperr.Unsupported, "unsupported_media_type", "send the body as application/json")
		}
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
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

// queryError is a 400 for a bad query parameter.
func queryError(name, format string, args ...any) error {
	return apperr.New(apperr.Invalid, "invalid_query", "%s: %s", name, fmt.Sprintf(format, args...))
}

// listQuery checks what every list endpoint shares: the limit (1–200,
// default 50) and the org scope (orgScope).
func listQuery(r *http.Request, a *auth.Admin, org *string) (int, error) {
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			return 0, queryError("limit", "must be a whole number from 1 to 200")
		}
		limit = n
	}
	if *org != "" && !ids.Valid(*org) {
		return 0, queryError("org_id", "must be 1-128 characters of [A-Za-z0-9._-]")
	}
	scoped, err := orgScope(a, *org)
	*org = scoped
	return limit, err
}

// orgScope is the one place that decides which org an admin reads: an
// org-bound admin reads its own org by default and may not name another; an
// unbound admin reads what it asked for ("" = every org). The API's lists
// and every page of the admin page ask here.
func orgScope(a *auth.Admin, asked string) (string, error) {
	if a.Identity.OrgID == "" {
		return asked, nil
	}
	if asked == "" {
		return a.Identity.OrgID, nil
	}
	if err := a.CanActOn(asked); err != nil {
		return "", err
	}
	return asked, nil
}

// cursorError turns the store's refusal of a cursor into a 400.
func cursorError(err error) error {
	if errors.Is(err, store.ErrInvalid) {
		return queryError("cursor", "is not a cursor this API returned")
	}
	return err
}

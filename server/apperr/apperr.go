// Package apperr is the product's error vocabulary. Workflows return an
// *Error with a Kind and a stable machine code; the HTTP layer turns the Kind
// into a status in exactly one place (server.writeError).
package apperr

import (
	"errors"
	"fmt"
	"net/http"
)

// Kind classifies an error by what the caller can do about it.
type Kind int

// The kinds of errors, each mapped to one HTTP status by the server.
const (
	Internal            Kind = iota // a bug or an unexpected failure: 500
	Invalid                         // the request is malformed: 400
	Unauthenticated                 // credentials missing or wrong: 401
	Forbidden                       // credentials fine, action not allowed: 403
	NotFound                        // 404
	Conflict                        // state conflict, e.g. a busy team: 409
	TooLarge                        // request body over the cap: 413
	Unsupported                     // wrong Content-Type: 415
	Unprocessable                   // well-formed but refused, e.g. key reuse: 422
	RateLimited                     // 429
	BadGateway                      // a peer failed or refused: 502
	Unavailable                     // a dependency is down: 503
	GatewayTimeout                  // a peer did not answer in time: 504
	InsufficientStorage             // the volume cannot take it: 507
)

// kindStatus is the one map from error kinds to HTTP statuses.
var kindStatus = map[Kind]int{
	Internal:            http.StatusInternalServerError,
	Invalid:             http.StatusBadRequest,
	Unauthenticated:     http.StatusUnauthorized,
	Forbidden:           http.StatusForbidden,
	NotFound:            http.StatusNotFound,
	Conflict:            http.StatusConflict,
	TooLarge:            http.StatusRequestEntityTooLarge,
	Unsupported:         http.StatusUnsupportedMediaType,
	Unprocessable:       http.StatusUnprocessableEntity,
	RateLimited:         http.StatusTooManyRequests,
	BadGateway:          http.StatusBadGateway,
	Unavailable:         http.StatusServiceUnavailable,
	GatewayTimeout:      http.StatusGatewayTimeout,
	InsufficientStorage: http.StatusInsufficientStorage,
}

// Status is the HTTP status of the kind. Workflows that store a response for
// later replay (provisioning runs) use it too, so there is still one map.
func (k Kind) Status() int {
	if s, ok := kindStatus[k]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Error is an error with a kind, a stable code and a human detail.
type Error struct {
	Kind   Kind
	Code   string // stable, machine-readable, snake_case
	Detail string // for humans; never holds a secret
	// RetryAfterSeconds, when positive, is sent as Retry-After.
	RetryAfterSeconds int
	// Err is the underlying cause, for logs; it is never sent to clients.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Detail, e.Err)
	}
	return e.Code + ": " + e.Detail
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// New returns an *Error of the kind with a code and a formatted detail.
func New(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Detail: fmt.Sprintf(format, args...)}
}

// Wrap is New with an underlying cause kept for logs.
func Wrap(err error, kind Kind, code, format string, args ...any) *Error {
	e := New(kind, code, format, args...)
	e.Err = err
	return e
}

// As returns the *Error in err's chain, if any.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// Message is the detail of a product error, or the error's text.
func Message(err error) string {
	if e, ok := As(err); ok {
		return e.Detail
	}
	return err.Error()
}

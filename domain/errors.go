package domain

import (
	"errors"
	"fmt"
)

// Kind classifies an error so that the edges can answer it correctly.
type Kind uint8

// The kinds of error. The HTTP edge maps each to one status code.
const (
	KindInternal Kind = iota
	KindInvalid
	KindUnprocessable
	KindNotFound
	KindConflict
	KindForbidden
	KindUnauthenticated
	KindUnavailable
	KindPrecondition
	KindTooMany
	KindUpstream
)

func (k Kind) String() string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindUnprocessable:
		return "unprocessable"
	case KindNotFound:
		return "not_found"
	case KindConflict:
		return "conflict"
	case KindForbidden:
		return "forbidden"
	case KindUnauthenticated:
		return "unauthenticated"
	case KindUnavailable:
		return "unavailable"
	case KindPrecondition:
		return "precondition_failed"
	case KindTooMany:
		return "too_many_requests"
	case KindUpstream:
		return "upstream_error"
	}
	return "internal"
}

// Error is an error that is safe to show to a client: Code is a stable,
// machine-readable identifier and Message a sentence for people.
type Error struct {
	Kind    Kind
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Is reports whether target is an *Error with the same Kind and Code, so that
// sentinels compare with errors.Is even after being wrapped.
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.Kind == e.Kind && t.Code == e.Code
}

func newError(k Kind, code, format string, args []any) *Error {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	return &Error{Kind: k, Code: code, Message: msg}
}

// Invalid returns an error for a request that is malformed.
func Invalid(code, format string, args ...any) *Error {
	return newError(KindInvalid, code, format, args)
}

// Unprocessable returns an error for a well-formed request that breaks a rule.
func Unprocessable(code, format string, args ...any) *Error {
	return newError(KindUnprocessable, code, format, args)
}

// NotFound returns an error for something that does not exist for the caller.
func NotFound(code, format string, args ...any) *Error {
	return newError(KindNotFound, code, format, args)
}

// Conflict returns an error for a request that contradicts the current state.
func Conflict(code, format string, args ...any) *Error {
	return newError(KindConflict, code, format, args)
}

// Forbidden returns an error for a caller who may not do what they asked.
func Forbidden(code, format string, args ...any) *Error {
	return newError(KindForbidden, code, format, args)
}

// Unauthenticated returns an error for a caller whose identity is not established.
func Unauthenticated(code, format string, args ...any) *Error {
	return newError(KindUnauthenticated, code, format, args)
}

// Unavailable returns an error for a dependency that cannot be reached now.
func Unavailable(code, format string, args ...any) *Error {
	return newError(KindUnavailable, code, format, args)
}

// Upstream returns an error for a system we depend on that answered with an
// error of its own (a Velociraptor server refusing a query); the message says
// what it answered.
func Upstream(code, format string, args ...any) *Error {
	return newError(KindUpstream, code, format, args)
}

// PreconditionFailed returns an error for a stale If-Match or expected version.
func PreconditionFailed(code, format string, args ...any) *Error {
	return newError(KindPrecondition, code, format, args)
}

// TooMany returns an error for a caller who is being throttled.
func TooMany(code, format string, args ...any) *Error {
	return newError(KindTooMany, code, format, args)
}

// ErrNotFound is the generic answer for a resource that does not exist or
// belongs to another tenant; the two are deliberately indistinguishable.
var ErrNotFound = NotFound("not_found", "resource not found")

// KindOf returns the Kind of the first *Error in err's chain, or KindInternal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

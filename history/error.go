package history

import (
	"errors"
	"fmt"
)

// Error codes. They are stable: the REST API and MQTT error events carry them
// (translated to the wire names in docs/protocol.md).
const (
	EINVALID     = "invalid"
	ENOTFOUND    = "not_found"
	ECONFLICT    = "conflict"
	ENOTMEMBER   = "not_member"
	EFORBIDDEN   = "forbidden"
	EUNAVAILABLE = "unavailable"
	EINTERNAL    = "internal"
	// ENOMESSAGE: the message an op targets does not exist, cannot be seen
	// or was deleted.
	ENOMESSAGE = "no_such_message"
	// ENOTALLOWED: the op is not allowed on its target (not the author,
	// not an admin, edit window passed, the target is an event).
	ENOTALLOWED = "not_allowed"
)

// Error is a domain error with a stable code and a message safe to show users.
type Error struct {
	Code    string
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Coded is an error with a stable code and a message safe to show, such as
// *Error or the engines' wire errors.
type Coded interface {
	error
	ErrCode() string
	ErrMessage() string
}

// ErrCode implements Coded.
func (e *Error) ErrCode() string { return e.Code }

// ErrMessage implements Coded.
func (e *Error) ErrMessage() string { return e.Message }

// ErrorCode returns the code of err: the code of the first Coded error
// (such as an *Error) in its chain, EUNAVAILABLE for any other non-nil error,
// and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e Coded
	if errors.As(err, &e) {
		return e.ErrCode()
	}
	return EUNAVAILABLE
}

// ErrorMessage returns the user-facing message of err; errors that are not
// Coded get a generic message, since their detail is for logs only.
func ErrorMessage(err error) string {
	var e Coded
	if errors.As(err, &e) {
		return e.ErrMessage()
	}
	return "the message store is unavailable, try again"
}

// Translate is the part of a store's error translation that every store
// shares: nil stays nil, an *Error in err's chain is returned as it is, and
// noRows (the driver's sentinel for a missing row) in the chain becomes
// ENOTFOUND. ok is false for any other error, which the store translates
// itself.
func Translate(err, noRows error) (out error, ok bool) {
	var e *Error
	switch {
	case err == nil:
		return nil, true
	case errors.As(err, &e):
		return e, true
	case errors.Is(err, noRows):
		return Errorf(ENOTFOUND, "not found"), true
	}
	return err, false
}

package wire

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/parley-im/parley/history"
)

// Wire error codes, carried by error events on MQTT and by the REST API.
const (
	CodeInvalidPayload = "invalid_payload"
	CodeTooLarge       = "too_large"
	CodeNotMember      = "not_member"
	CodeNoSuchGroup    = "no_such_group"
	CodeInvalidPeer    = "invalid_peer"
	CodeRateLimited    = "rate_limited"
	CodeUnavailable    = "unavailable"
	// CodeNoSuchMessage: the message an edit, delete or reaction targets
	// does not exist, cannot be seen or was deleted.
	CodeNoSuchMessage = history.ENOMESSAGE
	// CodeNotAllowed: the op is not allowed on its target (not the author,
	// not an admin, edit window passed, the target is an event).
	CodeNotAllowed = history.ENOTALLOWED
	// CodeRejected: the moderation hook refused the send or edit.
	CodeRejected = "rejected"
	// CodeBlocked: a direct send between two users one of whom blocks the
	// other.
	CodeBlocked = "blocked"
	// CodeQuotaExceeded: an upload that would take its user's stored
	// uploads over the per-user quota (files.Service.Quota).
	CodeQuotaExceeded = "quota_exceeded"
)

// Error is the one error of Parley's engines as clients see it: a stable
// code (the codes above, or history's codes such as invalid, not_found and
// conflict), a message safe to show, and for a failed send its cid. The
// table below turns the code into an MQTT 5 reason code or an HTTP status.
type Error struct {
	Code    string
	Message string
	CID     string
	// RetryAfter, for rate_limited, is how long until the user may send
	// again: REST answers carry it in Retry-After, MQTT error events in
	// retry_after (whole seconds, rounded up).
	RetryAfter time.Duration
}

// RetryAfterSeconds returns RetryAfter in whole seconds, rounded up, at
// least 1 when RetryAfter is set; 0 when it is not.
func (e *Error) RetryAfterSeconds() int {
	if e.RetryAfter <= 0 {
		return 0
	}
	return int((e.RetryAfter + time.Second - 1) / time.Second)
}

// RateLimited returns the rate_limited *Error for a request refused for
// wait: its message says when to try again.
func RateLimited(what string, wait time.Duration) *Error {
	e := &Error{Code: CodeRateLimited, RetryAfter: wait}
	e.Message = fmt.Sprintf("too many %s, slow down: try again in %d s", what, max(e.RetryAfterSeconds(), 1))
	return e
}

// FromStore returns the *Error for an error of the store: its history code
// and message, or unavailable (with a generic message) for anything that is
// not a *history.Error or is an internal one. ok is false in that last case,
// which callers log.
func FromStore(err error) (e *Error, ok bool) {
	if err == nil {
		return nil, true
	}
	var we *Error
	if errors.As(err, &we) {
		return we, true
	}
	code := history.ErrorCode(err)
	if _, known := codes[code]; !known || code == history.EUNAVAILABLE || code == history.EINTERNAL {
		return &Error{Code: CodeUnavailable, Message: "the message store is unavailable, try again"}, false
	}
	return &Error{Code: code, Message: history.ErrorMessage(err)}, true
}

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// ErrCode implements history.Coded.
func (e *Error) ErrCode() string { return e.Code }

// ErrMessage implements history.Coded.
func (e *Error) ErrMessage() string { return e.Message }

// Permanent reports whether resending the same payload can never succeed.
func (e *Error) Permanent() bool { return e.Code != CodeUnavailable }

// Errorf returns a *Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Reason is an MQTT 5 reason code with its reason string.
type Reason struct {
	Code   byte
	String string
}

// codeInfo is what one error code looks like on each transport.
type codeInfo struct {
	reason Reason // PUBACK/PUBREC reason code for MQTT 5 senders
	status int    // HTTP status of the REST API
}

// codes is the one table from error codes (the wire codes above and
// history's codes, which the REST API carries as they are) to MQTT 5 reason
// codes and HTTP statuses.
var codes = map[string]codeInfo{
	CodeInvalidPayload: {Reason{0x99, "payload format invalid"}, http.StatusBadRequest},
	CodeTooLarge:       {Reason{0x99, "payload format invalid"}, http.StatusRequestEntityTooLarge},
	CodeNotMember:      {Reason{0x87, "not authorized"}, http.StatusForbidden},
	CodeNoSuchGroup:    {Reason{0x87, "not authorized"}, http.StatusNotFound},
	CodeInvalidPeer:    {Reason{0x90, "topic name invalid"}, http.StatusBadRequest},
	CodeRateLimited:    {Reason{0x97, "quota exceeded"}, http.StatusTooManyRequests},
	CodeUnavailable:    {unspecified, http.StatusServiceUnavailable},
	CodeNoSuchMessage:  {Reason{0x83, "implementation specific error"}, http.StatusNotFound},
	CodeNotAllowed:     {Reason{0x87, "not authorized"}, http.StatusForbidden},
	CodeRejected:       {Reason{0x87, "not authorized"}, http.StatusUnprocessableEntity},
	CodeBlocked:        {Reason{0x87, "not authorized"}, http.StatusForbidden},
	CodeQuotaExceeded:  {Reason{0x97, "quota exceeded"}, http.StatusRequestEntityTooLarge},
	history.EINVALID:   {Reason{0x99, "payload format invalid"}, http.StatusBadRequest},
	history.ENOTFOUND:  {unspecified, http.StatusNotFound},
	history.ECONFLICT:  {unspecified, http.StatusConflict},
	history.EFORBIDDEN: {Reason{0x87, "not authorized"}, http.StatusForbidden},
}

var unspecified = Reason{0x80, "unspecified error"}

// ReasonCode returns the MQTT 5 PUBACK/PUBREC reason code for an error code:
// 0x99 payload format invalid (invalid_payload, too_large), 0x87 not
// authorized (not_member, no_such_group, not_allowed, rejected, blocked), 0x83
// implementation specific error (no_such_message), 0x90 topic name invalid
// (invalid_peer), 0x97 quota exceeded (rate_limited; quota_exceeded, which
// only uploads answer), and 0x80 unspecified error for unavailable and any
// unknown code.
func ReasonCode(code string) Reason {
	if c, ok := codes[code]; ok {
		return c.reason
	}
	return unspecified
}

// HTTPStatus returns the HTTP status of an error code, and false for a code
// the table does not know (the REST API answers those 503 unavailable).
func HTTPStatus(code string) (int, bool) {
	c, ok := codes[code]
	return c.status, ok
}

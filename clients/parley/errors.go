package parley

import (
	"errors"
	"fmt"
)

// Sentinel errors. A *ServerError matches the sentinel of its code with
// errors.Is, so callers write errors.Is(err, parley.ErrNotMember) whether the
// error came from an MQTT error event or from the REST API.
var (
	// ErrClosed is returned by calls on a Client after Close.
	ErrClosed = errors.New("parley: client closed")

	// ErrInvalidPayload: the send payload was refused (invalid JSON, a
	// reserved type, no body, a cid or type too long). Code invalid_payload.
	ErrInvalidPayload = errors.New("parley: invalid payload")
	// ErrTooLarge: the payload or request body is larger than the server
	// accepts. Code too_large.
	ErrTooLarge = errors.New("parley: too large")
	// ErrNotMember: the user is not a member of the group or conversation.
	// Code not_member.
	ErrNotMember = errors.New("parley: not a member")
	// ErrNoSuchGroup: the group does not exist. Code no_such_group.
	ErrNoSuchGroup = errors.New("parley: no such group")
	// ErrInvalidPeer: the direct message target is malformed or the sender
	// itself. Code invalid_peer.
	ErrInvalidPeer = errors.New("parley: invalid peer")
	// ErrRateLimited: the user sends too fast; send again later (with the
	// same cid, see WithCID). Code rate_limited.
	ErrRateLimited = errors.New("parley: rate limited")
	// ErrUnavailable: the server's store is unavailable. Send retries this
	// by itself; other calls return it. Code unavailable.
	ErrUnavailable = errors.New("parley: server unavailable")
	// ErrNoSuchMessage: the message an edit, delete or reaction names does
	// not exist, is not visible to the user, or (for an edit or a reaction)
	// was deleted; also GET of one message. Code no_such_message (HTTP
	// 404).
	ErrNoSuchMessage = errors.New("parley: no such message")
	// ErrNotAllowed: the user may not make that change: an edit by someone
	// other than the author or after the server's edit window, a delete by
	// someone who is neither the author nor a group admin or owner, or a
	// change of an event (membership, edit, reaction) instead of a message.
	// Code not_allowed (HTTP 403).
	ErrNotAllowed = errors.New("parley: not allowed")
	// ErrBlocked: a direct send between two users one of whom blocks the
	// other; nothing was stored. Code blocked (HTTP 403).
	ErrBlocked = errors.New("parley: blocked")
	// ErrQuotaExceeded: an upload would take the user's stored files over
	// the server's per-user quota; nothing was stored. Code quota_exceeded
	// (HTTP 413).
	ErrQuotaExceeded = errors.New("parley: upload quota exceeded")

	// ErrInvalid: a REST request was malformed (code invalid).
	ErrInvalid = errors.New("parley: invalid request")
	// ErrUnauthorized: the token is missing, invalid or expired (code
	// unauthorized).
	ErrUnauthorized = errors.New("parley: unauthorized")
	// ErrForbidden: the user's role does not allow the change, or a
	// subscription (presence) was refused (code forbidden).
	ErrForbidden = errors.New("parley: forbidden")
	// ErrNotFound: no such group, conversation, member or route (code
	// not_found).
	ErrNotFound = errors.New("parley: not found")
	// ErrConflict: the group id is taken or the member already has that role
	// (code conflict).
	ErrConflict = errors.New("parley: conflict")
)

// Error codes of the Parley protocol and REST API, as in ServerError.Code.
const (
	CodeInvalidPayload = "invalid_payload"
	CodeTooLarge       = "too_large"
	CodeNotMember      = "not_member"
	CodeNoSuchGroup    = "no_such_group"
	CodeInvalidPeer    = "invalid_peer"
	CodeRateLimited    = "rate_limited"
	CodeUnavailable    = "unavailable"
	CodeNoSuchMessage  = "no_such_message"
	CodeNotAllowed     = "not_allowed"
	CodeBlocked        = "blocked"
	CodeQuotaExceeded  = "quota_exceeded"
	CodeInvalid        = "invalid"
	CodeUnauthorized   = "unauthorized"
	CodeForbidden      = "forbidden"
	CodeNotFound       = "not_found"
	CodeConflict       = "conflict"
)

var sentinels = map[string]error{
	CodeInvalidPayload: ErrInvalidPayload,
	CodeTooLarge:       ErrTooLarge,
	CodeNotMember:      ErrNotMember,
	CodeNoSuchGroup:    ErrNoSuchGroup,
	CodeInvalidPeer:    ErrInvalidPeer,
	CodeRateLimited:    ErrRateLimited,
	CodeUnavailable:    ErrUnavailable,
	CodeNoSuchMessage:  ErrNoSuchMessage,
	CodeNotAllowed:     ErrNotAllowed,
	CodeBlocked:        ErrBlocked,
	CodeQuotaExceeded:  ErrQuotaExceeded,
	CodeInvalid:        ErrInvalid,
	CodeUnauthorized:   ErrUnauthorized,
	CodeForbidden:      ErrForbidden,
	CodeNotFound:       ErrNotFound,
	CodeConflict:       ErrConflict,
}

// ServerError is an error reported by the server: an MQTT error event
// ({"kind":"error",...}) or a REST error ({"error":{"code","message"}}).
// It matches the sentinel of its Code with errors.Is.
type ServerError struct {
	// Code is the stable error code, e.g. "not_member" (see the Code...
	// constants). Programs switch on it (or use errors.Is).
	Code string
	// Message is the server's human-readable explanation.
	Message string
	// CID is the cid of the failed send, for MQTT error events that carry
	// one.
	CID string
	// Topic is the topic of the failed publish, for MQTT error events.
	Topic string
	// Status is the HTTP status, for REST errors; 0 for MQTT error events.
	Status int
}

// Error implements error.
func (e *ServerError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("parley: %s (%d): %s", e.Code, e.Status, e.Message)
	}
	return fmt.Sprintf("parley: %s: %s", e.Code, e.Message)
}

// Is reports whether target is the sentinel error of e.Code.
func (e *ServerError) Is(target error) bool {
	s, ok := sentinels[e.Code]
	return ok && s == target
}

// permanent reports whether repeating the request cannot succeed.
func (e *ServerError) permanent() bool { return e.Code != CodeUnavailable }

// TooLargeError is returned by Send, without publishing anything, for a
// message whose payload is larger than Options.MaxPayload (by default the
// server's default limit). It matches ErrTooLarge with errors.Is.
type TooLargeError struct {
	// Size is the payload's size in bytes; Limit is Options.MaxPayload.
	Size, Limit int
}

// Error implements error: "parley: message of 70066 bytes is larger than
// the server's limit of 65536 bytes".
func (e *TooLargeError) Error() string {
	return fmt.Sprintf("parley: message of %d bytes is larger than the server's limit of %d bytes", e.Size, e.Limit)
}

// Is reports whether target is ErrTooLarge.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

// GapError is reported in an error event when the client could not fetch
// the messages of a gap from the REST history. The messages between After
// and Before (exclusive) were not surfaced; the conversation goes on from
// Before.
type GapError struct {
	Conv   string
	After  int64
	Before int64
	Err    error
}

// Error implements error.
func (e *GapError) Error() string {
	return fmt.Sprintf("parley: fill gap in %s after %d before %d: %v", e.Conv, e.After, e.Before, e.Err)
}

// Unwrap returns the cause.
func (e *GapError) Unwrap() error { return e.Err }

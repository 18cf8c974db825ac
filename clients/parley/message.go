package parley

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Message is a message of a conversation, as the server stores and delivers
// it. Ephemeral messages have no Seq and no ID.
type Message struct {
	// Conv is the conversation id: "dm:A:B" (A < B) or "g:GROUP".
	Conv string `json:"conv"`
	// Seq is the message's position in its conversation, from 1, without
	// gaps.
	Seq int64 `json:"seq,omitempty"`
	// ID is the server's message id, unique across conversations.
	ID string `json:"id,omitempty"`
	// CID is the sender's client message id; empty when the send had none.
	CID string `json:"cid,omitempty"`
	// From is the sender (for membership messages, the user who made the
	// change).
	From string `json:"from"`
	// TS is the time the server accepted the message.
	TS time.Time `json:"ts"`
	// Type is the message type: "text" unless the sender set another;
	// "group.created", "member.added", ... for membership messages.
	Type string `json:"type"`
	// Body is the body as sent, any JSON value.
	Body json.RawMessage `json:"body"`
}

// Text returns the body as a string: the string itself when the body is a
// JSON string, the JSON text otherwise.
func (m Message) Text() string {
	var s string
	if err := json.Unmarshal(m.Body, &s); err == nil {
		return s
	}
	return string(m.Body)
}

// Decode unmarshals the body into v.
func (m Message) Decode(v any) error { return json.Unmarshal(m.Body, v) }

// Target is where a message goes: a user (a direct conversation) or a group.
// The zero Target is invalid.
type Target struct {
	group bool
	id    string
}

// User returns the target of direct messages to user id.
func User(id string) Target { return Target{id: id} }

// Group returns the target of messages to group id.
func Group(id string) Target { return Target{group: true, id: id} }

// ParseTarget parses "g:GROUP" (a group), "dm:A:B" (the direct conversation
// of A and B, seen by me, who must be A or B) or a user id.
func ParseTarget(s, me string) (Target, error) {
	switch {
	case strings.HasPrefix(s, "g:"):
		if s == "g:" {
			return Target{}, errors.New("parley: empty group id")
		}
		return Group(s[2:]), nil
	case strings.HasPrefix(s, "dm:"):
		a, b, ok := strings.Cut(s[3:], ":")
		switch {
		case !ok || a == "" || b == "":
			return Target{}, fmt.Errorf("parley: invalid conversation id %q", s)
		case a == me:
			return User(b), nil
		case b == me:
			return User(a), nil
		}
		return Target{}, fmt.Errorf("parley: %s is not a conversation of %s", s, me)
	case s == "":
		return Target{}, errors.New("parley: empty target")
	}
	return User(s), nil
}

// IsGroup reports whether t is a group.
func (t Target) IsGroup() bool { return t.group }

// ID returns the user or group id.
func (t Target) ID() string { return t.id }

// String returns "g:GROUP" for a group and the user id for a user.
func (t Target) String() string {
	if t.group {
		return "g:" + t.id
	}
	return t.id
}

// Conv returns the conversation id of messages that user me sends to t.
func (t Target) Conv(me string) string {
	if t.group {
		return GroupConv(t.id)
	}
	return DirectConv(me, t.id)
}

// DirectConv returns the conversation id of users a and b: "dm:A:B" with
// A < B in byte order.
func DirectConv(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "dm:" + a + ":" + b
}

// GroupConv returns the conversation id of group id: "g:" + id.
func GroupConv(id string) string { return "g:" + id }

// EventKind says what an Event is.
type EventKind string

// Event kinds.
const (
	// EventMessage: a stored message (Event.Message), surfaced per
	// conversation in seq order, once.
	EventMessage EventKind = "message"
	// EventEphemeral: an ephemeral message such as a typing indicator
	// (Event.Message, without Seq and ID).
	EventEphemeral EventKind = "ephemeral"
	// EventRead: a read marker moved (Event.Receipt).
	EventRead EventKind = "read"
	// EventDelivered: a device of the peer received messages up to
	// Event.Receipt.Seq (direct conversations).
	EventDelivered EventKind = "delivered"
	// EventPresence: a user watched with Presence came or went
	// (Event.Presence).
	EventPresence EventKind = "presence"
	// EventGap: the server skipped messages of a conversation in its
	// catch-up (Event.Gap); the client fills them from the REST history
	// before the messages after the gap. Surfaced only with
	// Options.ReportGaps.
	EventGap EventKind = "gap"
	// EventError: an error not returned by a call (Event.Err): an error
	// event of the server that matches no pending Send (*ServerError), or
	// a gap that could not be filled (*GapError).
	EventError EventKind = "error"
)

// Event is something that happened, surfaced by a Client on its Events
// channel or to Options.Handler. Kind says which field is set.
type Event struct {
	Kind EventKind
	// Message is set for EventMessage and EventEphemeral.
	Message Message
	// Receipt is set for EventRead and EventDelivered.
	Receipt Receipt
	// Presence is set for EventPresence.
	Presence Presence
	// Gap is set for EventGap.
	Gap Gap
	// Err is set for EventError.
	Err error
}

// Conv returns the conversation of the event, "" for presence and errors.
func (e Event) Conv() string {
	switch e.Kind {
	case EventMessage, EventEphemeral:
		return e.Message.Conv
	case EventRead, EventDelivered:
		return e.Receipt.Conv
	case EventGap:
		return e.Gap.Conv
	case EventError:
		var g *GapError
		if errors.As(e.Err, &g) {
			return g.Conv
		}
	}
	return ""
}

// Receipt is a read marker or delivery receipt: User read (or received)
// Conv up to Seq.
type Receipt struct {
	Conv string `json:"conv"`
	User string `json:"user"`
	Seq  int64  `json:"seq"`
}

// Presence is whether User is connected, and when it was last seen
// connecting or going away.
type Presence struct {
	User     string    `json:"user"`
	Online   bool      `json:"online"`
	LastSeen time.Time `json:"last_seen"`
}

// Gap says that messages of Conv with After < seq < Before were not sent in
// a catch-up.
type Gap struct {
	Conv   string `json:"conv"`
	After  int64  `json:"after"`
	Before int64  `json:"before"`
}

// wireEvent is anything on the inbox topic: the fields of a message, and
// those of the other kinds.
type wireEvent struct {
	Kind string `json:"kind"`
	Message
	// error
	Code       string `json:"code"`
	ErrMessage string `json:"message"`
	Topic      string `json:"topic"`
	// read, delivered
	User string `json:"user"`
	// gap
	After  int64 `json:"after"`
	Before int64 `json:"before"`
}

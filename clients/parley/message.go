package parley

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
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
	// Body is the body as sent, any JSON value: for a message that was
	// edited, the latest body; JSON null once the message is deleted (the
	// server erases it) and for delete and reaction events.
	Body json.RawMessage `json:"body"`

	// ReplyTo is the seq of the message this one replies to (see ReplyTo
	// and Client.Reply); 0 when it replies to none.
	ReplyTo int64 `json:"reply_to,omitempty"`
	// Mentions are the users the message mentions (see Mention).
	Mentions []string `json:"mentions,omitempty"`
	// Target is, for a change event (IsChange: TypeEdited, TypeDeleted,
	// TypeReactionAdded, TypeReactionRemoved), the seq of the message it
	// changes.
	Target int64 `json:"target,omitempty"`
	// Emoji is the reaction of a reaction event.
	Emoji string `json:"emoji,omitempty"`

	// EditedAt is when the message was last edited; zero when it never
	// was. The REST API sets it, and so does a delivery of a message that
	// was edited before it reached the device (catch-up); live edits arrive
	// as TypeEdited events (fold them with Apply).
	EditedAt time.Time `json:"edited_at,omitzero"`
	// Deleted reports that the message was deleted for everyone; Body is
	// then null. Set like EditedAt.
	Deleted bool `json:"deleted,omitempty"`
	// Attachments are the files of the message (see Attach and
	// API.Download); none once it is deleted.
	Attachments []Attachment `json:"attachments,omitempty"`
	// Reactions are the message's reactions by emoji, as the REST API
	// returns them (History, Message, Sync); deliveries over MQTT do not
	// carry them: reactions arrive as TypeReactionAdded and
	// TypeReactionRemoved events (fold them with Apply).
	Reactions map[string]Reaction `json:"reactions,omitempty"`
}

// Reaction is how many users reacted to a message with one emoji, and
// whether the user is one of them.
type Reaction struct {
	Count int  `json:"count"`
	Me    bool `json:"me"`
}

// Message types that the server writes for changes to a message: a change
// event is a message of its own, with its own seq, whose Target is the seq
// of the message it changes.
const (
	// TypeEdited: the author edited message Target; Body is its new body.
	TypeEdited = "message.edited"
	// TypeDeleted: message Target was deleted for everyone.
	TypeDeleted = "message.deleted"
	// TypeReactionAdded: From reacted to message Target with Emoji.
	TypeReactionAdded = "reaction.added"
	// TypeReactionRemoved: From took back reaction Emoji from message
	// Target.
	TypeReactionRemoved = "reaction.removed"
)

// IsChange reports whether m is a change event (an edit, delete or
// reaction event) rather than a message people wrote.
func (m Message) IsChange() bool {
	switch m.Type {
	case TypeEdited, TypeDeleted, TypeReactionAdded, TypeReactionRemoved:
		return true
	}
	return false
}

// IsEvent reports whether m was written by the server rather than sent as a
// message: a change event, or a membership or system message ("group.",
// "member.", "system." types). Events cannot be replied to, edited,
// deleted or reacted to, and do not count as unread.
func (m Message) IsEvent() bool {
	if m.IsChange() {
		return true
	}
	for _, p := range []string{"group.", "member.", "message.", "reaction.", "system."} {
		if strings.HasPrefix(m.Type, p) {
			return true
		}
	}
	return false
}

// Apply folds m, a message of a conversation surfaced after msgs were read,
// into msgs, the conversation's messages in ascending seq order as an
// application keeps them, and returns the updated list. me is the user, for
// Reaction.Me.
//
// A change event updates the message it targets, if msgs holds it, and is
// not added: TypeEdited sets Body and EditedAt, TypeDeleted sets Deleted
// and a null Body and drops its reactions (as the server does),
// TypeReactionAdded and TypeReactionRemoved count the emoji up or down. Any
// other message is inserted at its seq, replacing a message with the same
// seq.
//
// Apply copies the message it changes (and its Reactions), so a message
// shared with another list is not changed under it. Messages read over REST
// (History, Sync) already carry the effect of every change event up to
// their page: fold only events with a higher seq, as the Events of a Client
// surface them, or reaction counts are counted twice.
func Apply(msgs []Message, m Message, me string) []Message {
	if !m.IsChange() {
		i, found := slices.BinarySearchFunc(msgs, m.Seq, func(x Message, seq int64) int { return cmp.Compare(x.Seq, seq) })
		if found {
			msgs[i] = m
			return msgs
		}
		return slices.Insert(msgs, i, m)
	}
	i, found := slices.BinarySearchFunc(msgs, m.Target, func(x Message, seq int64) int { return cmp.Compare(x.Seq, seq) })
	if !found || msgs[i].Conv != m.Conv {
		return msgs
	}
	t := msgs[i]
	switch m.Type {
	case TypeEdited:
		if t.Deleted {
			return msgs
		}
		t.Body = m.Body
		t.EditedAt = m.TS
	case TypeDeleted:
		t.Body = json.RawMessage("null")
		t.Deleted = true
		t.Reactions = nil
	case TypeReactionAdded, TypeReactionRemoved:
		if m.Emoji == "" {
			return msgs
		}
		rs := maps.Clone(t.Reactions)
		if rs == nil {
			rs = map[string]Reaction{}
		}
		r := rs[m.Emoji]
		if m.Type == TypeReactionAdded {
			if m.From == me && r.Me {
				return msgs // already counted
			}
			r.Count++
			if m.From == me {
				r.Me = true
			}
		} else {
			if m.From == me && !r.Me && r.Count > 0 {
				return msgs // not counted
			}
			r.Count--
			if m.From == me {
				r.Me = false
			}
		}
		if r.Count <= 0 {
			delete(rs, m.Emoji)
		} else {
			rs[m.Emoji] = r
		}
		t.Reactions = rs
	}
	msgs[i] = t
	return msgs
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
	// EventSettings: the user changed their settings of a conversation,
	// on this device or another one (Event.Settings).
	EventSettings EventKind = "settings"
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
	// Settings is set for EventSettings.
	Settings Settings
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
	case EventSettings:
		return e.Settings.Conv
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
	// HasCounts is set on the read events of the user's own read markers
	// (this device's or another's): Unread and Mentions are then the user's
	// counts of Conv after the move, as Conversations would return them.
	// Other members' read events and delivery receipts carry no counts.
	HasCounts bool  `json:"-"`
	Unread    int64 `json:"unread,omitempty"`
	Mentions  int64 `json:"mentions,omitempty"`
}

// Settings are a user's own settings of a conversation.
type Settings struct {
	// Conv is the conversation.
	Conv string `json:"conv,omitempty"`
	// MutedUntil is the time until which the conversation is muted (push
	// notifications honour it); zero when it is not muted.
	MutedUntil time.Time `json:"muted_until,omitzero"`
	// Archived and Pinned are the user's marks, for the application to
	// show.
	Archived bool `json:"archived"`
	Pinned   bool `json:"pinned"`
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

// wireEvent is anything on the inbox topic but messages (whose fields
// would clash: "mentions" is a list in a message, a count in a read event):
// the fields of the other kinds.
type wireEvent struct {
	Kind string `json:"kind"`
	Conv string `json:"conv"`
	CID  string `json:"cid"`
	// error
	Code       string `json:"code"`
	ErrMessage string `json:"message"`
	Topic      string `json:"topic"`
	// read, delivered
	User     string `json:"user"`
	Seq      int64  `json:"seq"`
	Unread   *int64 `json:"unread"`
	Mentions *int64 `json:"mentions"`
	// gap
	After  int64 `json:"after"`
	Before int64 `json:"before"`
	// settings
	MutedUntil *time.Time `json:"muted_until"`
	Archived   bool       `json:"archived"`
	Pinned     bool       `json:"pinned"`
}

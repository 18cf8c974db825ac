// Package history owns Parley's domain: messages, conversations, groups and
// members, the rules that identify them (user ids, device ids, conversation
// ids), the Store interface that the storage adapters implement, and the Error
// type with its stable codes. It imports only the standard library.
package history

import (
	"context"
	"encoding/json"
	"time"
)

// Conversation kinds.
const (
	KindDirect = "direct"
	KindGroup  = "group"
)

// Member roles in a group.
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"
)

// Message types the server itself writes into group conversations.
const (
	TypeText          = "text"
	TypeGroupCreated  = "group.created"
	TypeMemberAdded   = "member.added"
	TypeMemberRemoved = "member.removed"
	TypeMemberLeft    = "member.left"
	TypeMemberRole    = "member.role"
)

// Message is one stored message of a conversation. Seq numbers start at 1 in
// every conversation and increase by exactly one in commit order.
type Message struct {
	Conv string    `json:"conv"`
	Seq  int64     `json:"seq"`
	ID   string    `json:"id"`
	CID  string    `json:"cid,omitempty"`
	From string    `json:"from"`
	TS   time.Time `json:"ts"`
	Type string    `json:"type"`
	// Body is the message's current body: the latest edit's, or JSON null
	// once the message was deleted.
	Body json.RawMessage `json:"body"`
	// ReplyTo is the seq of the message this one replies to.
	ReplyTo int64 `json:"reply_to,omitempty"`
	// Mentions are the users the message mentions.
	Mentions []string `json:"mentions,omitempty"`
	// Target and Emoji belong to change events (message.edited,
	// message.deleted, reaction.*): the seq of the changed message and the
	// reaction's emoji.
	Target int64  `json:"target,omitempty"`
	Emoji  string `json:"emoji,omitempty"`
	// EditedAt is the time of the latest edit; Deleted is set once the
	// message was deleted for everyone.
	EditedAt time.Time `json:"edited_at,omitzero"`
	Deleted  bool      `json:"deleted,omitempty"`
	// Attachments are the files the message refers to (none once deleted).
	Attachments []Attachment `json:"attachments,omitempty"`
	// Reactions, filled by History only, counts each emoji's reactions as
	// seen by the user who asked.
	Reactions map[string]ReactionCount `json:"reactions,omitempty"`
}

// Group is a named group conversation. Its conversation id is "g:" + ID.
type Group struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	// Version counts the group's membership changes; caches compare it.
	Version int64 `json:"-"`
}

// Conv returns the group's conversation id.
func (g Group) Conv() string { return GroupConvID(g.ID) }

// Member is a user's membership of a group.
type Member struct {
	User string `json:"user"`
	Role string `json:"role"`
}

// NewMessage is what a sender asks the store to append. The store assigns Seq,
// and keeps ID and TS as given.
type NewMessage struct {
	Conv string
	ID   string
	CID  string // empty: no deduplication
	From string
	TS   time.Time
	Type string
	Body json.RawMessage

	// Op is what the message does (see OpSend and the others); "" is a
	// send. For an op other than send, Type must be OpType(Op) and Target
	// names the message it changes.
	Op      string
	ReplyTo int64
	// Mentions must be members of the conversation.
	Mentions []string
	Target   int64
	Emoji    string
	// Attachments (sends only) are recorded with the message: each must be
	// an upload of From (see UploadStore).
	Attachments []Attachment
	// EditSince, for OpEdit, is the earliest time the target may have been
	// sent and still be edited; zero: no limit.
	EditSince time.Time
}

// AppendResult is the outcome of one message of AppendBatch.
type AppendResult struct {
	Message Message
	Created bool
	// Unchanged is set for an accepted op that changed nothing and stored
	// no event (a repeated reaction, a second delete): Message is empty.
	Unchanged bool
	Err       error
	// MemberVersion is the group's membership version when the message was
	// stored (0 for direct conversations).
	MemberVersion int64
}

// MemberChange asks the store to add, update or remove one member of a group
// on behalf of Actor. Role is ignored when Remove is set.
type MemberChange struct {
	Group  string
	Actor  string
	User   string
	Role   string
	Remove bool
	// Message is the membership message to append in the same transaction; the
	// store fills in Conv, Type, From and Body.
	MessageID string
	TS        time.Time
}

// Store is the durable truth of Parley: every message, group and membership.
// Each method is one transaction. Implementations are safe for concurrent use
// and return *Error values with the codes below for expected failures; any
// other error means the store could not be reached or failed (Unavailable).
type Store interface {
	// Ping reports whether the store is reachable and fully migrated.
	Ping(ctx context.Context) error

	// Append stores m with the next seq of its conversation, creating a direct
	// conversation on first use. When m.CID is set and (Conv, From, CID) was
	// stored before, Append stores nothing and returns the original message
	// with created false. Appending to a group conversation requires From to be
	// a current member (ENOTMEMBER) of an existing group (ENOTFOUND).
	Append(ctx context.Context, m NewMessage) (msg Message, created bool, err error)

	// AppendBatch appends ms in one transaction, in order, as Append would
	// one by one: a message's failure (ENOTMEMBER, ENOTFOUND, EINVALID) is
	// its result's Err and does not affect the others. An error return means
	// nothing was stored; EINVALID or ECONFLICT there means a value of one
	// message was refused (PostgreSQL text refuses U+0000), so retrying the
	// others without it can succeed.
	AppendBatch(ctx context.Context, ms []NewMessage) ([]AppendResult, error)

	// Messages returns up to limit messages of conv with seq > after, in
	// ascending seq order.
	Messages(ctx context.Context, conv string, after int64, limit int) ([]Message, error)

	// CreateGroup creates g with its members (the creator, g.CreatedBy, as
	// owner) and appends msg, a group.created message, as seq 1. ECONFLICT when
	// the id is taken.
	CreateGroup(ctx context.Context, g Group, members []Member, msg NewMessage) (Message, error)

	// Group returns a group and its current members. ENOTFOUND when absent.
	Group(ctx context.Context, id string) (Group, []Member, error)

	// ChangeMember applies c after checking it with CheckMemberChange inside
	// the transaction, and appends the membership message. It returns the
	// stored message and the members after the change.
	ChangeMember(ctx context.Context, c MemberChange) (Message, []Member, error)

	// Device records that device (a client id) of user connected and returns
	// its cursors and the user's conversations. New is true on the device's
	// first call.
	Device(ctx context.Context, device, user string) (DeviceState, error)

	// Devices does what Device does for each of devs, in one transaction,
	// and returns their states in the same order. A connect storm's
	// catch-ups share transactions this way.
	Devices(ctx context.Context, devs []DeviceRef) ([]DeviceState, error)

	// SaveCursors moves each device's cursor forward to the given seq; a
	// cursor never moves back, and a fenced cursor of a superseded session
	// epoch is ignored.
	SaveCursors(ctx context.Context, cs []Cursor) error

	// Claim starts a new session of device and marks the device seen: it
	// returns the device's new session epoch, greater than any before (since
	// the device was last pruned: see PruneDevices). Whoever holds an older
	// epoch has been taken over.
	Claim(ctx context.Context, device string) (int64, error)

	// Claims does what Claim does for each of devices, in order, in one
	// transaction, and returns their new epochs in the same order (a device
	// named twice gets two epochs, the later one greater).
	Claims(ctx context.Context, devices []string) ([]int64, error)

	// PruneDevices forgets the devices (client ids) last seen before before:
	// their session epoch, their cursors and the record that they ever
	// connected, so that a pruned device that comes back is a new device. A
	// device is seen when it claims a session (Claim) and when it is
	// recorded (Device); SaveCursors does not count. The devices in
	// connected are first marked seen now, in the same transaction, and are
	// never pruned: each node passes its connected devices, so that no node
	// prunes a device connected to another. It returns how many devices it
	// forgot.
	PruneDevices(ctx context.Context, before time.Time, connected []string) (int, error)

	// MarkRead moves user's read marker in conv forward to seq and returns the
	// marker after the call and whether it moved. ENOTMEMBER when user is not
	// (or no longer) a member, EINVALID when seq is beyond the last message
	// the user can see.
	MarkRead(ctx context.Context, user, conv string, seq int64) (int64, bool, error)

	// Receipts returns the receipts (Receipt) of the current members of conv
	// other than user, sorted by user, for user to see: each one's read
	// marker and, in direct conversations, its highest device cursor. In a
	// group of more than groupMax current members it returns Hidden and no
	// members (ReceiptsRule). ENOTMEMBER when user is not a current member.
	Receipts(ctx context.Context, user, conv string, groupMax int) (Receipts, error)

	// SharesConversation reports whether users a and b are both current
	// members of some conversation.
	SharesConversation(ctx context.Context, a, b string) (bool, error)

	// History returns up to q.Limit messages of q.Conv that q.User may see
	// (members see their conversations; former members up to their removal):
	// ascending after q.After, or descending before q.Before when it is set.
	// Each message carries its current state (body, EditedAt, Deleted) and
	// its Reactions as q.User sees them. It also returns the user's view of
	// the conversation. ENOTMEMBER when the user never was a member.
	History(ctx context.Context, q HistoryQuery) ([]Message, ConvHead, error)

	// Conversations returns a page of user's conversations, most recently
	// active first, after the opaque cursor (empty: the first page), and the
	// cursor of the next page ("" at the end).
	Conversations(ctx context.Context, user, cursor string, limit int) ([]ConversationView, string, error)

	// Changes returns up to limit (at least 1) of user's conversations that
	// changed (new messages, membership, the user's read marker or settings) since the
	// opaque token, or of all of them when since is empty, most recently
	// active first, and the token to pass next time. more is true when
	// further conversations of this pass remain: the token then continues
	// the pass (see ChangeToken). Once more is false, the token covers every
	// change made since the pass's first page. A change is reported at least
	// once; a conversation may be reported again. EINVALID for a malformed
	// token or a limit below 1.
	Changes(ctx context.Context, user, since string, limit int) (views []ConversationView, next string, more bool, err error)

	// Counts returns user's unread and mention counts in conv (see
	// ConversationView). ENOTMEMBER when the user never was a member.
	Counts(ctx context.Context, user, conv string) (unread, mentions int64, err error)

	// SetSettings stores user's settings of conv and returns them.
	// ENOTMEMBER when the user never was a member.
	SetSettings(ctx context.Context, user, conv string, s Settings) (Settings, error)

	// Close releases what the store opened itself (not a caller-owned pool).
	Close() error
}

// HistoryQuery selects messages of a conversation for a user.
type HistoryQuery struct {
	User   string
	Conv   string
	After  int64 // ascending, seq > After
	Before int64 // when > 0: descending, seq < Before
	Limit  int
}

// SetParties fills Peer (direct conversations: the other user, also the
// Name) or Group from the conversation id, as user sees it.
func (v *ConversationView) SetParties(user string) {
	_, a, b, _ := ParseConvID(v.ID)
	if v.Kind == KindDirect {
		v.Peer = a
		if a == user {
			v.Peer = b
		}
		v.Name = v.Peer
		return
	}
	v.Group = a
}

// ConversationView is a conversation as one user sees it.
type ConversationView struct {
	ID      string
	Kind    string
	Peer    string // direct conversations: the other user
	Group   string // group conversations: the group id
	Name    string // the group's name, or the peer
	LastSeq int64  // the last seq the user may see
	ReadSeq int64
	// Unread counts the messages of others after ReadSeq, not events and not
	// deleted ones; Mentions counts those of them that mention the user.
	Unread      int64
	Mentions    int64
	Settings    Settings
	LastMessage *Message
}

// ConvHead is one of a user's conversations, bounded to what the user may
// see: messages First..Last.
type ConvHead struct {
	Conv string
	// First is the first seq the user sees: 1 for direct conversations, the
	// seq of the group.created or member.added message for groups, or the
	// first message that retention kept when that is later.
	First int64
	// Last is the conversation's last seq, or, for a former member, the seq
	// of the message that recorded the removal.
	Last int64
	// ExpiredBefore, when not 0, is First because retention deleted the
	// messages before it that the user could otherwise see.
	ExpiredBefore int64
}

// DeviceState is what the store knows of a device when it connects.
type DeviceState struct {
	New     bool             // the device never connected before
	Cursors map[string]int64 // conversation -> highest acknowledged seq
	Convs   []ConvHead       // the user's conversations
}

// DeviceRef names a device (a client id) and its user.
type DeviceRef struct {
	Device string
	User   string
}

// DeviceOf is Store.Device in terms of devices, a store's Devices: the
// state of the one device, or Devices' error.
func DeviceOf(ctx context.Context, devices func(context.Context, []DeviceRef) ([]DeviceState, error), device, user string) (DeviceState, error) {
	sts, err := devices(ctx, []DeviceRef{{Device: device, User: user}})
	if err != nil {
		return DeviceState{}, err
	}
	return sts[0], nil
}

// Cursor is the highest seq of a conversation that a device acknowledged.
type Cursor struct {
	Device string
	Conv   string
	Seq    int64
	// Epoch, when not 0, fences the write: it is applied only while the
	// device's session epoch (see Claim) is still Epoch.
	Epoch int64
}

package history

import (
	"context"
	"encoding/json"
	"time"
)

// Privacy is the part of a Store that serves search, retention, blocks,
// contacts and account deletion. Both stores implement it; each method is
// one transaction.
type Privacy interface {
	// Search returns a page of the messages q.User may see that match
	// q.Query, newest first, and the cursor of the next page ("" at the
	// end). EINVALID for a query without words or a malformed cursor.
	Search(ctx context.Context, q SearchQuery) ([]Message, string, error)

	// SetRetention sets conv's retention (0: none) on behalf of user and
	// returns it. ENOTMEMBER when user is not a current member,
	// ENOTALLOWED when user is a group member that is not an admin.
	SetRetention(ctx context.Context, user, conv string, d time.Duration) (time.Duration, error)
	// Retention returns conv's own retention (0: none).
	Retention(ctx context.Context, conv string) (time.Duration, error)
	// Expire deletes messages older than their conversation's retention
	// (the shorter of global, when above 0, and the conversation's own) at
	// now: at most limit of them, only from the start of each conversation
	// (see ExpirePrefix), and records the conversations' first kept seq
	// (ConvHead.ExpiredBefore). It returns how many messages it deleted.
	Expire(ctx context.Context, now time.Time, global time.Duration, limit int) (int, error)

	// Block records that user blocks other; blocking twice succeeds. A
	// user blocks at most MaxBlocks users: a new block beyond them is
	// EINVALID (CheckBlock), decided inside the transaction that inserts,
	// so that concurrent blocks cannot exceed it.
	Block(ctx context.Context, user, other string, at time.Time) error
	// Unblock removes the block; removing a missing one succeeds.
	Unblock(ctx context.Context, user, other string) error
	// Blocks lists the users user blocks, in order of user id.
	Blocks(ctx context.Context, user string) ([]Block, error)
	// Relation returns what users a and b are to each other.
	Relation(ctx context.Context, a, b string) (Relation, error)

	// TokensValidAfter returns the time before which user's tokens were
	// issued are refused (zero: none).
	TokensValidAfter(ctx context.Context, user string) (time.Time, error)
	// DeleteUser deletes user's data at now (see DeleteUser's doc in
	// docs/api.md): each of its messages that others may still see is
	// deleted with a message.deleted event appended to its conversation
	// (returned, for delivery, with each conversation's members after the
	// deletion); bodies of the rest are erased; its memberships end; its
	// cursors, devices, read markers, reactions, push tokens and blocks
	// (both ways) are removed; TokensValidAfter becomes now. newID gives the
	// events their ids.
	DeleteUser(ctx context.Context, user string, now time.Time, newID func() string) (DeletedUser, error)
	// Export calls fn for each of user's conversations, then each message
	// user sent and each change user made to a message (the events of types
	// TypeMessageEdited, TypeMessageDeleted, TypeReactionAdded and
	// TypeReactionRemoved that user authored; not the membership and system
	// events), in conversation and seq order, as they are stored now: a
	// deleted message's body and its edits' bodies are JSON null. fn's
	// error stops the export and is returned.
	Export(ctx context.Context, user string, fn func(ExportItem) error) error
}

// MaxBlocks bounds the users one user may block, so that a user's blocks
// (read whole by GET /v1/blocks and checked on every direct send) stay
// small.
const MaxBlocks = 1000

// CheckBlock decides a block by a user who blocks count users: nil when
// already is set (blocking twice succeeds) or count is below MaxBlocks,
// EINVALID otherwise.
func CheckBlock(count int, already bool) error {
	if already || count < MaxBlocks {
		return nil
	}
	return Errorf(EINVALID, "you block %d users, the most allowed: unblock one first", MaxBlocks)
}

// Block is one user blocked by another.
type Block struct {
	User string    `json:"user"`
	At   time.Time `json:"created_at"`
}

// Relation is what two users a and b are to each other.
type Relation struct {
	// ABlocksB and BBlocksA record blocks in each direction.
	ABlocksB, BBlocksA bool
	// SharesGroup is set when both are current members of a group.
	SharesGroup bool
	// Talked is set when their direct conversation holds a message from
	// each of them (events excluded); Started when it holds one from
	// either.
	Talked, Started bool
}

// Blocked reports whether either user blocks the other.
func (r Relation) Blocked() bool { return r.ABlocksB || r.BBlocksA }

// Contacts reports whether the two users see each other's presence and
// typing: they share a group or both wrote in their direct conversation,
// and neither blocks the other.
func (r Relation) Contacts() bool { return !r.Blocked() && (r.SharesGroup || r.Talked) }

// DeletedUser is what DeleteUser did.
type DeletedUser struct {
	// Events are the message.deleted events appended, in conversation and
	// seq order.
	Events []Message
	// Members are the current members of each conversation of Events after
	// the deletion.
	Members map[string][]string
	// Erased counts the user's messages erased without an event (in
	// conversations it had left).
	Erased int
}

// ExportedChanges are the events of its own that a user's export holds
// besides its messages: its edits, deletes and reactions (membership and
// system events are not the user's words).
var ExportedChanges = []string{TypeMessageEdited, TypeMessageDeleted, TypeReactionAdded, TypeReactionRemoved}

// ExportItem is one line of an export: a conversation or a message.
type ExportItem struct {
	Conversation *ConversationView
	Message      *Message
}

// MayChangeRetention reports whether a member with role (RoleOwner,
// RoleAdmin, RoleMember; "" for a direct conversation's party) of a
// conversation of kind may set its retention: both parties of a direct
// conversation and a group's owner and admins. ENOTALLOWED otherwise.
func MayChangeRetention(kind, role, conv string) error {
	if kind == KindDirect || role == RoleOwner || role == RoleAdmin {
		return nil
	}
	return Errorf(ENOTALLOWED, "only a group admin may change the retention of %s", conv)
}

// RetentionRule decides SetRetention of conv to d given what the store read
// of the user's membership: member is false when the user is not a current
// member; kind is the conversation's and role the user's. It returns the
// conversation's retention column, whole seconds, or nil for none (d of 0
// or less); ENOTMEMBER when not a member, ENOTALLOWED when the user may not
// change it (see MayChangeRetention).
func RetentionRule(conv string, member bool, kind, role string, d time.Duration) (*int64, error) {
	if !member {
		return nil, NotMember(conv)
	}
	if err := MayChangeRetention(kind, role, conv); err != nil {
		return nil, err
	}
	if d <= 0 {
		return nil, nil
	}
	secs := int64(d / time.Second)
	return &secs, nil
}

// MaxRetention bounds a conversation's retention: about 100 years.
const MaxRetention = 100 * 365 * 24 * time.Hour

// EffectiveRetention returns the retention that applies to a conversation
// with its own setting conv under the server's global setting (0 or less:
// none): the shorter of the two that are set, 0 when neither is.
func EffectiveRetention(global, conv time.Duration) time.Duration {
	switch {
	case global <= 0:
		return max(conv, 0)
	case conv <= 0:
		return global
	}
	return min(global, conv)
}

// ExpirePrefix returns how many of ts, the creation times of a
// conversation's first messages in seq order, expire at cutoff: the
// messages before the first one created at or after cutoff. Expiry deletes
// only from the start, so that what remains of a conversation is contiguous
// (a message sent with an older clock waits for those before it).
func ExpirePrefix(ts []time.Time, cutoff time.Time) int {
	for i, t := range ts {
		if !t.Before(cutoff) {
			return i
		}
	}
	return len(ts)
}

// PlanUserDeletion returns the message.deleted events that delete msgs,
// user's live messages of one conversation whose last seq is last: one per
// message, From user, with seqs after last, ids from newID.
func PlanUserDeletion(user string, msgs []SeqKey, last int64, now time.Time, newID func() string) []Message {
	out := make([]Message, len(msgs))
	for i, k := range msgs {
		out[i] = Message{Conv: k.Conv, Seq: last + int64(i) + 1, ID: newID(), From: user, TS: now.UTC(),
			Type: TypeMessageDeleted, Body: json.RawMessage("null"), Target: k.Seq}
	}
	return out
}

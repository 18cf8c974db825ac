package history

import (
	"encoding/json"
	"strings"
	"time"
)

// Ops: what a NewMessage does. A send (OpSend, or "") stores a new message;
// the others store an event that changes an earlier message, its Target.
const (
	OpSend    = "send"
	OpEdit    = "edit"
	OpDelete  = "delete"
	OpReact   = "react"
	OpUnreact = "unreact"
)

// Event types stored for the ops other than send.
const (
	TypeMessageEdited   = "message.edited"
	TypeMessageDeleted  = "message.deleted"
	TypeReactionAdded   = "reaction.added"
	TypeReactionRemoved = "reaction.removed"
)

// Limits of the fields of a change.
const (
	// MaxEmojiLen bounds a reaction's emoji, in bytes.
	MaxEmojiLen = 32
	// MaxMentions bounds the users one message mentions.
	MaxMentions = 50
)

// OpType returns the stored type of an op other than send, and "" for a send
// or an unknown op.
func OpType(op string) string {
	switch op {
	case OpEdit:
		return TypeMessageEdited
	case OpDelete:
		return TypeMessageDeleted
	case OpReact:
		return TypeReactionAdded
	case OpUnreact:
		return TypeReactionRemoved
	}
	return ""
}

// eventPrefixes are the type prefixes of what the server writes: membership,
// changes to messages and system notices. Clients cannot send these types.
var eventPrefixes = []string{"group.", "member.", "message.", "reaction.", "system."}

// IsEvent reports whether typ is an event type that only the server writes
// (group.*, member.*, message.*, reaction.*, system.*). Events do not count
// as unread and cannot be edited, deleted, reacted or replied to.
func IsEvent(typ string) bool {
	for _, p := range eventPrefixes {
		if strings.HasPrefix(typ, p) {
			return true
		}
	}
	return false
}

// ReactionCount is how many users hold one emoji on a message, and whether
// the user who reads the message is one of them.
type ReactionCount struct {
	Count int  `json:"count"`
	Me    bool `json:"me"`
}

// PageReactions fills in the Reactions of a page of one conversation's
// messages (contiguous seqs, in either order) from the counts a store reads
// for the seqs Lo to Hi.
type PageReactions struct {
	// Lo and Hi are the lowest and highest seq of the page.
	Lo, Hi int64
	msgs   []Message
	index  map[int64]int
}

// NewPageReactions returns the PageReactions of msgs, a page that is not
// empty.
func NewPageReactions(msgs []Message) *PageReactions {
	p := &PageReactions{Lo: msgs[0].Seq, Hi: msgs[len(msgs)-1].Seq, msgs: msgs, index: make(map[int64]int, len(msgs))}
	if p.Lo > p.Hi {
		p.Lo, p.Hi = p.Hi, p.Lo
	}
	for i, m := range msgs {
		p.index[m.Seq] = i
	}
	return p
}

// Add sets the count rc of emoji on the message seq of the page; a seq not
// on the page is passed over.
func (p *PageReactions) Add(seq int64, emoji string, rc ReactionCount) {
	i, ok := p.index[seq]
	if !ok {
		return
	}
	if p.msgs[i].Reactions == nil {
		p.msgs[i].Reactions = map[string]ReactionCount{}
	}
	p.msgs[i].Reactions[emoji] = rc
}

// Settings are a user's own settings of a conversation.
type Settings struct {
	// MutedUntil, when not zero, mutes the conversation until then (push
	// notifications honour it).
	MutedUntil time.Time
	Archived   bool
	Pinned     bool
}

// SeqKey names the message Seq of conversation Conv.
type SeqKey struct {
	Conv string
	Seq  int64
}

// TargetState is what the rules of a change need of the message it targets.
type TargetState struct {
	From    string
	Type    string
	TS      time.Time
	Deleted bool
}

// ReactionKey is one user's reaction with one emoji to one message.
type ReactionKey struct {
	Conv  string
	Seq   int64
	User  string
	Emoji string
}

// MemberState is a current member of a conversation as the append rules see
// it.
type MemberState struct {
	Role string
	// Joined is the first seq the member may see.
	Joined int64
}

// Change is what an accepted op other than send does to its target, besides
// storing its event: the store applies the changes in order, after
// inserting the batch's messages.
type Change struct {
	Op     string
	Conv   string
	Target int64
	// Body (OpEdit) is the target's new body; TS is the edit's time.
	Body json.RawMessage
	TS   time.Time
	// User and Emoji (OpReact, OpUnreact) name the reaction.
	User  string
	Emoji string
}

// checkChange applies the rules of an op other than send to its target t
// (ok false: no such message), for actor ms in a conversation of kind. It
// returns whether the op changes anything (a repeated reaction, a removed
// one that is absent or a second delete change nothing and store no event),
// or an *Error: ENOMESSAGE when the target does not exist, cannot be seen by
// the actor or was deleted (for edits and reactions), ENOTALLOWED when the
// actor may not do this to it.
func checkChange(nm NewMessage, kind string, ms MemberState, t TargetState, ok, reacted bool) (bool, error) {
	if !ok || nm.Target < ms.Joined {
		return false, Errorf(ENOMESSAGE, "no message %d in %s", nm.Target, nm.Conv)
	}
	if IsEvent(t.Type) {
		return false, Errorf(ENOTALLOWED, "message %d is an event: events cannot be changed", nm.Target)
	}
	switch nm.Op {
	case OpDelete:
		if t.From != nm.From && !(kind == KindGroup && (ms.Role == RoleOwner || ms.Role == RoleAdmin)) {
			return false, Errorf(ENOTALLOWED, "only the author or a group admin may delete message %d", nm.Target)
		}
		return !t.Deleted, nil
	}
	if t.Deleted {
		return false, Errorf(ENOMESSAGE, "message %d was deleted", nm.Target)
	}
	switch nm.Op {
	case OpEdit:
		if t.From != nm.From {
			return false, Errorf(ENOTALLOWED, "only the author may edit message %d", nm.Target)
		}
		if !nm.EditSince.IsZero() && t.TS.Before(nm.EditSince) {
			return false, Errorf(ENOTALLOWED, "message %d is too old to edit", nm.Target)
		}
		return true, nil
	case OpReact:
		return !reacted, nil
	case OpUnreact:
		return reacted, nil
	}
	return false, Errorf(EINVALID, "unknown op %q", nm.Op)
}

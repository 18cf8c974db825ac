package history

import (
	"encoding/base64"
	"strings"
)

// MemberRow is a user's membership of a conversation joined with the
// conversation, as a store reads it, before the visibility rules apply.
type MemberRow struct {
	Conv string
	Kind string
	// Joined is the seq of the message that added the user (the
	// group.created or member.added message; 0 in direct conversations).
	Joined int64
	// Left is the seq of the message that recorded the user's removal or
	// departure, 0 while the user is a member.
	Left int64
	// Last is the conversation's last seq.
	Last int64
	// ExpiredBefore is the conversation's first seq that retention kept
	// (0: nothing expired).
	ExpiredBefore int64
}

// Head returns the part of the conversation that the user may see: members
// see a direct conversation from seq 1 and a group from the message that
// added them; former members see up to the message that recorded their
// removal.
func (r MemberRow) Head() ConvHead {
	h := ConvHead{Conv: r.Conv, First: r.Joined, Last: r.Last}
	if r.Kind == KindDirect {
		h.First = 1
	}
	if r.Left > 0 {
		h.Last = r.Left
	}
	if r.ExpiredBefore > h.First {
		h.First, h.ExpiredBefore = r.ExpiredBefore, r.ExpiredBefore
	}
	return h
}

// Heads returns the heads of rows (see MemberRow.Head), nil for none.
func Heads(rows []MemberRow) []ConvHead {
	var out []ConvHead
	for _, r := range rows {
		out = append(out, r.Head())
	}
	return out
}

// Range returns the seqs q selects within h, the part of the conversation
// the user may see: lo to hi inclusive, in descending order when desc is set
// (q.Before > 0: the messages before q.Before), else ascending after q.After.
// lo > hi selects nothing.
func (q HistoryQuery) Range(h ConvHead) (lo, hi int64, desc bool) {
	if q.Before > 0 {
		return h.First, min(h.Last, q.Before-1), true
	}
	return max(h.First, q.After+1), h.Last, false
}

// NotMember returns the ENOTMEMBER error of a user who is not (or no longer)
// a member of conv.
func NotMember(conv string) error {
	return Errorf(ENOTMEMBER, "you are not a member of %s", conv)
}

// MarkReadRule decides MarkRead of seq in conv given what the store read of
// the user's membership: member is false when the user has no membership or
// left; read is the user's read marker and last the conversation's last
// seq. It returns the marker after the call and whether the store must write
// it; ENOTMEMBER when not a member, EINVALID when seq is negative or beyond
// last.
func MarkReadRule(conv string, member bool, read, last, seq int64) (after int64, move bool, err error) {
	if !member {
		return 0, false, NotMember(conv)
	}
	if seq < 0 || seq > last {
		return 0, false, Errorf(EINVALID, "seq %d is beyond the last message (%d) of %s", seq, last, conv)
	}
	if seq <= read {
		return read, false, nil
	}
	return seq, true, nil
}

// Position is where a page of conversations ends: the sort key of its last
// conversation (its time of last activity, as the store writes it) and its
// id. Pages list conversations by descending (At, ID). The zero Position
// starts at the top.
type Position struct {
	At string
	ID string
}

// Top reports whether p is the zero Position: the first page.
func (p Position) Top() bool { return p.ID == "" }

// Cursor returns p as the opaque cursor of Conversations.
func (p Position) Cursor() string {
	return base64.RawURLEncoding.EncodeToString([]byte(p.At + "|" + p.ID))
}

// ParseCursor parses a cursor made by Position.Cursor; "" is the zero
// Position. EINVALID for anything else, including a position whose text a
// store could not query with (see ValidText).
func ParseCursor(s string) (Position, error) {
	if s == "" {
		return Position{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		if at, id, ok := strings.Cut(string(b), "|"); ok && id != "" && ValidText(at) && ValidText(id) {
			return Position{At: at, ID: id}, nil
		}
	}
	return Position{}, Errorf(EINVALID, "invalid cursor")
}

// Page cuts views, read with a limit of limit+1 and listed with the
// positions at of their conversations, to a page of at most limit, after
// setting each view's parties as user sees them (SetParties). more is true
// when views held more than limit: next is then the position of the page's
// last conversation.
func Page(user string, views []ConversationView, at []string, limit int) (page []ConversationView, next Position, more bool) {
	for i := range views {
		views[i].SetParties(user)
	}
	if len(views) <= limit {
		return views, Position{}, false
	}
	views = views[:limit]
	return views, Position{At: at[limit-1], ID: views[limit-1].ID}, true
}

// NextCursor returns the Conversations cursor that follows a page: that of
// next, or "" when no more remain.
func NextCursor(next Position, more bool) string {
	if !more {
		return ""
	}
	return next.Cursor()
}

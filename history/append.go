package history

import (
	"context"
	"sort"
	"time"
)

// ConvRef is a conversation that a batch of messages writes to, as
// PlanAppend parsed it from its id.
type ConvRef struct {
	ID   string
	Kind string
	// A and B are the two users of a direct conversation (A < B); A is the
	// group id of a group conversation.
	A, B string
}

// CIDKey identifies a message for deduplication: the client id (CID) that
// sender From gave it in conversation Conv.
type CIDKey struct{ Conv, From, CID string }

// MemberKey is the membership of User in conversation Conv.
type MemberKey struct{ Conv, User string }

// ConvState is what a store read of a conversation that it locked to append
// to it.
type ConvState struct {
	Last    int64 // the conversation's last seq
	Version int64 // its membership version (see Group.Version)
}

// AppendState is what a store read, under the locks of an append, for the
// keys of an AppendPlan.
type AppendState struct {
	// Convs holds the existing conversations among the plan's Convs; one
	// that is absent is a group that was never created.
	Convs map[string]ConvState
	// Members holds the keys of the plan's Members that are current members
	// (not removed, not left), with their role and first visible seq.
	Members map[MemberKey]MemberState
	// Earlier holds the messages stored before under a key of the plan's
	// CIDs.
	Earlier map[CIDKey]Message
	// Targets holds the messages among the plan's Targets that exist.
	Targets map[SeqKey]TargetState
	// Reactions holds the keys of the plan's Reactions that exist.
	Reactions map[ReactionKey]bool
}

// ConvLast is where a conversation ends after an append: the seq and the
// time of its last message, which the store writes into its conversation
// row.
type ConvLast struct {
	Conv string
	Seq  int64
	TS   time.Time
}

// AppendPlan holds the rules of AppendBatch that both stores apply, so that
// a store only reads and writes rows:
//
//  1. PlanAppend checks what needs no store: each message's conversation id
//     and, for a direct conversation, that the sender is one of its two
//     users. A message that fails has its Err set in Results already.
//  2. The store creates the direct conversations of Convs that do not exist
//     yet (with both users as members), locks the conversations of Convs in
//     the order given (sorted by id: one lock order on every node, so
//     concurrent batches do not deadlock), and reads their ConvState, the
//     current memberships among Members and the messages stored under CIDs.
//     It also reads the messages of Targets (replied to or changed) and the
//     reactions of Reactions.
//  3. Assign decides each remaining message: ENOTFOUND (no such group),
//     ENOTMEMBER (the sender is not a current member of the group), a
//     duplicate (the earlier message, created false), a refused reply,
//     mention or change (EINVALID, ENOMESSAGE, ENOTALLOWED), an op that
//     changes nothing (Unchanged), or a new message with the next seq of its
//     conversation. The store inserts the messages, applies Changes in order
//     and moves each conversation to its ConvLast.
type AppendPlan struct {
	// Results holds one result per message, in order: the errors of step 1
	// until Assign fills in the rest.
	Results []AppendResult
	// Convs lists the conversations to create (direct ones), lock and read,
	// sorted by id.
	Convs []ConvRef
	// Members lists the group memberships that decide whether a sender may
	// append. The users of a direct conversation are always its members.
	Members []MemberKey
	// CIDs lists the client ids whose earlier messages make a message a
	// duplicate.
	CIDs []CIDKey
	// Targets lists the messages that messages reply to or change.
	Targets []SeqKey
	// Reactions lists the reactions that react and unreact ops add or
	// remove.
	Reactions []ReactionKey
	// Changes, filled in by Assign, lists what the accepted ops do to
	// their targets, in order.
	Changes []Change

	msgs  []NewMessage
	convs map[string]ConvRef
}

// PlanAppend starts the plan of appending ms (see AppendPlan).
func PlanAppend(ms []NewMessage) *AppendPlan {
	p := &AppendPlan{Results: make([]AppendResult, len(ms)), msgs: ms, convs: map[string]ConvRef{}}
	members := map[MemberKey]bool{}
	cids := map[CIDKey]bool{}
	targets := map[SeqKey]bool{}
	reactions := map[ReactionKey]bool{}
	for i, nm := range ms {
		kind, a, b, ok := ParseConvID(nm.Conv)
		switch {
		case !ok:
			p.Results[i].Err = Errorf(EINVALID, "invalid conversation %q", nm.Conv)
			continue
		case kind == KindDirect && nm.From != a && nm.From != b:
			p.Results[i].Err = Errorf(ENOTMEMBER, "%q is not part of %s", nm.From, nm.Conv)
			continue
		}
		if err := checkShape(nm, kind, a, b); err != nil {
			p.Results[i].Err = err
			continue
		}
		if _, ok := p.convs[nm.Conv]; !ok {
			c := ConvRef{ID: nm.Conv, Kind: kind, A: a, B: b}
			p.convs[nm.Conv] = c
			p.Convs = append(p.Convs, c)
		}
		if kind == KindGroup {
			for _, u := range append([]string{nm.From}, nm.Mentions...) {
				if k := (MemberKey{nm.Conv, u}); !members[k] {
					members[k] = true
					p.Members = append(p.Members, k)
				}
			}
		}
		if k := (CIDKey{nm.Conv, nm.From, nm.CID}); nm.CID != "" && !cids[k] {
			cids[k] = true
			p.CIDs = append(p.CIDs, k)
		}
		for _, seq := range []int64{nm.ReplyTo, nm.Target} {
			if k := (SeqKey{nm.Conv, seq}); seq > 0 && !targets[k] {
				targets[k] = true
				p.Targets = append(p.Targets, k)
			}
		}
		if nm.Op == OpReact || nm.Op == OpUnreact {
			if k := (ReactionKey{nm.Conv, nm.Target, nm.From, nm.Emoji}); !reactions[k] {
				reactions[k] = true
				p.Reactions = append(p.Reactions, k)
			}
		}
	}
	sort.Slice(p.Convs, func(i, j int) bool { return p.Convs[i].ID < p.Convs[j].ID })
	return p
}

// checkShape checks what a message's fields must be without the store: an
// op's type and target, a reaction's emoji, mentions of a direct
// conversation (its two users).
func checkShape(nm NewMessage, kind, a, b string) error {
	switch nm.Op {
	case "", OpSend:
		if nm.Target != 0 || nm.Emoji != "" {
			return Errorf(EINVALID, "a send has no target or emoji")
		}
	case OpEdit, OpDelete, OpReact, OpUnreact:
		if nm.Type != OpType(nm.Op) {
			return Errorf(EINVALID, "op %s stores type %s, not %q", nm.Op, OpType(nm.Op), nm.Type)
		}
		if nm.Target < 1 {
			return Errorf(EINVALID, "op %s needs a target seq", nm.Op)
		}
		if nm.ReplyTo != 0 || len(nm.Mentions) > 0 {
			return Errorf(EINVALID, "only a send replies or mentions")
		}
		react := nm.Op == OpReact || nm.Op == OpUnreact
		if react != (nm.Emoji != "") || len(nm.Emoji) > MaxEmojiLen || !ValidText(nm.Emoji) {
			return Errorf(EINVALID, "a reaction needs an emoji of 1 to %d bytes; other ops have none", MaxEmojiLen)
		}
	default:
		return Errorf(EINVALID, "unknown op %q", nm.Op)
	}
	if nm.ReplyTo < 0 {
		return Errorf(EINVALID, "reply_to must be a seq")
	}
	if len(nm.Mentions) > MaxMentions {
		return Errorf(EINVALID, "a message mentions at most %d users", MaxMentions)
	}
	for _, u := range nm.Mentions {
		if kind == KindDirect && u != a && u != b {
			return Errorf(EINVALID, "%q is not part of this conversation and cannot be mentioned", u)
		}
	}
	return nil
}

// Assign decides the outcome of every message that PlanAppend let through,
// given what the store read (see AppendPlan), and fills in Results and
// Changes. It returns the messages to insert, in order, and the new end of
// each conversation they go to, sorted by conversation id. A message
// repeated within the batch (same CIDKey) is stored once: the repeats return
// it with created false. A message may reply to or change one stored earlier
// in the same batch. st's maps gain what the batch does.
func (p *AppendPlan) Assign(st AppendState) (insert []Message, last []ConvLast) {
	if st.Earlier == nil {
		st.Earlier = map[CIDKey]Message{}
	}
	if st.Targets == nil {
		st.Targets = map[SeqKey]TargetState{}
	}
	if st.Reactions == nil {
		st.Reactions = map[ReactionKey]bool{}
	}
	seqs := map[string]int64{}
	ends := map[string]int{} // conversation -> index in last
	for i, nm := range p.msgs {
		if p.Results[i].Err != nil {
			continue
		}
		c := p.convs[nm.Conv]
		cs, ok := st.Convs[nm.Conv]
		if !ok {
			p.Results[i].Err = NoSuchGroup(c.A)
			continue
		}
		ms := MemberState{Role: RoleMember} // both users of a direct conversation
		if c.Kind == KindGroup {
			if ms, ok = st.Members[MemberKey{nm.Conv, nm.From}]; !ok {
				p.Results[i].Err = Errorf(ENOTMEMBER, "%q is not a member of group %q", nm.From, c.A)
				continue
			}
		}
		p.Results[i].MemberVersion = cs.Version
		key := CIDKey{nm.Conv, nm.From, nm.CID}
		if m, ok := st.Earlier[key]; ok && nm.CID != "" {
			p.Results[i].Message = m
			continue
		}
		if err := p.checkSend(nm, c, ms, st); err != nil {
			p.Results[i].Err = err
			continue
		}
		var change *Change
		if nm.Op != "" && nm.Op != OpSend {
			tk := SeqKey{nm.Conv, nm.Target}
			t, found := st.Targets[tk]
			rk := ReactionKey{nm.Conv, nm.Target, nm.From, nm.Emoji}
			changes, err := checkChange(nm, c.Kind, ms, t, found, st.Reactions[rk])
			if err != nil {
				p.Results[i].Err = err
				continue
			}
			if !changes {
				p.Results[i].Unchanged = true
				continue
			}
			change = &Change{Op: nm.Op, Conv: nm.Conv, Target: nm.Target, User: nm.From, Emoji: nm.Emoji}
			switch nm.Op {
			case OpEdit:
				change.Body = nm.Body
			case OpDelete:
				t.Deleted = true
				st.Targets[tk] = t
			case OpReact:
				st.Reactions[rk] = true
			case OpUnreact:
				delete(st.Reactions, rk)
			}
		}
		seq, ok := seqs[nm.Conv]
		if !ok {
			seq = cs.Last
		}
		seq++
		seqs[nm.Conv] = seq
		m := nm.Stored(seq)
		p.Results[i].Message, p.Results[i].Created = m, true
		if nm.CID != "" {
			st.Earlier[key] = m // a repeat later in this batch
		}
		st.Targets[SeqKey{m.Conv, m.Seq}] = TargetState{From: m.From, Type: m.Type, TS: m.TS}
		if change != nil {
			change.TS = m.TS
			p.Changes = append(p.Changes, *change)
		}
		insert = append(insert, m)
		if j, ok := ends[m.Conv]; ok {
			last[j] = ConvLast{Conv: m.Conv, Seq: m.Seq, TS: m.TS}
		} else {
			ends[m.Conv] = len(last)
			last = append(last, ConvLast{Conv: m.Conv, Seq: m.Seq, TS: m.TS})
		}
	}
	sort.Slice(last, func(i, j int) bool { return last[i].Conv < last[j].Conv })
	return insert, last
}

// checkSend checks a send's reply and mentions: the message replied to must
// be one the sender can see and not an event, the users mentioned current
// members of the group (EINVALID).
func (p *AppendPlan) checkSend(nm NewMessage, c ConvRef, ms MemberState, st AppendState) error {
	if nm.ReplyTo > 0 {
		t, ok := st.Targets[SeqKey{nm.Conv, nm.ReplyTo}]
		if !ok || nm.ReplyTo < ms.Joined || IsEvent(t.Type) {
			return Errorf(EINVALID, "reply_to %d is not a message of %s that you can see", nm.ReplyTo, nm.Conv)
		}
	}
	if c.Kind == KindGroup {
		for _, u := range nm.Mentions {
			if _, ok := st.Members[MemberKey{nm.Conv, u}]; !ok {
				return Errorf(EINVALID, "%q is not a member of group %q and cannot be mentioned", u, c.A)
			}
		}
	}
	return nil
}

// Stored returns nm as the store keeps it with seq: its time in UTC,
// truncated to the microseconds both stores hold.
func (nm NewMessage) Stored(seq int64) Message {
	return Message{Conv: nm.Conv, Seq: seq, ID: nm.ID, CID: nm.CID, From: nm.From,
		TS: nm.TS.UTC().Truncate(time.Microsecond), Type: nm.Type, Body: nm.Body,
		ReplyTo: nm.ReplyTo, Mentions: nm.Mentions, Target: nm.Target, Emoji: nm.Emoji, Attachments: nm.Attachments}
}

// BatchAppender is a store that appends in batches.
type BatchAppender interface {
	AppendBatch(ctx context.Context, ms []NewMessage) ([]AppendResult, error)
}

// AppendOne appends nm as a batch of one: the Append of a store whose
// AppendBatch does the work. It returns the batch's error, or else the
// message's result and error.
func AppendOne(ctx context.Context, s BatchAppender, nm NewMessage) (Message, bool, error) {
	rs, err := s.AppendBatch(ctx, []NewMessage{nm})
	if err != nil {
		return Message{}, false, err
	}
	return rs[0].Message, rs[0].Created, rs[0].Err
}

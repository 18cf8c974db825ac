package historytest

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
)

// opsCases are the cases of messages that live: replies, mentions, edits,
// deletes, reactions, unread and mention counts, conversation settings.
var opsCases = []storeCase{
	{"OpReply", testOpReply},
	{"OpMentions", testOpMentions},
	{"OpEdit", testOpEdit},
	{"OpDelete", testOpDelete},
	{"OpReact", testOpReact},
	{"OpRetry", testOpRetry},
	{"OpSameBatch", testOpSameBatch},
	{"Counts", testCounts},
	{"Settings", testSettings},
}

// Op returns the NewMessage of op (history.OpEdit and the others) by from
// on message target of conv; body is an edit's new body.
func Op(conv, from, op string, target int64, body string) history.NewMessage {
	nm := NewMsg(conv, from, "", body)
	nm.Op, nm.Type, nm.Target = op, history.OpType(op), target
	return nm
}

// React returns the NewMessage of a reaction (op history.OpReact or
// history.OpUnreact) by from with emoji on message target of conv.
func React(conv, from, op string, target int64, emoji string) history.NewMessage {
	nm := Op(conv, from, op, target, `null`)
	nm.Emoji = emoji
	return nm
}

// appendOne appends nm in a batch of one and returns its result.
func appendOne(t *testing.T, s history.Store, nm history.NewMessage) history.AppendResult {
	t.Helper()
	rs, err := s.AppendBatch(context.Background(), []history.NewMessage{nm})
	if err != nil || len(rs) != 1 {
		t.Fatalf("AppendBatch(%s %s on %d): %d results, %v", nm.Op, nm.Conv, nm.Target, len(rs), err)
	}
	return rs[0]
}

// refuse appends nm and expects its refusal with code.
func refuse(t *testing.T, s history.Store, nm history.NewMessage, code string) {
	t.Helper()
	_, created, err := s.Append(context.Background(), nm)
	if history.ErrorCode(err) != code || created {
		t.Fatalf("%s by %s on %d (reply_to %d, mentions %v): created %v, %v; want code %s",
			nm.Op, nm.From, nm.Target, nm.ReplyTo, nm.Mentions, created, err, code)
	}
}

// unchanged appends nm and expects it accepted with nothing stored.
func unchanged(t *testing.T, s history.Store, nm history.NewMessage) {
	t.Helper()
	last := lastSeq(t, s, nm.Conv)
	r := appendOne(t, s, nm)
	if r.Err != nil || !r.Unchanged || r.Created || r.Message.Seq != 0 {
		t.Fatalf("%s by %s on %d: %+v, %v; want Unchanged", nm.Op, nm.From, nm.Target, r, r.Err)
	}
	if got := lastSeq(t, s, nm.Conv); got != last {
		t.Fatalf("%s by %s on %d: an unchanged op stored seq %d", nm.Op, nm.From, nm.Target, got)
	}
}

func lastSeq(t *testing.T, s history.Store, conv string) int64 {
	t.Helper()
	msgs, err := s.Messages(context.Background(), conv, 0, 10000)
	if err != nil {
		t.Fatalf("Messages(%s): %v", conv, err)
	}
	if len(msgs) == 0 {
		return 0
	}
	return msgs[len(msgs)-1].Seq
}

// seen returns message seq of conv as user reads it with History.
func seen(t *testing.T, s history.Store, user, conv string, seq int64) history.Message {
	t.Helper()
	msgs, _, err := s.History(context.Background(), history.HistoryQuery{User: user, Conv: conv, After: seq - 1, Limit: 1})
	if err != nil || len(msgs) != 1 || msgs[0].Seq != seq {
		t.Fatalf("History(%s, %s, seq %d) = %+v, %v", user, conv, seq, msgs, err)
	}
	return msgs[0]
}

func testOpReply(t *testing.T, s history.Store) {
	ctx := context.Background()
	createGroup(t, s, "g", "alice", "bob")                                                                      // 1
	hello := mustAppend(t, s, NewMsg("g:g", "alice", "", `"hello"`))                                            // 2
	if _, _, err := s.ChangeMember(ctx, change("g", "alice", "carol", history.RoleMember, false)); err != nil { // 3
		t.Fatal(err)
	}
	nm := NewMsg("g:g", "bob", "", `"hi alice"`)
	nm.ReplyTo = hello.Seq
	m := mustAppend(t, s, nm) // 4
	if m.ReplyTo != hello.Seq || m.Seq != 4 {
		t.Fatalf("reply = %+v", m)
	}
	if got := seen(t, s, "alice", "g:g", 4); got.ReplyTo != hello.Seq {
		t.Fatalf("History: reply stored with reply_to %d, want %d", got.ReplyTo, hello.Seq)
	}
	msgs, err := s.Messages(ctx, "g:g", 3, 1)
	if err != nil || len(msgs) != 1 || msgs[0].ReplyTo != hello.Seq || msgs[0].Target != 0 || msgs[0].Emoji != "" || msgs[0].Deleted || !msgs[0].EditedAt.IsZero() {
		t.Fatalf("Messages: reply = %+v, %v", msgs, err)
	}
	for _, tc := range []struct {
		name, from string
		replyTo    int64
	}{
		{"UnknownSeq", "bob", 99},
		{"Event", "bob", 1},
		{"BeforeJoining", "carol", hello.Seq},
		{"MemberAdded", "bob", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nm := NewMsg("g:g", tc.from, "", `"re"`)
			nm.ReplyTo = tc.replyTo
			refuse(t, s, nm, history.EINVALID)
		})
	}
	// carol may reply to what she sees.
	nm = NewMsg("g:g", "carol", "", `"re re"`)
	nm.ReplyTo = 4
	if m := mustAppend(t, s, nm); m.ReplyTo != 4 {
		t.Fatalf("carol's reply = %+v", m)
	}
	// Direct conversations reply too.
	dm := history.DirectConvID("alice", "bob")
	first := mustAppend(t, s, NewMsg(dm, "alice", "", `1`))
	nm = NewMsg(dm, "bob", "", `2`)
	nm.ReplyTo = first.Seq
	if m := mustAppend(t, s, nm); m.ReplyTo != first.Seq {
		t.Fatalf("direct reply = %+v", m)
	}
}

func testOpMentions(t *testing.T, s history.Store) {
	ctx := context.Background()
	createGroup(t, s, "g", "alice", "bob", "carol")
	nm := NewMsg("g:g", "alice", "", `"hey @bob @carol"`)
	nm.Mentions = []string{"bob", "carol"}
	m := mustAppend(t, s, nm)
	if !reflect.DeepEqual(m.Mentions, []string{"bob", "carol"}) {
		t.Fatalf("mentions returned = %v", m.Mentions)
	}
	if got := seen(t, s, "bob", "g:g", m.Seq); !reflect.DeepEqual(got.Mentions, []string{"bob", "carol"}) {
		t.Fatalf("History: mentions = %v", got.Mentions)
	}
	if got := seen(t, s, "bob", "g:g", 1); got.Mentions != nil {
		t.Fatalf("History: group.created mentions %v", got.Mentions)
	}
	unread, mentions, err := s.Counts(ctx, "bob", "g:g")
	if err != nil || unread != 1 || mentions != 1 {
		t.Fatalf("bob's counts = %d, %d, %v; want 1, 1", unread, mentions, err)
	}
	nm = NewMsg("g:g", "alice", "", `"hey @dave"`)
	nm.Mentions = []string{"dave"}
	refuse(t, s, nm, history.EINVALID)
	// A former member is no longer mentionable.
	if _, _, err := s.ChangeMember(ctx, change("g", "alice", "carol", "", true)); err != nil {
		t.Fatal(err)
	}
	nm = NewMsg("g:g", "bob", "", `"hey @carol"`)
	nm.Mentions = []string{"carol"}
	refuse(t, s, nm, history.EINVALID)
	dm := history.DirectConvID("alice", "bob")
	nm = NewMsg(dm, "alice", "", `"hey @carol"`)
	nm.Mentions = []string{"carol"}
	refuse(t, s, nm, history.EINVALID)
	nm = NewMsg(dm, "alice", "", `"hey @bob"`)
	nm.Mentions = []string{"bob"}
	mustAppend(t, s, nm)
	if unread, mentions, err := s.Counts(ctx, "bob", dm); err != nil || unread != 1 || mentions != 1 {
		t.Fatalf("bob's direct counts = %d, %d, %v; want 1, 1", unread, mentions, err)
	}
}

func testOpEdit(t *testing.T, s history.Store) {
	dm := history.DirectConvID("alice", "bob")
	orig := mustAppend(t, s, NewMsg(dm, "alice", "", `"v1"`))
	ev := mustAppend(t, s, Op(dm, "alice", history.OpEdit, orig.Seq, `"v2"`))
	if ev.Type != history.TypeMessageEdited || ev.Target != orig.Seq || string(ev.Body) != `"v2"` || ev.Seq != 2 {
		t.Fatalf("edit event = %+v", ev)
	}
	got := seen(t, s, "bob", dm, orig.Seq)
	if string(got.Body) != `"v2"` || !got.EditedAt.Equal(ev.TS) || got.Deleted {
		t.Fatalf("edited message = %+v (body %s), want body \"v2\" edited at %v", got, got.Body, ev.TS)
	}
	if got := seen(t, s, "bob", dm, ev.Seq); got.Target != orig.Seq || got.Type != history.TypeMessageEdited {
		t.Fatalf("edit event read back = %+v", got)
	}
	refuse(t, s, Op(dm, "bob", history.OpEdit, orig.Seq, `"bob's"`), history.ENOTALLOWED)
	refuse(t, s, Op(dm, "alice", history.OpEdit, ev.Seq, `"event"`), history.ENOTALLOWED)
	refuse(t, s, Op(dm, "alice", history.OpEdit, 99, `"nothing"`), history.ENOMESSAGE)
	late := Op(dm, "alice", history.OpEdit, orig.Seq, `"too late"`)
	late.EditSince = time.Now().Add(time.Hour)
	refuse(t, s, late, history.ENOTALLOWED)
	early := Op(dm, "alice", history.OpEdit, orig.Seq, `"v3"`)
	early.EditSince = time.Now().Add(-time.Hour)
	mustAppend(t, s, early)
	if got := seen(t, s, "alice", dm, orig.Seq); string(got.Body) != `"v3"` {
		t.Fatalf("after a second edit: body %s", got.Body)
	}
	// Events of groups cannot be edited, even by their sender.
	createGroup(t, s, "g", "alice", "bob")
	refuse(t, s, Op("g:g", "alice", history.OpEdit, 1, `{"name":"y"}`), history.ENOTALLOWED)
}

// DeleteErases sends a message to a direct conversation, edits it twice
// and deletes it, and checks what History shows of it. It returns the
// conversation and the seqs whose stored body must now be JSON null: the
// message and its two edit events. Adapter tests check those rows with SQL.
func DeleteErases(t *testing.T, s history.Store) (conv string, seqs []int64) {
	t.Helper()
	conv = history.DirectConvID("alice", "bob")
	m := mustAppend(t, s, NewMsg(conv, "alice", "", `{"text":"secret"}`))
	e1 := mustAppend(t, s, Op(conv, "alice", history.OpEdit, m.Seq, `{"text":"secret 2"}`))
	e2 := mustAppend(t, s, Op(conv, "alice", history.OpEdit, m.Seq, `{"text":"secret 3"}`))
	keep := mustAppend(t, s, NewMsg(conv, "bob", "", `{"text":"kept"}`))
	del := mustAppend(t, s, Op(conv, "alice", history.OpDelete, m.Seq, `null`))
	if del.Type != history.TypeMessageDeleted || del.Target != m.Seq {
		t.Fatalf("delete event = %+v", del)
	}
	for _, seq := range []int64{m.Seq, e1.Seq, e2.Seq} {
		got := seen(t, s, "bob", conv, seq)
		if string(got.Body) != "null" {
			t.Fatalf("seq %d after the delete: body %s, want null", seq, got.Body)
		}
	}
	if got := seen(t, s, "bob", conv, m.Seq); !got.Deleted || got.EditedAt.IsZero() {
		t.Fatalf("deleted message = %+v, want Deleted (and its last edit's time)", got)
	}
	if got := seen(t, s, "alice", conv, keep.Seq); got.Deleted || string(got.Body) != `{"text":"kept"}` {
		t.Fatalf("another message after the delete = %+v (body %s)", got, got.Body)
	}
	return conv, []int64{m.Seq, e1.Seq, e2.Seq}
}

func testOpDelete(t *testing.T, s history.Store) {
	conv, seqs := DeleteErases(t, s)
	target := seqs[0]
	unchanged(t, s, Op(conv, "alice", history.OpDelete, target, `null`))
	refuse(t, s, Op(conv, "alice", history.OpEdit, target, `"back"`), history.ENOMESSAGE)
	refuse(t, s, React(conv, "bob", history.OpReact, target, "👍"), history.ENOMESSAGE)
	refuse(t, s, Op(conv, "alice", history.OpDelete, 99, `null`), history.ENOMESSAGE)
	// In a direct conversation, only the author deletes.
	bobs := mustAppend(t, s, NewMsg(conv, "bob", "", `"bob's"`))
	refuse(t, s, Op(conv, "alice", history.OpDelete, bobs.Seq, `null`), history.ENOTALLOWED)

	// In a group, the author and the admins delete; other members do not.
	ctx := context.Background()
	createGroup(t, s, "g", "alice", "bob", "carol", "dave")
	if _, _, err := s.ChangeMember(ctx, change("g", "alice", "dave", history.RoleAdmin, false)); err != nil {
		t.Fatal(err)
	}
	b := mustAppend(t, s, NewMsg("g:g", "bob", "", `"b"`))
	c := mustAppend(t, s, NewMsg("g:g", "carol", "", `"c"`))
	d := mustAppend(t, s, NewMsg("g:g", "carol", "", `"d"`))
	refuse(t, s, Op("g:g", "carol", history.OpDelete, b.Seq, `null`), history.ENOTALLOWED)
	refuse(t, s, Op("g:g", "bob", history.OpDelete, 1, `null`), history.ENOTALLOWED)
	for _, del := range []history.NewMessage{
		Op("g:g", "bob", history.OpDelete, b.Seq, `null`),   // the author
		Op("g:g", "alice", history.OpDelete, c.Seq, `null`), // the owner
		Op("g:g", "dave", history.OpDelete, d.Seq, `null`),  // an admin
	} {
		mustAppend(t, s, del)
		if got := seen(t, s, "carol", "g:g", del.Target); !got.Deleted || string(got.Body) != "null" {
			t.Fatalf("seq %d deleted by %s: %+v (body %s)", del.Target, del.From, got, got.Body)
		}
	}
	unchanged(t, s, Op("g:g", "alice", history.OpDelete, b.Seq, `null`))
}

func testOpReact(t *testing.T, s history.Store) {
	createGroup(t, s, "g", "alice", "bob", "carol")                    // 1
	m := mustAppend(t, s, NewMsg("g:g", "alice", "", `"react to me"`)) // 2
	other := mustAppend(t, s, NewMsg("g:g", "alice", "", `"quiet"`))   // 3
	ev := mustAppend(t, s, React("g:g", "bob", history.OpReact, m.Seq, "👍"))
	if ev.Type != history.TypeReactionAdded || ev.Target != m.Seq || ev.Emoji != "👍" {
		t.Fatalf("reaction event = %+v", ev)
	}
	if got := seen(t, s, "carol", "g:g", ev.Seq); got.Target != m.Seq || got.Emoji != "👍" {
		t.Fatalf("reaction event read back = %+v", got)
	}
	unchanged(t, s, React("g:g", "bob", history.OpReact, m.Seq, "👍"))
	mustAppend(t, s, React("g:g", "alice", history.OpReact, m.Seq, "👍"))
	mustAppend(t, s, React("g:g", "alice", history.OpReact, m.Seq, "🎉"))
	rm := mustAppend(t, s, React("g:g", "alice", history.OpUnreact, m.Seq, "🎉"))
	if rm.Type != history.TypeReactionRemoved || rm.Emoji != "🎉" {
		t.Fatalf("unreact event = %+v", rm)
	}
	unchanged(t, s, React("g:g", "alice", history.OpUnreact, m.Seq, "🎉"))
	unchanged(t, s, React("g:g", "carol", history.OpUnreact, m.Seq, "❤️"))
	refuse(t, s, React("g:g", "bob", history.OpReact, 1, "👍"), history.ENOTALLOWED)
	refuse(t, s, React("g:g", "bob", history.OpReact, 99, "👍"), history.ENOMESSAGE)

	for _, tc := range []struct {
		user string
		want map[string]history.ReactionCount
	}{
		{"bob", map[string]history.ReactionCount{"👍": {Count: 2, Me: true}}},
		{"alice", map[string]history.ReactionCount{"👍": {Count: 2, Me: true}}},
		{"carol", map[string]history.ReactionCount{"👍": {Count: 2, Me: false}}},
	} {
		msgs, _, err := s.History(context.Background(), history.HistoryQuery{User: tc.user, Conv: "g:g", Limit: 50})
		if err != nil || len(msgs) < 3 {
			t.Fatalf("History(%s) = %d messages, %v", tc.user, len(msgs), err)
		}
		for _, got := range msgs {
			want := map[string]history.ReactionCount(nil)
			if got.Seq == m.Seq {
				want = tc.want
			}
			if !reflect.DeepEqual(got.Reactions, want) {
				t.Fatalf("%s sees reactions %v on seq %d, want %v", tc.user, got.Reactions, got.Seq, want)
			}
		}
		// Backwards pages carry them too.
		msgs, _, err = s.History(context.Background(), history.HistoryQuery{User: tc.user, Conv: "g:g", Before: other.Seq + 1, Limit: 2})
		if err != nil || len(msgs) != 2 || msgs[1].Seq != m.Seq || !reflect.DeepEqual(msgs[1].Reactions, tc.want) || msgs[0].Reactions != nil {
			t.Fatalf("History(%s) backwards = %+v, %v", tc.user, msgs, err)
		}
	}
	// Reactions of a deleted message: no new ones.
	mustAppend(t, s, Op("g:g", "alice", history.OpDelete, m.Seq, `null`))
	refuse(t, s, React("g:g", "carol", history.OpReact, m.Seq, "👍"), history.ENOMESSAGE)
}

func testOpRetry(t *testing.T, s history.Store) {
	ctx := context.Background()
	dm := history.DirectConvID("alice", "bob")
	m := mustAppend(t, s, NewMsg(dm, "alice", "", `"v1"`))
	for _, nm := range []history.NewMessage{
		React(dm, "bob", history.OpReact, m.Seq, "👍"),
		Op(dm, "alice", history.OpEdit, m.Seq, `"v2"`),
		React(dm, "bob", history.OpUnreact, m.Seq, "👍"),
		Op(dm, "alice", history.OpDelete, m.Seq, `null`),
	} {
		nm.CID = "retry-" + nm.Op
		first := mustAppend(t, s, nm)
		last := lastSeq(t, s, dm)
		again := nm
		again.ID = history.NewID(time.Now())
		got, created, err := s.Append(ctx, again)
		if err != nil || created || got.Seq != first.Seq || got.ID != first.ID {
			t.Fatalf("retry of %s: %+v created %v, %v; want the original seq %d", nm.Op, got, created, err, first.Seq)
		}
		if now := lastSeq(t, s, dm); now != last {
			t.Fatalf("retry of %s stored seq %d", nm.Op, now)
		}
	}
}

func testOpSameBatch(t *testing.T, s history.Store) {
	ctx := context.Background()
	dm := history.DirectConvID("alice", "bob")
	mustAppend(t, s, NewMsg(dm, "bob", "", `"first"`)) // 1
	send := NewMsg(dm, "alice", "s", `"typo"`)         // 2
	reply := NewMsg(dm, "bob", "", `"re"`)             // 4
	reply.ReplyTo = 2
	rs, err := s.AppendBatch(ctx, []history.NewMessage{
		send,
		Op(dm, "alice", history.OpEdit, 2, `"fixed"`),
		reply,
		React(dm, "bob", history.OpReact, 2, "👍"),
		React(dm, "bob", history.OpReact, 2, "👍"), // the same batch already holds it
		Op(dm, "bob", history.OpEdit, 2, `"not mine"`),
		Op(dm, "alice", history.OpEdit, 9, `"not yet"`),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		seq       int64
		unchanged bool
		code      string
	}{{2, false, ""}, {3, false, ""}, {4, false, ""}, {5, false, ""}, {0, true, ""}, {0, false, history.ENOTALLOWED}, {0, false, history.ENOMESSAGE}}
	for i, w := range want {
		r := rs[i]
		if r.Message.Seq != w.seq || r.Unchanged != w.unchanged || history.ErrorCode(r.Err) != w.code || r.Created != (w.seq > 0) {
			t.Fatalf("result %d = %+v, %v; want seq %d unchanged %v code %q", i, r, r.Err, w.seq, w.unchanged, w.code)
		}
	}
	got := seen(t, s, "alice", dm, 2)
	if string(got.Body) != `"fixed"` || got.EditedAt.IsZero() || !reflect.DeepEqual(got.Reactions, map[string]history.ReactionCount{"👍": {Count: 1}}) {
		t.Fatalf("sent and edited in one batch: %+v (body %s)", got, got.Body)
	}
	if got := seen(t, s, "bob", dm, 4); got.ReplyTo != 2 {
		t.Fatalf("reply in the same batch = %+v", got)
	}
	// A send and its delete in one batch.
	rs, err = s.AppendBatch(ctx, []history.NewMessage{NewMsg(dm, "alice", "", `"oops"`), Op(dm, "alice", history.OpDelete, 6, `null`)})
	if err != nil || rs[0].Message.Seq != 6 || rs[1].Message.Seq != 7 || rs[1].Err != nil {
		t.Fatalf("send and delete: %+v, %v", rs, err)
	}
	if got := seen(t, s, "bob", dm, 6); !got.Deleted || string(got.Body) != "null" {
		t.Fatalf("sent and deleted in one batch: %+v (body %s)", got, got.Body)
	}
}

func counts(t *testing.T, s history.Store, user, conv string, unread, mentions int64) {
	t.Helper()
	u, m, err := s.Counts(context.Background(), user, conv)
	if err != nil || u != unread || m != mentions {
		t.Fatalf("Counts(%s, %s) = %d, %d, %v; want %d, %d", user, conv, u, m, err, unread, mentions)
	}
}

// view returns user's view of conv in Conversations.
func view(t *testing.T, s history.Store, user, conv string) history.ConversationView {
	t.Helper()
	views, _, err := s.Conversations(context.Background(), user, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		if v.ID == conv {
			return v
		}
	}
	t.Fatalf("%s has no conversation %s in %+v", user, conv, views)
	return history.ConversationView{}
}

func testCounts(t *testing.T, s history.Store) {
	ctx := context.Background()
	createGroup(t, s, "g", "alice", "bob") // 1, an event
	counts(t, s, "bob", "g:g", 0, 0)
	a := mustAppend(t, s, NewMsg("g:g", "alice", "", `"a"`))
	b := NewMsg("g:g", "alice", "", `"@bob"`)
	b.Mentions = []string{"bob"}
	mustAppend(t, s, b)
	c := mustAppend(t, s, NewMsg("g:g", "alice", "", `"c"`))
	mustAppend(t, s, NewMsg("g:g", "bob", "", `"mine"`))
	counts(t, s, "bob", "g:g", 3, 1)
	counts(t, s, "alice", "g:g", 1, 0)
	// Edits and reactions are events; a deleted message no longer counts.
	mustAppend(t, s, Op("g:g", "alice", history.OpEdit, a.Seq, `"a2"`))
	mustAppend(t, s, React("g:g", "alice", history.OpReact, a.Seq, "👍"))
	counts(t, s, "bob", "g:g", 3, 1)
	mustAppend(t, s, Op("g:g", "alice", history.OpDelete, c.Seq, `null`))
	counts(t, s, "bob", "g:g", 2, 1)
	// Membership messages are events; a new member counts from joining.
	if _, _, err := s.ChangeMember(ctx, change("g", "alice", "carol", history.RoleMember, false)); err != nil {
		t.Fatal(err)
	}
	counts(t, s, "bob", "g:g", 2, 1)
	counts(t, s, "carol", "g:g", 0, 0)
	d := NewMsg("g:g", "alice", "", `"@carol"`)
	d.Mentions = []string{"carol"}
	mustAppend(t, s, d)
	counts(t, s, "carol", "g:g", 1, 1)
	counts(t, s, "bob", "g:g", 3, 1)
	v := view(t, s, "bob", "g:g")
	if v.Unread != 3 || v.Mentions != 1 {
		t.Fatalf("bob's view = %+v, want 3 unread, 1 mention", v)
	}
	views, _, _, err := s.Changes(ctx, "bob", "", 100)
	if err != nil || len(views) != 1 || views[0].Unread != 3 || views[0].Mentions != 1 {
		t.Fatalf("bob's changes = %+v, %v", views, err)
	}
	if _, _, err := s.MarkRead(ctx, "bob", "g:g", v.LastSeq); err != nil {
		t.Fatal(err)
	}
	counts(t, s, "bob", "g:g", 0, 0)
	if v := view(t, s, "bob", "g:g"); v.Unread != 0 || v.Mentions != 0 {
		t.Fatalf("bob's view after reading = %+v", v)
	}
	b = NewMsg("g:g", "alice", "", `"@bob again"`)
	b.Mentions = []string{"bob"}
	mustAppend(t, s, b)
	counts(t, s, "bob", "g:g", 1, 1)
	// A former member counts up to the removal.
	if _, _, err := s.ChangeMember(ctx, change("g", "alice", "carol", "", true)); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, NewMsg("g:g", "alice", "", `"after carol"`))
	counts(t, s, "carol", "g:g", 2, 1)
	_, _, err = s.Counts(ctx, "zed", "g:g")
	wantCode(t, err, history.ENOTMEMBER)
	_, _, err = s.Counts(ctx, "alice", "dm:alice:zed")
	wantCode(t, err, history.ENOTMEMBER)
	// Direct conversations: the peer's messages.
	dm := history.DirectConvID("alice", "bob")
	for i := 0; i < 3; i++ {
		mustAppend(t, s, NewMsg(dm, "bob", "", fmt.Sprint(i)))
	}
	counts(t, s, "alice", dm, 3, 0)
	counts(t, s, "bob", dm, 0, 0)
	if v := view(t, s, "alice", dm); v.Unread != 3 || v.Mentions != 0 {
		t.Fatalf("alice's direct view = %+v", v)
	}
}

func testSettings(t *testing.T, s history.Store) {
	ctx := context.Background()
	dm := history.DirectConvID("alice", "bob")
	mustAppend(t, s, NewMsg(dm, "alice", "", `"hi"`))
	if v := view(t, s, "alice", dm); v.Settings != (history.Settings{}) {
		t.Fatalf("default settings = %+v", v.Settings)
	}
	_, token, _, err := s.Changes(ctx, "alice", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	_, bobToken, _, err := s.Changes(ctx, "bob", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	until := time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 3600))
	got, err := s.SetSettings(ctx, "alice", dm, history.Settings{MutedUntil: until, Archived: true})
	want := history.Settings{MutedUntil: until.UTC().Truncate(time.Microsecond), Archived: true}
	if err != nil || !sameSettings(got, want) {
		t.Fatalf("SetSettings = %+v, %v; want %+v", got, err, want)
	}
	if v := view(t, s, "alice", dm); !sameSettings(v.Settings, want) {
		t.Fatalf("alice's view settings = %+v, want %+v", v.Settings, want)
	}
	if v := view(t, s, "bob", dm); v.Settings != (history.Settings{}) {
		t.Fatalf("bob's view settings = %+v: alice's leaked", v.Settings)
	}
	changed, _, _, err := s.Changes(ctx, "alice", token, 100)
	if err != nil || len(changed) != 1 || changed[0].ID != dm || !sameSettings(changed[0].Settings, want) {
		t.Fatalf("alice's changes after SetSettings = %+v, %v", changed, err)
	}
	if changed, _, _, err := s.Changes(ctx, "bob", bobToken, 100); err != nil || len(changed) != 0 {
		t.Fatalf("alice's settings reported to bob: %+v, %v", changed, err)
	}
	got, err = s.SetSettings(ctx, "alice", dm, history.Settings{Pinned: true})
	if err != nil || got != (history.Settings{Pinned: true}) {
		t.Fatalf("SetSettings unmute = %+v, %v", got, err)
	}
	if v := view(t, s, "alice", dm); v.Settings != (history.Settings{Pinned: true}) {
		t.Fatalf("alice's view settings = %+v", v.Settings)
	}
	_, err = s.SetSettings(ctx, "carol", dm, history.Settings{Pinned: true})
	wantCode(t, err, history.ENOTMEMBER)
	_, err = s.SetSettings(ctx, "alice", "g:nope", history.Settings{Pinned: true})
	wantCode(t, err, history.ENOTMEMBER)
	// A former member keeps settings of the conversation.
	createGroup(t, s, "g", "alice", "bob")
	if _, _, err := s.ChangeMember(ctx, change("g", "alice", "bob", "", true)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.SetSettings(ctx, "bob", "g:g", history.Settings{Archived: true}); err != nil || !got.Archived {
		t.Fatalf("SetSettings of a former member = %+v, %v", got, err)
	}
}

func sameSettings(a, b history.Settings) bool {
	return a.MutedUntil.Equal(b.MutedUntil) && a.MutedUntil.Location() == b.MutedUntil.Location() && a.Archived == b.Archived && a.Pinned == b.Pinned
}

package parley_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/clients/parley"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

// wantErr fails unless err matches want and is a *ServerError with code,
// or, with code "", an error of the client that the server did not see.
func wantErr(t *testing.T, what string, err, want error, code string) {
	t.Helper()
	var se *parley.ServerError
	isServer := errors.As(err, &se)
	if !errors.Is(err, want) || isServer != (code != "") || isServer && se.Code != code {
		t.Fatalf("%s: %v, want %v (code %q)", what, err, want, code)
	}
}

// fold reads c's next n messages of conv and folds them into msgs.
func fold(t *testing.T, c *parley.Client, me, conv string, msgs []parley.Message, n int) []parley.Message {
	t.Helper()
	for _, m := range messages(t, c, conv, n) {
		msgs = parley.Apply(msgs, m, me)
	}
	return msgs
}

// TestReplyAndMentions: a reply and its mentions reach the peer; a reply
// to a missing message or a mention of a stranger is refused.
func TestReplyAndMentions(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		alice := e.dial("alice", "a")
		bob := e.dial("bob", "b")
		ctx := ctxT(t)
		m, err := alice.Send(ctx, parley.User("bob"), "lunch?")
		if err != nil {
			t.Fatal(err)
		}
		r, err := bob.Reply(ctx, parley.User("alice"), m.Seq, "yes @alice", parley.Mention("alice", "alice"))
		if err != nil {
			t.Fatal(err)
		}
		if r.Seq != 2 || r.ReplyTo != 1 || !slices.Equal(r.Mentions, []string{"alice"}) || r.Type != "text" {
			t.Fatalf("Reply returned %+v", r)
		}
		got := messages(t, alice, m.Conv, 2)[1]
		if got.Seq != 2 || got.ReplyTo != 1 || !slices.Equal(got.Mentions, []string{"alice"}) || got.Text() != "yes @alice" {
			t.Fatalf("alice got %+v", got)
		}
		one, err := alice.Message(ctx, m.Conv, 2)
		if err != nil || one.ReplyTo != 1 || !slices.Equal(one.Mentions, []string{"alice"}) || one.Reactions == nil || one.Deleted {
			t.Fatalf("Message(2) = %+v, %v", one, err)
		}
		if _, err := alice.Message(ctx, m.Conv, 99); !errors.Is(err, parley.ErrNoSuchMessage) {
			t.Fatalf("Message(99) = %v", err)
		}
		_, err = bob.Reply(ctx, parley.User("alice"), 99, "to nothing")
		wantErr(t, "reply to a missing message", err, parley.ErrInvalidPayload, parley.CodeInvalidPayload)
		_, err = bob.Send(ctx, parley.User("alice"), "hi @mallory", parley.Mention("mallory"))
		wantErr(t, "mention of a stranger", err, parley.ErrInvalidPayload, parley.CodeInvalidPayload)
		_, err = bob.Reply(ctx, parley.User("alice"), 0, "to nothing")
		wantErr(t, "reply to seq 0", err, parley.ErrInvalidPayload, "")
	})
}

// TestEditDeleteReact: each op works end to end, reaches the other
// device as an event that Apply folds into the state the REST API reports,
// and each refusal is the right error.
func TestEditDeleteReact(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		alice := e.dial("alice", "a")
		bob := e.dial("bob", "b")
		// A device of bob that is offline while everything happens.
		e.dial("bob", "late").Close()
		ctx := ctxT(t)
		toBob, toAlice := parley.User("bob"), parley.User("alice")
		m, err := alice.Send(ctx, toBob, "helo")
		if err != nil {
			t.Fatal(err)
		}
		conv := m.Conv
		var shown []parley.Message // what bob's app shows
		shown = fold(t, bob, "bob", conv, shown, 1)

		// Edit.
		ev, err := alice.Edit(ctx, toBob, 1, "hello")
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != parley.TypeEdited || ev.Target != 1 || ev.Seq != 2 || ev.Text() != "hello" || !ev.IsChange() || !ev.IsEvent() {
			t.Fatalf("Edit returned %+v", ev)
		}
		shown = fold(t, bob, "bob", conv, shown, 1)
		if len(shown) != 1 || shown[0].Text() != "hello" || shown[0].EditedAt.IsZero() {
			t.Fatalf("bob shows %+v", shown)
		}
		_, err = bob.Edit(ctx, toAlice, 1, "mine now")
		wantErr(t, "edit by another user", err, parley.ErrNotAllowed, parley.CodeNotAllowed)
		_, err = alice.Edit(ctx, toBob, 99, "x")
		wantErr(t, "edit of a missing message", err, parley.ErrNoSuchMessage, parley.CodeNoSuchMessage)
		_, err = alice.Edit(ctx, toBob, 2, "x")
		wantErr(t, "edit of an event", err, parley.ErrNotAllowed, parley.CodeNotAllowed)
		_, err = alice.Edit(ctx, toBob, 1, nil)
		wantErr(t, "edit without a body", err, parley.ErrInvalidPayload, "")

		// Reactions, counted with Me for each user.
		ev, err = bob.React(ctx, toAlice, 1, "👍")
		if err != nil || ev.Type != parley.TypeReactionAdded || ev.Emoji != "👍" || ev.Target != 1 || ev.Seq != 3 {
			t.Fatalf("React = %+v, %v", ev, err)
		}
		if ev, err := bob.React(ctx, toAlice, 1, "👍"); err != nil || ev.Seq != 0 {
			t.Fatalf("React again = %+v, %v; want a zero message", ev, err)
		}
		if _, err := alice.React(ctx, toBob, 1, "👍"); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.React(ctx, toBob, 1, "🎉", parley.WithCID("party")); err != nil {
			t.Fatal(err)
		}
		// A retry with the same cid answers the original event.
		again, err := alice.React(ctx, toBob, 1, "🎉", parley.WithCID("party"))
		if err != nil || again.Seq != 5 || again.CID != "party" {
			t.Fatalf("React with a cid again = %+v, %v", again, err)
		}
		shown = fold(t, bob, "bob", conv, shown, 3)
		want := map[string]parley.Reaction{"👍": {Count: 2, Me: true}, "🎉": {Count: 1}}
		st, err := bob.Message(ctx, conv, 1)
		if err != nil || !equalReactions(st.Reactions, want) {
			t.Fatalf("Message(1) for bob = %+v, %v", st, err)
		}
		if !equalReactions(shown[0].Reactions, want) {
			t.Fatalf("bob's folded reactions %v, want %v", shown[0].Reactions, want)
		}
		ev, err = bob.Unreact(ctx, toAlice, 1, "👍")
		if err != nil || ev.Type != parley.TypeReactionRemoved || ev.Seq != 6 {
			t.Fatalf("Unreact = %+v, %v", ev, err)
		}
		if ev, err := bob.Unreact(ctx, toAlice, 1, "👍"); err != nil || ev.Seq != 0 {
			t.Fatalf("Unreact again = %+v, %v", ev, err)
		}
		shown = fold(t, bob, "bob", conv, shown, 1)
		want = map[string]parley.Reaction{"👍": {Count: 1}, "🎉": {Count: 1}}
		if !equalReactions(shown[0].Reactions, want) {
			t.Fatalf("bob's folded reactions after unreact %v, want %v", shown[0].Reactions, want)
		}
		_, err = bob.React(ctx, toAlice, 1, "")
		wantErr(t, "empty emoji", err, parley.ErrInvalidPayload, parley.CodeInvalidPayload)
		_, err = bob.React(ctx, toAlice, 1, "this emoji is far too long for the server")
		wantErr(t, "long emoji", err, parley.ErrInvalidPayload, parley.CodeInvalidPayload)
		_, err = bob.React(ctx, toAlice, 42, "👍")
		wantErr(t, "reaction to a missing message", err, parley.ErrNoSuchMessage, parley.CodeNoSuchMessage)
		_, err = bob.React(ctx, toAlice, 2, "👍")
		wantErr(t, "reaction to an event", err, parley.ErrNotAllowed, parley.CodeNotAllowed)

		// Delete.
		_, err = bob.Delete(ctx, toAlice, 1)
		wantErr(t, "delete by another user", err, parley.ErrNotAllowed, parley.CodeNotAllowed)
		ev, err = alice.Delete(ctx, toBob, 1)
		if err != nil || ev.Type != parley.TypeDeleted || ev.Target != 1 || ev.Seq != 7 {
			t.Fatalf("Delete = %+v, %v", ev, err)
		}
		if ev, err := alice.Delete(ctx, toBob, 1); err != nil || ev.Seq != 0 {
			t.Fatalf("Delete again = %+v, %v", ev, err)
		}
		shown = fold(t, bob, "bob", conv, shown, 1)
		if !shown[0].Deleted || string(shown[0].Body) != "null" || shown[0].Text() != "" {
			t.Fatalf("bob shows %+v after the delete", shown[0])
		}
		st, err = bob.Message(ctx, conv, 1)
		if err != nil || !st.Deleted || string(st.Body) != "null" || len(st.Reactions) != 0 || len(shown[0].Reactions) != 0 {
			t.Fatalf("Message(1) after the delete = %+v, %v", st, err)
		}
		_, err = alice.Edit(ctx, toBob, 1, "back")
		wantErr(t, "edit of a deleted message", err, parley.ErrNoSuchMessage, parley.CodeNoSuchMessage)
		_, err = bob.React(ctx, toAlice, 1, "👍")
		wantErr(t, "reaction to a deleted message", err, parley.ErrNoSuchMessage, parley.CodeNoSuchMessage)
		_, err = alice.Delete(ctx, toBob, 0)
		wantErr(t, "delete of seq 0", err, parley.ErrInvalidPayload, "")

		// The history keeps every event, in order; the edit's body is gone.
		p, err := bob.History(ctx, conv, parley.HistoryOptions{Forward: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := seqsOf(p.Messages); !slices.Equal(got, []int64{1, 2, 3, 4, 5, 6, 7}) {
			t.Fatalf("history seqs %v", got)
		}
		if p.Messages[1].Type != parley.TypeEdited || string(p.Messages[1].Body) != "null" {
			t.Fatalf("the edit event after the delete: %+v", p.Messages[1])
		}

		// The device that was offline gets every event in order by
		// catch-up, the deleted message without its body.
		late := e.dial("bob", "late")
		got := messages(t, late, conv, 7)
		if !slices.Equal(seqsOf(got), []int64{1, 2, 3, 4, 5, 6, 7}) || !got[0].Deleted || string(got[0].Body) != "null" ||
			got[1].Type != parley.TypeEdited || got[6].Type != parley.TypeDeleted || got[6].Target != 1 {
			t.Fatalf("catch-up delivered %+v", got)
		}
	})
}

func equalReactions(a, b map[string]parley.Reaction) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestGroupOps: a group admin may delete others' messages, a member may
// not; a non-member's ops are refused; the edit window is enforced.
func TestGroupOps(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s, func(o *broker.Options) { o.EditWindow = 300 * time.Millisecond })
		alice := e.dial("alice", "a")
		bob := e.dial("bob", "b")
		carol := e.dial("carol", "c")
		dave := e.dial("dave", "d")
		ctx := ctxT(t)
		if _, err := alice.CreateGroup(ctx, parley.NewGroup{ID: "team", Name: "Team", Members: []string{"bob", "carol"}}); err != nil {
			t.Fatal(err)
		}
		team := parley.Group("team")
		m, err := bob.Send(ctx, team, "spam")
		if err != nil {
			t.Fatal(err)
		}
		_, err = dave.React(ctx, team, m.Seq, "👍")
		wantErr(t, "reaction by a non-member", err, parley.ErrNotMember, parley.CodeNotMember)
		if _, err := alice.AddMember(ctx, "team", "dave", ""); err != nil {
			t.Fatal(err)
		}
		_, err = dave.React(ctx, team, m.Seq, "👍")
		wantErr(t, "reaction to a message from before joining", err, parley.ErrNoSuchMessage, parley.CodeNoSuchMessage)
		_, err = carol.Delete(ctx, team, m.Seq)
		wantErr(t, "delete by a member", err, parley.ErrNotAllowed, parley.CodeNotAllowed)
		_, err = carol.Delete(ctx, team, 1)
		wantErr(t, "delete of an event", err, parley.ErrNotAllowed, parley.CodeNotAllowed)
		if ev, err := alice.Delete(ctx, team, m.Seq); err != nil || ev.Type != parley.TypeDeleted {
			t.Fatalf("delete by the owner: %+v, %v", ev, err)
		}
		n, err := bob.Send(ctx, team, "typo")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(400 * time.Millisecond)
		_, err = bob.Edit(ctx, team, n.Seq, "too late")
		wantErr(t, "edit after the window", err, parley.ErrNotAllowed, parley.CodeNotAllowed)
		_, err = alice.Edit(ctx, parley.Group("nope"), 1, "x")
		wantErr(t, "edit in a missing group", err, parley.ErrNoSuchGroup, parley.CodeNoSuchGroup)
	})
}

// TestCountsAndSettings: unread and mention counts in the conversation
// list and on the read event of the reader's other device; settings reach
// the user's other device and the list.
func TestCountsAndSettings(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		alice := e.dial("alice", "a")
		bob := e.dial("bob", "b")
		bob2 := e.dial("bob", "tablet")
		ctx := ctxT(t)
		if _, err := alice.Send(ctx, parley.User("bob"), "one"); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Send(ctx, parley.User("bob"), "hey @bob", parley.Mention("bob")); err != nil {
			t.Fatal(err)
		}
		m, err := alice.Send(ctx, parley.User("bob"), "three")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Delete(ctx, parley.User("bob"), m.Seq); err != nil {
			t.Fatal(err)
		}
		conv := m.Conv
		cv := conversation(t, bob, conv)
		if cv.Unread != 2 || cv.Mentions != 1 || cv.LastSeq != 4 {
			t.Fatalf("bob's conversation %+v", cv)
		}
		messages(t, bob2, conv, 4)
		if err := bob.MarkRead(ctx, conv, 1); err != nil {
			t.Fatal(err)
		}
		r := nextEvent(t, bob2, parley.EventRead).Receipt
		if r != (parley.Receipt{Conv: conv, User: "bob", Seq: 1, HasCounts: true, Unread: 1, Mentions: 1}) {
			t.Fatalf("bob's tablet got read %+v", r)
		}
		if r := nextEvent(t, alice, parley.EventRead).Receipt; r.HasCounts || r.User != "bob" || r.Seq != 1 {
			t.Fatalf("alice got read %+v", r)
		}

		until := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
		st, err := bob.SetSettings(ctx, conv, parley.Settings{MutedUntil: until, Pinned: true})
		if err != nil || st.Conv != conv || !st.MutedUntil.Equal(until) || !st.Pinned || st.Archived {
			t.Fatalf("SetSettings = %+v, %v", st, err)
		}
		ev := nextEvent(t, bob2, parley.EventSettings)
		if ev.Conv() != conv || !ev.Settings.MutedUntil.Equal(until) || !ev.Settings.Pinned {
			t.Fatalf("bob's tablet got settings %+v", ev.Settings)
		}
		cv = conversation(t, bob, conv)
		if !cv.MutedUntil.Equal(until) || !cv.Pinned || cv.Archived {
			t.Fatalf("bob's conversation after the settings %+v", cv)
		}
		if st, err := bob.SetSettings(ctx, conv, parley.Settings{Archived: true}); err != nil || !st.MutedUntil.IsZero() || !st.Archived || st.Pinned {
			t.Fatalf("SetSettings again = %+v, %v", st, err)
		}
		_, err = bob.SetSettings(ctx, "dm:alice:carol", parley.Settings{Pinned: true})
		wantErr(t, "settings of someone else's conversation", err, parley.ErrNotMember, parley.CodeNotMember)
	})
}

// conversation returns c's conversation conv from the list.
func conversation(t *testing.T, c *parley.Client, conv string) parley.Conversation {
	t.Helper()
	p, err := c.Conversations(ctxT(t), parley.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cv := range p.Conversations {
		if cv.ID == conv {
			return cv
		}
	}
	t.Fatalf("%s has no conversation %s", c.ClientID(), conv)
	return parley.Conversation{}
}

// TestApply: folding change events into a list, without a server.
func TestApply(t *testing.T) {
	msg := func(seq int64, typ string, target int64, from, emoji string, body string) parley.Message {
		return parley.Message{Conv: "g:t", Seq: seq, From: from, Type: typ, Target: target, Emoji: emoji,
			Body: json.RawMessage(body), TS: time.Unix(seq, 0)}
	}
	var l []parley.Message
	l = parley.Apply(l, msg(2, "text", 0, "bob", "", `"two"`), "me")
	l = parley.Apply(l, msg(1, "text", 0, "me", "", `"one"`), "me")
	shared := slices.Clone(l)
	l = parley.Apply(l, msg(3, parley.TypeReactionAdded, 1, "bob", "👍", "null"), "me")
	l = parley.Apply(l, msg(4, parley.TypeReactionAdded, 1, "me", "👍", "null"), "me")
	l = parley.Apply(l, msg(5, parley.TypeReactionAdded, 1, "me", "👍", "null"), "me") // counted once
	l = parley.Apply(l, msg(6, parley.TypeEdited, 1, "me", "", `"uno"`), "me")
	l = parley.Apply(l, msg(7, parley.TypeReactionAdded, 99, "me", "👍", "null"), "me") // no such target
	if len(l) != 2 || l[0].Seq != 1 || l[1].Seq != 2 || l[0].Text() != "uno" || !l[0].EditedAt.Equal(time.Unix(6, 0)) {
		t.Fatalf("list %+v", l)
	}
	if !equalReactions(l[0].Reactions, map[string]parley.Reaction{"👍": {Count: 2, Me: true}}) {
		t.Fatalf("reactions %v", l[0].Reactions)
	}
	if shared[0].Reactions != nil || shared[0].Text() != "one" {
		t.Fatalf("Apply changed a copy: %+v", shared[0])
	}
	l = parley.Apply(l, msg(8, parley.TypeReactionRemoved, 1, "me", "👍", "null"), "me")
	if !equalReactions(l[0].Reactions, map[string]parley.Reaction{"👍": {Count: 1}}) {
		t.Fatalf("reactions after removal %v", l[0].Reactions)
	}
	l = parley.Apply(l, msg(9, parley.TypeReactionRemoved, 1, "bob", "👍", "null"), "me")
	if len(l[0].Reactions) != 0 {
		t.Fatalf("reactions after the last removal %v", l[0].Reactions)
	}
	l = parley.Apply(l, msg(10, parley.TypeReactionAdded, 2, "bob", "🎉", "null"), "me")
	l = parley.Apply(l, msg(11, parley.TypeDeleted, 2, "bob", "", "null"), "me")
	l = parley.Apply(l, msg(12, parley.TypeEdited, 2, "bob", "", `"zombie"`), "me")
	if !l[1].Deleted || string(l[1].Body) != "null" || l[1].Reactions != nil {
		t.Fatalf("deleted message %+v", l[1])
	}
	if ev := msg(3, "member.added", 0, "me", "", `{}`); ev.IsChange() || !ev.IsEvent() {
		t.Fatal("member.added: IsChange or not IsEvent")
	}
}

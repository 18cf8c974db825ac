package historytest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
)

// pushTargets calls PushTargets and returns its targets by user, checking
// that each has tokens.
func pushTargets(t *testing.T, o history.Outboxer, conv string, seq int64, users []string, now time.Time) map[string]history.PushTarget {
	t.Helper()
	ts, err := o.PushTargets(context.Background(), conv, seq, users, now)
	if err != nil {
		t.Fatalf("PushTargets(%s, %d, %v): %v", conv, seq, users, err)
	}
	out := map[string]history.PushTarget{}
	for _, tg := range ts {
		if len(tg.Tokens) == 0 {
			t.Fatalf("target %s without tokens", tg.User)
		}
		if _, dup := out[tg.User]; dup {
			t.Fatalf("target %s twice", tg.User)
		}
		out[tg.User] = tg
	}
	return out
}

func setToken(t *testing.T, o history.Outboxer, user, device, provider, token string) {
	t.Helper()
	if err := o.SetPushToken(context.Background(), user, history.PushToken{Device: device, Provider: provider, Token: token}); err != nil {
		t.Fatalf("SetPushToken(%s, %s): %v", user, device, err)
	}
}

func testPushTokens(t *testing.T, s history.Store) {
	ctx := context.Background()
	o := as[history.Outboxer](t, s)
	dm := history.DirectConvID("alice", "bob")
	mustAppend(t, s, NewMsg(dm, "bob", "", `1`))
	tokens := func() []history.PushToken {
		t.Helper()
		return pushTargets(t, o, dm, 1, []string{"alice"}, time.Now())["alice"].Tokens
	}
	if got := tokens(); got != nil {
		t.Fatalf("tokens before any: %+v", got)
	}
	for _, tc := range []struct{ name, user, device, provider, token string }{
		{"OtherUser", "alice", "bob/phone", "fcm", "t"},
		{"Prefix", "alice", "alicex/phone", "fcm", "t"},
		{"NoToken", "alice", "alice/phone", "fcm", ""},
		{"NoProvider", "alice", "alice/phone", "", "t"},
	} {
		err := o.SetPushToken(ctx, tc.user, history.PushToken{Device: tc.device, Provider: tc.provider, Token: tc.token})
		if history.ErrorCode(err) != history.EINVALID {
			t.Fatalf("%s: SetPushToken = %v, want %s", tc.name, err, history.EINVALID)
		}
	}
	setToken(t, o, "alice", "alice/phone", "fcm", "t1")
	setToken(t, o, "alice", "alice", "webhook", "w1") // the user's bare client id
	want := []history.PushToken{{Device: "alice", Provider: "webhook", Token: "w1"}, {Device: "alice/phone", Provider: "fcm", Token: "t1"}}
	if got := tokens(); !reflect.DeepEqual(got, want) {
		t.Fatalf("tokens = %+v, want %+v", got, want)
	}
	setToken(t, o, "alice", "alice/phone", "apns", "t2") // replaces
	want[1] = history.PushToken{Device: "alice/phone", Provider: "apns", Token: "t2"}
	if got := tokens(); !reflect.DeepEqual(got, want) {
		t.Fatalf("tokens after replacing = %+v, want %+v", got, want)
	}
	del := func(device, token string) {
		t.Helper()
		if err := o.DeletePushToken(ctx, device, token); err != nil {
			t.Fatalf("DeletePushToken(%s, %s): %v", device, token, err)
		}
	}
	del("alice/phone", "t1") // an older token: the newer registration stays
	if got := tokens(); !reflect.DeepEqual(got, want) {
		t.Fatalf("tokens after deleting an old token = %+v, want %+v", got, want)
	}
	del("alice/phone", "t2")
	del("alice/phone", "t2") // missing: fine
	del("alice/tablet", "")
	if got := tokens(); !reflect.DeepEqual(got, want[:1]) {
		t.Fatalf("tokens after deleting = %+v, want %+v", got, want[:1])
	}
	del("alice", "")
	if got := tokens(); got != nil {
		t.Fatalf("tokens after deleting all = %+v", got)
	}
	// A user keeps at most MaxPushTokens: the newest registration always
	// stays.
	for i := range history.MaxPushTokens + 5 {
		tok := history.PushToken{Device: fmt.Sprintf("carol/d%02d", i), Provider: "fcm", Token: "t"}
		if err := o.SetPushToken(ctx, "carol", tok); err != nil {
			t.Fatal(err)
		}
	}
	cb := history.DirectConvID("bob", "carol")
	m := mustAppend(t, s, NewMsg(cb, "bob", "", `"x"`))
	got, err := o.PushTargets(ctx, cb, m.Seq, []string{"carol"}, time.Now())
	if err != nil || len(got) != 1 || len(got[0].Tokens) != history.MaxPushTokens {
		t.Fatalf("carol's targets %+v (%v), want %d tokens", got, err, history.MaxPushTokens)
	}
	newest := fmt.Sprintf("carol/d%02d", history.MaxPushTokens+4)
	if !slices.ContainsFunc(got[0].Tokens, func(p history.PushToken) bool { return p.Device == newest }) {
		t.Fatalf("the newest registration %s was dropped: %+v", newest, got[0].Tokens)
	}
}

func testPushTargets(t *testing.T, s history.Store) {
	ctx := context.Background()
	o := as[history.Outboxer](t, s)
	now := time.Now()
	createGroup(t, s, "g", "alice", "bob", "carol", "dave", "frank", "gina")
	if _, _, err := s.ChangeMember(ctx, change("g", "alice", "gina", "", true)); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin", "gina"} { // not frank
		setToken(t, o, u, u+"/phone", "fcm", "tok-"+u)
	}
	setToken(t, o, "dave", "dave/tab", "apns", "tok-dave-tab")
	// bob's phone acknowledged the message; dave's phone is behind it.
	for _, d := range []struct{ device, user string }{{"bob/phone", "bob"}, {"bob/tab", "bob"}, {"dave/phone", "dave"}} {
		if _, err := s.Device(ctx, d.device, d.user); err != nil {
			t.Fatal(err)
		}
	}
	msg := mustAppend(t, s, NewMsg("g:g", "alice", "", `"hi"`))
	if err := s.SaveCursors(ctx, []history.Cursor{{Device: "bob/phone", Conv: "g:g", Seq: msg.Seq}, {Device: "dave/phone", Conv: "g:g", Seq: msg.Seq - 1},
		{Device: "dave/phone", Conv: history.DirectConvID("alice", "dave"), Seq: 99}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetSettings(ctx, "carol", "g:g", history.Settings{MutedUntil: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// dave's other unread: one of two in a direct conversation, one deleted
	// message, one of his own, and one in a group he was removed from
	// before the next.
	dm := history.DirectConvID("alice", "dave")
	mustAppend(t, s, NewMsg(dm, "alice", "", `1`))
	mustAppend(t, s, NewMsg(dm, "alice", "", `2`))
	mustAppend(t, s, NewMsg(dm, "dave", "", `3`))
	gone := mustAppend(t, s, NewMsg(dm, "alice", "", `4`))
	appendOne(t, s, Op(dm, "alice", history.OpDelete, gone.Seq, `null`))
	if _, _, err := s.MarkRead(ctx, "dave", dm, 1); err != nil {
		t.Fatal(err)
	}
	createGroup(t, s, "g2", "alice", "dave")
	mustAppend(t, s, NewMsg("g:g2", "alice", "", `1`))
	if _, _, err := s.ChangeMember(ctx, change("g2", "alice", "dave", "", true)); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, NewMsg("g:g2", "alice", "", `2`))

	users := []string{"bob", "carol", "dave", "erin", "frank", "gina", "nobody"}
	got := pushTargets(t, o, "g:g", msg.Seq, users, now)
	if len(got) != 1 {
		t.Fatalf("targets = %+v, want dave only", got)
	}
	d := got["dave"]
	wantTokens := []history.PushToken{{Device: "dave/phone", Provider: "fcm", Token: "tok-dave"}, {Device: "dave/tab", Provider: "apns", Token: "tok-dave-tab"}}
	if !reflect.DeepEqual(d.Tokens, wantTokens) {
		t.Fatalf("dave's tokens = %+v, want %+v", d.Tokens, wantTokens)
	}
	// The badge is the sum of the conversations' Unread.
	views, _, err := s.Conversations(ctx, "dave", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, v := range views {
		sum += v.Unread
	}
	if d.Unread != 3 || sum != 3 {
		t.Fatalf("dave's unread = %d (views: %d), want 3", d.Unread, sum)
	}
	// Once the mute passes, carol is notified too.
	later := pushTargets(t, o, "g:g", msg.Seq, users, now.Add(2*time.Hour))
	if len(later) != 2 || later["carol"].Unread != 1 || len(later["carol"].Tokens) != 1 {
		t.Fatalf("targets after the mute = %+v, want carol and dave", later)
	}
	// An earlier seq that bob's phone acknowledged too; a later one that
	// neither did.
	next := mustAppend(t, s, NewMsg("g:g", "dave", "", `"later"`))
	if got := pushTargets(t, o, "g:g", next.Seq, []string{"bob"}, now); len(got) != 1 {
		t.Fatalf("bob for an unacknowledged seq: %+v", got)
	}
	// Deleted before the push delay passed: nobody is notified.
	del := history.NewMessage{Conv: "g:g", ID: history.NewID(time.Now()), From: "dave", TS: time.Now(),
		Op: history.OpDelete, Type: history.TypeMessageDeleted, Target: next.Seq, Body: []byte("null")}
	mustAppend(t, s, del)
	if got := pushTargets(t, o, "g:g", next.Seq, []string{"bob"}, now); len(got) != 0 {
		t.Fatalf("targets of a deleted message: %+v", got)
	}
	if got := pushTargets(t, o, "g:g", msg.Seq-1, []string{"bob", "dave"}, now); len(got) != 0 {
		t.Fatalf("targets for an acknowledged seq: %+v", got)
	}
	if got := pushTargets(t, o, "g:g", msg.Seq, nil, now); len(got) != 0 {
		t.Fatalf("targets of no users: %+v", got)
	}
}

package historytest

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
)

func testMarkRead(t *testing.T, s history.Store) {
	ctx := context.Background()
	dm := history.DirectConvID("alice", "bob")
	for i := 0; i < 3; i++ {
		mustAppend(t, s, NewMsg(dm, "bob", "", `1`))
	}
	cases := []struct {
		name, user, conv string
		seq, after       int64
		moved            bool
		code             string
	}{
		{"Forward", "alice", dm, 2, 2, true, ""},
		{"Backward", "alice", dm, 1, 2, false, ""},
		{"Same", "alice", dm, 2, 2, false, ""},
		{"ToEnd", "alice", dm, 3, 3, true, ""},
		{"Beyond", "alice", dm, 4, 0, false, history.EINVALID},
		{"Negative", "alice", dm, -1, 0, false, history.EINVALID},
		{"Stranger", "carol", dm, 1, 0, false, history.ENOTMEMBER},
		{"NoConv", "alice", "dm:alice:zed", 1, 0, false, history.ENOTMEMBER},
		{"OtherUser", "bob", dm, 1, 1, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			after, moved, err := s.MarkRead(ctx, tc.user, tc.conv, tc.seq)
			if tc.code != "" {
				wantCode(t, err, tc.code)
				return
			}
			if err != nil || after != tc.after || moved != tc.moved {
				t.Fatalf("MarkRead = %d, %v, %v; want %d, %v", after, moved, err, tc.after, tc.moved)
			}
		})
	}
	createGroup(t, s, "g", "alice", "bob")
	if _, _, err := s.ChangeMember(ctx, change("g", "alice", "bob", "", true)); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.MarkRead(ctx, "bob", "g:g", 1)
	wantCode(t, err, history.ENOTMEMBER)
}

func testShares(t *testing.T, s history.Store) {
	ctx := context.Background()
	mustAppend(t, s, NewMsg(history.DirectConvID("alice", "bob"), "alice", "", `1`))
	createGroup(t, s, "g", "carol", "dave", "erin")
	if _, _, err := s.ChangeMember(ctx, change("g", "carol", "erin", "", true)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		a, b string
		want bool
	}{
		{"alice", "bob", true}, {"bob", "alice", true}, {"carol", "dave", true},
		{"alice", "carol", false}, {"carol", "erin", false}, {"zed", "alice", false},
	}
	for _, tc := range cases {
		got, err := s.SharesConversation(ctx, tc.a, tc.b)
		if err != nil || got != tc.want {
			t.Fatalf("SharesConversation(%s, %s) = %v, %v; want %v", tc.a, tc.b, got, err, tc.want)
		}
	}
}

func testHistory(t *testing.T, s history.Store) {
	ctx := context.Background()
	dm := history.DirectConvID("alice", "bob")
	for i := 1; i <= 10; i++ {
		mustAppend(t, s, NewMsg(dm, "alice", "", fmt.Sprint(i)))
	}
	seqs := func(ms []history.Message) []int64 {
		var out []int64
		for _, m := range ms {
			out = append(out, m.Seq)
		}
		return out
	}
	cases := []struct {
		name string
		q    history.HistoryQuery
		want string
	}{
		{"FirstPage", history.HistoryQuery{User: "bob", Conv: dm, Limit: 3}, "[1 2 3]"},
		{"After", history.HistoryQuery{User: "bob", Conv: dm, After: 8, Limit: 5}, "[9 10]"},
		{"Before", history.HistoryQuery{User: "alice", Conv: dm, Before: 5, Limit: 3}, "[4 3 2]"},
		{"BeforeEnd", history.HistoryQuery{User: "alice", Conv: dm, Before: 11, Limit: 2}, "[10 9]"},
		{"PastEnd", history.HistoryQuery{User: "alice", Conv: dm, After: 10, Limit: 2}, "[]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ms, h, err := s.History(ctx, tc.q)
			if err != nil || fmt.Sprint(seqs(ms)) != tc.want || h.Last != 10 || h.First != 1 {
				t.Fatalf("History = %v %+v %v, want %s", seqs(ms), h, err, tc.want)
			}
		})
	}
	_, _, err := s.History(ctx, history.HistoryQuery{User: "carol", Conv: dm, Limit: 5})
	wantCode(t, err, history.ENOTMEMBER)

	// Groups: a member sees from joining until removal.
	createGroup(t, s, "g", "alice", "bob")                                                                      // 1
	mustAppend(t, s, NewMsg("g:g", "alice", "", `"two"`))                                                       // 2
	if _, _, err := s.ChangeMember(ctx, change("g", "alice", "carol", history.RoleMember, false)); err != nil { // 3
		t.Fatal(err)
	}
	mustAppend(t, s, NewMsg("g:g", "alice", "", `"four"`))                                     // 4
	if _, _, err := s.ChangeMember(ctx, change("g", "alice", "carol", "", true)); err != nil { // 5
		t.Fatal(err)
	}
	mustAppend(t, s, NewMsg("g:g", "alice", "", `"six"`)) // 6
	ms, h, err := s.History(ctx, history.HistoryQuery{User: "carol", Conv: "g:g", Limit: 50})
	if err != nil || fmt.Sprint(seqs(ms)) != "[3 4 5]" || h.First != 3 || h.Last != 5 {
		t.Fatalf("carol's history = %v %+v %v, want [3 4 5]", seqs(ms), h, err)
	}
	ms, _, _ = s.History(ctx, history.HistoryQuery{User: "carol", Conv: "g:g", Before: 100, Limit: 50})
	if fmt.Sprint(seqs(ms)) != "[5 4 3]" {
		t.Fatalf("carol's history backwards = %v", seqs(ms))
	}
	ms, _, _ = s.History(ctx, history.HistoryQuery{User: "bob", Conv: "g:g", Limit: 50})
	if len(ms) != 6 {
		t.Fatalf("bob sees %d messages, want 6", len(ms))
	}
}

func testConversations(t *testing.T, s history.Store) {
	ctx := context.Background()
	// Five conversations, the last one touched most recently.
	var convs []string
	for i := 0; i < 5; i++ {
		conv := history.DirectConvID("alice", fmt.Sprintf("u%d", i))
		convs = append(convs, conv)
		mustAppend(t, s, NewMsg(conv, fmt.Sprintf("u%d", i), "", `"hi"`))
		mustAppend(t, s, NewMsg(conv, "alice", "", `"hello"`))
		mustAppend(t, s, NewMsg(conv, fmt.Sprintf("u%d", i), "", `"how are you"`))
		time.Sleep(2 * time.Millisecond)
	}
	createGroup(t, s, "club", "u1", "alice") // group.created is an event: never unread
	if _, _, err := s.MarkRead(ctx, "alice", convs[4], 1); err != nil {
		t.Fatal(err)
	}
	var got []history.ConversationView
	cursor := ""
	for page := 0; page < 10; page++ {
		vs, next, err := s.Conversations(ctx, "alice", cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, vs...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(got) != 6 {
		t.Fatalf("%d conversations, want 6", len(got))
	}
	if got[0].ID != "g:club" || got[0].Kind != history.KindGroup || got[0].Group != "club" || got[0].Name != "Group club" ||
		got[0].LastSeq != 1 || got[0].Unread != 0 || got[0].LastMessage == nil || got[0].LastMessage.Type != history.TypeGroupCreated {
		t.Fatalf("first = %+v", got[0])
	}
	v := got[1]
	if v.ID != convs[4] || v.Kind != history.KindDirect || v.Peer != "u4" || v.Name != "u4" || v.LastSeq != 3 || v.ReadSeq != 1 ||
		v.Unread != 1 || v.LastMessage == nil || v.LastMessage.Seq != 3 || string(v.LastMessage.Body) != `"how are you"` {
		t.Fatalf("second = %+v (last %+v)", v, v.LastMessage)
	}
	if got[5].ID != convs[0] || got[5].Unread != 2 {
		t.Fatalf("last = %+v", got[5])
	}
	_, _, err := s.Conversations(ctx, "alice", "!!not a cursor", 2)
	wantCode(t, err, history.EINVALID)
	// A well-formed cursor holding text a store cannot query with.
	for _, c := range []string{"1|dm:\x00", "1|\xff", "\x00|x"} {
		_, _, err = s.Conversations(ctx, "alice", base64.RawURLEncoding.EncodeToString([]byte(c)), 2)
		wantCode(t, err, history.EINVALID)
	}
}

func testChanges(t *testing.T, s history.Store) {
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		mustAppend(t, s, NewMsg(history.DirectConvID("alice", fmt.Sprintf("u%d", i)), "alice", "", `1`))
	}
	all, token, more, err := s.Changes(ctx, "alice", "", 100)
	if err != nil || len(all) != 5 || token == "" || more {
		t.Fatalf("snapshot = %d, %q, %v", len(all), token, err)
	}
	none, token2, _, err := s.Changes(ctx, "alice", token, 100)
	if err != nil || len(none) != 0 {
		t.Fatalf("no changes = %+v, %v", none, err)
	}
	mustAppend(t, s, NewMsg(history.DirectConvID("alice", "u1"), "u1", "", `2`))
	if _, _, err := s.MarkRead(ctx, "alice", history.DirectConvID("alice", "u3"), 1); err != nil {
		t.Fatal(err)
	}
	createGroup(t, s, "g", "u9", "alice")
	changed, _, _, err := s.Changes(ctx, "alice", token2, 100)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, v := range changed {
		ids[v.ID] = true
	}
	if len(ids) != 3 || !ids["dm:alice:u1"] || !ids["dm:alice:u3"] || !ids["g:g"] {
		t.Fatalf("changed = %v", ids)
	}
	// Another user's read marker is not alice's change.
	_, token3, _, _ := s.Changes(ctx, "alice", token2, 100)
	if _, _, err := s.MarkRead(ctx, "u2", history.DirectConvID("alice", "u2"), 1); err != nil {
		t.Fatal(err)
	}
	changed, _, _, _ = s.Changes(ctx, "alice", token3, 100)
	if len(changed) != 0 {
		t.Fatalf("u2's read marker reported to alice: %+v", changed)
	}
	_, _, _, err = s.Changes(ctx, "alice", "garbage", 100)
	wantCode(t, err, history.EINVALID)
	_, _, _, err = s.Changes(ctx, "alice", "", 0)
	wantCode(t, err, history.EINVALID)
}

// testChangesPaging: a pass pages through the changed conversations without
// repeating or missing one; a conversation that changes during the pass (and
// so moves ahead of the position) is reported by the next pass.
func testChangesPaging(t *testing.T, s history.Store) {
	ctx := context.Background()
	for i := 0; i < 7; i++ {
		mustAppend(t, s, NewMsg(history.DirectConvID("alice", fmt.Sprintf("u%d", i)), "alice", "", `1`))
	}
	var got []string
	token := ""
	for page := 0; ; page++ {
		views, next, more, err := s.Changes(ctx, "alice", token, 3)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		if len(views) > 3 || (more && len(views) != 3) || next == "" {
			t.Fatalf("page %d: %d views, more %v, next %q", page, len(views), more, next)
		}
		for _, v := range views {
			got = append(got, v.ID)
		}
		token = next
		if page == 0 {
			// u0 was written first: not reported yet. It changes now and
			// moves to the front, behind the position.
			mustAppend(t, s, NewMsg(history.DirectConvID("alice", "u0"), "u0", "", `2`))
		}
		if !more {
			break
		}
		if page > 5 {
			t.Fatal("paging does not end")
		}
	}
	seen := map[string]bool{}
	for _, id := range got {
		if seen[id] {
			t.Fatalf("%s reported twice in one pass: %v", id, got)
		}
		seen[id] = true
	}
	for i := 1; i < 7; i++ {
		if id := history.DirectConvID("alice", fmt.Sprintf("u%d", i)); !seen[id] {
			t.Fatalf("%s missing from the pass: %v", id, got)
		}
	}
	next, _, more, err := s.Changes(ctx, "alice", token, 3)
	if err != nil || more || len(next) != 1 || next[0].ID != history.DirectConvID("alice", "u0") || next[0].LastSeq != 2 {
		t.Fatalf("next pass = %+v, more %v, %v; want dm:alice:u0 at seq 2", next, more, err)
	}
}

func testReceipts(t *testing.T, s history.Store) {
	ctx := context.Background()
	dm := history.DirectConvID("alice", "bob")
	for i := 0; i < 3; i++ {
		mustAppend(t, s, NewMsg(dm, "alice", "", `1`))
	}
	mustAppend(t, s, NewMsg(history.DirectConvID("bob", "carol"), "carol", "", `1`))
	// bob's delivered seq is the highest cursor in dm of any of his devices;
	// not his cursors elsewhere, not alice's, not a device never recorded.
	for _, d := range []history.DeviceRef{{Device: "bob/phone", User: "bob"}, {Device: "bob/tab", User: "bob"}, {Device: "alice/a", User: "alice"}} {
		if _, err := s.Device(ctx, d.Device, d.User); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SaveCursors(ctx, []history.Cursor{{Device: "bob/phone", Conv: dm, Seq: 2}, {Device: "bob/tab", Conv: dm, Seq: 1},
		{Device: "bob/tab", Conv: "dm:bob:carol", Seq: 9}, {Device: "alice/a", Conv: dm, Seq: 3}, {Device: "bob/unrecorded", Conv: dm, Seq: 3}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.MarkRead(ctx, "bob", dm, 1); err != nil {
		t.Fatal(err)
	}
	createGroup(t, s, "g", "alice", "bob", "carol", "dave", "Zed")
	if _, _, err := s.ChangeMember(ctx, change("g", "alice", "carol", "", true)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.MarkRead(ctx, "bob", "g:g", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCursors(ctx, []history.Cursor{{Device: "bob/phone", Conv: "g:g", Seq: 2}}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, user, conv string
		groupMax         int
		want             history.Receipts // Conv is the case's
		code             string
	}{
		{"DirectSender", "alice", dm, 100, history.Receipts{Kind: history.KindDirect, Members: []history.Receipt{{User: "bob", ReadSeq: 1, DeliveredSeq: 2}}}, ""},
		{"DirectReader", "bob", dm, 100, history.Receipts{Kind: history.KindDirect, Members: []history.Receipt{{User: "alice", ReadSeq: 0, DeliveredSeq: 3}}}, ""},
		{"DirectNoDevice", "bob", "dm:bob:carol", 100, history.Receipts{Kind: history.KindDirect, Members: []history.Receipt{{User: "carol"}}}, ""},
		// groupMax does not apply to direct conversations.
		{"DirectSmallMax", "alice", dm, 1, history.Receipts{Kind: history.KindDirect, Members: []history.Receipt{{User: "bob", ReadSeq: 1, DeliveredSeq: 2}}}, ""},
		// Four current members, sorted in byte order; no delivered seqs in
		// groups; carol, removed, is not listed.
		{"Group", "alice", "g:g", 4, history.Receipts{Kind: history.KindGroup, Members: []history.Receipt{{User: "Zed"}, {User: "bob", ReadSeq: 2}, {User: "dave"}}}, ""},
		{"GroupMember", "dave", "g:g", 4, history.Receipts{Kind: history.KindGroup, Members: []history.Receipt{{User: "Zed"}, {User: "alice"}, {User: "bob", ReadSeq: 2}}}, ""},
		{"GroupHidden", "alice", "g:g", 3, history.Receipts{Kind: history.KindGroup, Hidden: true}, ""},
		{"Stranger", "carol", dm, 100, history.Receipts{}, history.ENOTMEMBER},
		{"Removed", "carol", "g:g", 100, history.Receipts{}, history.ENOTMEMBER},
		{"RemovedHidden", "carol", "g:g", 1, history.Receipts{}, history.ENOTMEMBER},
		{"NoConv", "alice", "dm:alice:zed", 100, history.Receipts{}, history.ENOTMEMBER},
		{"NoGroup", "alice", "g:nope", 100, history.Receipts{}, history.ENOTMEMBER},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Receipts(ctx, tc.user, tc.conv, tc.groupMax)
			if tc.code != "" {
				wantCode(t, err, tc.code)
				return
			}
			tc.want.Conv = tc.conv
			if err != nil || fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tc.want) {
				t.Fatalf("Receipts = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

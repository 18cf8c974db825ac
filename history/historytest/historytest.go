// Package historytest is the conformance suite that every history.Store
// passes. A store's tests call Run with a function that returns a fresh,
// migrated, empty store for each subtest.
package historytest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
)

// Run runs the conformance suite against the stores that open returns.
func Run(t *testing.T, open func(t *testing.T) history.Store) {
	t.Run("Ping", func(t *testing.T) {
		s := open(t)
		if err := s.Ping(context.Background()); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})
	t.Run("AppendDirect", func(t *testing.T) { testAppendDirect(t, open(t)) })
	t.Run("AppendIdempotent", func(t *testing.T) { testAppendIdempotent(t, open(t)) })
	t.Run("AppendConcurrentSeq", func(t *testing.T) { testAppendConcurrent(t, open(t)) })
	t.Run("AppendInvalid", func(t *testing.T) { testAppendInvalid(t, open(t)) })
	t.Run("AppendBatch", func(t *testing.T) { testAppendBatch(t, open(t)) })
	t.Run("Messages", func(t *testing.T) { testMessages(t, open(t)) })
	t.Run("Groups", func(t *testing.T) { testGroups(t, open(t)) })
	t.Run("GroupErrors", func(t *testing.T) { testGroupErrors(t, open(t)) })
	t.Run("Device", func(t *testing.T) { testDevice(t, open(t)) })
	t.Run("Cursors", func(t *testing.T) { testCursors(t, open(t)) })
	t.Run("MarkRead", func(t *testing.T) { testMarkRead(t, open(t)) })
	t.Run("SharesConversation", func(t *testing.T) { testShares(t, open(t)) })
	t.Run("History", func(t *testing.T) { testHistory(t, open(t)) })
	t.Run("Conversations", func(t *testing.T) { testConversations(t, open(t)) })
	t.Run("Changes", func(t *testing.T) { testChanges(t, open(t)) })
	t.Run("ChangesPaging", func(t *testing.T) { testChangesPaging(t, open(t)) })
	t.Run("ClaimFencesCursors", func(t *testing.T) { testClaim(t, open(t)) })
	t.Run("MemberVersion", func(t *testing.T) { testMemberVersion(t, open(t)) })
	t.Run("PruneDevices", func(t *testing.T) { testPruneDevices(t, open(t)) })
	runRules(t, open)
}

// NewMsg returns a NewMessage from from in conv with a fresh id.
func NewMsg(conv, from, cid, body string) history.NewMessage {
	return history.NewMessage{Conv: conv, ID: history.NewID(time.Now()), CID: cid, From: from,
		TS: time.Now(), Type: history.TypeText, Body: json.RawMessage(body)}
}

func mustAppend(t *testing.T, s history.Store, nm history.NewMessage) history.Message {
	t.Helper()
	m, created, err := s.Append(context.Background(), nm)
	if err != nil {
		t.Fatalf("Append(%s from %s): %v", nm.Conv, nm.From, err)
	}
	if !created {
		t.Fatalf("Append(%s, cid %q): created = false, want true", nm.Conv, nm.CID)
	}
	return m
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := history.ErrorCode(err); got != code {
		t.Fatalf("error = %v (code %q), want code %q", err, got, code)
	}
}

func testAppendDirect(t *testing.T, s history.Store) {
	conv := history.DirectConvID("bob", "alice")
	for i := 1; i <= 3; i++ {
		nm := NewMsg(conv, "alice", fmt.Sprintf("c%d", i), fmt.Sprintf(`{"n":%d}`, i))
		m := mustAppend(t, s, nm)
		if m.Seq != int64(i) || m.Conv != conv || m.From != "alice" || m.ID != nm.ID || m.CID != nm.CID {
			t.Fatalf("message %d = %+v", i, m)
		}
	}
	// A message from the other side continues the same sequence.
	m := mustAppend(t, s, NewMsg(conv, "bob", "", `"hi"`))
	if m.Seq != 4 {
		t.Fatalf("bob's seq = %d, want 4", m.Seq)
	}
	// Another conversation has its own sequence.
	m = mustAppend(t, s, NewMsg(history.DirectConvID("alice", "carol"), "carol", "", `"x"`))
	if m.Seq != 1 {
		t.Fatalf("second conversation seq = %d, want 1", m.Seq)
	}
}

func testAppendIdempotent(t *testing.T, s history.Store) {
	ctx := context.Background()
	conv := history.DirectConvID("alice", "bob")
	first := mustAppend(t, s, NewMsg(conv, "alice", "same", `"one"`))
	mustAppend(t, s, NewMsg(conv, "alice", "other", `"two"`))
	again, created, err := s.Append(ctx, NewMsg(conv, "alice", "same", `"one again"`))
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if created || again.Seq != first.Seq || again.ID != first.ID || string(again.Body) != `"one"` {
		t.Fatalf("retry = %+v created=%v, want the original %+v", again, created, first)
	}
	// The same cid from the other user is a different message.
	m := mustAppend(t, s, NewMsg(conv, "bob", "same", `"bob"`))
	if m.Seq != 3 {
		t.Fatalf("bob's seq = %d, want 3", m.Seq)
	}
	msgs, err := s.Messages(ctx, conv, 0, 100)
	if err != nil || len(msgs) != 3 {
		t.Fatalf("Messages = %d, %v; want 3", len(msgs), err)
	}
}

func testAppendConcurrent(t *testing.T, s history.Store) {
	ctx := context.Background()
	conv := history.DirectConvID("alice", "bob")
	const writers, each = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers*each*2)
	// ids[w][i] is the id the store returned for writer w's i-th cid; both
	// sends of a cid must return the same message.
	ids := make([][]string, writers)
	for w := 0; w < writers; w++ {
		ids[w] = make([]string, each)
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				from := []string{"alice", "bob"}[w%2]
				// Every cid is sent twice, as a DUP resend would.
				nm := NewMsg(conv, from, fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
				for r := 0; r < 2; r++ {
					m, _, err := s.Append(ctx, nm)
					if err != nil {
						errs <- err
						continue
					}
					switch {
					case r == 0:
						ids[w][i] = m.ID
					case m.ID != ids[w][i]:
						errs <- fmt.Errorf("w%d-%d: retry returned id %s, first send %s", w, i, m.ID, ids[w][i])
					}
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Append: %v", err)
	}
	msgs, err := s.Messages(ctx, conv, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	// Exactly the cids sent, each once, under the id its Append returned,
	// with its own body, at seqs 1..N, and each writer's cids in the order
	// it sent them.
	type sent struct{ w, i int }
	want := map[string]sent{}
	for w := 0; w < writers; w++ {
		for i := 0; i < each; i++ {
			want[fmt.Sprintf("w%d-%d", w, i)] = sent{w, i}
		}
	}
	seen := map[string]int64{}
	lastOf := make([]int, writers)
	for w := range lastOf {
		lastOf[w] = -1
	}
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d: gap or duplicate", i, m.Seq)
		}
		k, ok := want[m.CID]
		if !ok {
			t.Fatalf("seq %d: cid %q was never sent", m.Seq, m.CID)
		}
		if seq, dup := seen[m.CID]; dup {
			t.Fatalf("cid %s stored twice, at seqs %d and %d", m.CID, seq, m.Seq)
		}
		seen[m.CID] = m.Seq
		if from := []string{"alice", "bob"}[k.w%2]; m.From != from {
			t.Fatalf("cid %s from %s, want %s", m.CID, m.From, from)
		}
		if m.ID != ids[k.w][k.i] {
			t.Fatalf("cid %s stored with id %s, Append returned %s", m.CID, m.ID, ids[k.w][k.i])
		}
		var body struct{ W, I int }
		if err := json.Unmarshal(m.Body, &body); err != nil || body.W != k.w || body.I != k.i {
			t.Fatalf("cid %s has body %s (%v)", m.CID, m.Body, err)
		}
		if k.i != lastOf[k.w]+1 {
			t.Fatalf("writer %d: cid %d stored after cid %d: not in send order", k.w, k.i, lastOf[k.w])
		}
		lastOf[k.w] = k.i
	}
	if len(seen) != len(want) {
		t.Fatalf("stored %d distinct cids of %d sent (%d messages)", len(seen), len(want), len(msgs))
	}
}

func testAppendInvalid(t *testing.T, s history.Store) {
	ctx := context.Background()
	_, _, err := s.Append(ctx, NewMsg("nonsense", "alice", "", `1`))
	wantCode(t, err, history.EINVALID)
	_, _, err = s.Append(ctx, NewMsg(history.DirectConvID("bob", "carol"), "alice", "", `1`))
	wantCode(t, err, history.ENOTMEMBER)
	_, _, err = s.Append(ctx, NewMsg(history.GroupConvID("nogroup"), "alice", "", `1`))
	wantCode(t, err, history.ENOTFOUND)
}

func testMessages(t *testing.T, s history.Store) {
	ctx := context.Background()
	conv := history.DirectConvID("alice", "bob")
	for i := 0; i < 10; i++ {
		mustAppend(t, s, NewMsg(conv, "alice", "", fmt.Sprintf(`{"i":%d,"s":"é\u2028"}`, i)))
	}
	msgs, err := s.Messages(ctx, conv, 4, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 || msgs[0].Seq != 5 || msgs[2].Seq != 7 {
		t.Fatalf("Messages(after 4, limit 3) = %+v", msgs)
	}
	var body struct {
		I int
		S string
	}
	if err := json.Unmarshal(msgs[0].Body, &body); err != nil || body.I != 4 || body.S != "é\u2028" {
		t.Fatalf("body = %s (%v)", msgs[0].Body, err)
	}
	if msgs[0].TS.IsZero() || msgs[0].Type != history.TypeText {
		t.Fatalf("message = %+v", msgs[0])
	}
	msgs, err = s.Messages(ctx, conv, 10, 5)
	if err != nil || len(msgs) != 0 {
		t.Fatalf("Messages past the end = %v, %v", msgs, err)
	}
	msgs, err = s.Messages(ctx, "dm:nobody:here", 0, 5)
	if err != nil || len(msgs) != 0 {
		t.Fatalf("Messages of an unknown conversation = %v, %v", msgs, err)
	}
}

func createGroup(t *testing.T, s history.Store, id, owner string, others ...string) history.Message {
	t.Helper()
	members := []history.Member{{User: owner, Role: history.RoleOwner}}
	for _, o := range others {
		members = append(members, history.Member{User: o, Role: history.RoleMember})
	}
	g := history.Group{ID: id, Name: "Group " + id, CreatedBy: owner, CreatedAt: time.Now()}
	nm := NewMsg("", owner, "", `{"name":"x"}`)
	nm.Type = history.TypeGroupCreated
	m, err := s.CreateGroup(context.Background(), g, members, nm)
	if err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	return m
}

func change(group, actor, user, role string, remove bool) history.MemberChange {
	return history.MemberChange{Group: group, Actor: actor, User: user, Role: role, Remove: remove,
		MessageID: history.NewID(time.Now()), TS: time.Now()}
}

func testGroups(t *testing.T, s history.Store) {
	ctx := context.Background()
	m := createGroup(t, s, "team", "alice", "bob")
	if m.Seq != 1 || m.Conv != "g:team" || m.Type != history.TypeGroupCreated || m.From != "alice" {
		t.Fatalf("group.created = %+v", m)
	}
	g, ms, err := s.Group(ctx, "team")
	if err != nil || g.Name != "Group team" || g.CreatedBy != "alice" || len(ms) != 2 {
		t.Fatalf("Group = %+v %+v %v", g, ms, err)
	}
	if history.RoleOf(ms, "alice") != history.RoleOwner || history.RoleOf(ms, "bob") != history.RoleMember {
		t.Fatalf("members = %+v", ms)
	}
	sent := mustAppend(t, s, NewMsg("g:team", "bob", "b1", `"hello"`))
	if sent.Seq != 2 {
		t.Fatalf("seq = %d, want 2", sent.Seq)
	}
	_, _, err = s.Append(ctx, NewMsg("g:team", "carol", "", `"let me in"`))
	wantCode(t, err, history.ENOTMEMBER)

	msg, after, err := s.ChangeMember(ctx, change("team", "alice", "carol", history.RoleAdmin, false))
	if err != nil || msg.Type != history.TypeMemberAdded || msg.Seq != 3 || msg.From != "alice" || len(after) != 3 {
		t.Fatalf("add carol = %+v %+v %v", msg, after, err)
	}
	var body struct{ User, Role string }
	if err := json.Unmarshal(msg.Body, &body); err != nil || body.User != "carol" || body.Role != history.RoleAdmin {
		t.Fatalf("member.added body = %s", msg.Body)
	}
	mustAppend(t, s, NewMsg("g:team", "carol", "", `"hi all"`))

	msg, after, err = s.ChangeMember(ctx, change("team", "carol", "bob", "", true))
	if err != nil || msg.Type != history.TypeMemberRemoved || msg.Seq != 5 || history.RoleOf(after, "bob") != "" {
		t.Fatalf("remove bob = %+v %+v %v", msg, after, err)
	}
	_, _, err = s.Append(ctx, NewMsg("g:team", "bob", "", `"still here?"`))
	wantCode(t, err, history.ENOTMEMBER)

	msg, _, err = s.ChangeMember(ctx, change("team", "carol", "carol", "", true))
	if err != nil || msg.Type != history.TypeMemberLeft {
		t.Fatalf("carol leaves = %+v %v", msg, err)
	}
	// Re-adding a former member works.
	msg, _, err = s.ChangeMember(ctx, change("team", "alice", "bob", history.RoleMember, false))
	if err != nil || msg.Type != history.TypeMemberAdded || msg.Seq != 7 {
		t.Fatalf("re-add bob = %+v %v", msg, err)
	}
	msgs, err := s.Messages(ctx, "g:team", 0, 100)
	if err != nil || len(msgs) != 7 {
		t.Fatalf("group history = %d messages, %v", len(msgs), err)
	}
}

func testGroupErrors(t *testing.T, s history.Store) {
	ctx := context.Background()
	createGroup(t, s, "club", "alice", "bob")
	g := history.Group{ID: "club", Name: "again", CreatedBy: "carol", CreatedAt: time.Now()}
	nm := NewMsg("", "carol", "", `{}`)
	nm.Type = history.TypeGroupCreated
	_, err := s.CreateGroup(ctx, g, []history.Member{{User: "carol", Role: history.RoleOwner}}, nm)
	wantCode(t, err, history.ECONFLICT)

	_, _, err = s.Group(ctx, "nope")
	wantCode(t, err, history.ENOTFOUND)

	cases := []struct {
		name string
		c    history.MemberChange
		code string
	}{
		{"NoSuchGroup", change("nope", "alice", "bob", history.RoleMember, false), history.ENOTFOUND},
		{"StrangerAdds", change("club", "mallory", "eve", history.RoleMember, false), history.ENOTMEMBER},
		{"MemberAdds", change("club", "bob", "eve", history.RoleMember, false), history.EFORBIDDEN},
		{"MemberRemovesOwner", change("club", "bob", "alice", "", true), history.EFORBIDDEN},
		{"OwnerLeaves", change("club", "alice", "alice", "", true), history.EFORBIDDEN},
		{"RemoveStranger", change("club", "alice", "eve", "", true), history.ENOTFOUND},
		{"BadRole", change("club", "alice", "eve", "owner", false), history.EINVALID},
		{"BadUser", change("club", "alice", "e/ve", history.RoleMember, false), history.EINVALID},
		{"AlreadyMember", change("club", "alice", "bob", history.RoleMember, false), history.ECONFLICT},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := s.ChangeMember(ctx, tc.c)
			wantCode(t, err, tc.code)
		})
	}
	// Nothing above wrote a message.
	msgs, err := s.Messages(ctx, "g:club", 0, 100)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("club history = %d messages, %v; want only group.created", len(msgs), err)
	}
}

func testDevice(t *testing.T, s history.Store) {
	ctx := context.Background()
	st, err := s.Device(ctx, "alice/phone", "alice")
	if err != nil || !st.New || len(st.Cursors) != 0 || len(st.Convs) != 0 {
		t.Fatalf("first Device = %+v, %v", st, err)
	}
	st, err = s.Device(ctx, "alice/phone", "alice")
	if err != nil || st.New {
		t.Fatalf("second Device = %+v, %v; want New false", st, err)
	}
	dm := history.DirectConvID("alice", "bob")
	mustAppend(t, s, NewMsg(dm, "bob", "", `1`))
	mustAppend(t, s, NewMsg(dm, "alice", "", `2`))
	createGroup(t, s, "g1", "carol", "dave")
	mustAppend(t, s, NewMsg("g:g1", "carol", "", `1`))
	if _, _, err := s.ChangeMember(ctx, change("g1", "carol", "alice", history.RoleMember, false)); err != nil {
		t.Fatal(err)
	}
	createGroup(t, s, "g2", "alice", "bob")
	if _, _, err := s.ChangeMember(ctx, change("g2", "alice", "bob", "", true)); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, NewMsg("g:g2", "alice", "", `"after bob left"`))

	st, err = s.Device(ctx, "alice/laptop", "alice")
	if err != nil || !st.New {
		t.Fatalf("Device = %+v, %v", st, err)
	}
	want := map[string]history.ConvHead{
		dm:     {Conv: dm, First: 1, Last: 2},
		"g:g1": {Conv: "g:g1", First: 3, Last: 3},
		"g:g2": {Conv: "g:g2", First: 1, Last: 3},
	}
	if len(st.Convs) != len(want) {
		t.Fatalf("alice's conversations = %+v", st.Convs)
	}
	for _, h := range st.Convs {
		if want[h.Conv] != h {
			t.Fatalf("head %+v, want %+v", h, want[h.Conv])
		}
	}
	// bob left g2 at seq 2: his view of g2 ends there.
	st, err = s.Device(ctx, "bob", "bob")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.Convs {
		if h.Conv == "g:g2" && (h.First != 1 || h.Last != 2) {
			t.Fatalf("bob's g2 = %+v, want 1..2", h)
		}
	}
}

func testCursors(t *testing.T, s history.Store) {
	ctx := context.Background()
	if err := s.SaveCursors(ctx, nil); err != nil {
		t.Fatal(err)
	}
	err := s.SaveCursors(ctx, []history.Cursor{{Device: "alice/a", Conv: "dm:alice:bob", Seq: 5}, {Device: "alice/a", Conv: "g:x", Seq: 2}, {Device: "alice/b", Conv: "dm:alice:bob", Seq: 1}})
	if err != nil {
		t.Fatal(err)
	}
	// Cursors only move forward.
	if err := s.SaveCursors(ctx, []history.Cursor{{Device: "alice/a", Conv: "dm:alice:bob", Seq: 3}, {Device: "alice/a", Conv: "g:x", Seq: 7}}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Device(ctx, "alice/a", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if st.Cursors["dm:alice:bob"] != 5 || st.Cursors["g:x"] != 7 || len(st.Cursors) != 2 {
		t.Fatalf("cursors = %v", st.Cursors)
	}
	st, _ = s.Device(ctx, "alice/b", "alice")
	if st.Cursors["dm:alice:bob"] != 1 {
		t.Fatalf("alice/b cursors = %v", st.Cursors)
	}
}

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
	createGroup(t, s, "club", "u1", "alice")
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
		got[0].LastSeq != 1 || got[0].Unread != 1 || got[0].LastMessage == nil || got[0].LastMessage.Type != history.TypeGroupCreated {
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

func testAppendBatch(t *testing.T, s history.Store) {
	ctx := context.Background()
	createGroup(t, s, "g", "alice", "bob")
	dm := history.DirectConvID("alice", "bob")
	mustAppend(t, s, NewMsg(dm, "alice", "old", `"old"`))
	batch := []history.NewMessage{
		NewMsg(dm, "alice", "a1", `1`),                               // seq 2
		NewMsg("g:g", "bob", "b1", `2`),                              // seq 2
		NewMsg("g:g", "carol", "c1", `3`),                            // not a member
		NewMsg(dm, "bob", "", `4`),                                   // seq 3
		NewMsg(dm, "alice", "old", `"again"`),                        // retry of seq 1
		NewMsg(dm, "alice", "a1", `"repeat"`),                        // repeat within the batch
		NewMsg("g:nope", "alice", "", `5`),                           // no such group
		NewMsg("bad", "alice", "", `6`),                              // invalid
		NewMsg(dm, "carol", "", `7`),                                 // not part of it
		NewMsg("g:g", "alice", "", `8`),                              // seq 3
		NewMsg(history.DirectConvID("alice", "zed"), "zed", "", `9`), // new conversation, seq 1
	}
	rs, err := s.AppendBatch(ctx, batch)
	if err != nil || len(rs) != len(batch) {
		t.Fatalf("AppendBatch: %d results, %v", len(rs), err)
	}
	want := []struct {
		seq     int64
		created bool
		code    string
	}{
		{2, true, ""}, {2, true, ""}, {0, false, history.ENOTMEMBER}, {3, true, ""}, {1, false, ""}, {2, false, ""},
		{0, false, history.ENOTFOUND}, {0, false, history.EINVALID}, {0, false, history.ENOTMEMBER}, {3, true, ""}, {1, true, ""},
	}
	for i, w := range want {
		r := rs[i]
		if history.ErrorCode(r.Err) != w.code || r.Message.Seq != w.seq || r.Created != w.created {
			t.Fatalf("result %d = %+v (err %v), want seq %d created %v code %q", i, r.Message, r.Err, w.seq, w.created, w.code)
		}
	}
	if string(rs[4].Message.Body) != `"old"` || string(rs[5].Message.Body) != `1` {
		t.Fatalf("retries returned %s and %s, want the originals", rs[4].Message.Body, rs[5].Message.Body)
	}
	msgs, _ := s.Messages(ctx, dm, 0, 100)
	if len(msgs) != 3 {
		t.Fatalf("dm holds %d messages, want 3", len(msgs))
	}
	msgs, _ = s.Messages(ctx, "g:g", 0, 100)
	if len(msgs) != 3 || msgs[2].From != "alice" {
		t.Fatalf("group holds %d messages", len(msgs))
	}
	st, _ := s.Device(ctx, "zed/1", "zed")
	if len(st.Convs) != 1 || st.Convs[0].Last != 1 {
		t.Fatalf("zed's conversations = %+v", st.Convs)
	}
}

func testClaim(t *testing.T, s history.Store) {
	ctx := context.Background()
	e1, err := s.Claim(ctx, "alice/phone")
	if err != nil || e1 < 1 {
		t.Fatalf("Claim = %d, %v", e1, err)
	}
	e2, err := s.Claim(ctx, "alice/phone")
	if err != nil || e2 <= e1 {
		t.Fatalf("second Claim = %d, %v; want > %d", e2, err, e1)
	}
	conv := "dm:alice:bob"
	// The superseded session's write is ignored; the current one's applies;
	// unfenced writes (epoch 0) always apply.
	if err := s.SaveCursors(ctx, []history.Cursor{{Device: "alice/phone", Conv: conv, Seq: 9, Epoch: e1}}); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Device(ctx, "alice/phone", "alice")
	if st.Cursors[conv] != 0 {
		t.Fatalf("stale epoch moved the cursor to %d", st.Cursors[conv])
	}
	if err := s.SaveCursors(ctx, []history.Cursor{{Device: "alice/phone", Conv: conv, Seq: 4, Epoch: e2}, {Device: "alice/tab", Conv: conv, Seq: 2}}); err != nil {
		t.Fatal(err)
	}
	st, _ = s.Device(ctx, "alice/phone", "alice")
	if st.Cursors[conv] != 4 {
		t.Fatalf("current epoch: cursor %d, want 4", st.Cursors[conv])
	}
	st, _ = s.Device(ctx, "alice/tab", "alice")
	if st.Cursors[conv] != 2 {
		t.Fatalf("unfenced: cursor %d, want 2", st.Cursors[conv])
	}
}

func testMemberVersion(t *testing.T, s history.Store) {
	ctx := context.Background()
	createGroup(t, s, "g", "alice", "bob")
	g, _, err := s.Group(ctx, "g")
	if err != nil || g.Version < 1 {
		t.Fatalf("Group = %+v, %v", g, err)
	}
	rs, err := s.AppendBatch(ctx, []history.NewMessage{NewMsg("g:g", "bob", "", `1`)})
	if err != nil || rs[0].MemberVersion != g.Version {
		t.Fatalf("append version %d, want %d (%v)", rs[0].MemberVersion, g.Version, err)
	}
	if _, _, err := s.ChangeMember(ctx, change("g", "alice", "carol", history.RoleMember, false)); err != nil {
		t.Fatal(err)
	}
	g2, _, _ := s.Group(ctx, "g")
	rs, _ = s.AppendBatch(ctx, []history.NewMessage{NewMsg("g:g", "carol", "", `2`)})
	if g2.Version <= g.Version || rs[0].MemberVersion != g2.Version {
		t.Fatalf("after a change: group %d, append %d; want > %d and equal", g2.Version, rs[0].MemberVersion, g.Version)
	}
}

func testPruneDevices(t *testing.T, s history.Store) {
	ctx := context.Background()
	conv := history.DirectConvID("alice", "bob")
	mustAppend(t, s, NewMsg(conv, "bob", "", `1`))
	prune := func(before time.Time, connected []string, want int) {
		t.Helper()
		n, err := s.PruneDevices(ctx, before, connected)
		if err != nil || n != want {
			t.Fatalf("PruneDevices(%v, %v) = %d, %v; want %d", before, connected, n, err, want)
		}
	}
	// seen makes device known as a connecting client would: a session
	// epoch, the device record and a cursor.
	seen := func(device, user string) int64 {
		t.Helper()
		epoch, err := s.Claim(ctx, device)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Device(ctx, device, user); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveCursors(ctx, []history.Cursor{{Device: device, Conv: conv, Seq: 1, Epoch: epoch}}); err != nil {
			t.Fatal(err)
		}
		return epoch
	}
	// known reports whether device is still known, with its cursor.
	known := func(device, user string) bool {
		t.Helper()
		st, err := s.Device(ctx, device, user)
		if err != nil {
			t.Fatal(err)
		}
		if !st.New && st.Cursors[conv] != 1 {
			t.Fatalf("%s is known without its cursor: %v", device, st.Cursors)
		}
		return !st.New
	}

	prune(time.Now().Add(time.Hour), nil, 0) // nothing to prune yet
	oldEpoch := seen("alice/old", "alice")
	seen("alice/phone", "alice")
	seen("bob", "bob")
	if _, err := s.Claim(ctx, "carol/claimed"); err != nil { // a session, no device record
		t.Fatal(err)
	}
	if _, err := s.Device(ctx, "dave/recorded", "dave"); err != nil { // a device record, no session
		t.Fatal(err)
	}

	// Nothing was seen before an hour ago.
	prune(time.Now().Add(-time.Hour), nil, 0)

	// A cut-off in the future finds every device stale but the connected
	// ones, which are marked seen now.
	touched := time.Now()
	prune(time.Now().Add(time.Hour), []string{"alice/phone", "bob", "nobody/else"}, 3)
	if !known("alice/phone", "alice") || !known("bob", "bob") {
		t.Fatal("a connected device was pruned")
	}
	// A pruned device comes back as a new device, without cursors (the
	// fenced cursor write of its old session is ignored), with a fresh
	// session epoch.
	if err := s.SaveCursors(ctx, []history.Cursor{{Device: "alice/old", Conv: conv, Seq: 1, Epoch: oldEpoch}}); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Device(ctx, "alice/old", "alice"); err != nil || !st.New || len(st.Cursors) != 0 {
		t.Fatalf("Device(pruned device) = %+v, %v; want a new device without cursors", st, err)
	}
	if epoch, err := s.Claim(ctx, "alice/old"); err != nil || epoch < 1 {
		t.Fatalf("Claim(pruned device) = %d, %v", epoch, err)
	}

	// The connected devices were marked seen by the prune above: a cut-off
	// just before it keeps them.
	prune(touched.Add(-time.Millisecond), nil, 0)
	if !known("alice/phone", "alice") || !known("bob", "bob") {
		t.Fatal("a device seen after the cut-off was pruned")
	}
	// Claim marks a device seen: bob's device record is older than the
	// cut-off, his session is not.
	cut := time.Now()
	if _, err := s.Claim(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	prune(cut, []string{"alice/phone", "alice/old"}, 0)
	// Without the connected list, a future cut-off prunes every device.
	prune(time.Now().Add(time.Hour), nil, 3)
}

// Reopen checks that seqs survive a restart: open returns the same database
// each time it is called (a new Store over it, as a restarted node would
// open). Messages appended before and after each close keep contiguous seqs
// in append order, and no seq ever names a different message: every seq
// still holds the id, cid, sender and body its Append returned.
func Reopen(t *testing.T, open func(t *testing.T) history.Store) {
	ctx := context.Background()
	direct := history.DirectConvID("alice", "bob")
	var want []history.Message
	for run := 0; run < 3; run++ {
		s := open(t)
		for i := 0; i < 2; i++ {
			from := []string{"alice", "bob"}[i]
			m := mustAppend(t, s, NewMsg(direct, from, fmt.Sprintf("r%d-%d", run, i), fmt.Sprintf(`{"run":%d,"i":%d}`, run, i)))
			if m.Seq != int64(len(want)+1) {
				t.Fatalf("run %d: message %d got seq %d, want %d (the seq did not continue after reopening)", run, i, m.Seq, len(want)+1)
			}
			want = append(want, m)
		}
		// A group commit after the reopen continues the same counter.
		batch := []history.NewMessage{
			NewMsg(direct, "alice", fmt.Sprintf("r%d-b0", run), fmt.Sprintf(`{"run":%d,"b":0}`, run)),
			NewMsg(direct, "bob", fmt.Sprintf("r%d-b1", run), fmt.Sprintf(`{"run":%d,"b":1}`, run)),
		}
		rs, err := s.AppendBatch(ctx, batch)
		if err != nil {
			t.Fatalf("run %d: AppendBatch: %v", run, err)
		}
		for i, r := range rs {
			if r.Err != nil || !r.Created {
				t.Fatalf("run %d: batch message %d: created %v, %v", run, i, r.Created, r.Err)
			}
			if r.Message.Seq != int64(len(want)+1) {
				t.Fatalf("run %d: batch message %d got seq %d, want %d", run, i, r.Message.Seq, len(want)+1)
			}
			want = append(want, r.Message)
		}
		got, err := s.Messages(ctx, direct, 0, 1000)
		if err != nil {
			t.Fatalf("run %d: Messages: %v", run, err)
		}
		if len(got) != len(want) {
			t.Fatalf("run %d: %d messages stored, want %d", run, len(got), len(want))
		}
		for i, m := range got {
			w := want[i]
			if m.Seq != w.Seq || m.ID != w.ID || m.CID != w.CID || m.From != w.From || string(m.Body) != string(w.Body) {
				t.Fatalf("run %d: seq %d holds id %s cid %s from %s body %s; Append returned seq %d id %s cid %s from %s body %s",
					run, m.Seq, m.ID, m.CID, m.From, m.Body, w.Seq, w.ID, w.CID, w.From, w.Body)
			}
		}
		// A retry of a message stored before the reopen is still a duplicate.
		if run > 0 {
			old := want[0]
			m, created, err := s.Append(ctx, history.NewMessage{Conv: direct, ID: history.NewID(time.Now()), CID: old.CID,
				From: old.From, TS: time.Now(), Type: history.TypeText, Body: json.RawMessage(`"retry"`)})
			if err != nil || created || m.Seq != old.Seq || m.ID != old.ID {
				t.Fatalf("run %d: retry of cid %s after reopen: seq %d id %s created %v %v; want the original seq %d id %s",
					run, old.CID, m.Seq, m.ID, created, err, old.Seq, old.ID)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatalf("run %d: Close: %v", run, err)
		}
	}
}

package historytest

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"

	"github.com/parley-im/parley/history"
)

// rulesCases are the cases that pin down the shared rules of package history
// (history.AppendPlan, history.MemberPlan, history.HistoryQuery.Range,
// history.Page) as every store applies them.
var rulesCases = []storeCase{
	{"AppendBatchNothingValid", testAppendBatchNothingValid},
	{"AppendBatchManyConvs", testAppendBatchManyConvs},
	{"ChangeMemberRole", testChangeMemberRole},
	{"HistoryBounds", testHistoryBounds},
	{"ConversationsCursor", testConversationsCursor},
}

func testAppendBatchNothingValid(t *testing.T, s history.Store) {
	rs, err := s.AppendBatch(context.Background(), []history.NewMessage{
		NewMsg("bad", "alice", "", `1`),
		NewMsg(history.DirectConvID("bob", "carol"), "alice", "", `2`),
	})
	if err != nil || len(rs) != 2 || history.ErrorCode(rs[0].Err) != history.EINVALID || history.ErrorCode(rs[1].Err) != history.ENOTMEMBER {
		t.Fatalf("AppendBatch = %+v, %v", rs, err)
	}
	if _, _, err := s.History(context.Background(), history.HistoryQuery{User: "bob", Conv: history.DirectConvID("bob", "carol"), Limit: 5}); history.ErrorCode(err) != history.ENOTMEMBER {
		t.Fatalf("a refused message created its conversation: %v", err)
	}
}

// testAppendBatchManyConvs: one batch over many conversations, given out of
// id order, numbers each conversation on its own and leaves each at its
// last message.
func testAppendBatchManyConvs(t *testing.T, s history.Store) {
	ctx := context.Background()
	var batch []history.NewMessage
	for i := 0; i < 3; i++ {
		for u := 9; u >= 0; u-- {
			batch = append(batch, NewMsg(history.DirectConvID("alice", fmt.Sprintf("u%d", u)), "alice", fmt.Sprintf("c%d", i), fmt.Sprint(i)))
		}
	}
	rs, err := s.AppendBatch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r.Err != nil || !r.Created || r.Message.Seq != int64(i/10+1) {
			t.Fatalf("result %d = %+v, %v; want seq %d", i, r.Message, r.Err, i/10+1)
		}
	}
	views, _, err := s.Conversations(ctx, "alice", "", 20)
	if err != nil || len(views) != 10 {
		t.Fatalf("Conversations = %d, %v", len(views), err)
	}
	for _, v := range views {
		if v.LastSeq != 3 || v.LastMessage == nil || v.LastMessage.Seq != 3 || string(v.LastMessage.Body) != "2" {
			t.Fatalf("view %+v, last %+v", v, v.LastMessage)
		}
	}
}

func testChangeMemberRole(t *testing.T, s history.Store) {
	ctx := context.Background()
	createGroup(t, s, "g", "alice", "bob")
	g, _, _ := s.Group(ctx, "g")
	msg, after, err := s.ChangeMember(ctx, change("g", "alice", "bob", history.RoleAdmin, false))
	if err != nil || msg.Type != history.TypeMemberRole || msg.Seq != 2 || history.RoleOf(after, "bob") != history.RoleAdmin {
		t.Fatalf("promote bob = %+v %+v %v", msg, after, err)
	}
	g2, ms, err := s.Group(ctx, "g")
	if err != nil || history.RoleOf(ms, "bob") != history.RoleAdmin || g2.Version != g.Version+1 {
		t.Fatalf("Group = %+v %+v %v; want bob admin, version %d", g2, ms, err, g.Version+1)
	}
	// bob, now an admin, adds carol; she sees the group from her addition.
	if msg, _, err = s.ChangeMember(ctx, change("g", "bob", "carol", history.RoleMember, false)); err != nil || msg.Seq != 3 {
		t.Fatalf("bob adds carol = %+v %v", msg, err)
	}
	_, h, err := s.History(ctx, history.HistoryQuery{User: "carol", Conv: "g:g", Limit: 5})
	if err != nil || h.First != 3 || h.Last != 3 {
		t.Fatalf("carol's head = %+v, %v", h, err)
	}
}

// testHistoryBounds: paging never leaves what the user may see.
func testHistoryBounds(t *testing.T, s history.Store) {
	ctx := context.Background()
	createGroup(t, s, "g", "alice")                                                                             // 1
	mustAppend(t, s, NewMsg("g:g", "alice", "", `2`))                                                           // 2
	if _, _, err := s.ChangeMember(ctx, change("g", "alice", "carol", history.RoleMember, false)); err != nil { // 3
		t.Fatal(err)
	}
	mustAppend(t, s, NewMsg("g:g", "carol", "", `4`))                                          // 4
	if _, _, err := s.ChangeMember(ctx, change("g", "alice", "carol", "", true)); err != nil { // 5
		t.Fatal(err)
	}
	mustAppend(t, s, NewMsg("g:g", "alice", "", `6`)) // 6
	cases := []struct {
		name          string
		after, before int64
		limit         int
		want          string
	}{
		{"FromStart", 0, 0, 10, "[3 4 5]"},
		{"After", 3, 0, 10, "[4 5]"},
		{"AfterRemoval", 5, 0, 10, "[]"},
		{"Limit", 0, 0, 2, "[3 4]"},
		{"Before", 0, 5, 10, "[4 3]"},
		{"BeforeJoin", 0, 3, 10, "[]"},
		{"BeforeWins", 4, 6, 1, "[5]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ms, _, err := s.History(ctx, history.HistoryQuery{User: "carol", Conv: "g:g", After: tc.after, Before: tc.before, Limit: tc.limit})
			var seqs []int64
			for _, m := range ms {
				seqs = append(seqs, m.Seq)
			}
			if err != nil || fmt.Sprint(seqs) != tc.want {
				t.Fatalf("History = %v, %v; want %s", seqs, err, tc.want)
			}
		})
	}
}

// testConversationsCursor: a cursor must name a conversation.
func testConversationsCursor(t *testing.T, s history.Store) {
	mustAppend(t, s, NewMsg(history.DirectConvID("alice", "bob"), "alice", "", `1`))
	_, _, err := s.Conversations(context.Background(), "alice", base64.RawURLEncoding.EncodeToString([]byte("1|")), 2)
	wantCode(t, err, history.EINVALID)
}

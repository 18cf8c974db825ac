package historytest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
)

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
	if msgs := allMessages(t, s, "g:team"); len(msgs) != 7 {
		t.Fatalf("group history = %d messages, want 7", len(msgs))
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
	if msgs := allMessages(t, s, "g:club"); len(msgs) != 1 {
		t.Fatalf("club history = %d messages; want only group.created", len(msgs))
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

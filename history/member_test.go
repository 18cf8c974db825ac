package history_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
)

// team returns the members of a group with one member of each role.
func team(t testing.TB) []history.Member {
	t.Helper()
	return []history.Member{
		{User: "admin", Role: history.RoleAdmin},
		{User: "admin2", Role: history.RoleAdmin},
		{User: "member", Role: history.RoleMember},
		{User: "member2", Role: history.RoleMember},
		{User: "owner", Role: history.RoleOwner},
	}
}

// roster returns the members that s lists as "user:role" words.
func roster(s string) []history.Member {
	var out []history.Member
	for _, w := range strings.Fields(s) {
		u, r, _ := strings.Cut(w, ":")
		out = append(out, history.Member{User: u, Role: r})
	}
	return out
}

func TestRoleOf(t *testing.T) {
	members := team(t)
	roleOf := func(user string) string { return history.RoleOf(members, user) }
	runTable(t, "RoleOf", roleOf, []tableCase[string, string]{
		{"Owner", "owner", history.RoleOwner},
		{"Admin", "admin", history.RoleAdmin},
		{"Member", "member", history.RoleMember},
		{"Stranger", "stranger", ""},
		{"Empty", "", ""},
	})
}

func TestCheckMemberChange(t *testing.T) {
	const (
		add    = false
		remove = true
	)
	cases := []struct {
		name   string
		actor  string
		user   string
		role   string
		remove bool
		typ    string // want, or "" for an error
		code   string // want error code
	}{
		// Validation comes first.
		{"InvalidUser", "owner", "a/b", history.RoleMember, add, "", history.EINVALID},
		{"EmptyUser", "owner", "", history.RoleMember, add, "", history.EINVALID},
		{"InvalidUserRemove", "owner", "a b", "", remove, "", history.EINVALID},
		{"StrangerAdds", "stranger", "new", history.RoleMember, add, "", history.ENOTMEMBER},
		{"StrangerRemoves", "stranger", "member", "", remove, "", history.ENOTMEMBER},
		{"StrangerLeaves", "stranger", "stranger", "", remove, "", history.ENOTMEMBER},

		// Adding members.
		{"OwnerAddsMember", "owner", "new", history.RoleMember, add, history.TypeMemberAdded, ""},
		{"OwnerAddsAdmin", "owner", "new", history.RoleAdmin, add, history.TypeMemberAdded, ""},
		{"AdminAddsMember", "admin", "new", history.RoleMember, add, history.TypeMemberAdded, ""},
		{"AdminAddsAdmin", "admin", "new", history.RoleAdmin, add, history.TypeMemberAdded, ""},
		{"MemberAdds", "member", "new", history.RoleMember, add, "", history.EFORBIDDEN},
		{"AddAsOwner", "owner", "new", history.RoleOwner, add, "", history.EINVALID},
		{"AddWithoutRole", "owner", "new", "", add, "", history.EINVALID},
		{"AddInvalidRole", "admin", "new", "boss", add, "", history.EINVALID},
		{"AlreadyMember", "owner", "member", history.RoleMember, add, "", history.ECONFLICT},
		{"AlreadyAdmin", "admin", "admin2", history.RoleAdmin, add, "", history.ECONFLICT},

		// Changing roles.
		{"OwnerPromotesMember", "owner", "member", history.RoleAdmin, add, history.TypeMemberRole, ""},
		{"OwnerDemotesAdmin", "owner", "admin", history.RoleMember, add, history.TypeMemberRole, ""},
		{"AdminPromotesMember", "admin", "member", history.RoleAdmin, add, history.TypeMemberRole, ""},
		{"AdminDemotesAdmin", "admin", "admin2", history.RoleMember, add, "", history.EFORBIDDEN},
		{"AdminDemotesSelf", "admin", "admin", history.RoleMember, add, "", history.EFORBIDDEN},
		{"MemberPromotesSelf", "member", "member", history.RoleAdmin, add, "", history.EFORBIDDEN},
		{"AdminChangesOwner", "admin", "owner", history.RoleMember, add, "", history.EFORBIDDEN},
		{"OwnerChangesSelf", "owner", "owner", history.RoleAdmin, add, "", history.EFORBIDDEN},

		// Removing members and leaving.
		{"OwnerRemovesMember", "owner", "member", "", remove, history.TypeMemberRemoved, ""},
		{"OwnerRemovesAdmin", "owner", "admin", "", remove, history.TypeMemberRemoved, ""},
		{"AdminRemovesMember", "admin", "member", "", remove, history.TypeMemberRemoved, ""},
		{"AdminRemovesAdmin", "admin", "admin2", "", remove, "", history.EFORBIDDEN},
		{"MemberRemovesMember", "member", "member2", "", remove, "", history.EFORBIDDEN},
		{"MemberRemovesAdmin", "member", "admin", "", remove, "", history.EFORBIDDEN},
		{"MemberLeaves", "member", "member", "", remove, history.TypeMemberLeft, ""},
		{"AdminLeaves", "admin", "admin", "", remove, history.TypeMemberLeft, ""},
		{"LeaveIgnoresRole", "member", "member", "bogus", remove, history.TypeMemberLeft, ""},
		{"OwnerLeaves", "owner", "owner", "", remove, "", history.EFORBIDDEN},
		{"AdminRemovesOwner", "admin", "owner", "", remove, "", history.EFORBIDDEN},
		{"MemberRemovesOwner", "member", "owner", "", remove, "", history.EFORBIDDEN},
		{"RemoveStranger", "owner", "stranger", "", remove, "", history.ENOTFOUND},
		{"MemberRemovesStranger", "member", "stranger", "", remove, "", history.ENOTFOUND},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			members := team(t)
			c := history.MemberChange{Group: "team", Actor: tc.actor, User: tc.user, Role: tc.role, Remove: tc.remove}
			typ, err := history.CheckMemberChange(members, c)
			if tc.code == "" {
				if err != nil || typ != tc.typ {
					t.Fatalf("CheckMemberChange(%+v) = %q, %v; want %q, nil", c, typ, err, tc.typ)
				}
			} else {
				var e *history.Error
				if !errors.As(err, &e) || e.Code != tc.code {
					t.Fatalf("CheckMemberChange(%+v) = %q, %v; want an *Error with code %q", c, typ, err, tc.code)
				}
				if typ != "" {
					t.Fatalf("CheckMemberChange(%+v) returned type %q with error %v", c, typ, err)
				}
				if e.Message == "" {
					t.Fatalf("CheckMemberChange(%+v): error without a message", c)
				}
			}
			if !slices.Equal(members, team(t)) {
				t.Fatalf("CheckMemberChange modified members: %v", members)
			}
		})
	}
}

func TestApplyMemberChange(t *testing.T) {
	cases := []struct {
		name string
		c    history.MemberChange
		typ  string
		want []history.Member
	}{
		{
			name: "Added",
			c:    history.MemberChange{Actor: "owner", User: "carol", Role: history.RoleMember},
			typ:  history.TypeMemberAdded,
			want: roster("admin:admin admin2:admin carol:member member:member member2:member owner:owner"),
		},
		{
			name: "AddedSortsFirst",
			c:    history.MemberChange{Actor: "owner", User: "Zed", Role: history.RoleAdmin},
			typ:  history.TypeMemberAdded,
			want: roster("Zed:admin admin:admin admin2:admin member:member member2:member owner:owner"),
		},
		{
			name: "RoleChanged",
			c:    history.MemberChange{Actor: "owner", User: "member", Role: history.RoleAdmin},
			typ:  history.TypeMemberRole,
			want: roster("admin:admin admin2:admin member:admin member2:member owner:owner"),
		},
		{
			name: "Removed",
			c:    history.MemberChange{Actor: "owner", User: "admin", Remove: true},
			typ:  history.TypeMemberRemoved,
			want: roster("admin2:admin member:member member2:member owner:owner"),
		},
		{
			name: "Left",
			c:    history.MemberChange{Actor: "member2", User: "member2", Role: "ignored", Remove: true},
			typ:  history.TypeMemberLeft,
			want: roster("admin:admin admin2:admin member:member owner:owner"),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			members := team(t)
			got := history.ApplyMemberChange(members, tc.c, tc.typ)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("ApplyMemberChange(%+v, %q) =\n%v\nwant\n%v", tc.c, tc.typ, got, tc.want)
			}
			if !slices.Equal(members, team(t)) {
				t.Fatalf("ApplyMemberChange modified its input: %v", members)
			}
		})
	}
}

// TestApplyMemberChangeUnsorted: the result is sorted even when the input is
// not, and the input keeps its order.
func TestApplyMemberChangeUnsorted(t *testing.T) {
	members := []history.Member{{User: "zoe", Role: history.RoleOwner}, {User: "bob", Role: history.RoleMember}}
	got := history.ApplyMemberChange(members, history.MemberChange{User: "kim", Role: history.RoleMember}, history.TypeMemberAdded)
	want := []history.Member{{User: "bob", Role: history.RoleMember}, {User: "kim", Role: history.RoleMember}, {User: "zoe", Role: history.RoleOwner}}
	if !slices.Equal(got, want) {
		t.Fatalf("ApplyMemberChange = %v, want %v", got, want)
	}
	if members[0].User != "zoe" || members[1].User != "bob" || len(members) != 2 {
		t.Fatalf("ApplyMemberChange reordered its input: %v", members)
	}
}

func TestMemberMessage(t *testing.T) {
	ts := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		c    history.MemberChange
		typ  string
		body string
	}{
		{"Added", history.MemberChange{User: "bob", Role: history.RoleMember}, history.TypeMemberAdded, `{"user":"bob","role":"member"}`},
		{"Role", history.MemberChange{User: "bob", Role: history.RoleAdmin}, history.TypeMemberRole, `{"user":"bob","role":"admin"}`},
		{"Removed", history.MemberChange{User: "bob", Role: history.RoleAdmin, Remove: true}, history.TypeMemberRemoved, `{"user":"bob"}`},
		{"Left", history.MemberChange{User: "bob", Remove: true}, history.TypeMemberLeft, `{"user":"bob"}`},
		{"UserNeedsEscaping", history.MemberChange{User: `a"b<c`, Role: history.RoleMember}, history.TypeMemberAdded, `{"user":"a\"b\u003cc","role":"member"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			c.Group, c.Actor, c.MessageID, c.TS = "team", "owner", "msg1", ts
			m := history.MemberMessage(c, tc.typ)
			if string(m.Body) != tc.body {
				t.Fatalf("MemberMessage body = %s, want %s", m.Body, tc.body)
			}
			if m.Conv != "g:team" || m.ID != "msg1" || m.From != "owner" || !m.TS.Equal(ts) || m.Type != tc.typ || m.CID != "" {
				t.Fatalf("MemberMessage = %+v; want conv g:team, id msg1, from owner, ts %v, type %q, no cid", m, ts, tc.typ)
			}
		})
	}
}

// TestCheckMemberChangeFull: a full group takes no new member, but its
// members may still change roles and leave.
func TestCheckMemberChangeFull(t *testing.T) {
	full := team(t)
	for i := len(full); i < history.MaxGroupMembers; i++ {
		full = append(full, history.Member{User: fmt.Sprintf("u%05d", i), Role: history.RoleMember})
	}
	cases := []struct {
		name string
		c    history.MemberChange
		typ  string
		code string
	}{
		{"Add", history.MemberChange{Actor: "owner", User: "new", Role: history.RoleMember}, "", history.EINVALID},
		{"Promote", history.MemberChange{Actor: "owner", User: "member", Role: history.RoleAdmin}, history.TypeMemberRole, ""},
		{"Leave", history.MemberChange{Actor: "member", User: "member", Remove: true}, history.TypeMemberLeft, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Group = "team"
			typ, err := history.CheckMemberChange(full, tc.c)
			if typ != tc.typ || history.ErrorCode(err) != tc.code {
				t.Fatalf("CheckMemberChange(%+v) = %q, %v; want %q, code %q", tc.c, typ, err, tc.typ, tc.code)
			}
		})
	}
	if _, err := history.CheckMemberChange(full[:len(full)-1], history.MemberChange{Group: "team", Actor: "owner", User: "new", Role: history.RoleMember}); err != nil {
		t.Fatalf("one below the cap: %v", err)
	}
}

func TestPlanMemberChange(t *testing.T) {
	cases := []struct {
		name          string
		c             history.MemberChange
		typ           string
		joins, leaves bool
		code          string
	}{
		{"Add", history.MemberChange{Actor: "owner", User: "carol", Role: history.RoleMember}, history.TypeMemberAdded, true, false, ""},
		{"Role", history.MemberChange{Actor: "owner", User: "member", Role: history.RoleAdmin}, history.TypeMemberRole, false, false, ""},
		{"Remove", history.MemberChange{Actor: "owner", User: "member", Remove: true}, history.TypeMemberRemoved, false, true, ""},
		{"Leave", history.MemberChange{Actor: "member", User: "member", Remove: true}, history.TypeMemberLeft, false, true, ""},
		{"Refused", history.MemberChange{Actor: "member", User: "carol", Role: history.RoleMember}, "", false, false, history.EFORBIDDEN},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Group, tc.c.MessageID = "team", "m1"
			p, err := history.PlanMemberChange(team(t), tc.c, 6)
			if history.ErrorCode(err) != tc.code || p.Type != tc.typ || p.Joins() != tc.joins || p.Leaves() != tc.leaves {
				t.Fatalf("PlanMemberChange = %+v, %v; want type %q, code %q", p, err, tc.typ, tc.code)
			}
			if err != nil {
				return
			}
			if p.Seq != 7 || p.Message.Type != tc.typ || p.Message.Conv != "g:team" || p.Message.ID != "m1" ||
				!slices.Equal(p.After, history.ApplyMemberChange(team(t), tc.c, tc.typ)) {
				t.Fatalf("PlanMemberChange = %+v", p)
			}
		})
	}
}

func TestGroupErrors(t *testing.T) {
	if err := history.NoSuchGroup("x"); history.ErrorCode(err) != history.ENOTFOUND {
		t.Fatalf("NoSuchGroup = %v", err)
	}
	if err := history.GroupExists("x"); history.ErrorCode(err) != history.ECONFLICT {
		t.Fatalf("GroupExists = %v", err)
	}
	if err := history.NotMember("g:x"); history.ErrorCode(err) != history.ENOTMEMBER {
		t.Fatalf("NotMember = %v", err)
	}
}

// TestCheckBlock: a new block is refused (invalid) once the user blocks
// MaxBlocks users; re-blocking a blocked user never is.
func TestCheckBlock(t *testing.T) {
	for _, tc := range []struct {
		name    string
		count   int
		already bool
		want    string
	}{
		{"OK", 0, false, ""},
		{"OKLast", history.MaxBlocks - 1, false, ""},
		{"ErrFull", history.MaxBlocks, false, history.EINVALID},
		{"OKAlreadyFull", history.MaxBlocks, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := history.ErrorCode(history.CheckBlock(tc.count, tc.already)); got != tc.want {
				t.Fatalf("CheckBlock(%d, %v) = %q, want %q", tc.count, tc.already, got, tc.want)
			}
		})
	}
}

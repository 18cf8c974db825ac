package send_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/send"
	"github.com/parley-im/parley/internal/wire"
)

// createdBody is the body of a group.created message as clients read it.
type createdBody struct {
	Name        string           `json:"name"`
	Members     []history.Member `json:"members"`
	MemberCount int              `json:"member_count"`
}

// TestCreateGroup: the creator owns the group, duplicate members count once,
// every member gets group.created as seq 1 with the members, and the other
// nodes are told.
func TestCreateGroup(t *testing.T) {
	f := setup(t, nil)
	ctx := context.Background()
	g, ms, err := f.svc.CreateGroup(ctx, "alice", send.CreateGroupRequest{ID: "team", Name: "Team", Members: []string{"bob", "carol", "bob", "alice"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []history.Member{{User: "alice", Role: history.RoleOwner}, {User: "bob", Role: history.RoleMember}, {User: "carol", Role: history.RoleMember}}
	if g.ID != "team" || g.Name != "Team" || g.CreatedBy != "alice" || !slices.Equal(ms, want) {
		t.Fatalf("created %+v with %+v", g, ms)
	}
	d := f.rec.one(t)
	if d.event || !slices.Equal(d.users, []string{"alice", "bob", "carol"}) || d.msg.Seq != 1 || d.msg.Conv != "g:team" || d.msg.Type != history.TypeGroupCreated {
		t.Fatalf("delivered %+v", d)
	}
	var b createdBody
	if err := json.Unmarshal(d.msg.Body, &b); err != nil || b.Name != "Team" || b.MemberCount != 3 || !slices.Equal(b.Members, want) {
		t.Fatalf("group.created body %s (%v)", d.msg.Body, err)
	}
	if got := <-f.invalidated; got != "team" {
		t.Fatalf("invalidated %q", got)
	}
	if _, stored, err := f.store.Group(ctx, "team"); err != nil || !slices.Equal(stored, want) {
		t.Fatalf("store holds %+v, %v", stored, err)
	}

	t.Run("GeneratedID", func(t *testing.T) {
		g, _, err := f.svc.CreateGroup(ctx, "alice", send.CreateGroupRequest{Name: "Anon"})
		if err != nil || !history.ValidGroupID(g.ID) {
			t.Fatalf("created %+v, %v", g, err)
		}
		if d := f.rec.one(t); d.msg.Conv != history.GroupConvID(g.ID) || !slices.Equal(d.users, []string{"alice"}) {
			t.Fatalf("delivered %+v", d)
		}
		<-f.invalidated
	})
	t.Run("LargeGroupCountsOnly", func(t *testing.T) {
		var members []string
		for i := range send.GroupCreatedMembersMax {
			members = append(members, fmt.Sprintf("u%d", i))
		}
		_, ms, err := f.svc.CreateGroup(ctx, "alice", send.CreateGroupRequest{ID: "big", Name: "Big", Members: members})
		if err != nil || len(ms) != send.GroupCreatedMembersMax+1 {
			t.Fatalf("created %d members, %v", len(ms), err)
		}
		d := f.rec.one(t)
		var b createdBody
		if err := json.Unmarshal(d.msg.Body, &b); err != nil || b.MemberCount != send.GroupCreatedMembersMax+1 || b.Members != nil {
			t.Fatalf("group.created body %s (%v)", d.msg.Body, err)
		}
		if len(d.users) != send.GroupCreatedMembersMax+1 {
			t.Fatalf("delivered to %d users", len(d.users))
		}
		<-f.invalidated
	})
	t.Run("ErrConflict", func(t *testing.T) {
		_, _, err := f.svc.CreateGroup(ctx, "zed", send.CreateGroupRequest{ID: "team", Name: "Mine"})
		if history.ErrorCode(err) != history.ECONFLICT || !strings.Contains(err.Error(), "omit id") {
			t.Fatalf("CreateGroup of a taken id: %v", err)
		}
		if d := f.rec.take(); len(d) != 0 {
			t.Fatalf("delivered %+v", d)
		}
	})
	t.Run("ErrStore", func(t *testing.T) {
		f.store.fault = failOn("CreateGroup", f.store.count("CreateGroup")+1, errOutage)
		defer func() { f.store.fault = nil }()
		_, _, err := f.svc.CreateGroup(ctx, "alice", send.CreateGroupRequest{ID: "down", Name: "Down"})
		if err == nil || history.ErrorCode(err) == history.ECONFLICT || history.ErrorCode(err) == history.EINVALID {
			t.Fatalf("CreateGroup in an outage: %v", err)
		}
		if d := f.rec.take(); len(d) != 0 {
			t.Fatalf("delivered %+v", d)
		}
	})
	select {
	case g := <-f.invalidated:
		t.Fatalf("a failed creation invalidated %q", g)
	default:
	}
}

// TestCreateGroupRefused: invalid requests are refused before the store.
func TestCreateGroupRefused(t *testing.T) {
	f := setup(t, func(s *send.Service) { s.Limiter = send.NewRateLimiter(0.0001, 1) })
	ctx := context.Background()
	tooMany := make([]string, send.MaxGroupMembers)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("u%d", i)
	}
	for _, tc := range []struct {
		name  string
		req   send.CreateGroupRequest
		limit bool // a *wire.Error rate_limited
	}{
		{"ErrInvalidID", send.CreateGroupRequest{ID: "a b", Name: "x"}, false},
		{"ErrNoName", send.CreateGroupRequest{ID: "g"}, false},
		{"ErrLongName", send.CreateGroupRequest{ID: "g", Name: strings.Repeat("n", send.MaxGroupNameLen+1)}, false},
		{"ErrNameText", send.CreateGroupRequest{ID: "g", Name: "a\x00b"}, false},
		{"ErrMemberID", send.CreateGroupRequest{ID: "g", Name: "x", Members: []string{"ok", "not ok"}}, false},
		{"ErrTooMany", send.CreateGroupRequest{ID: "g", Name: "x", Members: tooMany}, false},
		{"OK", send.CreateGroupRequest{ID: "g", Name: "x"}, false},
		{"ErrRateLimited", send.CreateGroupRequest{ID: "h", Name: "x"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := f.svc.CreateGroup(ctx, "alice", tc.req)
			switch {
			case tc.name == "OK":
				if err != nil {
					t.Fatal(err)
				}
				f.rec.take()
			case tc.limit:
				if serr, ok := err.(*wire.Error); !ok || serr.Code != wire.CodeRateLimited {
					t.Fatalf("CreateGroup = %v, want rate_limited", err)
				}
			default:
				if history.ErrorCode(err) != history.EINVALID {
					t.Fatalf("CreateGroup = %v, want EINVALID", err)
				}
			}
		})
	}
	if n := f.store.count("CreateGroup"); n != 1 {
		t.Fatalf("%d CreateGroup calls, want 1", n)
	}
}

// TestChangeMember: an addition reaches the members after it, a removal the
// removed member too; the cache and the other nodes learn of each change.
func TestChangeMember(t *testing.T) {
	f := setup(t, nil)
	ctx := context.Background()
	f.group(t, "team", "alice", "bob")
	change := func(c history.MemberChange) (history.Message, []history.Member, error) {
		c.Group = "team"
		return f.svc.ChangeMember(ctx, c)
	}

	msg, after, err := change(history.MemberChange{Actor: "alice", User: "carol", Role: history.RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	if msg.Type != history.TypeMemberAdded || msg.Seq != 2 || len(after) != 3 {
		t.Fatalf("added: %+v, %+v", msg, after)
	}
	if d := f.rec.one(t); !slices.Equal(d.users, []string{"alice", "bob", "carol"}) || d.msg.ID != msg.ID {
		t.Fatalf("delivered %+v", d)
	}
	if g := <-f.invalidated; g != "team" {
		t.Fatalf("invalidated %q", g)
	}
	// The cache was told: carol may send at once.
	if _, _, serr := f.svc.Send(ctx, "carol", wire.TargetGroup, "team", []byte(`{"body":"hello"}`)); serr != nil {
		t.Fatal(serr)
	}
	f.rec.take()

	msg, after, err = change(history.MemberChange{Actor: "alice", User: "bob", Remove: true})
	if err != nil || msg.Type != history.TypeMemberRemoved || len(after) != 2 {
		t.Fatalf("removed: %+v, %+v, %v", msg, after, err)
	}
	if d := f.rec.one(t); !slices.Equal(d.users, []string{"alice", "bob", "carol"}) || d.msg.ID != msg.ID {
		t.Fatalf("delivered %+v, want the removed member too", d)
	}
	<-f.invalidated
	if _, _, serr := f.svc.Send(ctx, "bob", wire.TargetGroup, "team", []byte(`{"body":"?"}`)); serr == nil || serr.Code != wire.CodeNotMember {
		t.Fatalf("Send by a removed member: %v", serr)
	}

	for _, tc := range []struct {
		name string
		c    history.MemberChange
		code string
	}{
		{"ErrOutsider", history.MemberChange{Group: "team", Actor: "bob", User: "bob", Role: history.RoleMember}, history.ENOTFOUND},
		{"ErrNoGroup", history.MemberChange{Group: "nope", Actor: "alice", User: "bob", Role: history.RoleMember}, history.ENOTFOUND},
		{"ErrInvalidGroup", history.MemberChange{Group: "no pe", Actor: "alice", User: "bob", Role: history.RoleMember}, history.ENOTFOUND},
		{"ErrForbidden", history.MemberChange{Group: "team", Actor: "carol", User: "alice", Remove: true}, history.EFORBIDDEN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, after, err := f.svc.ChangeMember(ctx, tc.c)
			if history.ErrorCode(err) != tc.code || after != nil {
				t.Fatalf("ChangeMember = %+v, %v; want %s", after, err, tc.code)
			}
			if tc.code == history.ENOTFOUND && !strings.Contains(err.Error(), "no such group") {
				t.Fatalf("%v does not read as for a missing group", err)
			}
			if d := f.rec.take(); len(d) != 0 {
				t.Fatalf("delivered %+v", d)
			}
		})
	}
	select {
	case g := <-f.invalidated:
		t.Fatalf("a refused change invalidated %q", g)
	default:
	}
}

func TestChangeMemberRefused(t *testing.T) {
	t.Run("ErrRateLimited", func(t *testing.T) {
		f := setup(t, func(s *send.Service) { s.Limiter = send.NewRateLimiter(0.0001, 1) })
		f.group(t, "team", "alice")
		_, _, err := f.svc.ChangeMember(context.Background(), history.MemberChange{Group: "team", Actor: "alice", User: "bob", Role: history.RoleMember})
		if serr, ok := err.(*wire.Error); !ok || serr.Code != wire.CodeRateLimited {
			t.Fatalf("ChangeMember = %v, want rate_limited", err)
		}
	})
	t.Run("ErrClosed", func(t *testing.T) {
		f := setup(t, nil)
		f.group(t, "team", "alice")
		f.svc.Committer.Close()
		_, _, err := f.svc.ChangeMember(context.Background(), history.MemberChange{Group: "team", Actor: "alice", User: "bob", Role: history.RoleMember})
		// A closed committer is an outage to the caller: unavailable.
		if serr, ok := err.(*wire.Error); !ok || serr.Code != wire.CodeUnavailable {
			t.Fatalf("ChangeMember after Close: %v, want unavailable", err)
		}
		if n := f.store.count("ChangeMember"); n != 0 {
			t.Fatalf("%d store calls after Close", n)
		}
	})
}

// TestServiceGroup: a member reads the group; anyone else, and any missing
// group, gets the same ENOTFOUND.
func TestServiceGroup(t *testing.T) {
	f := setup(t, nil)
	ctx := context.Background()
	f.group(t, "team", "alice", "bob")
	g, ms, err := f.svc.Group(ctx, "bob", "team")
	if err != nil || g.ID != "team" || g.Name != "team" || len(ms) != 2 {
		t.Fatalf("Group = %+v, %+v, %v", g, ms, err)
	}
	var msgs []string
	for _, tc := range []struct{ name, user, id string }{
		{"ErrOutsider", "carol", "team"},
		{"ErrMissing", "alice", "nope"},
		{"ErrInvalid", "alice", "a b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ms, err := f.svc.Group(ctx, tc.user, tc.id)
			if history.ErrorCode(err) != history.ENOTFOUND || ms != nil {
				t.Fatalf("Group = %+v, %v", ms, err)
			}
			msgs = append(msgs, strings.Replace(history.ErrorMessage(err), tc.id, "ID", 1))
		})
	}
	if msgs[0] != msgs[1] {
		t.Fatalf("an outsider reads %q, a missing group %q", msgs[0], msgs[1])
	}
	t.Run("ErrStore", func(t *testing.T) {
		f.store.fault = failOn("Group", f.store.count("Group")+1, errOutage)
		defer func() { f.store.fault = nil }()
		if _, _, err := f.svc.Group(ctx, "alice", "team"); err == nil || history.ErrorCode(err) == history.ENOTFOUND {
			t.Fatalf("Group in an outage: %v", err)
		}
	})
}

// TestMarkRead: a marker that moves is announced to the user's devices and
// to the other members (direct always, groups up to ReceiptGroupMax); one
// that does not move is announced to nobody.
func TestMarkRead(t *testing.T) {
	f := setup(t, func(s *send.Service) { s.ReceiptGroupMax = 3 })
	ctx := context.Background()
	f.group(t, "small", "alice", "bob", "carol")
	f.group(t, "large", "alice", "bob", "carol", "dave")
	for range 3 {
		for _, target := range []struct{ kind, id string }{{wire.TargetUser, "bob"}, {wire.TargetGroup, "small"}, {wire.TargetGroup, "large"}} {
			if _, _, serr := f.svc.Send(ctx, "alice", target.kind, target.id, []byte(`{"body":1}`)); serr != nil {
				t.Fatal(serr)
			}
		}
	}
	f.rec.take()
	for _, tc := range []struct {
		name, conv string
		seq, want  int64
		to         []string // nil: no receipt
	}{
		{"Direct", "dm:alice:bob", 2, 2, []string{"alice", "bob"}},
		{"DirectBack", "dm:alice:bob", 1, 2, nil},
		{"SmallGroup", "g:small", 4, 4, []string{"alice", "bob", "carol"}},
		{"LargeGroup", "g:large", 3, 3, []string{"bob"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			after, serr := f.svc.MarkRead(ctx, "bob", tc.conv, tc.seq)
			if serr != nil || after != tc.want {
				t.Fatalf("MarkRead = %d, %v; want %d", after, serr, tc.want)
			}
			got := f.rec.take()
			if tc.to == nil {
				if len(got) != 0 {
					t.Fatalf("announced %+v", got)
				}
				return
			}
			// The reader's devices first, with its counts; then the others,
			// without.
			others := slices.DeleteFunc(slices.Clone(tc.to), func(u string) bool { return u == "bob" })
			want := [][]string{{"bob"}}
			if len(others) > 0 {
				want = append(want, others)
			}
			if len(got) != len(want) {
				t.Fatalf("announced %+v, want to %v", got, want)
			}
			for i, d := range got {
				if !d.event || d.qos != 1 || !slices.Equal(d.users, want[i]) {
					t.Fatalf("announcement %d: %+v, want to %v", i, d, want[i])
				}
				var r wire.Receipt
				if err := json.Unmarshal(d.payload, &r); err != nil || r.Kind != "read" || r.Conv != tc.conv || r.User != "bob" || r.Seq != tc.want {
					t.Fatalf("receipt %s (%v)", d.payload, err)
				}
				if own := i == 0; own != (r.Unread != nil && r.Mentions != nil) {
					t.Fatalf("receipt %d to %v: %s; counts go to the reader's devices only", i, d.users, d.payload)
				}
			}
		})
	}
	for _, tc := range []struct {
		name, user, conv string
		seq              int64
		fault            bool
		code             string
	}{
		{"ErrConv", "bob", "x:y", 1, false, wire.CodeInvalidPayload},
		{"ErrNotMember", "erin", "g:small", 1, false, wire.CodeNotMember},
		{"ErrBeyond", "bob", "dm:alice:bob", 99, false, wire.CodeInvalidPayload},
		{"ErrStore", "bob", "dm:alice:bob", 3, true, wire.CodeUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fault {
				f.store.fault = failOn("MarkRead", f.store.count("MarkRead")+1, errOutage)
				defer func() { f.store.fault = nil }()
			}
			after, serr := f.svc.MarkRead(ctx, tc.user, tc.conv, tc.seq)
			if serr == nil || serr.Code != tc.code || after != 0 {
				t.Fatalf("MarkRead = %d, %v; want %s", after, serr, tc.code)
			}
			if got := f.rec.take(); len(got) != 0 {
				t.Fatalf("announced %+v", got)
			}
		})
	}
}

// TestGroupsCache: a load never replaces a newer entry with an older one,
// and MembersOf asks the store again before refusing.
func TestGroupsCache(t *testing.T) {
	f := setup(t, nil)
	ctx := context.Background()
	f.group(t, "team", "alice", "bob")
	g := send.NewGroups(f.store)
	ms, v1, err := g.MembersOf(ctx, "team", "bob")
	if err != nil || len(ms) != 2 {
		t.Fatalf("MembersOf = %+v, %v", ms, err)
	}
	reads := f.store.count("Group")
	if _, v, err := g.MembersOf(ctx, "team", "alice"); err != nil || v != v1 || f.store.count("Group") != reads {
		t.Fatalf("a cached member read the store (%v)", err)
	}
	// carol joins through another node: refused from the cache, the store
	// is asked and says yes.
	if _, _, err := f.store.Store.ChangeMember(ctx, history.MemberChange{Group: "team", Actor: "alice", User: "carol", Role: history.RoleMember,
		MessageID: history.NewID(time.Now()), TS: time.Now()}); err != nil {
		t.Fatal(err)
	}
	ms, v2, err := g.MembersOf(ctx, "team", "carol")
	if err != nil || len(ms) != 3 || v2 <= v1 {
		t.Fatalf("MembersOf after an addition elsewhere = %+v v%d, %v", ms, v2, err)
	}
	if _, _, err := g.MembersOf(ctx, "team", "zed"); history.ErrorCode(err) != history.ENOTMEMBER {
		t.Fatalf("MembersOf an outsider: %v", err)
	}
	if _, _, err := g.MembersOf(ctx, "nope", "zed"); history.ErrorCode(err) != history.ENOTFOUND {
		t.Fatalf("MembersOf a missing group: %v", err)
	}

	// A slow load of the old version finishing after a newer one does not
	// win: reorder two loads by holding the first in the store.
	old := &reorderStore{faultStore: f.store, hold: make(chan struct{}), held: make(chan struct{})}
	slow := send.NewGroups(old)
	done := make(chan error, 1)
	go func() { _, err := slow.Load(ctx, "team"); done <- err }()
	<-old.held // the first load read version v2 and waits
	if _, _, err := f.store.Store.ChangeMember(ctx, history.MemberChange{Group: "team", Actor: "alice", User: "dave", Role: history.RoleMember,
		MessageID: history.NewID(time.Now()), TS: time.Now()}); err != nil {
		t.Fatal(err)
	}
	e, err := slow.Load(ctx, "team")
	if err != nil {
		t.Fatal(err)
	}
	close(old.hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ms, v3, err := slow.MembersOf(ctx, "team", "dave")
	if err != nil || v3 <= v2 || len(ms) != 4 {
		t.Fatalf("after reordered loads: %+v v%d (%v), want the newer entry %+v", ms, v3, err, e)
	}
	if old.calls != 2 {
		t.Fatalf("%d store reads, want 2 (dave is served from the cache)", old.calls)
	}

	g.Forget("team")
	if _, _, err := g.MembersOf(ctx, "team", "bob"); err != nil || f.store.count("Group") == reads {
		t.Fatalf("Forget did not make the cache read the store (%v)", err)
	}
}

// reorderStore returns its first Group read only after hold is closed,
// so that a later read completes first.
type reorderStore struct {
	*faultStore
	hold, held chan struct{}
	calls      int // only read after the goroutines are done
}

func (r *reorderStore) Group(ctx context.Context, id string) (history.Group, []history.Member, error) {
	r.calls++
	first := r.calls == 1
	g, ms, err := r.faultStore.Group(ctx, id)
	if first {
		close(r.held)
		<-r.hold
	}
	return g, ms, err
}

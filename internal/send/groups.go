package send

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-im/parley/internal/wire"

	"github.com/parley-im/parley/history"
)

// Groups caches group membership in memory for the send path. The store stays
// the truth: entries load on first use, are replaced after every change made
// through this node, and are reloaded before a refusal, so a change made
// elsewhere only delays freshness and never lets a removed member send (the
// store checks membership in the send transaction too).
type Groups struct {
	Store history.Store

	mu sync.RWMutex
	m  map[string]groupEntry
	// changes counts Forget calls: every group change seen by this node,
	// made here or announced by another node. The relation cache
	// (relations.go) trusts nothing read before the last one.
	changes atomic.Uint64
}

type groupEntry struct {
	members []history.Member
	version int64
}

// NewGroups returns an empty cache over store.
func NewGroups(store history.Store) *Groups {
	return &Groups{Store: store, m: map[string]groupEntry{}}
}

// MembersOf returns the members of group and their version, checking that
// user is one of them (history.ENOTMEMBER otherwise; history.ENOTFOUND for no
// such group).
func (g *Groups) MembersOf(ctx context.Context, group, user string) ([]history.Member, int64, error) {
	g.mu.RLock()
	e, ok := g.m[group]
	g.mu.RUnlock()
	if ok && history.RoleOf(e.members, user) != "" {
		return e.members, e.version, nil
	}
	// A miss or a refusal: ask the store, which may know of a newer change.
	e, err := g.Load(ctx, group)
	if err != nil {
		return nil, 0, err
	}
	if history.RoleOf(e.members, user) == "" {
		return nil, 0, history.Errorf(history.ENOTMEMBER, "not a member")
	}
	return e.members, e.version, nil
}

// Load reads group's members from the store into the cache.
func (g *Groups) Load(ctx context.Context, group string) (groupEntry, error) {
	gr, ms, err := g.Store.Group(ctx, group)
	if err != nil {
		return groupEntry{}, err
	}
	e := groupEntry{members: ms, version: gr.Version}
	g.mu.Lock()
	if old, ok := g.m[group]; !ok || old.version <= e.version {
		g.m[group] = e
	}
	g.mu.Unlock()
	return e, nil
}

// Users returns the users of conversation conv: both users of a direct
// conversation, the current members of a group (from the cache).
func (g *Groups) Users(ctx context.Context, conv string) ([]string, error) {
	kind, a, b, ok := history.ParseConvID(conv)
	switch {
	case !ok:
		return nil, history.Errorf(history.EINVALID, "invalid conversation %q", conv)
	case kind == history.KindDirect:
		return []string{a, b}, nil
	}
	e, err := g.Load(ctx, a)
	if err != nil {
		return nil, err
	}
	return users(e.members), nil
}

// Forget drops group from the cache.
func (g *Groups) Forget(group string) {
	g.changes.Add(1)
	g.mu.Lock()
	delete(g.m, group)
	g.mu.Unlock()
}

// CreateGroupRequest is a request to create a group.
type CreateGroupRequest struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Members []string `json:"members"`
}

// MaxGroupNameLen bounds a group's name, in bytes.
const MaxGroupNameLen = 200

// GroupCreatedMembersMax is the largest group whose group.created message
// lists its members; a larger group's message carries only member_count, and
// clients read the members with GET /v1/groups/{id}. It keeps the message,
// which every member's devices receive and may queue, small.
const GroupCreatedMembersMax = 100

// groupCreatedBody is the body of a group.created message.
type groupCreatedBody struct {
	Name        string           `json:"name"`
	Members     []history.Member `json:"members,omitempty"`
	MemberCount int              `json:"member_count"`
}

// CreateGroup creates a group owned by actor, with req.Members as members,
// and delivers its group.created message (seq 1) to every member. The id is
// generated when empty; the name must be valid text (history.ValidText).
// A creation counts against actor's send rate (a
// *Error with CodeRateLimited when refused). Other errors are
// *wire.Error with the history codes: EINVALID, ECONFLICT when the id is taken (whoever holds
// it: the answer reveals nothing about the group), or EUNAVAILABLE-class
// store errors.
func (m *Service) CreateGroup(ctx context.Context, actor string, req CreateGroupRequest) (history.Group, []history.Member, error) {
	m.inflight.Add(1)
	defer m.inflight.Done()
	t := time.Now()
	if req.ID == "" {
		req.ID = history.NewID(t)
	}
	if !history.ValidGroupID(req.ID) {
		return history.Group{}, nil, wire.Errorf(history.EINVALID, "invalid group id %q (1 to 64 of A-Z a-z 0-9 . _ -)", req.ID)
	}
	if req.Name == "" || len(req.Name) > MaxGroupNameLen {
		return history.Group{}, nil, wire.Errorf(history.EINVALID, "name is required, at most %d bytes", MaxGroupNameLen)
	}
	if !history.ValidText(req.Name) {
		return history.Group{}, nil, wire.Errorf(history.EINVALID, "name must be valid text without U+0000")
	}
	members := []history.Member{{User: actor, Role: history.RoleOwner}}
	seen := map[string]bool{actor: true}
	for _, u := range req.Members {
		if !history.ValidUserID(u) {
			return history.Group{}, nil, wire.Errorf(history.EINVALID, "invalid user id %q", u)
		}
		if !seen[u] {
			seen[u] = true
			members = append(members, history.Member{User: u, Role: history.RoleMember})
		}
	}
	if len(members) > MaxGroupMembers {
		return history.Group{}, nil, wire.Errorf(history.EINVALID, "a group has at most %d members", MaxGroupMembers)
	}
	if ok, wait := m.Limiter.Take(actor, t); !ok {
		return history.Group{}, nil, wire.RateLimited("requests", wait)
	}
	g := history.Group{ID: req.ID, Name: req.Name, CreatedBy: actor, CreatedAt: t.UTC().Truncate(time.Microsecond)}
	created := groupCreatedBody{Name: g.Name, MemberCount: len(members)}
	if len(members) <= GroupCreatedMembersMax {
		created.Members = members
	}
	body := mustJSON(created)
	conv := history.GroupConvID(g.ID)
	var err error
	derr := m.Committer.Do(ctx, conv, func() {
		var msg history.Message
		msg, err = m.Store.CreateGroup(ctx, g, members, history.NewMessage{Conv: conv, ID: history.NewID(t), From: actor, TS: t, Type: history.TypeGroupCreated, Body: body})
		if history.ErrorCode(err) == history.ECONFLICT {
			err = wire.Errorf(history.ECONFLICT, "group id %q is not available; omit id to get a generated one", g.ID)
		}
		if err == nil {
			m.Groups.Forget(g.ID)
			m.Deliver.DeliverMessage(users(members), msg)
			m.invalidate(g.ID)
		}
	})
	if err = errors.Join(derr, err); err != nil {
		return history.Group{}, nil, m.failure("create group", err)
	}
	return g, members, nil
}

// MaxGroupMembers bounds the size of a group, at creation and on every
// addition.
const MaxGroupMembers = history.MaxGroupMembers

// ChangeMember adds, updates or removes a member of a group on behalf of
// actor, and delivers the membership message to the members before and after
// the change (so a removed member learns of it). A change counts against the
// actor's send rate (a *Error with CodeRateLimited when refused). An
// actor who is not a member gets not_found (history.ENOTFOUND), as for a group that does
// not exist, so that group ids cannot be probed; an addition to a full group
// (MaxGroupMembers) gets history.EINVALID.
func (m *Service) ChangeMember(ctx context.Context, c history.MemberChange) (history.Message, []history.Member, error) {
	m.inflight.Add(1)
	defer m.inflight.Done()
	t := time.Now()
	c.MessageID, c.TS = history.NewID(t), t
	if !history.ValidGroupID(c.Group) {
		return history.Message{}, nil, noSuchGroup(c.Group)
	}
	if ok, wait := m.Limiter.Take(c.Actor, t); !ok {
		return history.Message{}, nil, wire.RateLimited("requests", wait)
	}
	conv := history.GroupConvID(c.Group)
	var msg history.Message
	var after []history.Member
	var err error
	derr := m.Committer.Do(ctx, conv, func() {
		msg, after, err = m.Store.ChangeMember(ctx, c)
		m.Groups.Forget(c.Group)
		if history.ErrorCode(err) == history.ENOTMEMBER {
			err = noSuchGroup(c.Group)
		}
		if err != nil {
			return
		}
		m.invalidate(c.Group)
		recipients := users(after)
		if c.Remove {
			recipients = append(recipients, c.User)
		}
		m.Deliver.DeliverMessage(recipients, msg)
	})
	if err = errors.Join(derr, err); err != nil {
		return msg, nil, m.failure("change member", err)
	}
	return msg, after, nil
}

// Group returns a group and its members for user, who must be a member of
// an existing group: history.ENOTFOUND otherwise, the same error whether the
// group does not exist or user is not (or no longer) one of its members.
func (m *Service) Group(ctx context.Context, user, id string) (history.Group, []history.Member, error) {
	if !history.ValidGroupID(id) {
		return history.Group{}, nil, noSuchGroup(id)
	}
	g, ms, err := m.Store.Group(ctx, id)
	if history.ErrorCode(err) == history.ENOTFOUND {
		return history.Group{}, nil, noSuchGroup(id)
	}
	if err != nil {
		return g, nil, m.failure("read group", err)
	}
	if history.RoleOf(ms, user) == "" {
		return history.Group{}, nil, noSuchGroup(id)
	}
	return g, ms, nil
}

// noSuchGroup is the answer for a group that does not exist or of which the
// caller is not a member: one error, so that the two cannot be told apart.
func noSuchGroup(id string) error {
	return wire.Errorf(history.ENOTFOUND, "no such group %q", id)
}

// failure turns err (not nil) into the *wire.Error callers see, logging what
// is not a rule of the domain (a store outage, a closed committer).
func (m *Service) failure(op string, err error) error {
	e, ok := wire.FromStore(err)
	if !ok {
		m.Log.Error(op, "error", err)
	}
	return e
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("send: marshal: " + err.Error())
	}
	return b
}

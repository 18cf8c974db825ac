package history

import (
	"encoding/json"
	"sort"
)

// MaxGroupMembers bounds the size of a group: creation refuses more members
// and CheckMemberChange refuses an addition to a full group (EINVALID), inside
// the store transaction that adds, so concurrent additions cannot exceed it.
const MaxGroupMembers = 10000

// RoleOf returns the role of user among members, or "" when user is not one.
func RoleOf(members []Member, user string) string {
	for _, m := range members {
		if m.User == user {
			return m.Role
		}
	}
	return ""
}

// CheckMemberChange applies the group rules to c, given the members before the
// change: only admins and the owner add members or change roles; anyone may
// leave (remove themselves), except the owner; admins remove members, the owner
// removes anyone; nobody changes or removes the owner; a group of
// MaxGroupMembers takes no new member (EINVALID). It returns the type of
// the membership message to write, or an *Error.
func CheckMemberChange(members []Member, c MemberChange) (msgType string, err error) {
	if !ValidUserID(c.User) {
		return "", Errorf(EINVALID, "invalid user id %q", c.User)
	}
	actor := RoleOf(members, c.Actor)
	target := RoleOf(members, c.User)
	if actor == "" {
		return "", Errorf(ENOTMEMBER, "you are not a member of group %q", c.Group)
	}
	if c.Remove {
		if target == "" {
			return "", Errorf(ENOTFOUND, "%q is not a member of group %q", c.User, c.Group)
		}
		if target == RoleOwner {
			return "", Errorf(EFORBIDDEN, "the owner cannot be removed from group %q", c.Group)
		}
		if c.User == c.Actor {
			return TypeMemberLeft, nil
		}
		if actor == RoleOwner || (actor == RoleAdmin && target == RoleMember) {
			return TypeMemberRemoved, nil
		}
		return "", Errorf(EFORBIDDEN, "only admins and the owner remove members")
	}
	if c.Role != RoleMember && c.Role != RoleAdmin {
		return "", Errorf(EINVALID, "role must be %q or %q", RoleMember, RoleAdmin)
	}
	if actor != RoleOwner && actor != RoleAdmin {
		return "", Errorf(EFORBIDDEN, "only admins and the owner add members")
	}
	if target == RoleOwner {
		return "", Errorf(EFORBIDDEN, "the owner's role cannot be changed")
	}
	if target == c.Role {
		return "", Errorf(ECONFLICT, "%q already has role %s in group %q", c.User, c.Role, c.Group)
	}
	if target != "" {
		if actor != RoleOwner && target == RoleAdmin {
			return "", Errorf(EFORBIDDEN, "only the owner changes an admin's role")
		}
		return TypeMemberRole, nil
	}
	if len(members) >= MaxGroupMembers {
		return "", Errorf(EINVALID, "a group has at most %d members", MaxGroupMembers)
	}
	return TypeMemberAdded, nil
}

// MemberMessage returns the message that records change c of type typ in the
// group conversation: from the actor, with body {"user": ..., "role": ...}.
func MemberMessage(c MemberChange, typ string) NewMessage {
	body, _ := json.Marshal(struct {
		User string `json:"user"`
		Role string `json:"role,omitempty"`
	}{c.User, roleUnlessRemoved(c)})
	return NewMessage{Conv: GroupConvID(c.Group), ID: c.MessageID, From: c.Actor, TS: c.TS, Type: typ, Body: body}
}

func roleUnlessRemoved(c MemberChange) string {
	if c.Remove {
		return ""
	}
	return c.Role
}

// ApplyMemberChange returns the members after change c of type typ, leaving
// members itself unchanged.
func ApplyMemberChange(members []Member, c MemberChange, typ string) []Member {
	out := make([]Member, 0, len(members)+1)
	for _, m := range members {
		if m.User == c.User {
			continue
		}
		out = append(out, m)
	}
	if typ == TypeMemberAdded || typ == TypeMemberRole {
		out = append(out, Member{User: c.User, Role: c.Role})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
	return out
}

// MemberPlan is what ChangeMember writes for a change that CheckMemberChange
// allowed.
type MemberPlan struct {
	// Type is the type of the membership message, and says what happens to
	// the member's row: TypeMemberAdded inserts it (or re-adds a former
	// member) as joined at Seq with the new role, TypeMemberRole sets its
	// role, TypeMemberRemoved and TypeMemberLeft mark it left at Seq.
	Type string
	// Seq is the seq of the membership message: the one after the
	// conversation's last.
	Seq int64
	// Message is the membership message (MemberMessage).
	Message NewMessage
	// After lists the members after the change (ApplyMemberChange).
	After []Member
}

// Joins reports whether the change adds the user (TypeMemberAdded).
func (p MemberPlan) Joins() bool { return p.Type == TypeMemberAdded }

// Leaves reports whether the change ends the user's membership
// (TypeMemberRemoved or TypeMemberLeft).
func (p MemberPlan) Leaves() bool { return p.Type == TypeMemberRemoved || p.Type == TypeMemberLeft }

// PlanMemberChange checks c against members, the group's members before the
// change, with CheckMemberChange (whose *Error it returns) and plans it in a
// group conversation whose last seq is last.
func PlanMemberChange(members []Member, c MemberChange, last int64) (MemberPlan, error) {
	typ, err := CheckMemberChange(members, c)
	if err != nil {
		return MemberPlan{}, err
	}
	return MemberPlan{Type: typ, Seq: last + 1, Message: MemberMessage(c, typ), After: ApplyMemberChange(members, c, typ)}, nil
}

// NoSuchGroup returns the ENOTFOUND error for a group id that names no group.
func NoSuchGroup(id string) error { return Errorf(ENOTFOUND, "no such group %q", id) }

// GroupExists returns the ECONFLICT error of CreateGroup for a group id that
// is taken.
func GroupExists(id string) error { return Errorf(ECONFLICT, "group %q already exists", id) }

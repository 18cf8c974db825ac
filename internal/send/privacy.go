package send

import (
	"context"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/wire"
)

// Direct message policies (Service.DMPolicy, PARLEY_DM_POLICY).
const (
	// DMOpen lets anyone send a direct message to anyone.
	DMOpen = "open"
	// DMContacts refuses a direct conversation's first message (not_allowed)
	// between users who share no group.
	DMContacts = "contacts"
)

// checkDirect applies blocks and the direct message policy to p, a direct
// send from from to target: blocked when either blocks the other (deletes
// of one's own messages pass, so that a user can still take back what it
// sent); under DMContacts, not_allowed for the first message of a direct
// conversation between users who share no group. quiet is set for an
// ephemeral send (typing) between users who are not contacts: it is
// accepted and delivered to nobody. A store that cannot answer gives
// unavailable. The relation comes from the cache of relations.go; it is
// fresh: every block, group change and first message between two users
// drops it, on every node.
func (m *Service) checkDirect(ctx context.Context, from, target string, p wire.SendPayload) (quiet bool, e *wire.Error) {
	if m.Privacy == nil || p.Op == history.OpDelete {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, m.StoreTimeout)
	defer cancel()
	r, err := m.relations.relation(ctx, m.Privacy, m.Groups, from, target)
	if err != nil {
		m.Log.Error("read relation", "from", from, "to", target, "error", err)
		return false, wire.Errorf(wire.CodeUnavailable, "the message store is unavailable, try again")
	}
	switch {
	case r.ABlocksB:
		return false, wire.Errorf(wire.CodeBlocked, "you blocked %s: unblock them to send", target)
	case r.BBlocksA:
		return false, wire.Errorf(wire.CodeBlocked, "%s does not accept your messages", target)
	case m.DMPolicy == DMContacts && !r.SharesGroup && !r.Started:
		return false, wire.Errorf(wire.CodeNotAllowed, "%s accepts direct messages only from users who share a group with them", target)
	}
	return p.Ephemeral && !r.Contacts(), nil
}

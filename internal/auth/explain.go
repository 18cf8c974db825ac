package auth

import (
	"strings"

	"github.com/parley-im/parley/internal/wire"
)

// ReadRefusal explains why Allow refuses clientID a subscription to filter,
// in a few words for the SUBACK's Reason String: which rule it broke and,
// for Parley's topics, what the client may read instead. It assumes Allow
// refused it.
func (a *Authorizer) ReadRefusal(clientID, filter string) string {
	user := UserOf(clientID)
	t, shared := wire.StripShare(filter)
	switch {
	case t == VoidTopic || (wire.HasWildcards(t) && Covers(t, VoidTopic)):
		return "no filter may cover " + VoidTopic
	case a.Topics.Owns(t):
		if IsAnonymous(clientID) {
			return "anonymous clients cannot read Parley's topics"
		}
		if shared {
			return "no shared subscriptions to Parley's topics"
		}
		if _, ok := a.Topics.ParsePresence(t); ok {
			return "you may read the presence only of users you share a conversation with"
		}
		if _, ok := a.Topics.ParseInbox(t); ok && !wire.HasWildcards(t) {
			return "you may read only your own inbox, " + a.Topics.Inbox(user)
		}
		if wire.HasWildcards(t) {
			return "no wildcards over Parley's topics: subscribe to " + a.Topics.Inbox(user)
		}
		return "Parley's topics are read through your inbox, " + a.Topics.Inbox(user)
	case a.ACL == nil:
		return "no ACL allows topics outside Parley's"
	}
	return "the ACL does not let you read it"
}

// WriteRefusal explains, for the Reason String of a PUBACK or PUBREC 0x87,
// what a client may publish to with topics.
func WriteRefusal(topics wire.Topics) string {
	read := topics.Read()
	p := strings.TrimSuffix(read, "/read")
	return "not authorized: publish to " + p + "/send/u/PEER, " + p + "/send/g/GROUP, " + read + " or a topic your ACL allows"
}

package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/wire"
)

// Authorizer authenticates connections and decides every publish,
// subscription and delivery from memory: a user reads only its own inbox (and
// the presence of its contacts), writes only to send topics and the read
// topic, and plain MQTT topics outside the prefix follow the ACL. It also
// bounds the devices of a user and checks wills. Safe for concurrent use.
type Authorizer struct {
	// Tokens verifies CONNECT passwords; required.
	Tokens *Tokens
	// Topics is Parley's topic layout.
	Topics wire.Topics
	// ACL governs topics outside the prefix; nil denies them all (or, with
	// Anonymous, allows them).
	ACL *ACL
	// Store answers whether two users share a conversation (presence
	// subscriptions); without it only a user's own presence is readable.
	Store history.Store
	// Privacy, when set, decides presence by contacts (history.Relation):
	// users who share a group or both wrote in their direct conversation,
	// and neither blocks the other.
	Privacy history.Privacy
	// Anonymous lets clients without credentials connect (open mode): their
	// sessions live under client ids prefixed with AnonPrefix, Parley's
	// topics stay closed to them, and topics outside the prefix are open to
	// everyone unless an ACL is set.
	Anonymous bool
	// MaxDevices bounds the connected sessions (client ids) of one user on
	// this node; default DefaultMaxDevices.
	MaxDevices int

	mu       sync.Mutex
	contacts map[[2]string]contact          // answers of SharesConversation, until they expire
	sessions map[string]map[string]any      // connected sessions by user and client id
	pending  map[string]map[any]pendingConn // admitted CONNECTs not yet established, by user
}

// DefaultMaxDevices is the default of Authorizer.MaxDevices.
const DefaultMaxDevices = 32

// VoidTopic is where a will that is no longer allowed when its client goes
// away is sent instead of its own topic, without payload: no client may
// subscribe to it, so it reaches nobody.
const VoidTopic = "$parley/void"

// contact is a cached answer to whether two users share a conversation.
type contact struct {
	yes   bool
	until time.Time
}

type pendingConn struct {
	id string
	at time.Time
}

// contactTTL is how long a shared conversation is trusted for presence;
// noContactTTL how long the absence of one is.
const (
	contactTTL   = time.Minute
	noContactTTL = 5 * time.Second
)

// pendingTTL is how long an admitted CONNECT counts against MaxDevices
// before its session is established.
const pendingTTL = 30 * time.Second

// Refusal is why a CONNECT is refused; the MQTT adapter maps it to a CONNACK
// code.
type Refusal int

// Refusals, in the order the checks run.
const (
	Accepted       Refusal = iota
	BadCredentials         // no, malformed, expired or forged token (0x86)
	NotAuthorized          // user name differs from the token, or a will topic the client may not use (0x87)
	BadClientID            // not USER or USER/DEVICE for the token's user (0x85)
	TooManyDevices         // MaxDevices reached (0x97)
)

// Connect is what a CONNECT packet says about its client.
type Connect struct {
	// Session identifies the connection for the device count (any
	// comparable value, the same in Established and Gone).
	Session     any
	ClientID    string
	Username    []byte
	HasUsername bool
	Password    []byte
	HasPassword bool
	HasWill     bool
	WillTopic   string
}

// Authenticate checks a CONNECT. It returns the client id the session gets
// (anonymous clients in open mode get AnonPrefix before theirs), the refusal
// (Accepted when none), a short reason for metrics (no_token, token_expired,
// token_invalid, username_mismatch, client_id, will_topic, too_many_devices)
// and a text that explains it to the client and in logs ("token expired",
// "bad signature: ...", "token invalid: ...").
func (a *Authorizer) Authenticate(c Connect) (clientID string, r Refusal, reason, text string) {
	if a.Anonymous && !c.HasPassword && !c.HasUsername {
		// Anonymous sessions get their own namespace: ':' never appears in
		// a user id, so they cannot take over (or be taken over by) a user's.
		id := AnonPrefix + c.ClientID
		if c.HasWill && !a.WillAllowed(id, c.WillTopic) {
			return id, NotAuthorized, "will_topic", willText(c.WillTopic)
		}
		return id, Accepted, "", ""
	}
	if !c.HasPassword || len(c.Password) == 0 {
		return c.ClientID, BadCredentials, "no_token", "no token: the password must be a token for the user"
	}
	user, err := a.Tokens.Verify(string(c.Password))
	if errors.Is(err, ErrTokenExpired) {
		return c.ClientID, BadCredentials, "token_expired", "token expired: get a new token"
	}
	if err != nil {
		return c.ClientID, BadCredentials, "token_invalid", TokenText(err)
	}
	if len(c.Username) > 0 && !bytes.Equal(c.Username, []byte(user)) {
		return c.ClientID, NotAuthorized, "username_mismatch", fmt.Sprintf("user name %q is not the token's user %q", c.Username, user)
	}
	if !ValidClientID(c.ClientID, user) {
		return c.ClientID, BadClientID, "client_id", fmt.Sprintf("client id %q is neither %s nor %s/DEVICE", c.ClientID, user, user)
	}
	if c.HasWill && !a.WillAllowed(c.ClientID, c.WillTopic) {
		return c.ClientID, NotAuthorized, "will_topic", willText(c.WillTopic)
	}
	if !a.admit(c.Session, c.ClientID, user) {
		return c.ClientID, TooManyDevices, "too_many_devices", fmt.Sprintf("too many devices: %s has %d connected", user, a.maxDevices())
	}
	return c.ClientID, Accepted, "", ""
}

func willText(topic string) string {
	return fmt.Sprintf("will topic %q not allowed: a will must go to a topic outside Parley's that the client may publish to", topic)
}

func (a *Authorizer) maxDevices() int {
	if a.MaxDevices <= 0 {
		return DefaultMaxDevices
	}
	return a.MaxDevices
}

// WillAllowed reports whether clientID may leave a will on topic: a topic it
// could publish to itself that is outside Parley's prefix (a will bypasses
// the send pipeline, so it may never land on a send, inbox, presence or read
// topic), has no wildcards and does not begin with '$'.
func (a *Authorizer) WillAllowed(clientID, topic string) bool {
	if topic == "" || wire.HasWildcards(topic) || topic[0] == '$' || a.Topics.Owns(topic) {
		return false
	}
	return a.Allow(clientID, topic, true)
}

// Allow decides a publish (write), a subscription or a delivery of topic (a
// filter for subscriptions) for clientID. A filter whose first level is a
// wildcard (#, +/+, +/inbox/alice) is a plain filter, judged by the ACL: it
// could match Parley's topics, but deliveries of those through it are refused
// one by one (see AllowDelivery). Filters under the prefix follow Parley's
// rules: only a client's own inbox and the presence of its contacts, without
// wildcards.
func (a *Authorizer) Allow(clientID, topic string, write bool) bool {
	user := UserOf(clientID)
	t, shared := wire.StripShare(topic)
	if t == VoidTopic || (wire.HasWildcards(t) && Covers(t, VoidTopic)) {
		return false
	}
	if a.Topics.Owns(t) {
		if shared || IsAnonymous(clientID) {
			return false
		}
		if write {
			_, _, ok, _ := a.Topics.ParseSend(t)
			return ok || t == a.Topics.Read()
		}
		if u, ok := a.Topics.ParseInbox(t); ok {
			return u == user
		}
		if u, ok := a.Topics.ParsePresence(t); ok {
			return u == user || a.shares(user, u)
		}
		return false
	}
	if IsAnonymous(clientID) {
		user = "" // matches "*" rules only
	}
	if a.Anonymous && a.ACL == nil {
		return true // open mode without an ACL: plain MQTT for everyone
	}
	return a.ACL.Allow(user, t, write)
}

// AllowDelivery decides whether a message on the topic name topic may be
// written to clientID through its subscriptions; direct says whether one of
// them matches topic without a wildcard at its first level (for topics under
// the prefix, where wildcards are refused: the topic itself). A topic under
// the prefix or beginning with '$' is delivered only directly, so # or +/+
// (shared or not) never receives anything of Parley's, nor $SYS; every
// other topic follows Allow.
func (a *Authorizer) AllowDelivery(clientID, topic string, direct bool) bool {
	if (a.Topics.Owns(topic) || strings.HasPrefix(topic, "$")) && !direct {
		return false
	}
	return a.Allow(clientID, topic, false)
}

// admit counts a CONNECT of user against MaxDevices: the sessions already
// connected and the CONNECTs admitted moments ago, other than those of the
// same client id (which take the session over rather than add one).
func (a *Authorizer) admit(session any, clientID, user string) bool {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := map[string]bool{}
	for id := range a.sessions[user] {
		ids[id] = true
	}
	for s, p := range a.pending[user] {
		if now.Sub(p.at) > pendingTTL {
			delete(a.pending[user], s)
			continue
		}
		ids[p.id] = true
	}
	delete(ids, clientID)
	if len(ids) >= a.maxDevices() {
		return false
	}
	if a.pending == nil {
		a.pending = map[string]map[any]pendingConn{}
	}
	if a.pending[user] == nil {
		a.pending[user] = map[any]pendingConn{}
	}
	a.pending[user][session] = pendingConn{id: clientID, at: now}
	return true
}

// Established records the connected session of clientID (MaxDevices).
func (a *Authorizer) Established(session any, clientID string) {
	if IsAnonymous(clientID) {
		return
	}
	user := UserOf(clientID)
	a.mu.Lock()
	defer a.mu.Unlock()
	if p := a.pending[user]; p != nil {
		delete(p, session)
		if len(p) == 0 {
			delete(a.pending, user)
		}
	}
	if a.sessions == nil {
		a.sessions = map[string]map[string]any{}
	}
	if a.sessions[user] == nil {
		a.sessions[user] = map[string]any{}
	}
	a.sessions[user][clientID] = session
}

// Gone forgets the session of clientID, unless another one took the client
// id over meanwhile (MaxDevices).
func (a *Authorizer) Gone(session any, clientID string) {
	user := UserOf(clientID)
	a.mu.Lock()
	defer a.mu.Unlock()
	if s := a.sessions[user]; s != nil && s[clientID] == session {
		delete(s, clientID)
		if len(s) == 0 {
			delete(a.sessions, user)
		}
	}
}

// Devices returns how many sessions of user are connected to this node.
func (a *Authorizer) Devices(user string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.sessions[user])
}

// contactOf asks the store whether x and y are contacts: with Privacy,
// users who share a group or both wrote in their
// direct conversation, and neither blocks the other; otherwise users who
// share a conversation.
func (a *Authorizer) contactOf(ctx context.Context, x, y string) (bool, error) {
	if a.Privacy != nil {
		r, err := a.Privacy.Relation(ctx, x, y)
		return r.Contacts(), err
	}
	return a.Store.SharesConversation(ctx, x, y)
}

// Forget drops the cached contact answers of x and y, after a block.
func (a *Authorizer) Forget(x, y string) {
	key := [2]string{x, y}
	if y < x {
		key = [2]string{y, x}
	}
	a.mu.Lock()
	delete(a.contacts, key)
	a.mu.Unlock()
}

// shares reports whether users x and y are contacts (see contactOf), from memory
// when asked recently (a yes is kept for contactTTL, a no for noContactTTL).
func (a *Authorizer) shares(x, y string) bool {
	if a.Store == nil {
		return false
	}
	key := [2]string{x, y}
	if y < x {
		key = [2]string{y, x}
	}
	now := time.Now()
	a.mu.Lock()
	c, ok := a.contacts[key]
	a.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.yes
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	yes, err := a.contactOf(ctx, x, y)
	if err != nil {
		return false
	}
	ttl := contactTTL
	if !yes {
		ttl = noContactTTL
	}
	a.mu.Lock()
	if a.contacts == nil || len(a.contacts) > 100000 {
		a.contacts = map[[2]string]contact{}
	}
	a.contacts[key] = contact{yes: yes, until: now.Add(ttl)}
	a.mu.Unlock()
	return yes
}

package hooks

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/metrics"
	"github.com/parley-im/parley/internal/wire"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/history"
)

// Auth is the mochi hook that authenticates every CONNECT with a JWT password,
// binds client ids to the authenticated user (USER or USER/DEVICE), and
// decides every publish, subscription and delivery (OnACLCheck) from memory:
// a user reads only its own inbox, writes only to send topics, and plain MQTT
// topics outside the prefix follow the ACL.
type Auth struct {
	mqtt.HookBase

	// Server is the broker the hook is attached to; required (refusals write
	// their own CONNACK through it).
	Server *mqtt.Server
	// Tokens verifies CONNECT passwords; required.
	Tokens *auth.Tokens
	// Topics is Parley's topic layout.
	Topics wire.Topics
	// ACL governs topics outside the prefix; nil denies them all.
	ACL *auth.ACL
	// Metrics, when set, counts refusals.
	Metrics *metrics.Metrics
	// Store answers whether two users share a conversation (presence
	// subscriptions); without it only a user's own presence is readable.
	Store history.Store
	// Anonymous lets clients without credentials connect (open mode): their
	// sessions live under client ids prefixed with AnonPrefix, Parley's
	// topics stay closed to them, and topics outside the prefix are open to
	// everyone unless an ACL is set.
	Anonymous bool
	// MaxDevices bounds the connected sessions (client ids) of one user on
	// this node; a CONNECT beyond it is refused with 0x97 quota exceeded
	// (MQTT 3.1.1: 0x03 server unavailable). Default DefaultMaxDevices.
	MaxDevices int
	// MaxSubscribeFilters bounds the filters of one SUBSCRIBE packet; the
	// filters beyond it are refused (0x8F topic filter invalid; MQTT 3.1.1:
	// 0x80). Default DefaultMaxSubscribeFilters.
	MaxSubscribeFilters int
	// Log defaults to slog.Default().
	Log *slog.Logger

	mu       sync.Mutex
	contacts map[[2]string]contact                 // answers of SharesConversation, until they expire
	sessions map[string]map[string]*mqtt.Client    // connected sessions by user and client id
	pending  map[string]map[*mqtt.Client]time.Time // admitted CONNECTs not yet established, by user
}

// Defaults of Auth.
const (
	DefaultMaxDevices          = 32
	DefaultMaxSubscribeFilters = 100
)

// contact is a cached answer to whether two users share a conversation.
type contact struct {
	yes   bool
	until time.Time
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

// VoidTopic is where a will that is no longer allowed when its client goes
// away is sent instead of its own topic, without payload: no client may
// subscribe to it, so it reaches nobody. (mochi-mqtt offers no way to drop
// a will from its OnWill hook.)
const VoidTopic = "$parley/void"

// ID implements mqtt.Hook.
func (a *Auth) ID() string { return "parley-auth" }

// Provides implements mqtt.Hook.
func (a *Auth) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPacketEncode,
		mqtt.OnWill, mqtt.OnSubscribe, mqtt.OnSessionEstablished, mqtt.OnDisconnect:
		return true
	}
	return false
}

// OnPacketEncode keeps CONNACKs to MQTT 3.1.1 clients within the 3.1.1
// return codes: mochi answers some malformed CONNECTs with v5 reason codes
// (0x81 malformed, 0x82 protocol error, 0x84 unsupported version), which a
// 3.1.1 client cannot read; they become 0x01 (unacceptable protocol), and
// the connection is closed as before.
func (a *Auth) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Connack && pk.ProtocolVersion < 5 && pk.ReasonCode >= 0x80 {
		switch pk.ReasonCode {
		case 0x86:
			pk.ReasonCode = 0x04
		case 0x87:
			pk.ReasonCode = 0x05
		case 0x85:
			pk.ReasonCode = 0x02
		case 0x88, 0x89:
			pk.ReasonCode = 0x03
		default:
			pk.ReasonCode = 0x01
		}
	}
	return pk
}

// Init implements mqtt.Hook.
func (a *Auth) Init(any) error {
	if a.Server == nil || a.Tokens == nil {
		return errors.New("hooks: Auth needs Server and Tokens")
	}
	if a.Log == nil {
		a.Log = slog.Default()
	}
	if a.MaxDevices <= 0 {
		a.MaxDevices = DefaultMaxDevices
	}
	if a.MaxSubscribeFilters <= 0 {
		a.MaxSubscribeFilters = DefaultMaxSubscribeFilters
	}
	a.contacts = map[[2]string]contact{}
	a.sessions = map[string]map[string]*mqtt.Client{}
	a.pending = map[string]map[*mqtt.Client]time.Time{}
	return nil
}

func (a *Auth) logger() *slog.Logger {
	if a.Log == nil {
		return slog.Default()
	}
	return a.Log
}

// OnConnect authenticates the CONNECT packet. A refused client gets the
// CONNACK reason code that fits (bad credentials 0x86, not authorized 0x87
// (also for a will topic the client may not publish to), client identifier
// not valid 0x85, too many devices 0x97; v3: 0x04, 0x05, 0x02, 0x03) and is
// dropped.
func (a *Auth) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	code, reason := a.check(cl, pk)
	if code == packets.CodeSuccess {
		return nil
	}
	if a.Metrics != nil {
		a.Metrics.Refused.WithLabelValues(reason).Inc()
	}
	a.Log.Info("connect refused", "client", cl.ID, "remote", cl.Net.Remote, "reason", reason)
	wire := code
	if cl.Properties.ProtocolVersion < 5 {
		wire = v3Connack[code]
	}
	if err := a.Server.SendConnack(cl, wire, false, nil); err != nil {
		return err
	}
	return code
}

// v3Connack maps the v5 refusals to MQTT 3.1.1 CONNACK return codes; mochi's
// own table lacks some of them.
var v3Connack = map[packets.Code]packets.Code{
	packets.ErrBadUsernameOrPassword:    {Code: 0x04, Reason: "bad user name or password"},
	packets.ErrNotAuthorized:            {Code: 0x05, Reason: "not authorized"},
	packets.ErrClientIdentifierNotValid: {Code: 0x02, Reason: "identifier rejected"},
	packets.ErrQuotaExceeded:            {Code: 0x03, Reason: "server unavailable"},
}

func (a *Auth) check(cl *mqtt.Client, pk packets.Packet) (packets.Code, string) {
	if a.Anonymous && !pk.Connect.PasswordFlag && !pk.Connect.UsernameFlag {
		// Anonymous sessions get their own namespace: ':' never appears in
		// a user id, so they cannot take over (or be taken over by) a user's.
		cl.ID = auth.AnonPrefix + cl.ID
		if cl.Properties.Props.AssignedClientID != "" {
			cl.Properties.Props.AssignedClientID = cl.ID
		}
		if pk.Connect.WillFlag && !a.WillAllowed(cl, pk.Connect.WillTopic) {
			return packets.ErrNotAuthorized, "will_topic"
		}
		return packets.CodeSuccess, ""
	}
	if !pk.Connect.PasswordFlag || len(pk.Connect.Password) == 0 {
		return packets.ErrBadUsernameOrPassword, "no_token"
	}
	user, err := a.Tokens.Verify(string(pk.Connect.Password))
	if errors.Is(err, auth.ErrTokenExpired) {
		return packets.ErrBadUsernameOrPassword, "token_expired"
	}
	if err != nil {
		return packets.ErrBadUsernameOrPassword, "token_invalid"
	}
	if len(pk.Connect.Username) > 0 && !bytes.Equal(pk.Connect.Username, []byte(user)) {
		return packets.ErrNotAuthorized, "username_mismatch"
	}
	if !auth.ValidClientID(cl.ID, user) {
		return packets.ErrClientIdentifierNotValid, "client_id"
	}
	if pk.Connect.WillFlag && !a.WillAllowed(cl, pk.Connect.WillTopic) {
		return packets.ErrNotAuthorized, "will_topic"
	}
	if !a.admit(cl, user) {
		return packets.ErrQuotaExceeded, "too_many_devices"
	}
	return packets.CodeSuccess, ""
}

// WillAllowed reports whether cl may leave a will on topic: a topic it could
// publish to itself that is outside Parley's prefix (a will bypasses the send
// pipeline, so it may never land on a send, inbox, presence or read topic),
// has no wildcards and does not begin with '$'.
func (a *Auth) WillAllowed(cl *mqtt.Client, topic string) bool {
	if topic == "" || wire.HasWildcards(topic) || topic[0] == '$' || a.Topics.Owns(topic) {
		return false
	}
	return a.OnACLCheck(cl, topic, true)
}

// OnWill checks a will again when the broker is about to publish it: a will
// that is not allowed (any more) goes, without payload, to VoidTopic, which
// nobody can read.
func (a *Auth) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if a.WillAllowed(cl, will.TopicName) {
		return will, nil
	}
	a.logger().Warn("will refused", "client", cl.ID, "topic", will.TopicName)
	if a.Metrics != nil {
		a.Metrics.Refused.WithLabelValues("will_topic").Inc()
	}
	return mqtt.Will{TopicName: VoidTopic}, nil
}

// admit counts a CONNECT of user against MaxDevices: the sessions already
// connected and the CONNECTs admitted moments ago, other than those of the
// same client id (which take the session over rather than add one).
func (a *Auth) admit(cl *mqtt.Client, user string) bool {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := map[string]bool{}
	for id := range a.sessions[user] {
		ids[id] = true
	}
	for p, at := range a.pending[user] {
		if now.Sub(at) > pendingTTL {
			delete(a.pending[user], p)
			continue
		}
		ids[p.ID] = true
	}
	delete(ids, cl.ID)
	limit := a.MaxDevices
	if limit <= 0 {
		limit = DefaultMaxDevices
	}
	if len(ids) >= limit {
		return false
	}
	if a.pending == nil {
		a.pending = map[string]map[*mqtt.Client]time.Time{}
	}
	if a.pending[user] == nil {
		a.pending[user] = map[*mqtt.Client]time.Time{}
	}
	a.pending[user][cl] = now
	return true
}

// OnSessionEstablished records a connected session of a user (MaxDevices).
func (a *Auth) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline || auth.IsAnonymous(cl.ID) {
		return
	}
	user := auth.UserOf(cl.ID)
	a.mu.Lock()
	defer a.mu.Unlock()
	if p := a.pending[user]; p != nil {
		delete(p, cl)
		if len(p) == 0 {
			delete(a.pending, user)
		}
	}
	if a.sessions == nil {
		a.sessions = map[string]map[string]*mqtt.Client{}
	}
	if a.sessions[user] == nil {
		a.sessions[user] = map[string]*mqtt.Client{}
	}
	a.sessions[user][cl.ID] = cl
}

// OnDisconnect forgets a session that went away (MaxDevices).
func (a *Auth) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if cl.Net.Inline || auth.IsAnonymous(cl.ID) {
		return
	}
	user := auth.UserOf(cl.ID)
	a.mu.Lock()
	defer a.mu.Unlock()
	if s := a.sessions[user]; s != nil && s[cl.ID] == cl {
		delete(s, cl.ID)
		if len(s) == 0 {
			delete(a.sessions, user)
		}
	}
}

// Devices returns how many sessions of user are connected to this node.
func (a *Auth) Devices(user string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.sessions[user])
}

// OnSubscribe refuses the filters of a SUBSCRIBE beyond MaxSubscribeFilters
// (they are answered 0x8F, MQTT 3.1.1: 0x80), so that one packet cannot ask
// for thousands of presence checks.
func (a *Auth) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline || len(pk.Filters) <= a.MaxSubscribeFilters {
		return pk
	}
	a.logger().Info("subscribe filters beyond the limit refused", "client", cl.ID, "filters", len(pk.Filters), "limit", a.MaxSubscribeFilters)
	filters := make(packets.Subscriptions, len(pk.Filters))
	copy(filters, pk.Filters)
	for i := a.MaxSubscribeFilters; i < len(filters); i++ {
		filters[i].Filter = "" // not a valid filter: refused by the broker
	}
	pk.Filters = filters
	return pk
}

// shares reports whether users a and b share a conversation, from memory
// when asked recently (a yes is kept for contactTTL, a no for noContactTTL).
func (a *Auth) shares(x, y string) bool {
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
	yes, err := a.Store.SharesConversation(ctx, x, y)
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

// OnConnectAuthenticate implements mqtt.Hook: OnConnect has already refused
// every client that did not authenticate.
func (a *Auth) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

// OnACLCheck decides publishes (write), subscriptions and deliveries.
func (a *Auth) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	user := auth.UserOf(cl.ID)
	t, shared := wire.StripShare(topic)
	if t == VoidTopic || (wire.HasWildcards(t) && auth.Covers(t, VoidTopic)) {
		return false
	}
	if a.Topics.Owns(t) || (wire.HasWildcards(t) && a.Topics.MayOverlap(t)) {
		if shared || auth.IsAnonymous(cl.ID) {
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
	if auth.IsAnonymous(cl.ID) {
		user = "" // matches "*" rules only
	}
	if a.Anonymous && a.ACL == nil {
		return true // open mode without an ACL: plain MQTT for everyone
	}
	return a.ACL.Allow(user, t, write)
}

package hooks

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

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
	Tokens *Tokens
	// Topics is Parley's topic layout.
	Topics Topics
	// ACL governs topics outside the prefix; nil denies them all.
	ACL *ACL
	// Metrics, when set, counts refusals.
	Metrics *Metrics
	// Store answers whether two users share a conversation (presence
	// subscriptions); without it only a user's own presence is readable.
	Store history.Store
	// Anonymous lets clients without credentials connect (open mode): their
	// sessions live under client ids prefixed with AnonPrefix, Parley's
	// topics stay closed to them, and topics outside the prefix are open to
	// everyone unless an ACL is set.
	Anonymous bool
	// Log defaults to slog.Default().
	Log *slog.Logger

	mu       sync.Mutex
	contacts map[[2]string]time.Time // pairs known to share a conversation, until
}

// contactTTL is how long a shared conversation is trusted for presence.
const contactTTL = time.Minute

// ID implements mqtt.Hook.
func (a *Auth) ID() string { return "parley-auth" }

// Provides implements mqtt.Hook.
func (a *Auth) Provides(b byte) bool {
	return b == mqtt.OnConnect || b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck || b == mqtt.OnPacketEncode
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
	return nil
}

// AnonPrefix begins the client ids of anonymous sessions in open mode.
const AnonPrefix = "anon:"

// IsAnonymous reports whether a client id belongs to an anonymous session.
func IsAnonymous(clientID string) bool { return strings.HasPrefix(clientID, AnonPrefix) }

// UserOf returns the user part of a client id (USER or USER/DEVICE).
func UserOf(clientID string) string {
	user, _, _ := strings.Cut(clientID, "/")
	return user
}

// ValidClientID reports whether id is USER or USER/DEVICE for user.
func ValidClientID(id, user string) bool {
	u, device, hasDevice := strings.Cut(id, "/")
	if u != user {
		return false
	}
	return !hasDevice || history.ValidDeviceID(device)
}

// OnConnect authenticates the CONNECT packet. A refused client gets the
// CONNACK reason code that fits (bad credentials 0x86, not authorized 0x87,
// client identifier not valid 0x85; v3: 0x04, 0x05, 0x02) and is dropped.
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
}

func (a *Auth) check(cl *mqtt.Client, pk packets.Packet) (packets.Code, string) {
	if a.Anonymous && !pk.Connect.PasswordFlag && !pk.Connect.UsernameFlag {
		// Anonymous sessions get their own namespace: ':' never appears in
		// a user id, so they cannot take over (or be taken over by) a user's.
		cl.ID = AnonPrefix + cl.ID
		if cl.Properties.Props.AssignedClientID != "" {
			cl.Properties.Props.AssignedClientID = cl.ID
		}
		return packets.CodeSuccess, ""
	}
	if !pk.Connect.PasswordFlag || len(pk.Connect.Password) == 0 {
		return packets.ErrBadUsernameOrPassword, "no_token"
	}
	user, err := a.Tokens.Verify(string(pk.Connect.Password))
	if errors.Is(err, ErrTokenExpired) {
		return packets.ErrBadUsernameOrPassword, "token_expired"
	}
	if err != nil {
		return packets.ErrBadUsernameOrPassword, "token_invalid"
	}
	if len(pk.Connect.Username) > 0 && !bytes.Equal(pk.Connect.Username, []byte(user)) {
		return packets.ErrNotAuthorized, "username_mismatch"
	}
	if !ValidClientID(cl.ID, user) {
		return packets.ErrClientIdentifierNotValid, "client_id"
	}
	return packets.CodeSuccess, ""
}

// shares reports whether users a and b share a conversation, from memory
// when a recent answer was yes.
func (a *Auth) shares(x, y string) bool {
	if a.Store == nil {
		return false
	}
	key := [2]string{x, y}
	if y < x {
		key = [2]string{y, x}
	}
	a.mu.Lock()
	until, ok := a.contacts[key]
	a.mu.Unlock()
	if ok && time.Now().Before(until) {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	yes, err := a.Store.SharesConversation(ctx, x, y)
	if err != nil || !yes {
		return false
	}
	a.mu.Lock()
	if a.contacts == nil || len(a.contacts) > 100000 {
		a.contacts = map[[2]string]time.Time{}
	}
	a.contacts[key] = time.Now().Add(contactTTL)
	a.mu.Unlock()
	return true
}

// OnConnectAuthenticate implements mqtt.Hook: OnConnect has already refused
// every client that did not authenticate.
func (a *Auth) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

// OnACLCheck decides publishes (write), subscriptions and deliveries.
func (a *Auth) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	user := UserOf(cl.ID)
	t, shared := StripShare(topic)
	if a.Topics.Owns(t) || (HasWildcards(t) && a.Topics.MayOverlap(t)) {
		if shared || IsAnonymous(cl.ID) {
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
	if IsAnonymous(cl.ID) {
		user = "" // matches "*" rules only
	}
	if a.Anonymous && a.ACL == nil {
		return true // open mode without an ACL: plain MQTT for everyone
	}
	return a.ACL.Allow(user, t, write)
}

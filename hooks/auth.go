package hooks

import (
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/metrics"
	"github.com/parley-im/parley/internal/wire"
)

// Auth is the mochi hook of authentication and authorization: it hands each
// CONNECT, ACL check, will and SUBSCRIBE to the Authorizer and answers in
// MQTT terms.
type Auth struct {
	mqtt.HookBase

	// Server is the broker the hook is attached to; required (refusals write
	// their own CONNACK through it).
	Server *mqtt.Server
	// Authorizer decides; required.
	Authorizer *auth.Authorizer
	// MaxSubscribeFilters bounds the filters of one SUBSCRIBE packet; the
	// filters beyond it are refused (0x8F topic filter invalid; MQTT 3.1.1:
	// 0x80). Default DefaultMaxSubscribeFilters.
	MaxSubscribeFilters int
	// Metrics, when set, counts refusals.
	Metrics *metrics.Metrics
	// Log defaults to slog.Default().
	Log *slog.Logger

	subs auth.Subscribes // SUBSCRIBEs being processed, notes for their SUBACKs
}

// DefaultMaxSubscribeFilters is the default of Auth.MaxSubscribeFilters.
const DefaultMaxSubscribeFilters = auth.DefaultMaxSubscribeFilters

// ID implements mqtt.Hook.
func (a *Auth) ID() string { return "parley-auth" }

// Provides implements mqtt.Hook.
func (a *Auth) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPacketEncode,
		mqtt.OnWill, mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnSessionEstablished, mqtt.OnDisconnect:
		return true
	}
	return false
}

// Init implements mqtt.Hook.
func (a *Auth) Init(any) error {
	if a.Server == nil || a.Authorizer == nil {
		return errors.New("hooks: Auth needs Server and Authorizer")
	}
	if a.MaxSubscribeFilters <= 0 {
		a.MaxSubscribeFilters = DefaultMaxSubscribeFilters
	}
	return nil
}

func (a *Auth) log() *slog.Logger {
	if a.Log == nil {
		return slog.Default()
	}
	return a.Log
}

// OnPacketEncode keeps CONNACKs to MQTT 3.1.1 clients within the 3.1.1
// return codes (auth.ConnackV3), and gives a SUBACK that refuses filters of
// an MQTT 5 client what OnSubscribed noted for it.
func (a *Auth) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Suback:
		if note, ok := a.subs.Take(cl, pk.PacketID); ok {
			if pk.Properties.ReasonString == "" {
				pk.Properties.ReasonString = note.Text
			}
			pk.ReasonCodes = note.Apply(pk.ReasonCodes)
		}
	case packets.Connack:
		if pk.ProtocolVersion < 5 {
			pk.ReasonCode = auth.ConnackV3(pk.ReasonCode)
		}
	}
	return pk
}

// refusals maps the Authorizer's refusals to CONNACK codes: MQTT 5, then
// MQTT 3.1.1 (mochi's own table lacks some of them).
var refusals = map[auth.Refusal][2]packets.Code{
	auth.BadCredentials: {packets.ErrBadUsernameOrPassword, {Code: 0x04, Reason: "bad user name or password"}},
	auth.NotAuthorized:  {packets.ErrNotAuthorized, {Code: 0x05, Reason: "not authorized"}},
	auth.BadClientID:    {packets.ErrClientIdentifierNotValid, {Code: 0x02, Reason: "identifier rejected"}},
	auth.TooManyDevices: {packets.ErrQuotaExceeded, {Code: 0x03, Reason: "server unavailable"}},
}

// OnConnect authenticates the CONNECT packet. A refused client gets the
// CONNACK reason code that fits (bad credentials 0x86, not authorized 0x87
// (also for a will topic the client may not publish to), client identifier
// not valid 0x85, too many devices 0x97; v3: 0x04, 0x05, 0x02, 0x03) and is
// dropped. MQTT 5 clients find why in the CONNACK's Reason String ("token
// expired", "bad signature: ...", "token invalid: ..."); the log says it for
// every protocol version.
func (a *Auth) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	id, refusal, reason, text := a.Authorizer.Authenticate(auth.Connect{
		Session: cl, ClientID: cl.ID,
		Username: pk.Connect.Username, HasUsername: pk.Connect.UsernameFlag,
		Password: pk.Connect.Password, HasPassword: pk.Connect.PasswordFlag,
		HasWill: pk.Connect.WillFlag, WillTopic: pk.Connect.WillTopic,
	})
	if id != cl.ID {
		cl.ID = id
		if cl.Properties.Props.AssignedClientID != "" {
			cl.Properties.Props.AssignedClientID = id
		}
	}
	if refusal == auth.Accepted {
		return nil
	}
	if a.Metrics != nil {
		a.Metrics.Refused.WithLabelValues(reason).Inc()
	}
	a.log().Info("connect refused", "client", cl.ID, "remote", cl.Net.Remote, "reason", reason, "detail", text)
	codes := refusals[refusal]
	code := codes[0]
	if cl.Properties.ProtocolVersion < 5 {
		code = codes[1]
	} else {
		code.Reason = text // the CONNACK's Reason String
	}
	if err := a.Server.SendConnack(cl, code, false, nil); err != nil {
		return err
	}
	return codes[0]
}

// OnConnectAuthenticate implements mqtt.Hook: OnConnect has already refused
// every client that did not authenticate.
func (a *Auth) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

// OnACLCheck decides publishes (write), subscriptions and deliveries, from
// memory. mochi asks with the filter for a subscription and with the topic
// name for a delivery (on every delivery, retained ones included). A topic
// name under the prefix or beginning with '$' is a delivery unless the
// client is subscribing to exactly that filter right now; it is delivered
// only when one of the client's subscriptions matches it without a wildcard
// at the first level (see auth.Authorizer.AllowDelivery and auth.Direct).
func (a *Auth) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	if write || wire.HasWildcards(topic) || (!a.Authorizer.Topics.Owns(topic) && !strings.HasPrefix(topic, "$")) {
		return a.Authorizer.Allow(cl.ID, topic, write)
	}
	_, exact := cl.State.Subscriptions.Get(topic)
	direct := exact || a.subs.Asking(cl, topic) || auth.Direct(maps.Keys(cl.State.Subscriptions.GetAll()), topic)
	return a.Authorizer.AllowDelivery(cl.ID, topic, direct)
}

// OnWill checks a will again when the broker is about to publish it: a will
// that is not allowed (any more) goes, without payload, to auth.VoidTopic,
// which nobody can read (mochi-mqtt offers no way to drop a will here).
func (a *Auth) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if a.Authorizer.WillAllowed(cl.ID, will.TopicName) {
		return will, nil
	}
	a.log().Warn("will refused", "client", cl.ID, "topic", will.TopicName)
	if a.Metrics != nil {
		a.Metrics.Refused.WithLabelValues("will_topic").Inc()
	}
	return mqtt.Will{TopicName: auth.VoidTopic}, nil
}

// OnSessionEstablished counts a connected session of a user (MaxDevices).
func (a *Auth) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if !cl.Net.Inline {
		a.Authorizer.Established(cl, cl.ID)
	}
}

// OnDisconnect forgets a session that went away (MaxDevices) and the
// SUBACK notes it never received.
func (a *Auth) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if !cl.Net.Inline {
		a.Authorizer.Gone(cl, cl.ID)
		a.subs.Forget(cl)
	}
}

// filters returns the topic filters of a SUBSCRIBE.
func filters(pk packets.Packet) []string {
	out := make([]string, len(pk.Filters))
	for i, f := range pk.Filters {
		out[i] = f.Filter
	}
	return out
}

// OnSubscribed notes for the SUBACK on its way to an MQTT 5 client (see
// OnPacketEncode) why filters were refused (auth.Authorizer.ExplainSuback).
func (a *Auth) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	asked := a.subs.End(cl) // pk's filters, as OnSubscribe left them
	if cl.Net.Inline || cl.Properties.ProtocolVersion < 5 {
		return
	}
	if note, ok := a.Authorizer.ExplainSuback(cl.ID, asked, codes, a.MaxSubscribeFilters); ok {
		a.subs.Note(cl, pk.PacketID, note)
	}
}

// OnSubscribe refuses the filters of a SUBSCRIBE beyond MaxSubscribeFilters
// (made empty, they are answered 0x8F, MQTT 3.1.1: 0x80), and notes the
// filters until OnSubscribed, for OnACLCheck and the SUBACK's explanation.
func (a *Auth) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline {
		return pk
	}
	limit := a.MaxSubscribeFilters // Init made it positive
	if len(pk.Filters) > limit {
		a.log().Info("subscribe filters beyond the limit refused", "client", cl.ID, "filters", len(pk.Filters), "limit", limit)
		pk.Filters = slices.Clone(pk.Filters)
		for i := limit; i < len(pk.Filters); i++ {
			pk.Filters[i].Filter = ""
		}
	}
	a.subs.Begin(cl, filters(pk))
	return pk
}

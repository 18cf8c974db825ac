package hooks

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/metrics"
	"github.com/parley-im/parley/internal/wire"
)

// Auth is the mochi hook of authentication and authorization: it hands each
// CONNECT, ACL check and will to the Authorizer and answers in MQTT terms.
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

	mu          sync.Mutex
	subacks     map[subackKey]subackNote               // what to change in SUBACKs on their way
	subscribing map[*mqtt.Client]packets.Subscriptions // the filters of SUBSCRIBEs being processed
}

// subackNote is what OnPacketEncode changes in a SUBACK to an MQTT 5
// client: its Reason String, and the filters whose 0x87 becomes 0x80.
type subackNote struct {
	text        string
	unspecified []int
}

// subackKey names a SUBACK on its way to a client.
type subackKey struct {
	cl *mqtt.Client
	id uint16
}

// DefaultMaxSubscribeFilters is the default of Auth.MaxSubscribeFilters.
const DefaultMaxSubscribeFilters = 100

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
	if a.Log == nil {
		a.Log = slog.Default()
	}
	if a.MaxSubscribeFilters <= 0 {
		a.MaxSubscribeFilters = DefaultMaxSubscribeFilters
	}
	return nil
}

// OnPacketEncode keeps CONNACKs to MQTT 3.1.1 clients within the 3.1.1
// return codes: mochi answers some malformed CONNECTs with v5 reason codes
// (0x81 malformed, 0x82 protocol error, 0x84 unsupported version), which a
// 3.1.1 client cannot read; they become 0x01 (unacceptable protocol), and
// the connection is closed as before. It also gives a SUBACK that refuses
// filters of an MQTT 5 client the Reason String OnSubscribed wrote for it.
func (a *Auth) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Suback {
		a.mu.Lock()
		key := subackKey{cl, pk.PacketID}
		note, ok := a.subacks[key]
		delete(a.subacks, key)
		a.mu.Unlock()
		if !ok {
			return pk
		}
		if pk.Properties.ReasonString == "" {
			pk.Properties.ReasonString = note.text
		}
		if len(note.unspecified) > 0 {
			codes := slices.Clone(pk.ReasonCodes)
			for _, i := range note.unspecified {
				if i < len(codes) && codes[i] == packets.ErrNotAuthorized.Code {
					codes[i] = packets.ErrUnspecifiedError.Code
				}
			}
			pk.ReasonCodes = codes
		}
		return pk
	}
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
	a.Log.Info("connect refused", "client", cl.ID, "remote", cl.Net.Remote, "reason", reason, "detail", text)
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
// at the first level (see auth.Authorizer.AllowDelivery).
func (a *Auth) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	if write || wire.HasWildcards(topic) || (!a.Authorizer.Topics.Owns(topic) && !strings.HasPrefix(topic, "$")) {
		return a.Authorizer.Allow(cl.ID, topic, write)
	}
	return a.Authorizer.AllowDelivery(cl.ID, topic, a.subscribingTo(cl, topic) || direct(cl, topic))
}

// direct reports whether one of cl's subscriptions (shared or not) matches
// topic without a wildcard at its first level.
func direct(cl *mqtt.Client, topic string) bool {
	if _, ok := cl.State.Subscriptions.Get(topic); ok {
		return true
	}
	for f := range cl.State.Subscriptions.GetAll() {
		f, _ = wire.StripShare(f)
		if f != "" && f[0] != '+' && f[0] != '#' && auth.Covers(f, topic) {
			return true
		}
	}
	return false
}

// subscribingTo reports whether cl's SUBSCRIBE being processed (between
// OnSubscribe and OnSubscribed, on the client's own goroutine) asks for
// filter.
func (a *Auth) subscribingTo(cl *mqtt.Client, filter string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.subscribing[cl] {
		if s.Filter == filter {
			return true
		}
	}
	return false
}

// OnWill checks a will again when the broker is about to publish it: a will
// that is not allowed (any more) goes, without payload, to auth.VoidTopic,
// which nobody can read (mochi-mqtt offers no way to drop a will here).
func (a *Auth) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if a.Authorizer.WillAllowed(cl.ID, will.TopicName) {
		return will, nil
	}
	a.logger().Warn("will refused", "client", cl.ID, "topic", will.TopicName)
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
// SUBACK Reason Strings it never received.
func (a *Auth) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if cl.Net.Inline {
		return
	}
	a.Authorizer.Gone(cl, cl.ID)
	a.mu.Lock()
	delete(a.subscribing, cl)
	for k := range a.subacks {
		if k.cl == cl {
			delete(a.subacks, k)
		}
	}
	a.mu.Unlock()
}

// maxRefusalsNamed bounds the filters a SUBACK's Reason String names.
const maxRefusalsNamed = 5

// OnSubscribed explains to an MQTT 5 client, in the Reason String of the
// SUBACK on its way (see OnPacketEncode), why filters were refused: for
// each (up to 5 are named) the filter and the rule it broke, e.g.
// `"im/inbox/bob": you may read only your own inbox, im/inbox/alice`.
func (a *Auth) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	a.mu.Lock()
	delete(a.subscribing, cl)
	a.mu.Unlock()
	if cl.Net.Inline || cl.Properties.ProtocolVersion < 5 {
		return
	}
	var parts []string
	var unspecified []int
	beyond, more := 0, 0
	for i, code := range codes {
		if code < 0x80 || i >= len(pk.Filters) {
			continue
		}
		f := pk.Filters[i].Filter
		if code == packets.ErrNotAuthorized.Code && !a.Authorizer.Topics.Owns(sharedFilter(f)) {
			// A plain MQTT filter the operator's ACL denies: 0x80, which
			// the Eclipse Paho suites and their client expect; the Reason
			// String still says why.
			unspecified = append(unspecified, i)
		}
		if f == "" && code == packets.ErrTopicFilterInvalid.Code && i >= a.filterLimit() {
			beyond++
			continue
		}
		if len(parts) == maxRefusalsNamed {
			more++
			continue
		}
		var why string
		switch code {
		case packets.ErrNotAuthorized.Code:
			why = a.Authorizer.ReadRefusal(cl.ID, f)
		case packets.ErrTopicFilterInvalid.Code:
			why = "not a valid topic filter"
		case packets.ErrProtocolViolationInvalidSharedNoLocal.Code:
			why = "no local is not allowed on a shared subscription"
		default:
			why = fmt.Sprintf("refused (reason code 0x%02X)", code)
		}
		parts = append(parts, fmt.Sprintf("%q: %s", f, why))
	}
	if more > 0 {
		parts = append(parts, fmt.Sprintf("and %d more refused", more))
	}
	if beyond > 0 {
		noun := "filters"
		if beyond == 1 {
			noun = "filter"
		}
		parts = append(parts, fmt.Sprintf("%d %s beyond the limit of %d per SUBSCRIBE", beyond, noun, a.filterLimit()))
	}
	if len(parts) == 0 {
		return
	}
	a.mu.Lock()
	if a.subacks == nil {
		a.subacks = map[subackKey]subackNote{}
	}
	a.subacks[subackKey{cl, pk.PacketID}] = subackNote{text: strings.Join(parts, "; "), unspecified: unspecified}
	a.mu.Unlock()
}

// sharedFilter returns the topic filter of a shared subscription's filter
// ($share/GROUP/FILTER, the prefix in any case), or f itself.
func sharedFilter(f string) string {
	if len(f) > 7 && strings.EqualFold(f[:7], "$share/") {
		if i := strings.IndexByte(f[7:], '/'); i >= 0 {
			return f[7+i+1:]
		}
	}
	return f
}

// OnSubscribe refuses the filters of a SUBSCRIBE beyond MaxSubscribeFilters
// (they are answered 0x8F, MQTT 3.1.1: 0x80), so that one packet cannot ask
// for thousands of presence checks.
// It also notes the filters until OnSubscribed, for OnACLCheck.
func (a *Auth) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	pk = a.limitFilters(cl, pk)
	if !cl.Net.Inline {
		a.mu.Lock()
		if a.subscribing == nil {
			a.subscribing = map[*mqtt.Client]packets.Subscriptions{}
		}
		a.subscribing[cl] = pk.Filters
		a.mu.Unlock()
	}
	return pk
}

func (a *Auth) limitFilters(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	limit := a.filterLimit()
	if cl.Net.Inline || len(pk.Filters) <= limit {
		return pk
	}
	a.logger().Info("subscribe filters beyond the limit refused", "client", cl.ID, "filters", len(pk.Filters), "limit", limit)
	filters := make(packets.Subscriptions, len(pk.Filters))
	copy(filters, pk.Filters)
	for i := limit; i < len(filters); i++ {
		filters[i].Filter = "" // not a valid filter: refused by the broker
	}
	pk.Filters = filters
	return pk
}

func (a *Auth) filterLimit() int {
	if a.MaxSubscribeFilters <= 0 {
		return DefaultMaxSubscribeFilters
	}
	return a.MaxSubscribeFilters
}

func (a *Auth) logger() *slog.Logger {
	if a.Log == nil {
		return slog.Default()
	}
	return a.Log
}

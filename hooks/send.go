package hooks

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/parley-im/parley/internal/delivery"
	"github.com/parley-im/parley/internal/metrics"
	"github.com/parley-im/parley/internal/send"
	"github.com/parley-im/parley/internal/wire"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/history"
)

// DefaultMaxPayload is the default maximum size of a send payload: 64 KiB.
const DefaultMaxPayload = 64 << 10

// Messenger is the send pipeline. As a mochi hook it handles PUBLISH packets
// on send topics: it validates them, stores the message (the PUBACK or PUBREC
// goes out only after the commit), and fans the stored message out to the
// inbox of every member. The REST API uses the same Send method.
type Messenger struct {
	mqtt.HookBase

	// Store is the durable truth; required.
	Store history.Store
	// Topics is Parley's topic layout.
	Topics wire.Topics
	// Groups caches group membership; required.
	Groups *Groups
	// Sync delivers to inboxes; required.
	Sync *delivery.Hub
	// Committer batches sends into group commits; default one partition over
	// Store.
	Committer *send.Committer
	// Invalidate, when set, is told of every group change made through this
	// node (cluster mode tells the other nodes).
	Invalidate func(group string)
	// ReceiptGroupMax is the largest group whose members get read receipts;
	// default 100.
	ReceiptGroupMax int
	// Limiter limits sends, group creations and membership changes per user
	// (one bucket for all three); nil allows everything.
	Limiter *send.RateLimiter
	// MaxPayload bounds a send payload; default DefaultMaxPayload.
	MaxPayload int
	// StoreTimeout bounds one store call on the send path; default 10s.
	StoreTimeout time.Duration
	// Metrics, when set, counts messages.
	Metrics *metrics.Metrics
	// Log defaults to slog.Default().
	Log *slog.Logger

	inflight sync.WaitGroup
}

// Wait blocks until every send and group change in progress has finished, or
// ctx is done.
func (m *Messenger) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { m.inflight.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ID implements mqtt.Hook.
func (m *Messenger) ID() string { return "parley-messenger" }

// Provides implements mqtt.Hook.
func (m *Messenger) Provides(b byte) bool {
	return b == mqtt.OnPublish || b == mqtt.OnPacketSent || b == mqtt.OnPacketEncode ||
		b == mqtt.OnSessionEstablished || b == mqtt.OnQosPublish
}

// Init implements mqtt.Hook.
func (m *Messenger) Init(any) error {
	if m.Store == nil || m.Groups == nil || m.Sync == nil {
		return errors.New("hooks: Messenger needs Store, Groups and Sync")
	}
	if m.ReceiptGroupMax <= 0 {
		m.ReceiptGroupMax = DefaultReceiptGroupMax
	}
	if m.Committer == nil {
		m.Committer = &send.Committer{Store: m.Store}
	}
	if m.MaxPayload <= 0 {
		m.MaxPayload = DefaultMaxPayload
	}
	if m.StoreTimeout <= 0 {
		m.StoreTimeout = 10 * time.Second
	}
	if m.Log == nil {
		m.Log = slog.Default()
	}
	return nil
}

// MaxPacketSize is the Maximum Packet Size announced to v5 clients: the
// payload limit plus room for the topic and properties. Payloads between the
// limit and this size get a too_large error; larger packets are refused by the
// MQTT layer, which disconnects the client.
func MaxPacketSize(maxPayload int) uint32 {
	if maxPayload <= 0 {
		maxPayload = DefaultMaxPayload
	}
	return uint32(maxPayload + 16<<10)
}

// OnPacketEncode tells v5 clients the Maximum Packet Size in CONNACK.
func (m *Messenger) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Connack && pk.ReasonCode < 0x80 && cl.Properties.ProtocolVersion == 5 {
		pk.Properties.MaximumPacketSize = MaxPacketSize(m.MaxPayload)
	}
	return pk
}

// OnPacketSent counts deliveries on Parley's topics.
func (m *Messenger) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if m.Metrics != nil && pk.FixedHeader.Type == packets.Publish && m.Topics.Owns(pk.TopicName) {
		m.Metrics.Delivered.Inc()
	}
}

// OnPublish handles a PUBLISH to a send topic. Other topics pass through.
//
// On success the client is acked as usual and the raw send is not routed. A
// send that can never succeed is not stored: v5 clients get the fitting
// PUBACK/PUBREC reason code, v3 clients a normal ack so that they stop
// resending. When the store is unavailable, v5 clients get reason code 0x80
// and v3 clients no ack (their connection is closed so that they resend).
// Every failure also sends an error event to the publishing device.
func (m *Messenger) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	if pk.TopicName == m.Topics.Read() {
		return m.onRead(cl, pk)
	}
	kind, target, ok, valid := m.Topics.ParseSend(pk.TopicName)
	if !ok {
		return pk, nil
	}
	from := UserOf(cl.ID)
	var err *wire.SendError
	if !valid {
		if kind == wire.TargetUser {
			err = wire.Errorf(wire.CodeInvalidPeer, "invalid user id %q", target)
		} else {
			err = wire.Errorf(wire.CodeNoSuchGroup, "invalid group id %q", target)
		}
		if p, perr := wire.ParseSendPayload(pk.Payload, m.MaxPayload); perr == nil {
			err.CID = p.CID
		}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), m.StoreTimeout)
		_, _, err = m.Send(ctx, from, kind, target, pk.Payload)
		cancel()
	}
	if err == nil {
		return pk, packets.CodeSuccessIgnore
	}
	m.count(err.Code)
	return m.refuse(cl, pk, err)
}

// refuse answers a PUBLISH that failed with err: an error event to the
// publishing device, then the fitting ack (see OnPublish).
func (m *Messenger) refuse(cl *mqtt.Client, pk packets.Packet, err *wire.SendError) (packets.Packet, error) {
	m.sendError(cl, err, pk.TopicName)
	v5 := cl.Properties.ProtocolVersion == 5
	if !err.Permanent() {
		m.Log.Warn("publish not stored", "client", cl.ID, "topic", pk.TopicName, "error", err.Message)
		if v5 && pk.FixedHeader.Qos > 0 {
			m.ack(cl, pk, packets.ErrUnspecifiedError)
		} else if pk.FixedHeader.Qos > 0 {
			cl.Stop(errors.New("store unavailable: publish not acknowledged"))
		}
		return pk, packets.ErrRejectPacket
	}
	if v5 && pk.FixedHeader.Qos > 0 {
		m.ack(cl, pk, reasonCode(err.Code))
		return pk, packets.ErrRejectPacket
	}
	if pk.FixedHeader.Qos == 0 {
		return pk, packets.ErrRejectPacket
	}
	return pk, packets.CodeSuccessIgnore // v3: ack so it stops resending
}

// reasonCode returns the MQTT 5 reason code of an error code (wire's table).
func reasonCode(code string) packets.Code {
	r := wire.ReasonCode(code)
	return packets.Code{Code: r.Code, Reason: r.String}
}

// ack writes a PUBACK (QoS 1) or PUBREC (QoS 2) with a failure reason code.
func (m *Messenger) ack(cl *mqtt.Client, pk packets.Packet, code packets.Code) {
	typ := packets.Puback
	if pk.FixedHeader.Qos == 2 {
		typ = packets.Pubrec
	}
	ack := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: typ},
		PacketID:    pk.PacketID,
		ReasonCode:  code.Code,
		Properties:  packets.Properties{ReasonString: code.Reason},
	}
	if err := cl.WritePacket(ack); err != nil {
		m.Log.Debug("write ack", "client", cl.ID, "error", err)
	}
}

// sendError writes an error event to the publishing device alone, at QoS 0.
func (m *Messenger) sendError(cl *mqtt.Client, e *wire.SendError, topic string) {
	out := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   m.Topics.Inbox(UserOf(cl.ID)),
		Payload:     wire.ErrorPayload(e, topic),
	}
	if err := cl.WritePacket(out); err != nil {
		m.Log.Debug("write error event", "client", cl.ID, "error", err)
	}
}

func (m *Messenger) count(result string) {
	if m.Metrics != nil {
		m.Metrics.Received.WithLabelValues(result).Inc()
	}
}

// Send validates payload, a send from user from to a user (kind TargetUser)
// or group (TargetGroup), stores it and fans it out. It returns the stored
// message and whether it was new; a retry with the same cid returns the
// original (created false) and echoes it to the sender's inbox only.
// Ephemeral sends return a zero Message and are delivered at QoS 0 to the
// other members' inboxes without being stored.
func (m *Messenger) Send(ctx context.Context, from, kind, target string, payload []byte) (history.Message, bool, *wire.SendError) {
	m.inflight.Add(1)
	defer m.inflight.Done()
	p, perr := wire.ParseSendPayload(payload, m.MaxPayload)
	if perr != nil {
		return history.Message{}, false, perr
	}
	fail := func(code, format string, args ...any) (history.Message, bool, *wire.SendError) {
		e := wire.Errorf(code, format, args...)
		e.CID = p.CID
		return history.Message{}, false, e
	}
	var conv string
	var recipients []string
	switch kind {
	case wire.TargetUser:
		if !history.ValidUserID(target) || target == from {
			return fail(wire.CodeInvalidPeer, "invalid peer %q", target)
		}
		conv = history.DirectConvID(from, target)
		recipients = []string{from, target}
	case wire.TargetGroup:
		if !history.ValidGroupID(target) {
			return fail(wire.CodeNoSuchGroup, "invalid group id %q", target)
		}
		conv = history.GroupConvID(target)
	default:
		return fail(wire.CodeInvalidPeer, "unknown target kind %q", kind)
	}
	if !m.Limiter.Allow(from, now()) {
		return fail(wire.CodeRateLimited, "too many messages, slow down")
	}
	var version int64
	if kind == wire.TargetGroup {
		members, v, err := m.Groups.MembersOf(ctx, target, from)
		version = v
		switch history.ErrorCode(err) {
		case "":
		case history.ENOTFOUND:
			return fail(wire.CodeNoSuchGroup, "no such group %q", target)
		case history.ENOTMEMBER:
			return fail(wire.CodeNotMember, "you are not a member of group %q", target)
		default:
			m.Log.Error("load group", "group", target, "error", err)
			return fail(wire.CodeUnavailable, "the message store is unavailable, try again")
		}
		recipients = users(members)
	}
	if p.Ephemeral {
		m.count("ephemeral")
		d := wire.Delivery{Kind: "ephemeral", Conv: conv, CID: p.CID, From: from, TS: now().UTC().Format(wire.TSLayout), Type: p.Type, Body: p.Body}
		others := make([]string, 0, len(recipients))
		for _, u := range recipients {
			if u != from {
				others = append(others, u)
			}
		}
		m.Sync.DeliverEvent(others, mustJSON(d), 0)
		return history.Message{}, false, nil
	}

	t := now()
	nm := history.NewMessage{Conv: conv, ID: history.NewID(t), CID: p.CID, From: from, TS: t, Type: p.Type, Body: p.Body}
	msg, created, err := m.Committer.Append(ctx, nm, func(res history.AppendResult) {
		if !res.Created {
			// The echo goes to the sender's devices again, even those that
			// have it: clients dedup by (conv, seq).
			m.Sync.DeliverEvent([]string{from}, wire.MessageDelivery(res.Message), 1)
			return
		}
		to := recipients
		if kind == wire.TargetGroup && res.MemberVersion != version {
			// Membership changed since the cache was read (perhaps on
			// another node): deliver to the members as of the commit.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			e, err := m.Groups.Load(ctx, target)
			cancel()
			if err == nil {
				to = users(e.members)
			} else {
				m.Log.Warn("reload group members", "group", target, "error", err)
			}
		}
		m.Sync.DeliverMessage(to, res.Message)
	})
	switch history.ErrorCode(err) {
	case "":
	case history.ENOTMEMBER:
		m.Groups.Forget(target)
		return fail(wire.CodeNotMember, "you are not a member of group %q", target)
	case history.ENOTFOUND:
		m.Groups.Forget(target)
		return fail(wire.CodeNoSuchGroup, "no such group %q", target)
	case history.EINVALID:
		// ParseSendPayload lets nothing through that a store refuses; should
		// one still, this message alone fails (see Committer.appendBatch).
		m.Log.Warn("store refused message", "conv", conv, "from", from, "error", err)
		return fail(wire.CodeInvalidPayload, "%s", history.ErrorMessage(err))
	default:
		m.Log.Error("store message", "conv", conv, "from", from, "error", err)
		return fail(wire.CodeUnavailable, "the message store is unavailable, try again")
	}
	if created {
		m.count("stored")
	} else {
		m.count("duplicate")
	}
	return msg, created, nil
}

func (m *Messenger) invalidate(group string) {
	if m.Invalidate != nil {
		m.Invalidate(group)
	}
}

func users(ms []history.Member) []string {
	out := make([]string, len(ms))
	for i, mb := range ms {
		out[i] = mb.User
	}
	return out
}

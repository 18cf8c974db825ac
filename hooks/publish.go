package hooks

import (
	"bytes"
	"context"
	"errors"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/metrics"
	"github.com/parley-im/parley/internal/send"
	"github.com/parley-im/parley/internal/wire"
)

// Publish is the mochi hook of the send pipeline: it hands PUBLISH packets on
// send topics and on PREFIX/read to the send service, acks them only after
// the message is stored (or refuses them with the fitting reason code), and
// announces the Maximum Packet Size to MQTT 5 clients.
type Publish struct {
	mqtt.HookBase

	// Service is the send pipeline; required.
	Service *send.Service
	// Topics is Parley's topic layout.
	Topics wire.Topics
	// Acks, when set, writes the acknowledgements of QoS 1 publishes on
	// Parley's topics through the device writers (delivery.Hub): a stored
	// message's PUBACK in the same write as its echo to the sending device,
	// every other PUBACK behind what is queued for the device, so that they
	// keep the order of the publishes. A device without a writer yet is
	// acknowledged by mochi as usual. Server is then required.
	Acks Acker
	// Server is the broker, which Acks knows connections by.
	Server *mqtt.Server
	// Metrics, when set, counts messages and deliveries.
	Metrics *metrics.Metrics
	// Log defaults to slog.Default().
	Log *slog.Logger
}

// Acker writes acknowledgements through the device writers; see
// Publish.Acks. delivery.Hub implements it, and its DeliverMessageAck is
// what send.Service.SendAcked uses.
type Acker interface {
	// WriteAck queues ack for the writer of connection c (a hooks conn)
	// and reports whether it did.
	WriteAck(c any, ack []byte) bool
}

// ID implements mqtt.Hook.
func (m *Publish) ID() string { return "parley-publish" }

// Provides implements mqtt.Hook.
func (m *Publish) Provides(b byte) bool {
	return b == mqtt.OnPublish || b == mqtt.OnPacketSent || b == mqtt.OnPacketEncode ||
		b == mqtt.OnSessionEstablished || b == mqtt.OnQosPublish
}

// Init implements mqtt.Hook.
func (m *Publish) Init(any) error {
	if m.Service == nil {
		return errors.New("hooks: Publish needs a Service")
	}
	if m.Acks != nil && m.Server == nil {
		return errors.New("hooks: Publish with Acks needs Server")
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
		maxPayload = send.DefaultMaxPayload
	}
	return uint32(maxPayload + 16<<10)
}

// OnPacketEncode tells v5 clients the Maximum Packet Size in CONNACK, and
// explains the PUBACK/PUBREC 0x87 that the MQTT layer writes for a publish
// the ACL refuses (its Reason String is the code's name alone).
func (m *Publish) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Connack:
		if pk.ReasonCode < 0x80 && cl.Properties.ProtocolVersion == 5 {
			pk.Properties.MaximumPacketSize = MaxPacketSize(m.Service.MaxPayload)
		}
	case packets.Puback, packets.Pubrec:
		if pk.ReasonCode == packets.ErrNotAuthorized.Code && pk.Properties.ReasonString == packets.ErrNotAuthorized.Reason {
			pk.Properties.ReasonString = auth.WriteRefusal(m.Topics)
		}
	}
	return pk
}

// OnPacketSent counts deliveries on Parley's topics.
func (m *Publish) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
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
func (m *Publish) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
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
	from := auth.UserOf(cl.ID)
	var err *wire.Error
	if !valid {
		if kind == wire.TargetUser {
			err = wire.Errorf(wire.CodeInvalidPeer, "invalid user id %q (1 to 64 of A-Z a-z 0-9 . _ @ -)", target)
		} else {
			err = wire.Errorf(wire.CodeNoSuchGroup, "invalid group id %q (1 to 64 of A-Z a-z 0-9 . _ -)", target)
		}
		if p, perr := wire.ParseSendPayload(pk.Payload, m.Service.MaxPayload); perr == nil {
			err.CID = p.CID
		}
	} else if m.Acks != nil && pk.FixedHeader.Qos == 1 {
		ctx, cancel := context.WithTimeout(context.Background(), m.Service.StoreTimeout)
		var acked bool
		acked, err = m.Service.SendAcked(ctx, from, kind, target, pk.Payload, m.conn(cl), puback(pk.PacketID))
		cancel()
		if acked {
			return pk, packets.ErrRejectPacket // acknowledged with the echo
		}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), m.Service.StoreTimeout)
		_, _, err = m.Service.Send(ctx, from, kind, target, pk.Payload)
		cancel()
	}
	if err == nil {
		return m.succeed(cl, pk)
	}
	m.count(err.Code)
	return m.refuse(cl, pk, err)
}

// puback returns a successful PUBACK of packet id as mochi encodes it for
// both protocol versions when no property is inherited
// (NoInheritedPropertiesOnAck): no reason code, no properties.
func puback(id uint16) []byte {
	return []byte{packets.Puback << 4, 2, byte(id >> 8), byte(id)}
}

func (m *Publish) conn(cl *mqtt.Client) conn {
	return conn{cl: cl, srv: m.Server, inbox: m.Topics.Inbox(auth.UserOf(cl.ID))}
}

// succeed acknowledges a publish handled without error: through the
// device's writer when Acks takes it, else by mochi (CodeSuccessIgnore).
func (m *Publish) succeed(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if m.Acks != nil && pk.FixedHeader.Qos == 1 && m.Acks.WriteAck(m.conn(cl), puback(pk.PacketID)) {
		return pk, packets.ErrRejectPacket
	}
	return pk, packets.CodeSuccessIgnore
}

// refuse answers a PUBLISH that failed with err: an error event to the
// publishing device, then the fitting ack (see OnPublish).
func (m *Publish) refuse(cl *mqtt.Client, pk packets.Packet, err *wire.Error) (packets.Packet, error) {
	m.sendError(cl, err, pk.TopicName)
	v5 := cl.Properties.ProtocolVersion == 5
	if !err.Permanent() {
		m.Log.Warn("publish not stored", "client", cl.ID, "topic", pk.TopicName, "error", err.Message)
		if v5 && pk.FixedHeader.Qos > 0 {
			m.ack(cl, pk, reasonCode(err))
		} else if pk.FixedHeader.Qos > 0 {
			cl.Stop(errors.New("store unavailable: publish not acknowledged"))
		}
		return pk, packets.ErrRejectPacket
	}
	if v5 && pk.FixedHeader.Qos > 0 {
		m.ack(cl, pk, reasonCode(err))
		return pk, packets.ErrRejectPacket
	}
	if pk.FixedHeader.Qos == 0 {
		return pk, packets.ErrRejectPacket
	}
	return m.succeed(cl, pk) // v3: ack so it stops resending
}

// reasonCode returns the MQTT 5 reason code of err (wire's table) with err's
// code and message as the Reason String, e.g. "invalid_peer: you cannot send
// a direct message to yourself".
func reasonCode(err *wire.Error) packets.Code {
	return packets.Code{Code: wire.ReasonCode(err.Code).Code, Reason: err.Code + ": " + err.Message}
}

// ack writes a PUBACK (QoS 1) or PUBREC (QoS 2) with a failure reason code
// and its Reason String.
func (m *Publish) ack(cl *mqtt.Client, pk packets.Packet, code packets.Code) {
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
	if m.Acks != nil && typ == packets.Puback {
		// Behind the PUBACKs queued for the device (see Acks), encoded as
		// mochi's WritePacket would.
		ack.ProtocolVersion = cl.Properties.ProtocolVersion
		ack.Mods.MaxSize = cl.Properties.Props.MaximumPacketSize
		ack.Mods.DisallowProblemInfo = cl.Properties.Props.RequestProblemInfoFlag && cl.Properties.Props.RequestProblemInfo == 0
		var buf bytes.Buffer
		if ack.PubackEncode(&buf) == nil && m.Acks.WriteAck(m.conn(cl), buf.Bytes()) {
			return
		}
	}
	if err := cl.WritePacket(ack); err != nil {
		m.Log.Debug("write ack", "client", cl.ID, "error", err)
	}
}

// sendError writes an error event to the publishing device alone, at QoS 0.
func (m *Publish) sendError(cl *mqtt.Client, e *wire.Error, topic string) {
	out := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   m.Topics.Inbox(auth.UserOf(cl.ID)),
		Payload:     wire.ErrorPayload(e, topic),
	}
	if err := cl.WritePacket(out); err != nil {
		m.Log.Debug("write error event", "client", cl.ID, "error", err)
	}
}

func (m *Publish) count(result string) {
	if m.Metrics != nil {
		m.Metrics.Received.WithLabelValues(result).Inc()
	}
}

// onRead handles a PUBLISH to PREFIX/read, acked like a send: after the
// marker is stored, or with the error's reason code.
func (m *Publish) onRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	req, err := wire.ParseReadRequest(pk.Payload)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), m.Service.StoreTimeout)
		_, err = m.Service.MarkRead(ctx, auth.UserOf(cl.ID), req.Conv, req.Seq)
		cancel()
	}
	if err == nil {
		return m.succeed(cl, pk)
	}
	return m.refuse(cl, pk, err)
}

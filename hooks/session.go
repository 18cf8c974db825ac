package hooks

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/internal/plain"
	"github.com/parley-im/parley/internal/wire"
)

// Session is the mochi hook of plain MQTT session rules that mochi-mqtt
// leaves to the embedder: the server keep alive and the order in which a
// resumed session's queued messages are sent again.
type Session struct {
	mqtt.HookBase

	// MaxKeepAlive, in seconds, caps the keep alive of MQTT 5 clients: one
	// asking for more is told MaxKeepAlive in the CONNACK (Server Keep
	// Alive). MQTT 3.1.1 clients cannot be told and keep theirs. 0: no cap.
	MaxKeepAlive uint16
	// Topics is Parley's topic layout: messages under the prefix are not
	// reordered (the delivery engine orders them).
	Topics wire.Topics
}

// ID implements mqtt.Hook.
func (s *Session) ID() string { return "parley-session" }

// Provides implements mqtt.Hook.
func (s *Session) Provides(b byte) bool { return b == mqtt.OnConnect || b == mqtt.OnPacketEncode }

// OnConnect caps the keep alive of MQTT 5 clients at MaxKeepAlive.
func (s *Session) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if s.MaxKeepAlive > 0 && cl.Properties.ProtocolVersion == 5 && cl.State.Keepalive > s.MaxKeepAlive {
		cl.State.Keepalive = s.MaxKeepAlive
		cl.State.ServerKeepalive = true
	}
	return nil
}

// OnPacketEncode puts a resumed session's queued plain messages back in
// the order they were queued (see plain.Requeue), just before mochi sends
// them again after the CONNACK.
func (s *Session) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Connack || !pk.SessionPresent || cl.State.Inflight.Len() < 2 {
		return pk
	}
	var queued []packets.Packet
	for _, p := range cl.State.Inflight.GetAll(false) {
		if p.FixedHeader.Type == packets.Publish && !s.Topics.Owns(p.TopicName) {
			queued = append(queued, p)
		}
	}
	if len(queued) >= 2 {
		plain.Requeue(queued)
		for _, p := range queued {
			cl.State.Inflight.Set(p)
		}
	}
	return pk
}

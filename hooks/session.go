package hooks

import (
	"sort"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

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

// OnPacketEncode puts a resumed session's queued messages back in the order
// they were queued, just before mochi sends them again. mochi sends the
// inflight messages of a session that is present right after the CONNACK,
// sorted by uint16(Created) (seconds), which mixes up the messages queued
// within one second. The queue order is the order of packet ids, which
// mochi hands out one after another: it starts after the largest gap in the
// circle of ids in use. Their Created times are rewritten into increasing
// seconds no later than the earliest of them, so that a message expires no
// later than before (at most a second per queued message earlier).
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
	if len(queued) < 2 {
		return pk
	}
	sort.Slice(queued, func(i, j int) bool { return queued[i].PacketID < queued[j].PacketID })
	start, gap := 0, 0
	for i := range queued {
		prev := int(queued[(i+len(queued)-1)%len(queued)].PacketID)
		d := (int(queued[i].PacketID) - prev + 65536) % 65536
		if d > gap {
			start, gap = i, d
		}
	}
	queued = append(queued[start:], queued[:start]...)
	first := queued[0].Created
	for _, p := range queued {
		first = min(first, p.Created)
	}
	// uint16(Created) must increase along the queue without wrapping.
	base := first - int64(len(queued))
	if int(uint16(base))+len(queued) > 65535 {
		base -= int64(uint16(base)) + int64(len(queued)) - 65535
	}
	for i, p := range queued {
		p.Created = base + int64(i)
		cl.State.Inflight.Set(p)
	}
	return pk
}

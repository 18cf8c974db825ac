package hooks

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// serverPacketIDFloor is where the packet ids of the server's deliveries
// start. mochi-mqtt v2.7.9 keeps the packet ids of both directions in one
// inflight table, so a client's QoS 1/2 PUBLISH whose id equals that of a
// delivery awaiting its PUBACK replaces the delivery's record, and the
// client's PUBACK then deletes the record of its own QoS 2 flow (the PUBREL
// is answered with 0x92). Clients count their ids up from 1; keeping the
// server's ids in the upper half makes such collisions practically absent.
const serverPacketIDFloor = 1 << 15

// raisePacketIDs moves cl's next delivery packet id to the upper half.
func raisePacketIDs(cl *mqtt.Client) {
	for n := 0; n < 1<<16; n++ {
		id, err := cl.NextPacketID()
		if err != nil || id >= serverPacketIDFloor {
			return
		}
	}
}

// OnSessionEstablished implements mqtt.Hook: see serverPacketIDFloor.
func (m *Publish) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	raisePacketIDs(cl)
}

// OnQosPublish implements mqtt.Hook: after the ids wrapped around, move them
// up again (see serverPacketIDFloor).
func (m *Publish) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if pk.FixedHeader.Type == packets.Publish && pk.PacketID < serverPacketIDFloor {
		raisePacketIDs(cl)
	}
}

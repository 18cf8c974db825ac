package hooks

import (
	"reflect"
	"sync/atomic"
	"unsafe"

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
//
// mochi keeps the last packet id handed out in the unexported
// ClientState.packetID, and NextPacketID searches up from it for a free id.
// Asking NextPacketID 32,768 times to get there (one lock and one inflight
// lookup each) cost about 2 ms of CPU per connect, most of a connect's cost,
// so the counter is set directly; NextPacketID then returns the first free
// id above the floor as before. Should a later mochi rename the field, the
// slow walk still does it (TestRaisePacketIDs checks both).
func raisePacketIDs(cl *mqtt.Client) {
	if p := packetIDCounter(cl); p != nil {
		for {
			cur := atomic.LoadUint32(p)
			if cur >= serverPacketIDFloor || atomic.CompareAndSwapUint32(p, cur, serverPacketIDFloor-1) {
				return
			}
		}
	}
	walkPacketIDs(cl)
}

// packetIDCounter returns the address of cl.State.packetID, or nil when
// mochi has no such uint32 field.
func packetIDCounter(cl *mqtt.Client) *uint32 {
	if packetIDOffset == ^uintptr(0) {
		return nil
	}
	return (*uint32)(unsafe.Add(unsafe.Pointer(&cl.State), packetIDOffset))
}

// packetIDOffset is the offset of packetID in mqtt.ClientState, -1 when
// there is no such uint32 field.
var packetIDOffset = func() uintptr {
	f, ok := reflect.TypeFor[mqtt.ClientState]().FieldByName("packetID")
	if !ok || f.Type.Kind() != reflect.Uint32 {
		return ^uintptr(0)
	}
	return f.Offset
}()

// walkPacketIDs moves cl's next packet id to the upper half through
// NextPacketID alone.
func walkPacketIDs(cl *mqtt.Client) {
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

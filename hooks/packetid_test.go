package hooks

import (
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// TestRaisePacketIDs: after a connect the server's packet ids start at the
// floor and skip ids in flight, whether the counter is set directly or
// walked with NextPacketID; an id counter already above the floor stays.
func TestRaisePacketIDs(t *testing.T) {
	if packetIDCounter(pipeClient(t, mqtt.New(nil), "a")) == nil {
		t.Fatal("mochi's ClientState has no uint32 packetID: raisePacketIDs walks 32,768 ids per connect (see packetid.go)")
	}
	for name, raise := range map[string]func(*mqtt.Client){"direct": raisePacketIDs, "walk": walkPacketIDs} {
		t.Run(name, func(t *testing.T) {
			srv := mqtt.New(nil)
			cl := pipeClient(t, srv, "bob/phone")
			cl.State.Inflight.Set(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: serverPacketIDFloor})
			raise(cl)
			id, err := cl.NextPacketID()
			if err != nil || id <= serverPacketIDFloor || id > serverPacketIDFloor+2 {
				t.Fatalf("first id %d (%v), want the first free one above %d", id, err, serverPacketIDFloor)
			}
			for range 100 {
				id, _ = cl.NextPacketID()
			}
			raise(cl)
			if next, _ := cl.NextPacketID(); next <= id || next > id+2 {
				t.Fatalf("raise moved a counter above the floor: next id %d after %d", next, id)
			}
		})
	}
}

// BenchmarkRaisePacketIDs is the per-connect cost of raising the packet
// ids of a new client, directly and by the walk.
func BenchmarkRaisePacketIDs(b *testing.B) {
	srv := mqtt.New(nil)
	cl := srv.NewClient(nil, "test", "bob/phone", false)
	for name, raise := range map[string]func(*mqtt.Client){"direct": raisePacketIDs, "walk": walkPacketIDs} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				cl.State = mqtt.ClientState{Inflight: mqtt.NewInflights()}
				raise(cl)
			}
		})
	}
}

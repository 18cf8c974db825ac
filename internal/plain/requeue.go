package plain

import (
	"sort"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Requeue puts the queued messages of a resumed session back in the order
// they were queued, in place. mochi sends the inflight messages of a
// session that is present right after the CONNACK, sorted by
// uint16(Created) (seconds), which mixes up the messages queued within one
// second. The queue order is the order of packet ids, which mochi hands out
// one after another: it starts after the largest gap in the circle of ids
// in use. Their Created times are rewritten into increasing seconds no
// later than the earliest of them, so that a message expires no later than
// before (at most a second per queued message earlier).
func Requeue(queued []packets.Packet) {
	if len(queued) < 2 {
		return
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
	rotated := append(queued[start:len(queued):len(queued)], queued[:start]...)
	copy(queued, rotated)
	first := queued[0].Created
	for _, p := range queued {
		first = min(first, p.Created)
	}
	// uint16(Created) must increase along the queue without wrapping.
	base := first - int64(len(queued))
	if int(uint16(base))+len(queued) > 65535 {
		base -= int64(uint16(base)) + int64(len(queued)) - 65535
	}
	for i := range queued {
		queued[i].Created = base + int64(i)
	}
}

package hooks

import (
	"fmt"
	"github.com/parley-im/parley/internal/auth"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/internal/delivery"
)

// writeTimeout bounds one write of a delivery to a client: a client that
// takes no data for that long is dropped, reconnects and catches up, and
// nobody waits on its socket meanwhile.
const writeTimeout = 30 * time.Second

// conn is a mochi client as the delivery engine sees it. It is a comparable
// value: two conns of one client are equal (delivery.Conn asks for that).
type conn struct {
	cl    *mqtt.Client
	srv   *mqtt.Server
	inbox string // the client's inbox topic
}

var _ delivery.Conn = conn{}

func (c conn) ID() string          { return c.cl.ID }
func (c conn) User() string        { return auth.UserOf(c.cl.ID) }
func (c conn) ReceiveMaximum() int { return int(c.cl.Properties.Props.ReceiveMaximum) }
func (c conn) Inflight() int       { return c.cl.State.Inflight.Len() }
func (c conn) Closed() bool        { return c.cl.Closed() }
func (c conn) Stop(err error)      { c.cl.Stop(err) }

// TakeOver sends v5 clients a DISCONNECT with 0x8E and closes the connection.
func (c conn) TakeOver() { _ = c.srv.DisconnectClient(c.cl, packets.ErrSessionTakenOver) }

// PacketID returns the client's next free packet id, in the upper half (see
// serverPacketIDFloor).
func (c conn) PacketID() (uint16, error) {
	id, err := c.cl.NextPacketID()
	if err == nil && id < serverPacketIDFloor {
		raisePacketIDs(c.cl)
		id, err = c.cl.NextPacketID()
	}
	if err != nil {
		return 0, err
	}
	return uint16(id), nil
}

// Append encodes one delivery on the inbox topic into buf (see
// appendPublish). At QoS 1 it enters the inflight table (and takes a send
// quota). Like mochi's WritePacket, it refuses a packet above the client's
// Maximum Packet Size; unlike it, it calls no OnPacketEncode or OnPacketSent
// hooks and counts nothing in the server's $SYS figures: the delivery engine
// counts its deliveries itself.
func (c conn) Append(buf []byte, id uint16, payload []byte, qos byte) ([]byte, error) {
	cl := c.cl
	if cl.Closed() {
		return buf, mqtt.ErrConnectionClosed
	}
	n := len(buf)
	buf = appendPublish(buf, cl.Properties.ProtocolVersion, c.inbox, id, payload, qos)
	if max := cl.Properties.Props.MaximumPacketSize; max > 0 && uint32(len(buf)-n) > max {
		return buf[:n], fmt.Errorf("%w: %w", delivery.ErrTooLarge, packets.ErrPacketTooLarge)
	}
	if qos > 0 {
		cl.State.Inflight.Set(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
			TopicName:   c.inbox,
			Payload:     payload,
			PacketID:    id,
			Created:     time.Now().Unix(),
		})
		cl.State.Inflight.DecreaseSendQuota()
	}
	return buf, nil
}

// Write writes buf in one write under the client's lock, the lock mochi's
// WritePacket holds, so that packets never interleave. The write deadline is
// writeTimeout, then back to the keepalive deadline the broker keeps (1.5
// keepalives).
func (c conn) Write(buf []byte) error {
	cl := c.cl
	if cl.Closed() {
		return mqtt.ErrConnectionClosed
	}
	nc := cl.Net.Conn
	if nc == nil {
		return nil
	}
	cl.Lock()
	defer cl.Unlock()
	_ = nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := nc.Write(buf)
	var keep time.Time
	if ka := cl.State.Keepalive; ka > 0 {
		keep = time.Now().Add(time.Duration(ka+ka/2) * time.Second)
	}
	_ = nc.SetWriteDeadline(keep)
	return err
}

// appendPublish appends a PUBLISH packet to buf as mochi's PublishEncode
// writes it for a packet without properties: the fixed header, the topic,
// the packet id (QoS 1 and 2) and, for MQTT 5, an empty property list, then
// the payload. It allocates nothing beyond growing buf.
func appendPublish(buf []byte, version byte, topic string, id uint16, payload []byte, qos byte) []byte {
	remaining := 2 + len(topic) + len(payload)
	if qos > 0 {
		remaining += 2
	}
	if version == 5 {
		remaining++ // property length 0
	}
	buf = append(buf, packets.Publish<<4|qos<<1)
	for {
		b := byte(remaining % 128)
		remaining /= 128
		if remaining > 0 {
			b |= 0x80
		}
		buf = append(buf, b)
		if remaining == 0 {
			break
		}
	}
	buf = append(buf, byte(len(topic)>>8), byte(len(topic)))
	buf = append(buf, topic...)
	if qos > 0 {
		buf = append(buf, byte(id>>8), byte(id))
	}
	if version == 5 {
		buf = append(buf, 0)
	}
	return append(buf, payload...)
}

// Pending reports whether id is an inbox delivery in the inflight table.
func (c conn) Pending(id uint16) (int, bool) {
	pk, ok := c.cl.State.Inflight.Get(id)
	if !ok || pk.FixedHeader.Type != packets.Publish || pk.TopicName != c.inbox {
		return 0, false
	}
	return len(pk.Payload), true
}

// Drop removes id from the inflight table if it is an inbox delivery.
func (c conn) Drop(id uint16) {
	if _, ok := c.Pending(id); ok && c.cl.State.Inflight.Delete(id) {
		c.cl.State.Inflight.IncreaseSendQuota()
	}
}

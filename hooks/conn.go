package hooks

import (
	"errors"
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

// Send writes one delivery on the inbox topic. At QoS 1 it enters the
// inflight table (and takes a send quota) first; a failed write removes it
// again. The write deadline is writeTimeout, then back to the keepalive
// deadline the broker keeps (1.5 keepalives).
func (c conn) Send(id uint16, payload []byte, qos byte) error {
	cl := c.cl
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		TopicName:   c.inbox,
		Payload:     payload,
		PacketID:    id,
		Created:     time.Now().Unix(),
	}
	if qos > 0 {
		cl.State.Inflight.Set(pk)
		cl.State.Inflight.DecreaseSendQuota()
	}
	if nc := cl.Net.Conn; nc != nil {
		_ = nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	}
	err := cl.WritePacket(pk)
	if nc := cl.Net.Conn; nc != nil {
		var keep time.Time
		if ka := cl.State.Keepalive; ka > 0 {
			keep = time.Now().Add(time.Duration(ka+ka/2) * time.Second)
		}
		_ = nc.SetWriteDeadline(keep)
	}
	if err != nil && qos > 0 {
		if cl.State.Inflight.Delete(id) {
			cl.State.Inflight.IncreaseSendQuota()
		}
	}
	if errors.Is(err, packets.ErrPacketTooLarge) {
		return fmt.Errorf("%w: %w", delivery.ErrTooLarge, err)
	}
	return err
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

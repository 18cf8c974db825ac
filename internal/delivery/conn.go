package delivery

import "errors"

// ErrTooLarge is returned (wrapped) by Conn.Append for a delivery larger than
// the client accepts (its Maximum Packet Size): the writer skips it.
var ErrTooLarge = errors.New("delivery: packet larger than the client accepts")

// Conn is one client connection as the Hub sees it; the hooks package
// implements it over mochi-mqtt's client. The Hub compares Conns with ==:
// the values passed for one connection must be equal (a pointer, or a
// comparable struct holding one), and those of two connections different.
// Implementations must be safe for concurrent use and must not call back
// into the Hub.
type Conn interface {
	// ID returns the client id (USER or USER/DEVICE).
	ID() string
	// User returns the user the client belongs to.
	User() string
	// ReceiveMaximum returns the client's Receive Maximum, 0 when it set
	// none.
	ReceiveMaximum() int
	// Inflight returns the number of packets in the client's inflight
	// table, whatever their topic or direction.
	Inflight() int
	// PacketID allocates the packet id of the next QoS 1 delivery. The Hub
	// records the delivery under that id before it calls Append, so that the
	// PUBACK, however quick, finds the record.
	PacketID() (uint16, error)
	// Append encodes the delivery of payload on the client's inbox topic at
	// qos (0 or 1), with packet id id at QoS 1 (0 otherwise), appends the
	// packet to buf and returns the extended buffer. A QoS 1 delivery enters
	// the client's inflight table here, before it is written. Nothing is
	// written: Write does that, for every packet appended since the last
	// Write at once. An error wrapping ErrTooLarge means the client can never
	// take this payload; on any error buf is returned unchanged and the
	// delivery is not in the inflight table.
	Append(buf []byte, id uint16, payload []byte, qos byte) ([]byte, error)
	// Write writes buf, packets from Append, to the client in one write. A
	// write that takes too long fails. After a failed Write the caller drops
	// the deliveries of buf and stops the connection.
	Write(buf []byte) error
	// Pending reports whether id is still an inbox delivery in the client's
	// inflight table, and the size of its payload.
	Pending(id uint16) (size int, ok bool)
	// Drop removes id from the client's inflight table if it is an inbox
	// delivery.
	Drop(id uint16)
	// Stop closes the connection, with err as the reason.
	Stop(err error)
	// TakeOver disconnects the client because its session moved to another
	// node (MQTT 5: reason code 0x8E, session taken over).
	TakeOver()
	// Closed reports whether the connection is closed.
	Closed() bool
}

// Remote carries deliveries and interest to the other nodes (cluster mode).
// Implementations must not block.
type Remote interface {
	// Deliver sends an inbox payload for users to the other nodes, which
	// hand it to Hub.DeliverLocal there: a stored message (conv and seq set)
	// or an event (conv "").
	Deliver(users []string, conv string, seq int64, qos byte, payload []byte)
	// Interest tells the other nodes that this node has (on) or no longer
	// has devices of user.
	Interest(user string, on bool)
}

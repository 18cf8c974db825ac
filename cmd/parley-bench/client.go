package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// conn is a minimal MQTT 3.1.1 client: CONNECT, one SUBSCRIBE, PUBLISH at
// QoS 0, 1 or 2 in both directions, DISCONNECT. The load generator shares
// the CPU with the broker it measures, so its per-message cost is kept to a
// few allocations: packets are written straight into a buffered writer and
// read into a reused buffer, and acknowledgements of received messages are
// flushed together when no more input is waiting. The same code drives
// Parley, the plain mochi baseline and any --target broker.
type conn struct {
	nc net.Conn
	r  *bufio.Reader

	wmu sync.Mutex
	w   *bufio.Writer
	buf []byte // packet scratch for writes, guarded by wmu

	// onPublish gets every received PUBLISH, on the reader goroutine; the
	// slices are valid only during the call.
	onPublish func(topic, payload []byte, now int64)
	// onAck gets the packet id of an outgoing PUBLISH once its flow is
	// complete (PUBACK for QoS 1, PUBCOMP for QoS 2).
	onAck func(pid uint16, now int64)

	// sessionPresent is the CONNACK flag: the broker kept the session of
	// an earlier connection (clean session 0), subscriptions included.
	sessionPresent bool
	small          bool // see dialOptions.small

	suback chan []byte
	done   chan struct{} // closed when the reader ends
	err    error         // why the reader ended; read after done
}

// keepalive is the CONNECT keepalive; a PINGREQ goes out every half of it.
const keepalive = 60 * time.Second

// MQTT 3.1.1 packet types, shifted into the high nibble.
const (
	pkConnect     = 1 << 4
	pkConnack     = 2 << 4
	pkPublish     = 3 << 4
	pkPuback      = 4 << 4
	pkPubrec      = 5 << 4
	pkPubrel      = 6 << 4
	pkPubcomp     = 7 << 4
	pkSubscribe   = 8 << 4
	pkSuback      = 9 << 4
	pkUnsuback    = 11 << 4
	pkPingreq     = 12 << 4
	pkPingresp    = 13 << 4
	pkDisconnect  = 14 << 4
	maxPacketSize = 1 << 20
)

// errRefused is wrapped by dial when the broker refuses the CONNECT.
var errRefused = errors.New("connection refused")

// dialOptions are the CONNECT fields.
type dialOptions struct {
	addr     string
	clientID string
	username string
	password string
	clean    bool
	// local is the source address to dial from; nil lets the kernel
	// choose. Spreading connections over 127.0.0.2, 127.0.0.3, ... goes
	// past one address's ephemeral ports.
	local *net.TCPAddr
	// small gives the connection 2 KiB read and 1 KiB write buffers
	// instead of 32 and 16 KiB: for many idle connections with small
	// messages (the connections scenario), so that the load generator's
	// own memory stays small.
	small bool
}

// dial connects and waits for the CONNACK; the reader starts before dial
// returns, so onPublish and onAck must be set in the handlers.
func dial(ctx context.Context, o dialOptions, onPublish func(topic, payload []byte, now int64), onAck func(uint16, int64)) (*conn, error) {
	d := net.Dialer{}
	if o.local != nil {
		d.LocalAddr, d.Control = o.local, bindNoPort
	}
	nc, err := d.DialContext(ctx, "tcp", o.addr)
	if err != nil {
		return nil, err
	}
	rsize, wsize := 32<<10, 16<<10
	if o.small {
		rsize, wsize = 2<<10, 1<<10
	}
	c := &conn{nc: nc, r: bufio.NewReaderSize(nc, rsize), w: bufio.NewWriterSize(nc, wsize), small: o.small,
		onPublish: onPublish, onAck: onAck, suback: make(chan []byte, 1), done: make(chan struct{})}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	var flags byte
	if o.clean {
		flags |= 0x02
	}
	var body []byte
	body = appendString(body, "MQTT")
	body = append(body, 4, 0, byte(keepalive/time.Second>>8), byte(keepalive/time.Second)) // level 4 (3.1.1), flags, keepalive
	body = appendString(body, o.clientID)
	if o.username != "" {
		flags |= 0x80
		body = appendString(body, o.username)
	}
	if o.password != "" {
		flags |= 0x40
		body = appendString(body, o.password)
	}
	body[7] = flags
	if err := c.write(pkConnect, body, true); err != nil {
		nc.Close()
		return nil, fmt.Errorf("send CONNECT: %w", err)
	}
	typ, ack, err := c.readPacket(nil)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("read CONNACK: %w", err)
	}
	if typ&0xf0 != pkConnack || len(ack) != 2 {
		nc.Close()
		return nil, fmt.Errorf("expected CONNACK, got packet type %d", typ>>4)
	}
	if ack[1] != 0 {
		nc.Close()
		return nil, fmt.Errorf("%w: CONNACK return code %d", errRefused, ack[1])
	}
	c.sessionPresent = ack[0]&1 == 1
	_ = nc.SetDeadline(time.Time{})
	go c.read()
	go c.ping()
	return c, nil
}

// ping sends a PINGREQ every half keepalive until the connection ends.
func (c *conn) ping() {
	t := time.NewTicker(keepalive / 2)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			if c.write(pkPingreq, nil, true) != nil {
				return
			}
		}
	}
}

// subscribe subscribes to filters at qos and waits for the SUBACK; a refused
// filter is an error.
func (c *conn) subscribe(ctx context.Context, qos byte, filters ...string) error {
	body := []byte{0, 1} // packet id 1: the only SUBSCRIBE of this connection
	for _, f := range filters {
		body = appendString(body, f)
		body = append(body, qos)
	}
	if err := c.write(pkSubscribe|0x02, body, true); err != nil {
		return fmt.Errorf("send SUBSCRIBE: %w", err)
	}
	select {
	case codes := <-c.suback:
		for i, code := range codes {
			if code >= 0x80 && i < len(filters) {
				return fmt.Errorf("subscription to %s refused (SUBACK %#x)", filters[i], code)
			}
		}
		return nil
	case <-c.done:
		return fmt.Errorf("connection closed before SUBACK: %w", c.err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// publish writes a PUBLISH; pid is ignored at QoS 0.
func (c *conn) publish(topic string, qos byte, pid uint16, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b := appendString(c.buf[:0], topic)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, pid)
	}
	b = append(b, payload...)
	c.buf = b
	if err := c.writeLocked(pkPublish|qos<<1, b); err != nil {
		return err
	}
	return c.w.Flush()
}

// disconnect sends DISCONNECT, closes the connection and waits for the
// reader to end.
func (c *conn) disconnect() {
	c.wmu.Lock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_ = c.writeLocked(pkDisconnect, nil)
	_ = c.w.Flush()
	c.wmu.Unlock()
	c.nc.Close()
	<-c.done
}

// close drops the connection without DISCONNECT.
func (c *conn) close() {
	c.nc.Close()
	<-c.done
}

func (c *conn) write(typ byte, body []byte, flush bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writeLocked(typ, body); err != nil {
		return err
	}
	if flush {
		return c.w.Flush()
	}
	return nil
}

func (c *conn) writeLocked(typ byte, body []byte) error {
	var hdr [5]byte
	hdr[0] = typ
	n := 1
	for l := len(body); ; {
		b := byte(l % 128)
		l /= 128
		if l > 0 {
			b |= 0x80
		}
		hdr[n] = b
		n++
		if l == 0 {
			break
		}
	}
	if _, err := c.w.Write(hdr[:n]); err != nil {
		return err
	}
	_, err := c.w.Write(body)
	return err
}

// ack writes a two-byte acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP)
// without flushing: the reader flushes once no more input is buffered, so
// the acks that answer a burst of deliveries leave in one write.
func (c *conn) ack(typ byte, pid uint16) error {
	return c.write(typ, []byte{byte(pid >> 8), byte(pid)}, false)
}

// flushIdle flushes pending writes when no more input is buffered, before
// the reader blocks.
func (c *conn) flushIdle() error {
	if c.r.Buffered() > 0 {
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.w.Buffered() == 0 {
		return nil
	}
	return c.w.Flush()
}

// readPacket reads one packet into buf (grown when needed) and returns its
// first byte and body.
func (c *conn) readPacket(buf []byte) (byte, []byte, error) {
	typ, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	var n, shift int
	for i := 0; ; i++ {
		b, err := c.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n |= int(b&0x7f) << shift
		shift += 7
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, errors.New("malformed remaining length")
		}
	}
	if n > maxPacketSize {
		return 0, nil, fmt.Errorf("packet of %d bytes is too large", n)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(c.r, buf); err != nil {
		return 0, nil, err
	}
	return typ, buf, nil
}

// read is the reader goroutine.
func (c *conn) read() {
	defer close(c.done)
	buf := make([]byte, 4096)
	if c.small {
		buf = make([]byte, 512) // grown by readPacket when needed
	}
	qos2 := map[uint16]bool{} // received QoS 2 messages waiting for PUBREL
	for {
		typ, body, err := c.readPacket(buf)
		if err != nil {
			c.err = err
			c.nc.Close()
			return
		}
		if cap(body) > cap(buf) {
			buf = body
		}
		now := time.Now().UnixNano()
		switch typ & 0xf0 {
		case pkPublish:
			err = c.handlePublish(typ, body, now, qos2)
		case pkPuback, pkPubcomp:
			if len(body) >= 2 && c.onAck != nil {
				c.onAck(binary.BigEndian.Uint16(body), now)
			}
		case pkPubrec:
			if len(body) >= 2 {
				err = c.ack(pkPubrel|0x02, binary.BigEndian.Uint16(body))
			}
		case pkPubrel:
			if len(body) >= 2 {
				pid := binary.BigEndian.Uint16(body)
				delete(qos2, pid)
				err = c.ack(pkPubcomp, pid)
			}
		case pkSuback:
			if len(body) >= 2 {
				select {
				case c.suback <- append([]byte(nil), body[2:]...):
				default:
				}
			}
		case pkPingresp, pkUnsuback:
		default:
			err = fmt.Errorf("unexpected packet type %d", typ>>4)
		}
		if err == nil {
			err = c.flushIdle()
		}
		if err != nil {
			c.err = err
			c.nc.Close()
			return
		}
	}
}

func (c *conn) handlePublish(typ byte, body []byte, now int64, qos2 map[uint16]bool) error {
	qos := (typ >> 1) & 3
	if len(body) < 2 {
		return errors.New("short PUBLISH")
	}
	tl := int(binary.BigEndian.Uint16(body))
	if len(body) < 2+tl {
		return errors.New("short PUBLISH topic")
	}
	topic := body[2 : 2+tl]
	rest := body[2+tl:]
	var pid uint16
	if qos > 0 {
		if len(rest) < 2 {
			return errors.New("short PUBLISH packet id")
		}
		pid = binary.BigEndian.Uint16(rest)
		rest = rest[2:]
	}
	switch qos {
	case 0:
		c.onPublish(topic, rest, now)
		return nil
	case 1:
		c.onPublish(topic, rest, now)
		return c.ack(pkPuback, pid)
	default:
		if !qos2[pid] { // a resend of a message not yet released is not new
			qos2[pid] = true
			c.onPublish(topic, rest, now)
		}
		return c.ack(pkPubrec, pid)
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

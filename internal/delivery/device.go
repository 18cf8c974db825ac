package delivery

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// item is one delivery waiting for a device's writer, or, with raw set, an
// acknowledgement of the device's own publish (a PUBACK) to write as is.
type item struct {
	conv    string // "" for events and acknowledgements
	seq     int64
	payload []byte
	qos     byte
	raw     []byte
}

// device is the delivery state of one connected client and its writer.
type device struct {
	h    *Hub
	conn Conn
	id   string
	user string
	// epoch is the session epoch claimed at connect; it fences cursor writes.
	epoch int64

	wake    chan struct{} // the queue or the catch-up state changed
	ackWake chan struct{} // an acknowledgement freed room in the window
	stopped chan struct{} // closed by close

	mu         sync.Mutex
	subscribed bool
	started    bool
	closed     bool
	running    bool // a writer goroutine runs (see spawn)
	// placed: a first catch-up pass completed, so every conversation the
	// device had when it connected has its start (see catchUpConv).
	placed bool
	// liveFrom holds, until placed, the lowest seq per conversation offered
	// live while the first catch-up ran: stored after the device
	// subscribed, so never cut by the new-device backlog.
	liveFrom map[string]int64
	syncing  bool // catching up: live messages are skipped, the store has them
	missed   bool // a live message was skipped during this catch-up pass
	resync   bool // restart the catch-up from the acknowledged cursors
	qos      byte
	queue    []item
	sent     map[string]int64 // conv -> highest seq queued or written
	written  map[string]int64 // conv -> highest seq written
	acked    map[string]*frontier
	// out holds the deliveries this writer put in the client's inflight
	// table, by packet id, until acknowledged: only their PUBACKs move
	// cursors. outBytes is the sum of their payload sizes.
	out      map[uint16]outDelivery
	outBytes int64

	// buf holds the packets appended since the last flush and pending what
	// they carried; only the writer goroutine touches them. Both are reused.
	buf     []byte
	pending []pendingWrite
}

// pendingWrite is a delivery appended to device.buf and not yet written.
type pendingWrite struct {
	conv string
	seq  int64
	id   uint16
	qos  byte
	raw  bool // an acknowledgement, not a delivery
}

// idleBuffer is the largest write buffer an idle writer keeps.
const idleBuffer = 16 << 10

// maxBuffered is how many bytes of packets the writer gathers before it
// writes them without waiting for its queue to run dry.
const maxBuffered = 64 << 10

// outDelivery is one of Parley's own deliveries awaiting its PUBACK.
type outDelivery struct {
	conv string // "" for events
	seq  int64
	size int64
}

func newDevice(h *Hub, c Conn, epoch int64) *device {
	return &device{h: h, conn: c, id: c.ID(), user: c.User(), epoch: epoch,
		sent: map[string]int64{}, written: map[string]int64{}, acked: map[string]*frontier{},
		out:  map[uint16]outDelivery{},
		wake: make(chan struct{}, 1), ackWake: make(chan struct{}, 1), stopped: make(chan struct{})}
}

// errDeviceGone ends a writer whose device disconnected.
var errDeviceGone = errors.New("delivery: device gone")

// offer queues a live delivery, or leaves it to the catch-up.
func (d *device) offer(it item) {
	d.mu.Lock()
	wake := d.offerLocked(it)
	d.mu.Unlock()
	if wake {
		d.signal()
	}
}

// offerAck queues ack, the acknowledgement of a publish of this device,
// then offers it, the publish's echo to this device, under one lock: the
// writer takes both in one pass and writes them in one Write. It reports
// false, queueing nothing, when the device has no writer (not started or
// closed): the caller writes ack itself. An acknowledgement is never
// dropped: not for a full queue, nor while the device catches up (the writer
// writes acknowledgements before it reads the store), and does not wait for
// room in the window of unacknowledged deliveries.
func (d *device) offerAck(ack []byte, it item) bool {
	d.mu.Lock()
	if d.closed || !d.started {
		d.mu.Unlock()
		return false
	}
	d.queue = append(d.queue, item{raw: ack})
	if it.payload != nil {
		d.offerLocked(it)
	}
	d.mu.Unlock()
	d.signal()
	d.wakeWriter() // a writer waiting for room writes it meanwhile
	return true
}

// offerLocked is offer with d.mu held; it reports whether to wake the
// writer.
func (d *device) offerLocked(it item) bool {
	if d.closed || !d.subscribed {
		return false
	}
	if it.conv != "" {
		sent, known := d.sent[it.conv]
		switch {
		case d.syncing:
			d.missed = true
			if !d.placed {
				// Stored after the device subscribed: it gets it, whatever
				// the new-device backlog (see catchUpConv).
				if first, ok := d.liveFrom[it.conv]; !ok || it.seq < first {
					if d.liveFrom == nil {
						d.liveFrom = map[string]int64{}
					}
					d.liveFrom[it.conv] = it.seq
				}
			}
			return false
		case known && it.seq <= sent:
			return false // already written
		case known && it.seq > sent+1, len(d.queue) >= d.h.DeviceQueue:
			// A gap (a message this node did not fan out) or a full queue:
			// read from the store instead.
			d.enterSync()
			return true
		}
		if !known {
			if it.seq > 1 {
				// A conversation new to this device that did not begin here
				// (a group it joined, or messages stored through another
				// node): the store knows where the device starts.
				d.enterSync()
				return true
			}
			d.acked[it.conv] = &frontier{seq: 0}
		}
		d.sent[it.conv] = it.seq
	} else if len(d.queue) >= d.h.DeviceQueue {
		return false // events are best effort
	}
	d.queue = append(d.queue, it)
	return true
}

// signal wakes the writer, starting one when none runs. d.mu is not held.
func (d *device) signal() {
	d.mu.Lock()
	d.spawn()
	d.mu.Unlock()
	d.poke()
}

// poke wakes a writer that waits.
func (d *device) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// spawn starts the device's writer when it has none. A writer runs only
// while the device has something to do (a queue, a catch-up) and ends when
// it goes idle, so that an idle device, most of a fleet, costs no goroutine
// of Parley's. d.mu is held.
func (d *device) spawn() {
	if d.running || !d.started || d.closed {
		return
	}
	if !d.h.spawnWriter(d) {
		return // the hub is closing
	}
	d.running = true
}

// wakeWriter wakes the writer if it waits for the window.
func (d *device) wakeWriter() {
	select {
	case d.ackWake <- struct{}{}:
	default:
	}
}

// start begins deliveries to the device at the subscription's QoS.
func (d *device) start(qos byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	if d.started {
		if !d.subscribed {
			// Subscribed again: catch up on what was skipped meanwhile.
			d.subscribed = true
			d.enterSync()
			d.spawn()
			d.poke()
		}
		return
	}
	d.started, d.subscribed, d.syncing = true, true, true
	d.qos = min(qos, 1)
	d.spawn()
}

func (d *device) close() {
	d.mu.Lock()
	already := d.closed
	d.closed = true
	d.queue = nil
	d.mu.Unlock()
	if !already {
		close(d.stopped)
	}
}

func (d *device) done() bool {
	select {
	case <-d.stopped:
		return true
	case <-d.h.stopping():
		return true
	default:
		return d.conn.Closed()
	}
}

// run is the device's writer. It takes everything queued for the device and
// writes it in one Write when the queue runs dry (or maxBuffered bytes have
// gathered), so that a burst leaves in one system call rather than one per
// delivery, and ends once nothing is left to do (see spawn). Nothing stays
// buffered while the writer waits: for room in the window or for the store.
func (d *device) run() {
	defer d.h.wg.Done()
	backoff := d.h.retry
	for !d.done() {
		d.mu.Lock()
		syncing := d.syncing
		var it item
		have := false
		if !syncing && len(d.queue) > 0 {
			it = d.queue[0]
			d.queue[0] = item{} // the payload is not kept alive by the array
			d.queue = d.queue[1:]
			have = true
		}
		d.mu.Unlock()
		if syncing {
			d.appendAcks()
			err := d.flush()
			if err == nil {
				err = d.catchUp()
			}
			if err == nil {
				err = d.flush()
			}
			if errors.Is(err, errDeviceGone) {
				return
			}
			if err != nil {
				if !d.done() {
					d.h.Log.Warn("catch-up failed, retrying", "client", d.id, "error", err)
				}
				select {
				case <-time.After(backoff):
				case <-d.stopped:
				case <-d.h.stopping():
				}
				if backoff < maxRetry {
					backoff *= 2
				}
				continue
			}
			backoff = d.h.retry
			continue
		}
		if have {
			if err := d.write(it); err != nil {
				return
			}
			continue
		}
		if d.flush() != nil {
			return
		}
		if cap(d.buf) > idleBuffer {
			// Going idle: a catch-up's large buffer is not kept by every
			// idle device (live traffic fits the small one it allocates next).
			d.buf, d.pending = nil, nil
		}
		// Idle: the writer ends, and the next offer, catch-up or
		// subscription starts another (spawn). Whatever was queued before
		// running is cleared is seen here; whatever comes after finds no
		// writer and starts one.
		d.mu.Lock()
		select {
		case <-d.wake:
			d.mu.Unlock()
			continue
		default:
		}
		if len(d.queue) == 0 && !d.syncing {
			d.running = false
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
	}
}

// appendAcks takes the acknowledgements out of the queue, where a catch-up
// would leave them waiting, and appends them to the writer's buffer.
func (d *device) appendAcks() {
	d.mu.Lock()
	rest := d.queue[:0]
	for _, it := range d.queue {
		if it.raw != nil {
			d.buf = append(d.buf, it.raw...)
			d.pending = append(d.pending, pendingWrite{raw: true})
		} else {
			rest = append(rest, it)
		}
	}
	clear(d.queue[len(rest):])
	d.queue = rest
	d.mu.Unlock()
}

// write appends one delivery to the writer's buffer, first writing out what
// is buffered and then waiting while the window of unacknowledged deliveries
// is full. An acknowledgement is appended as it is.
func (d *device) write(it item) error {
	if it.raw != nil {
		d.buf = append(d.buf, it.raw...)
		d.pending = append(d.pending, pendingWrite{raw: true})
		if len(d.buf) >= maxBuffered {
			return d.flush()
		}
		return nil
	}
	qos := min(it.qos, d.qos)
	var id uint16
	if qos > 0 {
		window := d.h.Window
		if rm := d.conn.ReceiveMaximum(); rm > 0 && rm < window {
			window = rm
		}
		size := int64(len(it.payload))
		for d.full(window, size) {
			// The acknowledgements that make room can only come for what was
			// written. Nor do the acknowledgements of the device's own
			// publishes wait for room: its client may wait for them before
			// it acknowledges anything (a message handler that publishes).
			d.appendAcks()
			if err := d.flush(); err != nil {
				return err
			}
			d.h.Log.Debug("window full", "client", d.id, "inflight", d.conn.Inflight(), "window", window)
			select {
			case <-d.ackWake:
			case <-time.After(time.Second):
				d.reconcile()
			case <-d.stopped:
				return errDeviceGone
			case <-d.h.stopping():
				return errDeviceGone
			}
			if d.conn.Closed() {
				return errDeviceGone
			}
		}
		var err error
		if id, err = d.conn.PacketID(); err != nil {
			return err
		}
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return errDeviceGone
		}
		d.out[id] = outDelivery{conv: it.conv, seq: it.seq, size: size}
		d.outBytes += size
		d.mu.Unlock()
		d.h.bytes.add(d.user, size)
	}
	buf, err := d.conn.Append(d.buf, id, it.payload, qos)
	if err != nil && qos > 0 {
		d.forget(id)
	}
	if errors.Is(err, ErrTooLarge) {
		// Larger than the client's Maximum Packet Size: it can never take
		// it. Skip it (the client can read it over REST) rather than loop.
		d.h.Log.Warn("delivery larger than the client accepts, skipped", "client", d.id, "conv", it.conv, "seq", it.seq)
		if it.conv != "" {
			d.ack(it.conv, it.seq)
		}
		return nil
	}
	if err != nil {
		d.conn.Stop(fmt.Errorf("write delivery: %w", err))
		return errDeviceGone
	}
	d.buf = buf
	d.pending = append(d.pending, pendingWrite{conv: it.conv, seq: it.seq, id: id, qos: qos})
	if it.conv != "" {
		d.mu.Lock()
		if it.seq > d.written[it.conv] {
			d.written[it.conv] = it.seq
		}
		// enterSync may have moved sent back to what was written while this
		// delivery was on its way: the catch-up must start after it.
		if it.seq > d.sent[it.conv] {
			d.sent[it.conv] = it.seq
		}
		d.mu.Unlock()
	}
	if len(d.buf) >= maxBuffered {
		return d.flush()
	}
	return nil
}

// flush writes the buffered deliveries in one Write. When that fails, it
// forgets them, stops the connection and returns errDeviceGone.
func (d *device) flush() error {
	if len(d.pending) == 0 {
		return nil
	}
	err := d.conn.Write(d.buf)
	pending := d.pending
	d.buf, d.pending = d.buf[:0], d.pending[:0]
	deliveries := 0
	for i, p := range pending {
		if !p.raw {
			deliveries++
		}
		switch {
		case err != nil && p.qos > 0:
			d.forget(p.id)
			d.conn.Drop(p.id)
		case err == nil && p.qos == 0 && p.conv != "":
			d.ack(p.conv, p.seq) // at most once: written is as good as it gets
		}
		pending[i] = pendingWrite{}
	}
	if d.h.Metrics != nil && err == nil {
		d.h.Metrics.Delivered.Add(float64(deliveries))
	}
	if cap(d.buf) > 4*maxBuffered {
		d.buf = nil // do not keep a huge buffer after a large delivery
	}
	if err != nil {
		d.conn.Stop(fmt.Errorf("write delivery: %w", err))
		return errDeviceGone
	}
	return nil
}

// full reports whether a delivery of size bytes must wait: the window of
// unacknowledged deliveries is full, or their bytes would exceed the
// device's or the user's bound. A device with nothing in flight never waits
// for bytes, so that every delivery eventually goes out.
func (d *device) full(window int, size int64) bool {
	if d.conn.Inflight() >= window {
		return true
	}
	d.mu.Lock()
	mine := d.outBytes
	d.mu.Unlock()
	if mine == 0 {
		return false
	}
	return mine+size > d.h.DeviceInflightBytes || d.h.bytes.get(d.user)+size > d.h.UserInflightBytes
}

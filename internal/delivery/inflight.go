package delivery

import "sync"

// The bookkeeping of a device's deliveries in flight: what each packet id
// carried, the bytes awaiting acknowledgement per device and per user, and
// the acknowledgements that move its cursors.

// forget removes the record of delivery id and returns it.
func (d *device) forget(id uint16) (outDelivery, bool) {
	d.mu.Lock()
	o, ok := d.out[id]
	if ok {
		delete(d.out, id)
		d.outBytes -= o.size
	}
	d.mu.Unlock()
	if ok {
		d.h.bytes.add(d.user, -o.size)
	}
	return o, ok
}

// take removes the record of the delivery with packet id id and reports
// whether this writer sent it and it is still the client's inflight packet of
// that id.
func (d *device) take(id uint16) (outDelivery, bool) {
	o, ok := d.forget(id)
	if !ok {
		return o, false
	}
	if size, found := d.conn.Pending(id); !found || int64(size) != o.size {
		// The broker dropped our delivery (expiry) and reused the id: this
		// acknowledgement is not for us.
		return o, false
	}
	return o, true
}

// reconcile forgets the recorded deliveries that are no longer in the
// client's inflight table (the broker expired them), so that they stop
// counting against the window.
func (d *device) reconcile() {
	d.mu.Lock()
	var freed int64
	for id, o := range d.out {
		if _, ok := d.conn.Pending(id); !ok {
			delete(d.out, id)
			d.outBytes -= o.size
			freed += o.size
		}
	}
	d.mu.Unlock()
	if freed > 0 {
		d.h.bytes.add(d.user, -freed)
	}
}

// release forgets every recorded delivery of a device that is gone and
// removes them from its client's inflight table: a persistent session would
// otherwise keep them in memory until it expires, and the catch-up sends them
// again, in order, when the device returns.
func (d *device) release() {
	d.mu.Lock()
	out, freed := d.out, d.outBytes
	d.out, d.outBytes = map[uint16]outDelivery{}, 0
	d.mu.Unlock()
	for id := range out {
		d.conn.Drop(id)
	}
	if freed > 0 {
		d.h.bytes.add(d.user, -freed)
	}
}

// ack records that the device acknowledged seq of conv.
func (d *device) ack(conv string, seq int64) {
	d.wakeWriter()
	d.mu.Lock()
	f := d.acked[conv]
	if f == nil {
		f = &frontier{seq: seq - 1}
		d.acked[conv] = f
	}
	moved := f.ack(seq)
	at := f.seq
	d.mu.Unlock()
	if moved {
		d.h.cursors.mark(d, conv, at, true)
	}
}

// userBytes counts the payload bytes awaiting acknowledgement, by user.
type userBytes struct {
	mu sync.Mutex
	m  map[string]int64
}

// add adds n to the bytes in flight to user's devices.
func (u *userBytes) add(user string, n int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[string]int64{}
	}
	u.m[user] += n
	if u.m[user] <= 0 {
		delete(u.m, user)
	}
}

func (u *userBytes) get(user string) int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.m[user]
}

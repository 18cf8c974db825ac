package delivery

import (
	"context"
	"encoding/json"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/wire"
)

// A device's writer is live or catching up (device.syncing). It starts
// catching up when it subscribes; it falls back to catching up when a live
// message shows a gap, its queue overflows, the broker dropped a packet to
// it (from its acknowledged cursors then), it subscribes again, or the
// cluster asks every device to (Hub.Resync). A catch-up reads the device's
// state from the store and sends each conversation's messages after the
// device's position; live messages are skipped meanwhile, and a pass that
// skipped any is followed by another. A failed catch-up is retried with a
// backoff.

// catchUpPage is how many messages one store read of a catch-up returns.
const catchUpPage = 100

// catchUp sends every stored message after the device's position, per
// conversation in seq order, and returns once a pass completed with no live
// message skipped meanwhile (the device is then live).
func (d *device) catchUp() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.stopped:
		case <-d.h.stopping():
		case <-ctx.Done():
		}
		cancel()
	}()
	if d.h.Metrics != nil {
		d.h.Metrics.Catchups.Inc()
	}
	// A live message skipped from here on sets missed again; clearing it
	// before each read of the store makes sure the read sees it or another
	// pass follows.
	d.mu.Lock()
	d.missed = false
	d.mu.Unlock()
	st, err := d.h.deviceState(ctx, d.id, d.user)
	if err != nil {
		return err
	}
	d.h.Log.Debug("catch-up", "client", d.id, "convs", len(st.Convs), "new", st.New, "cursors", len(st.Cursors))
	d.mu.Lock()
	if d.resync {
		// Something was dropped: start again from what was acknowledged.
		for conv, f := range d.acked {
			d.sent[conv], d.written[conv] = f.seq, f.seq
		}
		d.resync = false
	}
	d.mu.Unlock()
	for {
		for _, h := range st.Convs {
			if err := d.catchUpConv(ctx, st, h); err != nil {
				return err
			}
		}
		d.mu.Lock()
		// Every conversation the device had at its first catch-up now has
		// its start: one that appears in a later pass began after the
		// device connected, and the device gets all of it.
		d.placed = true
		d.liveFrom = nil
		if !d.missed {
			d.syncing = false
			d.h.Log.Debug("caught up", "client", d.id, "sent", len(d.sent))
			d.mu.Unlock()
			return nil
		}
		// Live messages arrived meanwhile: another pass picks them up.
		d.missed = false
		d.mu.Unlock()
		if st, err = d.h.deviceState(ctx, d.id, d.user); err != nil {
			return err
		}
	}
}

// catchUpConv sends the messages of one conversation after the device's
// position: from where it was sent, or its cursor, or (a device new to the
// conversation) the last NewDeviceBacklog messages. More than CatchupLimit
// behind, it sends a gap event first and moves the cursor past the gap.
func (d *device) catchUpConv(ctx context.Context, st history.DeviceState, h history.ConvHead) error {
	d.mu.Lock()
	from, known := d.sent[h.Conv]
	if !known {
		cursor, has := st.Cursors[h.Conv]
		switch {
		case has:
			from = cursor
		case d.isNew(st) && !d.placed:
			from = max(h.First-1, h.Last-int64(d.h.NewDeviceBacklog))
			if live, ok := d.liveFrom[h.Conv]; ok {
				// The backlog counts back from the messages stored before
				// the device subscribed; it gets every one stored after.
				from = max(h.First-1, live-1-int64(d.h.NewDeviceBacklog))
			}
		default:
			from = h.First - 1
		}
		if !has && from > 0 {
			// Remember where this device starts, so that an interrupted first
			// catch-up resumes here and not at the beginning.
			d.h.cursors.mark(d, h.Conv, from, false)
		}
	}
	// Never below the first message the user may see: a re-added member
	// does not get what was sent while they were away, and nobody gets what
	// retention deleted (the device is told, with an expired event).
	expired := h.ExpiredBefore > 0 && from < h.ExpiredBefore-1
	if from < h.First-1 {
		from = h.First - 1
		if f := d.acked[h.Conv]; f != nil && f.seq < from {
			d.acked[h.Conv] = &frontier{seq: from}
		}
	}
	d.sent[h.Conv] = from
	if _, ok := d.acked[h.Conv]; !ok {
		d.acked[h.Conv] = &frontier{seq: from}
	}
	d.mu.Unlock()
	if expired {
		if err := d.write(item{payload: expiredEvent(h.Conv, h.ExpiredBefore), qos: d.qos}); err != nil {
			return err
		}
	}
	if h.Last <= from {
		return nil
	}
	if h.Last-from > int64(d.h.CatchupLimit) {
		before := h.Last - int64(d.h.CatchupLimit) + 1
		if err := d.write(item{payload: gapEvent(h.Conv, from, before), qos: d.qos}); err != nil {
			return err
		}
		d.mu.Lock()
		from = before - 1
		d.sent[h.Conv] = from
		// The client fills the gap over REST: the cursor moves past it.
		if f := d.acked[h.Conv]; f.seq < from {
			d.acked[h.Conv] = &frontier{seq: from, above: f.above}
			d.h.cursors.mark(d, h.Conv, from, false)
		}
		d.mu.Unlock()
	}
	for from < h.Last {
		limit := min(h.Last-from, catchUpPage)
		// What was gathered leaves before the writer waits for the store.
		if err := d.flush(); err != nil {
			return err
		}
		msgs, err := d.h.Store.Messages(ctx, h.Conv, from, int(limit))
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			return nil
		}
		for _, m := range msgs {
			if m.Seq > h.Last {
				return nil
			}
			if err := d.write(item{conv: m.Conv, seq: m.Seq, payload: wire.MessageDelivery(m), qos: d.qos}); err != nil {
				return err
			}
			d.mu.Lock()
			if m.Seq > d.sent[m.Conv] {
				d.sent[m.Conv] = m.Seq
			}
			d.mu.Unlock()
			from = m.Seq
		}
	}
	return nil
}

// gapEvent is the inbox payload telling a device that the messages of conv
// after after and before before were not delivered (it reads them over REST).
func gapEvent(conv string, after, before int64) []byte {
	b, _ := json.Marshal(struct {
		Kind   string `json:"kind"`
		Conv   string `json:"conv"`
		After  int64  `json:"after"`
		Before int64  `json:"before"`
	}{"gap", conv, after, before})
	return b
}

// expiredEvent is the inbox payload telling a device that retention deleted
// the messages of conv before expiredBefore: they are not delivered, and
// history starts at expiredBefore.
func expiredEvent(conv string, expiredBefore int64) []byte {
	b, _ := json.Marshal(struct {
		Kind          string `json:"kind"`
		Conv          string `json:"conv"`
		ExpiredBefore int64  `json:"expired_before"`
	}{"expired", conv, expiredBefore})
	return b
}

// isNew reports whether this is the device's first connection: its first
// session epoch, or (without one) the store's first sight of it.
func (d *device) isNew(st history.DeviceState) bool {
	if d.epoch > 0 {
		return d.epoch == 1
	}
	return st.New
}

// enterSync switches the device to catching up: queued messages are dropped
// (the catch-up reads them from the store) and its position goes back to
// what was written. d.mu is held.
func (d *device) enterSync() {
	d.syncing, d.missed = true, true
	events := d.queue[:0]
	for _, it := range d.queue {
		if it.conv == "" {
			events = append(events, it)
		}
	}
	d.queue = events
	for conv := range d.sent {
		if w, ok := d.written[conv]; ok {
			d.sent[conv] = w
		} else if f := d.acked[conv]; f != nil {
			d.sent[conv] = f.seq
		} else {
			delete(d.sent, conv)
		}
	}
}

// frontier is the highest seq up to which every message was acknowledged,
// with the acknowledged seqs above it.
type frontier struct {
	seq   int64
	above map[int64]bool
}

// ack records seq and reports whether the frontier moved.
func (f *frontier) ack(seq int64) bool {
	if seq <= f.seq {
		return false
	}
	if seq != f.seq+1 {
		if f.above == nil {
			f.above = map[int64]bool{}
		}
		f.above[seq] = true
		return false
	}
	f.seq = seq
	for f.above[f.seq+1] {
		delete(f.above, f.seq+1)
		f.seq++
	}
	return true
}

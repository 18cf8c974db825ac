package main

// The sending side of a load-test user: its send loop, packet ids and
// acknowledgements.

import (
	"time"
)

// onAck completes a send.
func (u *user) onAck(pid uint16, now int64) {
	u.mu.Lock()
	n, ok := u.pending[pid]
	if ok {
		delete(u.pending, pid)
		u.sent[n].ack = now
	}
	u.mu.Unlock()
	if ok {
		<-u.slots
		u.r.acked.Add(1)
	}
}

func (u *user) inflight() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.pending)
}

// sendLoop sends until stop or pause is closed, or --count is reached; it
// reports whether the run goes on (pause rather than stop).
func (u *user) sendLoop(pause <-chan struct{}, interval time.Duration, first time.Time) bool {
	r := u.r
	cfg := r.cfg
	qos := byte(cfg.QoS)
	c := u.devices[0].c
	var timer *time.Timer
	next := first
	for {
		if cfg.Count > 0 && len(u.sent) >= cfg.Count {
			return false
		}
		var t int64
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				if timer == nil {
					timer = time.NewTimer(d)
				} else {
					timer.Reset(d)
				}
				select {
				case <-timer.C:
				case <-r.stop:
					return false
				case <-pause:
					return true
				}
			}
			// Latency counts from the intended send time, so that a
			// client held back by a slow broker does not hide the delay.
			t = next.UnixNano()
			next = next.Add(interval)
		}
		if qos > 0 {
			select {
			case u.slots <- struct{}{}:
			case <-r.stop:
				return false
			case <-pause:
				return true
			}
		} else {
			select {
			case <-r.stop:
				return false
			case <-pause:
				return true
			default:
			}
		}
		now := time.Now().UnixNano()
		if t == 0 {
			t = now
		}
		u.mu.Lock()
		n := len(u.sent)
		u.buf = appendSend(u.buf[:0], r.tp.run, u.idx, n, t, cfg.Size)
		rec := msgRec{t: t}
		var pid uint16
		if qos > 0 {
			pid = u.newPID(cfg.PacketIDs == "cycle")
			u.pending[pid] = int32(n)
		} else {
			rec.ack = now
		}
		u.sent = append(u.sent, rec)
		u.mu.Unlock()
		if err := c.publish(u.topic, qos, pid, u.buf); err != nil {
			return false // the connection watcher reports it
		}
		r.sent.Add(1)
		if qos == 0 {
			r.acked.Add(1)
		}
	}
}

// newPID returns a free packet id: the lowest one, as paho does, or with
// cycle the one after the last, wrapping at 65535, as libmosquitto does.
// u.mu is held.
func (u *user) newPID(cycle bool) uint16 {
	if !cycle {
		u.nextPID = 0
	}
	for {
		u.nextPID++
		if u.nextPID == 0 {
			u.nextPID = 1
		}
		if _, busy := u.pending[u.nextPID]; !busy {
			return u.nextPID
		}
	}
}

// waitAcks waits up to d for the user's outstanding sends to be acknowledged.
func (u *user) waitAcks(d time.Duration) {
	deadline := time.Now().Add(d)
	c := u.devices[0].c
	for c != nil && u.inflight() > 0 && time.Now().Before(deadline) && !c.closed() {
		time.Sleep(5 * time.Millisecond)
	}
}

// offlineSpan is when offline users are away, as shares of the send phase.
const (
	offlineFrom = 0.20
	offlineTo   = 0.75
)

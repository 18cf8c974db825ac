package delivery

import (
	"runtime"
	"testing"
)

// TestCoalesce: what queues up for a device while its writer is busy leaves
// in one Write, in seq order, and the writer waits with nothing buffered.
func TestCoalesce(t *testing.T) {
	t.Run("Live", func(t *testing.T) {
		e := setup(t)
		bob := e.connect("bob/phone", 1)
		waitFor(t, "bob live", func() bool { return e.hub.device(bob).live() })
		msgs := e.sendN(dm, "alice", 11)
		release := make(chan struct{})
		first := true
		bob.mu.Lock()
		bob.onSend = func() { // runs on the writer, after its Write
			if first {
				first = false
				<-release
			}
		}
		writes := bob.writes
		bob.mu.Unlock()
		e.hub.DeliverMessage([]string{"bob"}, msgs[0])
		waitFor(t, "the first delivery", func() bool { return bob.count() == 1 })
		for _, m := range msgs[1:] { // queued while the writer is held
			e.hub.DeliverMessage([]string{"bob"}, m)
		}
		close(release)
		waitFor(t, "all deliveries", func() bool { return bob.count() == 11 })
		bob.wantSeqs(t, dm, 1, 11)
		bob.mu.Lock()
		n := bob.writes - writes
		bob.mu.Unlock()
		if n != 2 {
			t.Fatalf("%d writes for a delivery and a queue of 10, want 2", n)
		}
	})
	t.Run("CatchUp", func(t *testing.T) {
		e := setup(t)
		e.sendN(dm, "alice", 30)
		bob := e.connect("bob/phone", 1)
		bob.waitMessages(t, dm, 30)
		bob.wantSeqs(t, dm, 1, 30)
		bob.mu.Lock()
		defer bob.mu.Unlock()
		if bob.writes != 1 {
			t.Fatalf("%d writes for a catch-up of 30 in one page, want 1", bob.writes)
		}
	})
	t.Run("WindowFull", func(t *testing.T) {
		// With the window full the writer writes what it has before it
		// waits: otherwise no acknowledgement could come.
		e := setup(t, func(h *Hub) { h.Window = 4 })
		e.sendN(dm, "alice", 10)
		bob := e.connect("bob/phone", 1)
		waitFor(t, "a full window", func() bool { return bob.count() == 4 })
		drain(t, e.hub, bob, dm, 10)
		bob.wantSeqs(t, dm, 1, 10)
	})
}

// live reports whether the writer is past its catch-up.
func (d *device) live() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.started && !d.syncing
}

// BenchmarkWriterCoalesce measures the writer's cost per delivery when
// deliveries arrive faster than it writes: each Write carries several
// deliveries. It reports deliveries per Write; a regression to one write per
// delivery shows as 1.
func BenchmarkWriterCoalesce(b *testing.B) {
	e := setup(b, func(h *Hub) { h.Window = 1 << 15 })
	bob := e.connect("bob/phone", 1)
	waitFor(b, "bob live", func() bool { return e.hub.device(bob).live() })
	payload := make([]byte, 200)
	d := e.hub.device(bob)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		d.offer(item{conv: dm, seq: int64(i + 1), payload: payload, qos: 1})
		if i%64 == 63 {
			// Acknowledge what was written, as a client would.
			for bob.count() < i+1 {
				runtime.Gosched()
			}
			bob.ackAll(e.hub)
		}
	}
	waitFor(b, "the writer", func() bool { return bob.count() == b.N })
	b.StopTimer()
	bob.mu.Lock()
	defer bob.mu.Unlock()
	if bob.writes > 0 {
		b.ReportMetric(float64(b.N)/float64(bob.writes), "deliveries/write")
	}
}

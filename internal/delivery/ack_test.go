package delivery

import (
	"context"
	"runtime"
	"testing"
)

// TestDeliverMessageAck: the acknowledgement of a device's own publish
// leaves in the same Write as the message's echo to it, just before it;
// later acknowledgements keep their order behind it; a device without a
// writer leaves the acknowledgement to the caller; one that is catching up
// still writes it.
func TestDeliverMessageAck(t *testing.T) {
	t.Run("OneWrite", func(t *testing.T) {
		e := setup(t)
		alice := e.connect("alice/phone", 1)
		bob := e.connect("bob/phone", 1)
		waitFor(t, "alice live", func() bool { return e.hub.device(alice).live() })
		waitFor(t, "bob live", func() bool { return e.hub.device(bob).live() })
		m := e.send(dm, "alice", "hi")
		if !e.hub.DeliverMessageAck([]string{"alice", "bob"}, m, Conn(alice), []byte{'A'}) {
			t.Fatal("the ack was not taken")
		}
		alice.waitMessages(t, dm, 1)
		bob.waitMessages(t, dm, 1)
		alice.mu.Lock()
		defer alice.mu.Unlock()
		if alice.writes != 1 || len(alice.acks) != 1 || alice.acks[0] != (writtenAck{b: 'A', write: 1, before: 0}) {
			t.Fatalf("%d writes, acks %+v: want the ack then the echo in one write", alice.writes, alice.acks)
		}
	})
	t.Run("Order", func(t *testing.T) {
		e := setup(t)
		alice := e.connect("alice/phone", 1)
		waitFor(t, "alice live", func() bool { return e.hub.device(alice).live() })
		msgs := e.sendN(dm, "alice", 3)
		want := []byte("ABCDEF")
		for i, m := range msgs {
			e.hub.DeliverMessageAck([]string{"alice", "bob"}, m, Conn(alice), want[2*i:2*i+1])
			if !e.hub.WriteAck(Conn(alice), want[2*i+1:2*i+2]) { // e.g. a read marker's
				t.Fatal("WriteAck refused")
			}
		}
		waitFor(t, "six acks", func() bool { alice.mu.Lock(); defer alice.mu.Unlock(); return len(alice.acks) == 6 })
		alice.wantSeqs(t, dm, 1, 3)
		alice.mu.Lock()
		defer alice.mu.Unlock()
		for i, a := range alice.acks {
			if a.b != want[i] || a.before != (i+1)/2 {
				t.Fatalf("acks %+v: want %q, each message's ack before its echo", alice.acks, want)
			}
		}
	})
	t.Run("NoWriter", func(t *testing.T) {
		e := setup(t)
		alice := newConn("alice/phone")
		e.hub.Connect(alice) // not subscribed: no writer
		bob := e.connect("bob/phone", 1)
		m := e.send(dm, "alice", "hi")
		if e.hub.DeliverMessageAck([]string{"alice", "bob"}, m, Conn(alice), []byte{'A'}) {
			t.Fatal("a device without a writer took the ack")
		}
		if e.hub.WriteAck(Conn(alice), []byte{'B'}) {
			t.Fatal("WriteAck to a device without a writer succeeded")
		}
		if e.hub.WriteAck(Conn(newConn("carol/x")), []byte{'C'}) {
			t.Fatal("WriteAck to an unknown device succeeded")
		}
		bob.waitMessages(t, dm, 1) // delivered all the same
	})
	t.Run("WindowFull", func(t *testing.T) {
		// The client acknowledges nothing until its publish is
		// acknowledged: the ack must not wait behind an echo that waits
		// for room in the window.
		e := setup(t, func(h *Hub) { h.Window = 1 })
		alice := e.connect("alice/phone", 1)
		waitFor(t, "alice live", func() bool { return e.hub.device(alice).live() })
		msgs := e.sendN(dm, "alice", 3)
		e.hub.DeliverMessageAck([]string{"alice"}, msgs[0], Conn(alice), []byte{'A'})
		alice.waitMessages(t, dm, 1) // the window is full now
		e.hub.DeliverMessageAck([]string{"alice"}, msgs[1], Conn(alice), []byte{'B'})
		e.hub.DeliverMessageAck([]string{"alice"}, msgs[2], Conn(alice), []byte{'C'})
		waitFor(t, "the acks with the window full", func() bool { alice.mu.Lock(); defer alice.mu.Unlock(); return len(alice.acks) == 3 })
		if n := alice.count(); n != 1 {
			t.Fatalf("%d deliveries written with a window of 1", n)
		}
		drain(t, e.hub, alice, dm, 3)
		alice.wantSeqs(t, dm, 1, 3)
	})
	t.Run("CatchingUp", func(t *testing.T) {
		e := setup(t)
		release := make(chan struct{})
		e.store.setBefore(func(_ context.Context, op string, _ int) error {
			if op == "Device" {
				<-release
			}
			return nil
		})
		alice := e.connect("alice/phone", 1) // its catch-up waits for the store
		for !e.hub.WriteAck(Conn(alice), []byte{'A'}) {
			runtime.Gosched()
		}
		waitFor(t, "the ack during the catch-up", func() bool { alice.mu.Lock(); defer alice.mu.Unlock(); return len(alice.acks) == 1 })
		close(release)
	})
}

// BenchmarkDeliverMessageAck: a sender's ack and echo and the peer's
// delivery, as a direct send makes them; reports writes per message on
// the sender's device (1 when ack and echo share a write).
func BenchmarkDeliverMessageAck(b *testing.B) {
	e := setup(b, func(h *Hub) { h.Window = 1 << 15 })
	alice := e.connect("alice/phone", 1)
	bob := e.connect("bob/phone", 1)
	waitFor(b, "live", func() bool { return e.hub.device(alice).live() && e.hub.device(bob).live() })
	msgs := e.sendN(dm, "alice", b.N)
	ack := []byte{'A'}
	b.ReportAllocs()
	b.ResetTimer()
	for i, m := range msgs {
		e.hub.DeliverMessageAck([]string{"alice", "bob"}, m, Conn(alice), ack)
		for alice.count() < i+1 || bob.count() < i+1 { // one at a time, as a sender waiting for its ack
			runtime.Gosched()
		}
		if i%64 == 63 {
			alice.ackAll(e.hub)
			bob.ackAll(e.hub)
		}
	}
	b.StopTimer()
	alice.mu.Lock()
	defer alice.mu.Unlock()
	b.ReportMetric(float64(alice.writes)/float64(b.N), "writes/msg")
}

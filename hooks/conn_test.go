package hooks

import (
	"errors"
	"io"
	"net"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/parley-im/parley/internal/delivery"
	"github.com/parley-im/parley/internal/wire"
)

// pipeClient returns a mochi client of srv whose writes are read and
// discarded on the other end of a pipe.
func pipeClient(t *testing.T, srv *mqtt.Server, id string) *mqtt.Client {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	go func() { _, _ = io.Copy(io.Discard, b) }()
	cl := srv.NewClient(a, "test", id, false)
	cl.Properties.ProtocolVersion = 5
	return cl
}

// TestConn: the delivery.Conn over a mochi client.
func TestConn(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{InlineClient: true})
	h := &Delivery{Server: srv, Topics: wire.Topics{}}
	cl := pipeClient(t, srv, "bob/phone")
	var c delivery.Conn = h.conn(cl)
	if c != delivery.Conn(h.conn(cl)) {
		t.Fatal("two conns of one client differ")
	}
	if c == delivery.Conn(h.conn(pipeClient(t, srv, "bob/phone"))) {
		t.Fatal("conns of two clients are equal")
	}
	if c.ID() != "bob/phone" || c.User() != "bob" {
		t.Fatalf("id %q user %q", c.ID(), c.User())
	}
	t.Run("QoS1", func(t *testing.T) {
		id, err := c.PacketID()
		if err != nil || id < serverPacketIDFloor {
			t.Fatalf("packet id %d (%v), want one from %d", id, err, serverPacketIDFloor)
		}
		if err := c.Send(id, []byte(`{"kind":"typing"}`), 1); err != nil {
			t.Fatal(err)
		}
		if size, ok := c.Pending(id); !ok || size != len(`{"kind":"typing"}`) || c.Inflight() != 1 {
			t.Fatalf("pending %d %v, inflight %d", size, ok, c.Inflight())
		}
		if pk, _ := cl.State.Inflight.Get(id); pk.TopicName != "im/inbox/bob" {
			t.Fatalf("inflight on %q", pk.TopicName)
		}
		c.Drop(id)
		if _, ok := c.Pending(id); ok || c.Inflight() != 0 {
			t.Fatal("still in flight after Drop")
		}
	})
	t.Run("QoS0", func(t *testing.T) {
		if err := c.Send(0, []byte(`{}`), 0); err != nil || c.Inflight() != 0 {
			t.Fatalf("send: %v, inflight %d", err, c.Inflight())
		}
	})
	t.Run("TooLarge", func(t *testing.T) {
		cl.Properties.Props.MaximumPacketSize = 20
		defer func() { cl.Properties.Props.MaximumPacketSize = 0 }()
		id, _ := c.PacketID()
		err := c.Send(id, make([]byte, 100), 1)
		if !errors.Is(err, delivery.ErrTooLarge) {
			t.Fatalf("send: %v, want ErrTooLarge", err)
		}
		if _, ok := c.Pending(id); ok {
			t.Fatal("a failed delivery stayed in flight")
		}
	})
	t.Run("Closed", func(t *testing.T) {
		c.Stop(errors.New("test"))
		if !c.Closed() {
			t.Fatal("not closed after Stop")
		}
		id, _ := c.PacketID()
		if err := c.Send(id, []byte(`{}`), 1); err == nil || errors.Is(err, delivery.ErrTooLarge) {
			t.Fatalf("send on a closed client: %v", err)
		}
		if c.Inflight() != 0 {
			t.Fatal("a failed delivery stayed in flight")
		}
	})
}

func TestDeliveryNeedsHubAndServer(t *testing.T) {
	if err := (&Delivery{}).Init(nil); err == nil {
		t.Fatal("Init without Hub and Server succeeded")
	}
}

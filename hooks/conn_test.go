package hooks

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

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
		buf, err := c.Append(nil, id, []byte(`{"kind":"typing"}`), 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Write(buf); err != nil {
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
		buf, err := c.Append(nil, 0, []byte(`{}`), 0)
		if err == nil {
			err = c.Write(buf)
		}
		if err != nil || c.Inflight() != 0 {
			t.Fatalf("send: %v, inflight %d", err, c.Inflight())
		}
	})
	t.Run("TooLarge", func(t *testing.T) {
		cl.Properties.Props.MaximumPacketSize = 20
		defer func() { cl.Properties.Props.MaximumPacketSize = 0 }()
		id, _ := c.PacketID()
		buf, err := c.Append([]byte("x"), id, make([]byte, 100), 1)
		if !errors.Is(err, delivery.ErrTooLarge) || string(buf) != "x" {
			t.Fatalf("append: %v, buffer %q, want ErrTooLarge and the buffer unchanged", err, buf)
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
		if _, err := c.Append(nil, id, []byte(`{}`), 1); err == nil || errors.Is(err, delivery.ErrTooLarge) {
			t.Fatalf("append on a closed client: %v", err)
		}
		if err := c.Write([]byte{0xd0, 0}); err == nil {
			t.Fatal("write on a closed client succeeded")
		}
		if c.Inflight() != 0 {
			t.Fatal("a failed delivery stayed in flight")
		}
	})
}

// TestAppendPublish: the deliveries the writer encodes itself are the bytes
// mochi's PublishEncode writes for the same packet.
func TestAppendPublish(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 200000) // a three-byte remaining length
	for _, version := range []byte{3, 4, 5} {
		for _, qos := range []byte{0, 1} {
			for _, payload := range [][]byte{nil, []byte(`{"kind":"message"}`), make([]byte, 125), long} {
				var id uint16
				if qos > 0 {
					id = 0xfffe
				}
				pk := packets.Packet{
					FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: qos},
					TopicName:       "im/inbox/bob",
					Payload:         payload,
					PacketID:        id,
					ProtocolVersion: version,
					Mods:            packets.Mods{AllowResponseInfo: true},
				}
				var want bytes.Buffer
				if err := pk.PublishEncode(&want); err != nil {
					t.Fatal(err)
				}
				got := appendPublish([]byte("prefix"), version, "im/inbox/bob", id, payload, qos)
				if !bytes.Equal(got[len("prefix"):], want.Bytes()) || string(got[:len("prefix")]) != "prefix" {
					t.Errorf("v%d QoS %d, %d-byte payload: differs from mochi's encoding", version, qos, len(payload))
				}
			}
		}
	}
}

// BenchmarkAppendPublish: encoding one 200-byte delivery into a reused
// buffer allocates nothing.
func BenchmarkAppendPublish(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 200)
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendPublish(buf[:0], 5, "im/inbox/bob", 40000, payload, 1)
	}
}

func TestDeliveryNeedsHubAndServer(t *testing.T) {
	if err := (&Delivery{}).Init(nil); err == nil {
		t.Fatal("Init without Hub and Server succeeded")
	}
}

package delivery

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestStartNeedsStore: Start refuses a Hub without a Store; Close of a Hub
// never started does nothing.
func TestStartNeedsStore(t *testing.T) {
	h := &Hub{}
	if err := h.Start(); err == nil {
		t.Fatal("Start without a Store succeeded")
	}
	if err := h.Close(t.Context()); err != nil {
		t.Fatalf("Close of a Hub never started: %v", err)
	}
	h.DeliverEvent([]string{"bob"}, []byte(`{}`), 1) // no devices: dropped
}

// TestDefaults: zero fields take the documented defaults.
func TestDefaults(t *testing.T) {
	e := setup(t, func(h *Hub) { h.FlushInterval, h.Log = 0, nil })
	h := e.hub
	for name, got := range map[string][2]int64{
		"NewDeviceBacklog":    {int64(h.NewDeviceBacklog), DefaultNewDeviceBacklog},
		"CatchupLimit":        {int64(h.CatchupLimit), DefaultCatchupLimit},
		"Window":              {int64(h.Window), DefaultWindow},
		"Queue":               {int64(h.DeviceQueue), DefaultDeviceQueue},
		"FlushInterval":       {int64(h.FlushInterval), int64(DefaultFlushInterval)},
		"DeviceInflightBytes": {h.DeviceInflightBytes, DefaultDeviceInflightBytes},
		"UserInflightBytes":   {h.UserInflightBytes, DefaultUserInflightBytes},
	} {
		if got[0] != got[1] {
			t.Errorf("%s = %d, want %d", name, got[0], got[1])
		}
	}
	if h.Log == nil {
		t.Error("no default logger")
	}
}

// TestForgedAcknowledgement: only the PUBACK of a delivery this writer sent,
// still in the client's inflight table with the same payload, moves the
// cursor.
func TestForgedAcknowledgement(t *testing.T) {
	e, bob := backlog(t, 2)
	bob.waitMessages(t, dm, 2)
	evs := bob.events(t)
	t.Run("UnknownID", func(t *testing.T) {
		e.hub.Acknowledge(bob, 7) // never sent
		e.hub.Acknowledge(newConn("mallory/x"), evs[0].id)
		if err := e.hub.flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if c := e.cursor("bob/phone", dm); c != 0 {
			t.Fatalf("cursor %d, want 0", c)
		}
	})
	t.Run("ReusedID", func(t *testing.T) {
		// The broker expired delivery 1 and reused its id for a packet of
		// another size: that packet's PUBACK is not for us.
		bob.mu.Lock()
		bob.inflight[evs[0].id] = 3
		bob.mu.Unlock()
		bob.ack(e.hub, evs[0].id)
		if err := e.hub.flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if c := e.cursor("bob/phone", dm); c != 0 {
			t.Fatalf("cursor %d, want 0", c)
		}
		if n := e.hub.bytes.get("bob"); n != int64(len(bob.got[1].payload)) {
			t.Fatalf("%d bytes in flight, want only delivery 2's %d", n, len(bob.got[1].payload))
		}
	})
	t.Run("Own", func(t *testing.T) {
		bob.ack(e.hub, evs[1].id) // 2, but 1 was never acknowledged
		bob.ack(e.hub, evs[1].id) // twice
		if err := e.hub.flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if c := e.cursor("bob/phone", dm); c != 0 {
			t.Fatalf("cursor %d, want 0 (1 unacknowledged)", c)
		}
		if n := e.hub.bytes.get("bob"); n != 0 {
			t.Fatalf("%d bytes in flight, want 0", n)
		}
	})
}

// TestWindow: at most Window deliveries, or the client's Receive Maximum
// when lower, are unacknowledged at once.
func TestWindow(t *testing.T) {
	for _, tc := range []struct {
		name       string
		window, rm int
		want       int
	}{
		{"Window", 4, 0, 4},
		{"ReceiveMaximum", 4, 2, 2},
		{"ReceiveMaximumAbove", 3, 10, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, func(h *Hub) { h.Window = tc.window })
			e.sendN(dm, "alice", 10)
			bob := newConn("bob/phone")
			bob.rm = tc.rm
			e.hub.Connect(bob)
			e.hub.Subscribe(bob, 1)
			waitFor(t, "a full window", func() bool { return bob.count() == tc.want })
			bob.ack(e.hub, bob.pendingIDs()[0])
			waitFor(t, "one more", func() bool { return bob.count() == tc.want+1 })
			drain(t, e.hub, bob, dm, 10)
			bob.wantSeqs(t, dm, 1, 10)
			if bob.maxOut != tc.want {
				t.Fatalf("%d in flight at most, want %d", bob.maxOut, tc.want)
			}
		})
	}
}

// TestInflightBytes: the unacknowledged bytes of a device stay within
// DeviceInflightBytes, those of a user's devices within UserInflightBytes,
// except that each device may always have one delivery in flight.
func TestInflightBytes(t *testing.T) {
	body := strings.Repeat("x", 300)
	t.Run("Device", func(t *testing.T) {
		e := setup(t, func(h *Hub) { h.DeviceInflightBytes = 1000 })
		for range 10 {
			e.send(dm, "alice", body)
		}
		bob := e.connect("bob/phone", 1)
		waitFor(t, "deliveries", func() bool { return bob.count() > 0 })
		size := len(bob.got[0].payload)
		want := 1000 / size
		waitFor(t, "the byte bound", func() bool { return bob.count() == want })
		drain(t, e.hub, bob, dm, 10)
		if bob.maxBytes > 1000 {
			t.Fatalf("%d bytes in flight, bound 1000", bob.maxBytes)
		}
	})
	t.Run("User", func(t *testing.T) {
		e := setup(t, func(h *Hub) { h.UserInflightBytes = 1000 })
		for range 10 {
			e.send(dm, "alice", body)
		}
		var mu sync.Mutex
		most := int64(0)
		record := func() {
			mu.Lock()
			defer mu.Unlock()
			most = max(most, e.hub.bytes.get("bob"))
		}
		phone, laptop := newConn("bob/phone"), newConn("bob/laptop")
		phone.onSend, laptop.onSend = record, record
		for _, c := range []*fakeConn{phone, laptop} {
			e.hub.Connect(c)
			e.hub.Subscribe(c, 1)
		}
		waitFor(t, "deliveries", func() bool { return phone.count() > 0 && laptop.count() > 0 })
		size := int64(len(phone.got[0].payload))
		drain(t, e.hub, phone, dm, 10)
		drain(t, e.hub, laptop, dm, 10)
		mu.Lock()
		defer mu.Unlock()
		// Each device may have one in flight beyond the bound.
		if most > 1000+size {
			t.Fatalf("%d bytes in flight to bob's devices, bound 1000 (+%d)", most, size)
		}
		if e.hub.bytes.get("bob") != 0 {
			t.Fatalf("%d bytes left in flight", e.hub.bytes.get("bob"))
		}
	})
	t.Run("OneAlways", func(t *testing.T) {
		e := setup(t, func(h *Hub) { h.DeviceInflightBytes, h.UserInflightBytes = 10, 10 })
		e.send(dm, "alice", body)
		e.send(dm, "alice", body)
		bob := e.connect("bob/phone", 1)
		drain(t, e.hub, bob, dm, 2)
		if bob.maxOut != 1 {
			t.Fatalf("%d in flight at most, want 1", bob.maxOut)
		}
	})
}

// TestReconcile: deliveries the broker expired stop counting against the
// window.
func TestReconcile(t *testing.T) {
	e, bob := backlog(t, 3, func(h *Hub) { h.Window = 2 })
	waitFor(t, "a full window", func() bool { return bob.count() == 2 })
	ids := bob.pendingIDs()
	bob.expire(ids[0])
	bob.expire(ids[1])
	waitFor(t, "the third after reconciling", func() bool { return bob.count() == 3 })
	if n := e.hub.bytes.get("bob"); n != int64(len(bob.got[2].payload)) {
		t.Fatalf("%d bytes in flight, want only the third's %d", n, len(bob.got[2].payload))
	}
}

// TestTooLarge: a delivery the client can never take is skipped and counts
// as acknowledged; the next ones go out.
func TestTooLarge(t *testing.T) {
	e := setup(t)
	e.send(dm, "alice", "small")
	e.send(dm, "alice", strings.Repeat("x", 500))
	e.send(dm, "alice", "small again")
	bob := newConn("bob/phone")
	bob.tooLarge = 300
	e.hub.Connect(bob)
	e.hub.Subscribe(bob, 1)
	bob.waitMessages(t, dm, 2)
	if got := bob.seqs(t, dm); !slices.Equal(got, []int64{1, 3}) {
		t.Fatalf("got %v, want 1 3", got)
	}
	bob.ackAll(e.hub)
	e.waitCursor("bob/phone", dm, 3)
	if n := e.hub.bytes.get("bob"); n != 0 {
		t.Fatalf("%d bytes in flight", n)
	}
}

// TestSendFails: a failed write stops the connection and the writer.
func TestSendFails(t *testing.T) {
	e := setup(t)
	e.sendN(dm, "alice", 2)
	bob := newConn("bob/phone")
	bob.failSend = errors.New("broken pipe")
	e.hub.Connect(bob)
	e.hub.Subscribe(bob, 1)
	waitFor(t, "the connection stopped", bob.Closed)
	if bob.stopErr == nil || !strings.Contains(bob.stopErr.Error(), "broken pipe") {
		t.Fatalf("stopped with %v", bob.stopErr)
	}
	if n := e.hub.bytes.get("bob"); n != 0 {
		t.Fatalf("%d bytes in flight after a failed write", n)
	}
}

// TestQoS0: with a QoS 0 subscription, deliveries go at QoS 0 and count as
// acknowledged once written.
func TestQoS0(t *testing.T) {
	e := setup(t)
	e.sendN(dm, "alice", 3)
	bob := e.connect("bob/phone", 0)
	bob.waitMessages(t, dm, 3)
	for _, ev := range bob.events(t) {
		if ev.qos != 0 || ev.id != 0 {
			t.Fatalf("delivery %+v, want QoS 0 without a packet id", ev)
		}
	}
	e.waitCursor("bob/phone", dm, 3)
	e.hub.DeliverEvent([]string{"bob"}, []byte(`{"kind":"typing"}`), 1)
	waitFor(t, "the event", func() bool { return len(bob.kinds(t, "typing")) == 1 })
	if ev := bob.kinds(t, "typing")[0]; ev.qos != 0 {
		t.Fatalf("event at QoS %d on a QoS 0 subscription", ev.qos)
	}
}

// TestEventAcks: acknowledging an event moves no cursor but frees the
// window.
func TestEventAcks(t *testing.T) {
	e := setup(t, func(h *Hub) { h.Window = 1 })
	bob := e.connect("bob/phone", 1)
	waitFor(t, "live", func() bool { return !syncing(e.hub, "bob/phone") })
	e.hub.DeliverEvent([]string{"bob"}, []byte(`{"kind":"typing","n":1}`), 1)
	e.hub.DeliverEvent([]string{"bob"}, []byte(`{"kind":"typing","n":2}`), 1)
	waitFor(t, "the first event", func() bool { return bob.count() == 1 })
	bob.ack(e.hub, bob.pendingIDs()[0])
	waitFor(t, "the second event", func() bool { return bob.count() == 2 })
}

// TestReconnect: a new connection of the same client id replaces the old
// one, whose unacknowledged deliveries leave its inflight table; the old
// connection's disconnect does not remove the new one.
func TestReconnect(t *testing.T) {
	e := setup(t)
	e.sendN(dm, "alice", 2)
	old := e.connect("bob/phone", 1)
	waitFor(t, "2 messages", func() bool { return old.count() == 2 })
	fresh := e.connect("bob/phone", 1)
	if len(old.dropped) != 2 || old.Inflight() != 0 {
		t.Fatalf("old connection: %d dropped, %d in flight; want 2, 0", len(old.dropped), old.Inflight())
	}
	waitFor(t, "2 messages again", func() bool { return fresh.count() == 2 })
	e.hub.Disconnect(old)
	if got := e.hub.Connected(); !slices.Equal(got, []string{"bob/phone"}) {
		t.Fatalf("connected %v", got)
	}
	e.hub.Disconnect(fresh)
	if got := e.hub.Connected(); len(got) != 0 {
		t.Fatalf("connected %v after both left", got)
	}
	if got := e.hub.LocalUsers(); len(got) != 0 {
		t.Fatalf("local users %v", got)
	}
}

// TestEpochsAndTakeOver: every connect claims a new epoch (told to OnClaim);
// TakeOver disconnects only a session older than the given epoch.
func TestEpochsAndTakeOver(t *testing.T) {
	var mu sync.Mutex
	var claims []int64
	e := setup(t, func(h *Hub) {
		h.OnClaim = func(id string, epoch int64) {
			mu.Lock()
			defer mu.Unlock()
			claims = append(claims, epoch)
		}
	})
	e.connect("bob/phone", 1)
	bob := e.connect("bob/phone", 1)
	mu.Lock()
	if len(claims) != 2 || claims[1] <= claims[0] {
		t.Fatalf("claims %v, want two rising epochs", claims)
	}
	epoch := claims[1]
	mu.Unlock()
	e.hub.TakeOver("bob/phone", epoch)
	e.hub.TakeOver("bob/phone", epoch-1)
	e.hub.TakeOver("carol/phone", epoch+1)
	if bob.takenOver {
		t.Fatal("taken over by an epoch not newer than its own")
	}
	e.hub.TakeOver("bob/phone", epoch+1)
	if !bob.takenOver {
		t.Fatal("not taken over by a newer epoch")
	}
}

// TestClaimFails: a device whose session cannot be claimed is not
// registered (the broker refuses its CONNECT); once the store answers
// again it connects and gets its messages.
func TestClaimFails(t *testing.T) {
	e := setup(t)
	e.sendN(dm, "alice", 2)
	e.store.setBefore(func(_ context.Context, op string, _ int) error {
		if op == "Claim" {
			return errStore
		}
		return nil
	})
	bob := newConn("bob/phone")
	if err := e.hub.Connect(bob); !errors.Is(err, errStore) {
		t.Fatalf("Connect with a failing claim = %v, want %v", err, errStore)
	}
	if ids := e.hub.Connected(); len(ids) != 0 {
		t.Fatalf("registered without a claim: %v", ids)
	}
	e.store.setBefore(nil)
	bob = e.connect("bob/phone", 1)
	bob.waitMessages(t, dm, 2)
}

// TestCursorWriteFails: cursors that could not be written are kept and
// written by a later flush.
func TestCursorWriteFails(t *testing.T) {
	e := setup(t)
	e.sendN(dm, "alice", 2)
	failing := make(chan struct{})
	var once sync.Once
	e.store.setBefore(func(_ context.Context, op string, n int) error {
		if op == "SaveCursors" && n <= 3 {
			once.Do(func() { close(failing) })
			return errStore
		}
		return nil
	})
	bob := e.connect("bob/phone", 1)
	waitFor(t, "2 messages", func() bool { return bob.count() == 2 })
	bob.ackAll(e.hub)
	<-failing
	e.waitCursor("bob/phone", dm, 2)
	if n := e.store.count("SaveCursors"); n < 4 {
		t.Fatalf("%d SaveCursors calls, want the 3 failures and a success", n)
	}
}

// TestCloseWritesCursors: Close writes the cursors acknowledged since the
// last flush.
func TestCloseWritesCursors(t *testing.T) {
	e, bob := backlog(t, 2, func(h *Hub) { h.FlushInterval = 1 << 40 })
	waitFor(t, "2 messages", func() bool { return bob.count() == 2 })
	bob.ackAll(e.hub)
	if c := e.cursor("bob/phone", dm); c != 0 {
		t.Fatalf("cursor %d before any flush", c)
	}
	if err := e.hub.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if c := e.cursor("bob/phone", dm); c != 2 {
		t.Fatalf("cursor %d after Close, want 2", c)
	}
}

// TestReceiptsOnce: a delivered receipt is sent once per new seq, to the
// peer only, and not for skipped (gap) messages.
func TestReceiptsOnce(t *testing.T) {
	e := setup(t)
	alice := e.connect("alice/phone", 1)
	e.sendN(dm, "alice", 1)
	phone := e.connect("bob/phone", 1)
	laptop := e.connect("bob/laptop", 1)
	waitFor(t, "the message on both", func() bool { return phone.count() == 1 && laptop.count() == 1 })
	phone.ackAll(e.hub)
	waitFor(t, "a receipt", func() bool { return len(alice.kinds(t, "delivered")) == 1 })
	laptop.ackAll(e.hub)
	waitFor(t, "laptop's cursor", func() bool { return e.cursor("bob/laptop", dm) == 1 })
	if err := e.hub.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(alice.kinds(t, "delivered")); n != 1 {
		t.Fatalf("%d receipts for seq 1, want 1", n)
	}
}

// fakeRemote records what goes to other nodes.
type fakeRemote struct {
	mu       sync.Mutex
	frames   []string
	interest []string
}

func (r *fakeRemote) Deliver(users []string, conv string, seq int64, qos byte, payload []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, fmt.Sprintf("%v %s %d %d %s", users, conv, seq, qos, payload))
}

func (r *fakeRemote) Interest(user string, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.interest = append(r.interest, fmt.Sprintf("%s %v", user, on))
}

// TestRemote: deliveries go to the other nodes typed (conv and seq beside
// the payload); interest follows the user's first and last device here.
func TestRemote(t *testing.T) {
	r := &fakeRemote{}
	e := setup(t, func(h *Hub) { h.Remote = r })
	m := e.send(dm, "alice", "hi")
	e.hub.DeliverMessage([]string{"bob"}, m)
	e.hub.DeliverEvent([]string{"bob"}, []byte(`{"kind":"typing"}`), 0)
	phone := e.connect("bob/phone", 1)
	laptop := e.connect("bob/laptop", 1)
	e.hub.Disconnect(phone)
	e.hub.Disconnect(laptop)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.frames) != 2 || !strings.HasPrefix(r.frames[0], "[bob] dm:alice:bob 1 1 {") ||
		r.frames[1] != `[bob]  0 0 {"kind":"typing"}` {
		t.Fatalf("frames %q", r.frames)
	}
	if !slices.Equal(r.interest, []string{"bob true", "bob false"}) {
		t.Fatalf("interest %v", r.interest)
	}
}

// TestDeliverLocal: a delivery from another node reaches the devices here
// in seq order; one beyond the device's position makes it catch up.
func TestDeliverLocal(t *testing.T) {
	e := setup(t)
	bob := e.connect("bob/phone", 1)
	waitFor(t, "live", func() bool { return !syncing(e.hub, "bob/phone") })
	ms := e.sendN(dm, "alice", 3)
	e.hub.DeliverLocal([]string{"bob"}, dm, 1, 1, []byte(`{"kind":"message","conv":"dm:alice:bob","seq":1,"body":"m1"}`))
	waitFor(t, "1", func() bool { return len(bob.seqs(t, dm)) == 1 })
	e.hub.DeliverLocal([]string{"bob"}, dm, 3, 1, []byte(`{"kind":"message","conv":"dm:alice:bob","seq":3}`)) // 2 was lost
	waitFor(t, "2 and 3 from the store", func() bool { return len(bob.seqs(t, dm)) == 3 })
	if got := bob.events(t); string(got[2].Body) != `"m3"` || got[2].Seq != ms[2].Seq {
		t.Fatalf("third delivery %+v, want the stored m3", got[2])
	}
	e.hub.DeliverLocal([]string{"bob"}, "", 9, 0, []byte(`{"kind":"typing"}`))
	waitFor(t, "the event", func() bool { return len(bob.kinds(t, "typing")) == 1 })
}

// TestResync: every subscribed device catches up from the store.
func TestResync(t *testing.T) {
	e := setup(t)
	bob := e.connect("bob/phone", 1)
	carol := newConn("carol/phone") // connected, never subscribed
	e.hub.Connect(carol)
	waitFor(t, "live", func() bool { return !syncing(e.hub, "bob/phone") })
	e.sendN(dm, "alice", 2) // stored, never fanned out here
	e.hub.Resync()
	bob.waitMessages(t, dm, 2)
	if carol.count() != 0 {
		t.Fatal("a device that never subscribed got deliveries")
	}
}

// TestImports keeps the engine away from MQTT and the layers above it.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, imp := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/mochi-mqtt/", "github.com/parley-im/parley/hooks", "github.com/parley-im/parley/broker",
			"github.com/parley-im/parley/internal/cluster", "github.com/nats-io/"} {
			if strings.HasPrefix(imp, banned) {
				t.Errorf("internal/delivery depends on %s", imp)
			}
		}
	}
}

package delivery

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
)

const dm = "dm:alice:bob"

// TestCatchUpThenLive: a new device gets the stored messages in order, then
// live ones; its acknowledgements become its cursor and a delivered receipt
// to the peer.
func TestCatchUpThenLive(t *testing.T) {
	e := setup(t)
	e.sendN(dm, "alice", 3)
	alice := e.connect("alice/phone", 1)
	bob := e.connect("bob/phone", 1)
	waitFor(t, "3 messages to bob", func() bool { return len(bob.seqs(t, dm)) == 3 })
	bob.wantSeqs(t, dm, 1, 3)
	for _, ev := range bob.events(t) {
		if ev.qos != 1 || ev.id < 1<<15 {
			t.Fatalf("delivery %+v: want QoS 1 with a packet id", ev)
		}
	}
	m4 := e.send(dm, "alice", "live")
	e.hub.DeliverMessage([]string{"alice", "bob"}, m4)
	waitFor(t, "live message to bob", func() bool { return len(bob.seqs(t, dm)) == 4 })
	if got := bob.events(t)[3]; got.Seq != 4 || string(got.Body) != `"live"` {
		t.Fatalf("live delivery %+v, want seq 4 body live", got)
	}
	bob.ackAll(e.hub)
	waitFor(t, "bob's cursor at 4", func() bool { return e.cursor("bob/phone", dm) == 4 })
	waitFor(t, "delivered receipt to alice", func() bool {
		rs := alice.kinds(t, "delivered")
		return len(rs) > 0 && rs[len(rs)-1].Seq == 4
	})
	for _, r := range alice.kinds(t, "delivered") {
		if r.User != "bob" || r.Conv != dm {
			t.Fatalf("receipt %+v: want bob in %s", r, dm)
		}
	}
	if rs := bob.kinds(t, "delivered"); len(rs) != 0 {
		t.Fatalf("bob got his own receipts: %+v", rs)
	}
}

// TestNewDeviceBacklog: a device that never connected gets only the latest
// NewDeviceBacklog messages, and its cursor starts below them.
func TestNewDeviceBacklog(t *testing.T) {
	e, bob := backlog(t, 10, func(h *Hub) { h.NewDeviceBacklog = 3 })
	bob.waitMessages(t, dm, 3)
	bob.wantSeqs(t, dm, 8, 10)
	waitFor(t, "starting cursor 7", func() bool { return e.cursor("bob/phone", dm) == 7 })
}

// TestNewDeviceNewConversation: the backlog of a new device applies to the
// conversations it had when it connected; one that begins while its first
// catch-up runs (its messages skipped live and read by another pass) comes
// whole, however many messages it already has.
func TestNewDeviceNewConversation(t *testing.T) {
	e := setup(t, func(h *Hub) { h.NewDeviceBacklog = 3 })
	e.sendN(dm, "alice", 1) // bob/phone's first pass reads dm's messages
	const dm2 = "dm:bob:carol"
	// carol starts a conversation with bob during that pass: delivered
	// live while bob/phone catches up, so skipped.
	e.deliverDuring("Messages", dm2, "carol", []string{"bob", "carol"}, 10)
	bob := e.connect("bob/phone", 1)
	bob.waitMessages(t, dm2, 10)
	bob.wantSeqs(t, dm2, 1, 10)
	bob.wantSeqs(t, dm, 1, 1)
}

// TestNewDeviceLiveDuringFirstRead: messages stored after a new device
// subscribed, while its first catch-up reads its state, are its own
// however many: the backlog cuts only what was there before.
func TestNewDeviceLiveDuringFirstRead(t *testing.T) {
	e := setup(t, func(h *Hub) { h.NewDeviceBacklog = 3 })
	e.sendN(dm, "alice", 5) // before bob/phone: it gets the latest 3 of these
	e.deliverDuring("Device", dm, "alice", []string{"alice", "bob"}, 10)
	bob := e.connect("bob/phone", 1)
	bob.waitMessages(t, dm, 13)
	bob.wantSeqs(t, dm, 3, 15)
}

// TestReturningDevice: a device that connected before gets everything after
// its cursor, however many (up to CatchupLimit), not the backlog.
func TestReturningDevice(t *testing.T) {
	e, bob := backlog(t, 2, func(h *Hub) { h.NewDeviceBacklog = 2 })
	bob.waitMessages(t, dm, 2)
	bob.ackAll(e.hub)
	e.waitCursor("bob/phone", dm, 2)
	e.hub.Disconnect(bob)
	e.sendN(dm, "alice", 5)
	again := e.connect("bob/phone", 1)
	again.waitMessages(t, dm, 5)
	again.wantSeqs(t, dm, 3, 7)
}

// TestCatchUpRetriesWithBackoff: while the store fails, the catch-up is
// retried with a growing delay; it then delivers everything once.
func TestCatchUpRetriesWithBackoff(t *testing.T) {
	const retry = 20 * time.Millisecond
	e := setup(t, func(h *Hub) { h.retry = retry })
	e.sendN(dm, "alice", 3)
	var at []time.Time
	e.store.setBefore(func(_ context.Context, op string, n int) error {
		if op != "Device" {
			return nil
		}
		at = append(at, time.Now()) // Device calls come from one writer, one at a time
		if n <= 3 {
			return errStore
		}
		return nil
	})
	bob := e.connect("bob/phone", 1)
	bob.waitMessages(t, dm, 3)
	bob.wantSeqs(t, dm, 1, 3)
	if n := e.store.count("Device"); n != 4 {
		t.Fatalf("%d Device calls, want 4 (3 failures, 1 success)", n)
	}
	for i := 1; i < len(at); i++ {
		if gap, want := at[i].Sub(at[i-1]), retry<<(i-1); gap < want {
			t.Errorf("attempt %d came %v after the one before, want at least %v", i+1, gap, want)
		}
	}
}

// TestSecondPassStoreFailure: a live message arrives while the catch-up
// reads the store, so a second pass follows; its store read fails. The
// retry delivers every message exactly once, in order.
func TestSecondPassStoreFailure(t *testing.T) {
	e := setup(t)
	e.sendN(dm, "alice", 3)
	inFirstPass, release := make(chan struct{}), make(chan struct{})
	e.store.setBefore(func(_ context.Context, op string, n int) error {
		switch {
		case op == "Messages" && n == 1:
			close(inFirstPass)
			<-release
		case op == "Device" && n == 2:
			return errStore // the second pass
		}
		return nil
	})
	bob := e.connect("bob/phone", 1)
	<-inFirstPass
	m4 := e.send(dm, "alice", "during the catch-up")
	e.hub.DeliverMessage([]string{"bob"}, m4) // skipped: the device is catching up
	close(release)
	waitFor(t, "4 messages", func() bool { return len(bob.seqs(t, dm)) >= 4 })
	waitFor(t, "a third Device call after the failed second", func() bool { return e.store.count("Device") >= 3 })
	m5 := e.send(dm, "alice", "live")
	e.hub.DeliverMessage([]string{"bob"}, m5)
	waitFor(t, "5 messages", func() bool { return len(bob.seqs(t, dm)) >= 5 })
	bob.wantSeqs(t, dm, 1, 5)
}

// TestMessagesFailureMidConversation: a failed page read resumes after the
// last message written, without repeating it.
func TestMessagesFailureMidConversation(t *testing.T) {
	e := setup(t, func(h *Hub) { h.NewDeviceBacklog = 1000 })
	e.sendN(dm, "alice", 250) // three pages
	e.store.setBefore(func(_ context.Context, op string, n int) error {
		if op == "Messages" && n == 2 {
			return errStore
		}
		return nil
	})
	bob := e.connect("bob/phone", 1)
	waitFor(t, "64 in flight", func() bool { return bob.Inflight() == 64 })
	drain(t, e.hub, bob, dm, 250)
	bob.wantSeqs(t, dm, 1, 250)
	if n := e.store.count("Messages"); n != 4 {
		t.Fatalf("%d Messages calls, want 4 (3 pages and a failed one)", n)
	}
}

// TestGapEvent: more than CatchupLimit behind, the device gets a gap event
// naming what it did not get, then the last CatchupLimit messages; its
// cursor moves past the gap.
func TestGapEvent(t *testing.T) {
	e, bob := backlog(t, 12, func(h *Hub) { h.CatchupLimit = 5 })
	bob.waitMessages(t, dm, 5)
	evs := bob.events(t)
	if evs[0].Kind != "gap" || evs[0].Conv != dm || evs[0].After != 0 || evs[0].Before != 8 {
		t.Fatalf("first delivery %+v, want a gap after 0 before 8", evs[0])
	}
	bob.wantSeqs(t, dm, 8, 12)
	waitFor(t, "cursor past the gap", func() bool { return e.cursor("bob/phone", dm) == 7 })
	bob.ackAll(e.hub)
	e.waitCursor("bob/phone", dm, 12)
}

// TestOutOfOrderAcks: the cursor is the frontier of acknowledged seqs: it
// moves only when every seq up to it was acknowledged.
func TestOutOfOrderAcks(t *testing.T) {
	e, bob := backlog(t, 3)
	bob.waitMessages(t, dm, 3)
	ids := map[int64]uint16{}
	for _, ev := range bob.events(t) {
		ids[ev.Seq] = ev.id
	}
	bob.ack(e.hub, ids[3])
	bob.ack(e.hub, ids[2])
	if err := e.hub.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if c := e.cursor("bob/phone", dm); c != 0 {
		t.Fatalf("cursor %d after acks of 3 and 2, want 0", c)
	}
	bob.ack(e.hub, ids[1])
	if err := e.hub.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if c := e.cursor("bob/phone", dm); c != 3 {
		t.Fatalf("cursor %d after acks of 3, 2, 1, want 3", c)
	}
}

func TestFrontier(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start int64
		acks  []int64
		want  int64
		moved []bool
	}{
		{"InOrder", 0, []int64{1, 2, 3}, 3, []bool{true, true, true}},
		{"Reversed", 0, []int64{3, 2, 1}, 3, []bool{false, false, true}},
		{"Hole", 0, []int64{1, 3, 4}, 1, []bool{true, false, false}},
		{"Repeated", 5, []int64{5, 4, 6, 6}, 6, []bool{false, false, true, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &frontier{seq: tc.start}
			for i, s := range tc.acks {
				if moved := f.ack(s); moved != tc.moved[i] {
					t.Fatalf("ack %d moved=%v, want %v", s, moved, tc.moved[i])
				}
			}
			if f.seq != tc.want {
				t.Fatalf("frontier %d, want %d", f.seq, tc.want)
			}
		})
	}
}

// TestDroppedResync: after the broker dropped a packet to the client, the
// device catches up again from what it acknowledged.
func TestDroppedResync(t *testing.T) {
	e, bob := backlog(t, 3)
	bob.waitMessages(t, dm, 3)
	bob.ack(e.hub, bob.events(t)[0].id)
	before := e.store.count("Device")
	e.hub.Dropped(bob)
	waitFor(t, "2 and 3 again", func() bool { return len(bob.seqs(t, dm)) == 5 })
	if got := bob.seqs(t, dm); !slices.Equal(got, []int64{1, 2, 3, 2, 3}) {
		t.Fatalf("got %v, want 1 2 3 then 2 3 again", got)
	}
	if e.store.count("Device") <= before {
		t.Fatal("no catch-up after the drop")
	}
	e.hub.Dropped(newConn("bob/phone")) // another connection of the same id: ignored
}

// TestGapInLiveStream: a live message beyond the next seq makes the device
// read the missing one from the store.
func TestGapInLiveStream(t *testing.T) {
	e := setup(t)
	ms := e.sendN(dm, "alice", 1)
	bob := e.connect("bob/phone", 1)
	bob.waitMessages(t, dm, 1)
	ms = append(ms, e.sendN(dm, "alice", 2)...)
	e.hub.DeliverMessage([]string{"bob"}, ms[2]) // 3 without 2
	waitFor(t, "2 and 3", func() bool { return len(bob.seqs(t, dm)) == 3 })
	e.hub.DeliverMessage([]string{"bob"}, ms[1]) // late: already written
	e.hub.DeliverMessage([]string{"bob"}, ms[2])
	m4 := e.send(dm, "alice", "4")
	e.hub.DeliverMessage([]string{"bob"}, m4)
	waitFor(t, "4", func() bool { return len(bob.seqs(t, dm)) >= 4 })
	bob.wantSeqs(t, dm, 1, 4)
}

// TestQueueOverflow: live messages beyond Queue, while the writer waits for
// the window, fall back to a catch-up: nothing is lost or repeated.
func TestQueueOverflow(t *testing.T) {
	e := setup(t, func(h *Hub) { h.Window, h.DeviceQueue = 1, 2 })
	bob := e.connect("bob/phone", 1)
	waitFor(t, "the device to go live", func() bool { return e.store.count("Device") == 1 && !syncing(e.hub, "bob/phone") })
	var ms []history.Message
	for i := range 8 {
		m := e.send(dm, "alice", fmt.Sprint(i))
		ms = append(ms, m)
		e.hub.DeliverMessage([]string{"bob"}, m)
	}
	drain(t, e.hub, bob, dm, 8)
	bob.wantSeqs(t, dm, 1, 8)
	if e.store.count("Device") < 2 {
		t.Fatal("the overflow caused no catch-up")
	}
	if m := bob.maxOut; m > 1 {
		t.Fatalf("%d deliveries in flight, window 1", m)
	}
}

func syncing(h *Hub, id string) bool {
	h.mu.Lock()
	d := h.devices[id]
	h.mu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.syncing
}

// TestResubscribe: live messages are not delivered while the device is not
// subscribed; subscribing again catches it up.
func TestResubscribe(t *testing.T) {
	e := setup(t)
	bob := e.connect("bob/phone", 1)
	waitFor(t, "live", func() bool { return !syncing(e.hub, "bob/phone") })
	e.hub.Unsubscribe(bob)
	m1 := e.send(dm, "alice", "while away")
	e.hub.DeliverMessage([]string{"bob"}, m1)
	e.hub.DeliverEvent([]string{"bob"}, []byte(`{"kind":"typing"}`), 0)
	if err := e.hub.flush(t.Context()); err != nil { // nothing arrives meanwhile
		t.Fatal(err)
	}
	if n := bob.count(); n != 0 {
		t.Fatalf("%d deliveries while unsubscribed", n)
	}
	e.hub.Subscribe(bob, 1)
	waitFor(t, "the missed message", func() bool { return len(bob.seqs(t, dm)) == 1 })
	e.hub.Subscribe(bob, 1) // subscribed already: nothing happens
	m2 := e.send(dm, "alice", "back")
	e.hub.DeliverMessage([]string{"bob"}, m2)
	waitFor(t, "the live message", func() bool { return len(bob.seqs(t, dm)) == 2 })
	bob.wantSeqs(t, dm, 1, 2)
}

// TestGroupFirstSeen: a live message of a conversation new to the device
// that does not start at 1 (a group it was added to) is read from the store,
// from the first message the user may see.
func TestGroupFirstSeen(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	now := time.Now()
	g := history.Group{ID: "team", Name: "team", CreatedBy: "alice", CreatedAt: now}
	if _, err := e.real.CreateGroup(ctx, g, []history.Member{{User: "alice", Role: history.RoleOwner}},
		history.NewMessage{Conv: "g:team", ID: history.NewID(now), From: "alice", TS: now, Type: history.TypeGroupCreated, Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	e.sendN("g:team", "alice", 3)
	bob := e.connect("bob/phone", 1)
	waitFor(t, "live", func() bool { return !syncing(e.hub, "bob/phone") })
	added, _, err := e.real.ChangeMember(ctx, history.MemberChange{Group: "team", Actor: "alice", User: "bob", Role: history.RoleMember,
		MessageID: history.NewID(now), TS: now})
	if err != nil {
		t.Fatal(err)
	}
	e.hub.DeliverMessage([]string{"alice", "bob"}, added)
	waitFor(t, "the member.added message", func() bool { return len(bob.seqs(t, "g:team")) == 1 })
	if got := bob.seqs(t, "g:team"); !slices.Equal(got, []int64{added.Seq}) {
		t.Fatalf("got %v, want only %d (nothing from before bob joined)", got, added.Seq)
	}
}

// TestCloseEndsBlockedCatchUp: a catch-up blocked in the store ends when
// the Hub closes (the store call's context is cancelled).
func TestCloseEndsBlockedCatchUp(t *testing.T) {
	e := setup(t)
	e.sendN(dm, "alice", 1)
	blocked := make(chan struct{})
	e.store.setBefore(func(ctx context.Context, op string, n int) error {
		if op == "Device" {
			close(blocked)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	bob := e.connect("bob/phone", 1)
	<-blocked
	if err := e.hub.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := e.hub.Close(t.Context()); err != nil {
		t.Fatalf("second close: %v", err)
	}
	e.hub.DeliverMessage([]string{"bob"}, e.send(dm, "alice", "after close"))
	if n := bob.count(); n != 0 {
		t.Fatalf("%d deliveries after a blocked catch-up and close", n)
	}
}

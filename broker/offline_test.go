package broker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

// flood sends n messages to bob from each of senders users, concurrently, and
// waits for every PUBACK.
func flood(t *testing.T, e *env, senders, n int) {
	t.Helper()
	run := history.NewID(time.Now()) // cids unique to this flood
	var wg sync.WaitGroup
	for i := 0; i < senders; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			user := fmt.Sprintf("s%d", i)
			c := e.dial(user, user, dialOpts{noSub: true})
			defer c.close()
			toks := make([]pahov3.Token, 0, n)
			for j := 0; j < n; j++ {
				toks = append(toks, c.v3.Publish("im/send/u/bob", 1, false, fmt.Sprintf(`{"cid":"%s-%d","body":%d}`, run, j, j)))
			}
			for _, tok := range toks {
				if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
					t.Errorf("%s: publish: %v", user, tok.Error())
					return
				}
			}
		}(i)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// TestOfflineCatchUp: a recipient offline during 1,000 messages over 10
// conversations receives all of them after reconnecting, per conversation in
// seq order, none missing, none surfaced twice; with a clean session and a
// persistent one, v3 and v5, and across a broker restart on the same store.
func TestOfflineCatchUp(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		cases := []struct {
			name    string
			o       dialOpts
			restart bool
		}{
			{"CleanV3", dialOpts{}, false},
			{"PersistentV3", dialOpts{persistent: true}, false},
			{"PersistentV5Restart", dialOpts{v5: true, persistent: true}, true},
			{"CleanV5Restart", dialOpts{v5: true}, true},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				e := setup(t, s)
				device := fmt.Sprintf("bob/%d", i)
				bob := e.dial(device, "bob", tc.o)
				col := newCollector()
				// Whatever earlier cases left is caught up first: a new
				// device gets the latest 50 (NewDeviceBacklog) of each
				// conversation.
				backlog := 0
				for k := 0; k < 10; k++ {
					conv := fmt.Sprintf("dm:bob:s%d", k)
					ms, err := s.Messages(context.Background(), conv, 0, 10000)
					if err != nil {
						t.Fatal(err)
					}
					if n := len(ms); n > 0 {
						col.start[conv] = max(1, int64(n)-49)
						backlog += min(n, 50)
					}
				}
				col.drain(t, bob, backlog)
				// Once the store holds bob's acknowledgements, nothing of
				// the backlog may come again (docs/protocol.md, Duplicates).
				waitCursors(t, s, device, "bob", col.last)
				col.n = 0
				bob.close()
				flood(t, e, 10, 100)
				if tc.restart {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					e.b.Close(ctx)
					cancel()
					e = setup(t, s)
				}
				o := tc.o
				o.noSub = tc.o.persistent && !tc.restart // the session still holds the subscription
				bob = e.dial(device, "bob", o)
				col.drain(t, bob, 1000)
				bob.quiet(300 * time.Millisecond)
				if len(col.last) != 10 {
					t.Fatalf("messages from %d conversations, want 10", len(col.last))
				}
				// Bob acknowledged everything before going offline, the
				// broker was not killed: no duplicate is allowed. (A
				// graceful restart promises none either; it is checked too.)
				col.noDups(t, device)
			})
		}
	})
}

// TestSlowConsumer: a client that reads slowly while a flood arrives (its
// queue overflows) still ends up with every message, in order.
func TestSlowConsumer(t *testing.T) {
	s := testkit.OpenSQLite(t)
	e := setup(t, s, func(o *broker.Options) { o.DeviceQueue = 16 })
	slow := &client{t: t, id: "bob/slow", events: make(chan event, 100000)}
	var mu sync.Mutex
	o := pahov3.NewClientOptions().AddBroker("tcp://" + e.mqtt).SetClientID("bob/slow").
		SetUsername("bob").SetPassword(testkit.Token(t, "bob")).SetOrderMatters(true).SetAutoReconnect(false).
		SetDefaultPublishHandler(func(_ pahov3.Client, m pahov3.Message) {
			mu.Lock()
			time.Sleep(2 * time.Millisecond) // a slow handler stops paho reading
			mu.Unlock()
			slow.events <- parseEvent(t, m.Topic(), m.Qos(), m.Payload())
		})
	slow.v3 = pahov3.NewClient(o)
	if tok := slow.v3.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer slow.v3.Disconnect(0)
	slow.subscribe("im/inbox/bob", 1)
	fast := e.dial("bob/fast", "bob", dialOpts{v5: true})
	flood(t, e, 4, 150)
	col := newCollector()
	col.drain(t, slow, 600)
	fcol := newCollector()
	fcol.drain(t, fast, 600)
}

// TestGapEvent: a catch-up beyond the limit yields a gap event; the rest is
// in the store and the device gets the latest messages.
func TestGapEvent(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s, func(o *broker.Options) { o.CatchupLimit = 20 })
		bob := e.dial("bob", "bob", dialOpts{})
		bob.close()
		flood(t, e, 1, 50)
		bob = e.dial("bob", "bob", dialOpts{v5: true})
		ev := bob.next()
		if ev.Kind != "gap" || ev.Conv != "dm:bob:s0" {
			t.Fatalf("first event %+v, want a gap", ev)
		}
		if ev.After != 0 || ev.Before != 31 {
			t.Fatalf("gap after %d before %d, want 0 and 31", ev.After, ev.Before)
		}
		for seq := int64(31); seq <= 50; seq++ {
			if m := bob.nextKind("message"); m.Seq != seq {
				t.Fatalf("got seq %d, want %d", m.Seq, seq)
			}
		}
		// REST history fills the gap exactly: after..before, paged.
		var filled []int64
		next := fmt.Sprint(ev.After)
		for next != "" {
			var p messagesOut
			if code := e.do("GET", "/v1/conversations/"+ev.Conv+"/messages?limit=7&after="+next, "bob", "", &p); code != 200 {
				t.Fatalf("history: %d", code)
			}
			next = ""
			for _, m := range p.Messages {
				if m.Seq < ev.Before {
					filled = append(filled, m.Seq)
					next = fmt.Sprint(m.Seq)
				}
			}
			if p.Next == nil {
				next = ""
			}
		}
		if len(filled) != 30 || filled[0] != 1 || filled[29] != 30 {
			t.Fatalf("history fill: %v", filled)
		}
		// The cursor moved past the gap: a reconnect brings nothing new.
		// (Wait while connected: the client sends its last PUBACKs on its
		// own time, and a delivery it never acknowledged comes again.)
		waitCursors(t, s, "bob", "bob", map[string]int64{"dm:bob:s0": 50})
		bob.close()
		bob = e.dial("bob", "bob", dialOpts{v5: true})
		bob.quiet(300 * time.Millisecond)
	})
}

// TestNewDeviceBacklog: a device that never connected gets the latest
// messages of each conversation only; one that connected before gets all of
// a conversation it has no cursor for.
func TestNewDeviceBacklog(t *testing.T) {
	s := testkit.OpenSQLite(t)
	e := setup(t, s, func(o *broker.Options) { o.NewDeviceBacklog = 5 })
	old := e.dial("bob/old", "bob", dialOpts{})
	old.close()
	flood(t, e, 1, 12)
	fresh := e.dial("bob/new", "bob", dialOpts{})
	for seq := int64(8); seq <= 12; seq++ {
		if m := fresh.nextKind("message"); m.Seq != seq {
			t.Fatalf("new device got seq %d, want %d", m.Seq, seq)
		}
	}
	fresh.quiet(200 * time.Millisecond)
	old = e.dial("bob/old", "bob", dialOpts{})
	col := newCollector()
	col.drain(t, old, 12)
	if col.last["dm:bob:s0"] != 12 {
		t.Fatalf("old device: %v", col.last)
	}
}

// TestMultiDevice: two devices of one user converge on every message, their
// own included; read markers set on one reach the other and the peer;
// delivery receipts reach the sender.
func TestMultiDevice(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		phone := e.dial("alice/phone", "alice", dialOpts{v5: true})
		laptop := e.dial("alice/laptop", "alice", dialOpts{})
		bob := e.dial("bob", "bob", dialOpts{})
		phone.send("im/send/u/bob", 1, `{"cid":"p1","body":"from the phone"}`)
		bob.send("im/send/u/alice", 1, `{"cid":"b1","body":"hi"}`)
		for _, c := range []*client{phone, laptop, bob} {
			col := newCollector()
			col.drain(t, c, 2)
		}
		// Delivery receipt: bob's device acknowledged seq 1 (and 2).
		if ev := phone.nextKind("delivered"); ev.Conv != "dm:alice:bob" || ev.User != "bob" || ev.Seq < 1 {
			t.Fatalf("delivered = %+v", ev)
		}
		// Read marker from the laptop reaches the phone and bob.
		laptop.send("im/read", 1, `{"conv":"dm:alice:bob","seq":2}`)
		for _, c := range []*client{phone, laptop, bob} {
			if ev := c.nextKind("read"); ev.Conv != "dm:alice:bob" || ev.User != "alice" || ev.Seq != 2 {
				t.Fatalf("%s: read = %+v", c.id, ev)
			}
		}
		// Markers never move back; bad markers are refused.
		laptop.send("im/read", 1, `{"conv":"dm:alice:bob","seq":1}`)
		if code, _ := phone.publish("im/read", 1, `{"conv":"dm:alice:bob","seq":99}`); code != 0x99 {
			t.Fatalf("read beyond the end: %#x", code)
		}
		if code, _ := phone.publish("im/read", 1, `{"conv":"dm:bob:carol","seq":1}`); code != 0x87 {
			t.Fatalf("read of another conversation: %#x", code)
		}
		// A device that was away gets what it missed, its own sends included.
		laptop.close()
		phone.send("im/send/u/bob", 1, `{"cid":"p2","body":"while the laptop sleeps"}`)
		laptop = e.dial("alice/laptop", "alice", dialOpts{})
		for {
			ev := laptop.nextKind("message")
			if ev.Seq < 3 {
				continue // acknowledged after the last cursor flush: sent again, deduplicated by seq
			}
			if ev.Seq != 3 || ev.CID != "p2" {
				t.Fatalf("laptop caught up with %+v", ev)
			}
			break
		}
	})
}

// TestPresence: presence flips on connect, clean disconnect and a killed
// connection after keepalive; only contacts may watch it.
func TestPresence(t *testing.T) {
	s := testkit.OpenSQLite(t)
	e := setup(t, s)
	alice := e.dial("alice", "alice", dialOpts{v5: true})
	bob := e.dial("bob/1", "bob", dialOpts{v5: true})
	carol := e.dial("carol", "carol", dialOpts{v5: true})
	if code := carol.subscribe("im/presence/bob", 1); code != 0x87 {
		t.Fatalf("stranger subscribing to presence: %#x", code)
	}
	alice.send("im/send/u/bob", 1, `{"body":"one message to a stranger"}`)
	if code := alice.subscribe("im/presence/bob", 1); code != 0x87 {
		t.Fatalf("presence after one message to a stranger: %#x", code)
	}
	bob.send("im/send/u/alice", 1, `{"body":"a reply: now we are contacts"}`)
	time.Sleep(5100 * time.Millisecond) // the refusal above is remembered for 5 s
	if code := alice.subscribe("im/presence/bob", 1); code != 1 {
		t.Fatalf("contact subscribing to presence: %#x", code)
	}
	want := func(online bool) {
		t.Helper()
		if ev := alice.nextOn("im/presence/bob"); ev.User != "bob" || ev.Online != online || ev.LastSeen == "" {
			t.Fatalf("presence %s, want online=%v", ev.raw, online)
		}
	}
	want(true) // retained
	bob.close()
	want(false)
	bob = e.dial("bob/1", "bob", dialOpts{v5: true})
	want(true)
	// A killed connection: the broker notices after the keepalive.
	raw := rawConnect(t, e, "bob/2", "bob", 1)
	defer raw.Close()
	bob.close()
	// bob/2 says nothing more, not even PINGREQ: a half-open connection.
	want(false)
}

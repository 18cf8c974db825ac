package broker_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/hooks"
	"github.com/parley-im/parley/internal/testkit"
)

// Security regressions (issue "Security: forged wills, forged
// acknowledgements, ..."): each test is the attack, over real sockets, and
// fails if the attack works.

// rawWillConnect sends an MQTT 3.1.1 CONNECT with a will (QoS 1, retained)
// for user ("" for an anonymous client) and returns the connection and the
// CONNACK return code.
func rawWillConnect(t testing.TB, e *env, clientID, user, willTopic, willPayload string) (net.Conn, byte) {
	t.Helper()
	flags := byte(0x02 | 0x04 | 0x08 | 0x20) // clean, will, will QoS 1, will retain
	if user != "" {
		flags |= 0xC0
	}
	var body []byte
	body = append(body, mqttStr("MQTT")...)
	body = append(body, 4, flags, 0, 30)
	body = append(body, mqttStr(clientID)...)
	body = append(body, mqttStr(willTopic)...)
	body = append(body, mqttStr(willPayload)...)
	if user != "" {
		body = append(body, mqttStr(user)...)
		body = append(body, mqttStr(testkit.Token(t, user))...)
	}
	return rawConnack(t, e, packet(0x10, body))
}

// forgedMessage looks like a message delivery from carol to bob.
func forgedMessage(seq int64) string {
	return fmt.Sprintf(`{"kind":"message","conv":"dm:bob:carol","seq":%d,"id":"01FORGED","from":"carol","ts":"2026-01-01T00:00:00.000Z","body":"FORGED"}`, seq)
}

// TestWillForgery: a will may never land on Parley's topics (a forged
// message or presence), nor on a plain topic its owner may not publish to;
// such a CONNECT is refused (0x05 / 0x87), and nothing reaches bob.
func TestWillForgery(t *testing.T) {
	acl := withACL(t, "* readwrite chat/#\n* read alerts/#\n")
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s, acl)
		bob := e.dial("bob", "bob", dialOpts{v5: true})
		watch := e.dial("bob/watch", "bob", dialOpts{noSub: true})
		watch.subscribe("alerts/#", 1)
		for _, topic := range []string{"im/inbox/bob", "im/presence/bob", "im/send/u/bob", "im/send/g/g1", "im/read", "alerts/fire", "$SYS/x", "chat/+"} {
			conn, code := rawWillConnect(t, e, "mallory/w1", "mallory", topic, forgedMessage(1))
			if code != 0x05 {
				t.Errorf("will on %s: CONNACK %#x, want 0x05 not authorized", topic, code)
			}
			conn.Close()
		}
		// MQTT 5: 0x87.
		_, ca, err := e.connectV5With(&paho.Connect{ClientID: "mallory/w5", KeepAlive: 30, CleanStart: true,
			Username: "mallory", UsernameFlag: true, Password: []byte(testkit.Token(t, "mallory")), PasswordFlag: true,
			WillMessage: &paho.WillMessage{Topic: "im/inbox/bob", QoS: 1, Payload: []byte(forgedMessage(2))}}, 1)
		if err == nil || ca == nil || ca.ReasonCode != 0x87 {
			t.Errorf("v5 will on im/inbox/bob: %v, %+v; want refused with 0x87", err, ca)
		}

		// A will on a topic the ACL lets mallory write is accepted and sent
		// when the connection dies.
		conn2, code := rawWillConnect(t, e, "mallory/w2", "mallory", "chat/room", `{"left":"mallory"}`)
		if code != 0 {
			t.Fatalf("will on chat/room: CONNACK %#x, want accepted", code)
		}
		watch.subscribe("chat/room", 1)
		conn2.Close()
		if ev := watch.next(); ev.topic != "chat/room" || string(ev.raw) != `{"left":"mallory"}` {
			t.Fatalf("will on chat/room: got %s %q", ev.topic, ev.raw)
		}
		bob.quiet(300 * time.Millisecond)
		// A device of bob connecting now finds no retained forgery.
		fresh := e.dial("bob/fresh", "bob", dialOpts{noSub: true})
		fresh.subscribe("im/presence/bob", 1)
		fresh.subscribe("im/inbox/bob", 1)
		for {
			select {
			case ev := <-fresh.events:
				if strings.Contains(string(ev.raw), "FORGED") || (ev.topic == "im/presence/bob" && !strings.Contains(string(ev.raw), `"online":true`)) {
					t.Fatalf("bob's new device got %s %q", ev.topic, ev.raw)
				}
				continue
			case <-time.After(300 * time.Millisecond):
			}
			break
		}
	})
}

// TestWillForgeryAnonymous: in open mode an anonymous client's will may use
// plain topics, never Parley's.
func TestWillForgeryAnonymous(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t), func(o *broker.Options) { o.Anonymous = true })
	bob := e.dial("bob", "bob", dialOpts{})
	for _, topic := range []string{"im/inbox/bob", "im/presence/bob", "im/send/u/bob"} {
		conn, code := rawWillConnect(t, e, "w-anon", "", topic, forgedMessage(1))
		if code != 0x05 {
			t.Errorf("anonymous will on %s: CONNACK %#x, want 0x05", topic, code)
		}
		conn.Close()
	}
	sub, got := anonV3(t, e, "anon-sub", nil)
	sub.Subscribe("status/#", 1, nil).Wait()
	conn, code := rawWillConnect(t, e, "w-anon2", "", "status/w", "gone")
	if code != 0 {
		t.Fatalf("anonymous will on status/w: CONNACK %#x", code)
	}
	conn.Close()
	if m := recv(t, got); m.Topic() != "status/w" || string(m.Payload()) != "gone" {
		t.Fatalf("got %s %q", m.Topic(), m.Payload())
	}
	bob.quiet(300 * time.Millisecond)
}

// TestForgedAcknowledgement: a look-alike delivery on a plain topic bob
// subscribes to, acknowledged by bob's client, moves no cursor and causes no
// receipt; carol's real messages still reach that device, live and in
// catch-up.
func TestForgedAcknowledgement(t *testing.T) {
	acl := withACL(t, "* readwrite chat/#\n")
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s, acl)
		bob := e.dial("bob/phone", "bob", dialOpts{persistent: true})
		bob.subscribe("chat/room", 1)
		carol := e.dial("carol", "carol", dialOpts{v5: true})
		mallory := e.dial("mallory", "mallory", dialOpts{noSub: true})
		for i := int64(0); i < 50; i++ {
			mallory.send("chat/room", 1, forgedMessage(1000000+i))
		}
		for i := 0; i < 50; i++ {
			if ev := bob.next(); ev.topic != "chat/room" {
				t.Fatalf("bob got %+v, want the look-alike on chat/room", ev)
			}
		}
		carol.send("im/send/u/bob", 1, `{"cid":"real-1","body":"hello bob"}`)
		if ev := bob.nextKind("message"); ev.CID != "real-1" || ev.Seq != 1 {
			t.Fatalf("bob got %+v, want carol's real-1 as seq 1", ev)
		}
		// The forged acks wrote no cursor and sent carol no receipt.
		deadline := time.After(time.Second)
	wait:
		for {
			select {
			case ev := <-carol.events:
				if ev.Kind == "delivered" && ev.Seq != 1 {
					t.Fatalf("carol got a forged receipt %+v", ev)
				}
			case <-deadline:
				break wait
			}
		}
		st, err := s.Device(context.Background(), "bob/phone", "bob")
		if err != nil {
			t.Fatal(err)
		}
		if c := st.Cursors["dm:bob:carol"]; c > 1 {
			t.Fatalf("cursor of bob/phone in dm:bob:carol = %d, moved by forged acknowledgements", c)
		}
		if len(st.Cursors) > 1 {
			t.Fatalf("bob/phone has cursors %v; want only dm:bob:carol", st.Cursors)
		}
		// Offline, then back: the catch-up brings carol's next message.
		bob.close()
		carol.send("im/send/u/bob", 1, `{"cid":"real-2","body":"again"}`)
		bob = e.dial("bob/phone", "bob", dialOpts{persistent: true})
		for {
			ev := bob.nextKind("message")
			if ev.CID == "real-2" {
				if ev.Seq != 2 {
					t.Fatalf("real-2 came as seq %d", ev.Seq)
				}
				break
			}
		}
	})
}

// TestForgedAcknowledgementAnonymous: in open mode an anonymous client's
// look-alikes, acknowledged by bob, write no cursor rows at all.
func TestForgedAcknowledgementAnonymous(t *testing.T) {
	s := testkit.OpenSQLite(t)
	e := setup(t, s, func(o *broker.Options) { o.Anonymous = true })
	bob := e.dial("bob/phone", "bob", dialOpts{})
	bob.subscribe("junk/#", 1)
	pub, _ := anonV3(t, e, "junker", nil)
	for i := 0; i < 100; i++ {
		conv := fmt.Sprintf("dm:bob:u%03d", i)
		payload := fmt.Sprintf(`{"kind":"message","conv":%q,"seq":5,"body":"x"}`, conv)
		if tok := pub.Publish("junk/x", 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	for i := 0; i < 100; i++ {
		bob.next()
	}
	time.Sleep(500 * time.Millisecond) // two cursor flushes
	st, err := s.Device(context.Background(), "bob/phone", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Cursors) != 0 {
		t.Fatalf("anonymous junk wrote %d cursors for bob/phone", len(st.Cursors))
	}
}

// TestShareFilterCase: $SHARE, $Share, ... are the shared-subscription
// prefix too (the broker matches it regardless of case); they never open
// another user's inbox. A shared # is a plain filter, granted in open mode,
// that never delivers Parley's topics.
func TestShareFilterCase(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t), func(o *broker.Options) { o.Anonymous = true })
	c, got := anonV3(t, e, "sharer", nil)
	mallory := e.dial("mallory", "mallory", dialOpts{v5: true})
	if code := c.Subscribe("$sHaRe/g/#", 1, nil); !code.WaitTimeout(5*time.Second) || code.(*pahov3.SubscribeToken).Result()["$sHaRe/g/#"] != 1 {
		t.Errorf("anonymous SUBSCRIBE $sHaRe/g/#: %v", code.(*pahov3.SubscribeToken).Result())
	}
	e.dial("bob", "bob", dialOpts{v5: true}).send("im/send/u/mallory", 1, `{"cid":"c","body":"for mallory"}`)
	mallory.nextKind("message")
	select {
	case m := <-got:
		t.Errorf("a shared # delivered %s", m.Topic())
	case <-time.After(500 * time.Millisecond):
	}
	for _, f := range []string{"$SHARE/g/im/inbox/bob", "$Share/g/im/#", "$share/g/im/inbox/bob"} {
		tok := c.Subscribe(f, 1, nil)
		tok.WaitTimeout(5 * time.Second)
		for _, code := range tok.(*pahov3.SubscribeToken).Result() {
			if code < 0x80 {
				t.Errorf("anonymous SUBSCRIBE %s granted %#x", f, code)
			}
		}
		if code := mallory.subscribe(f, 1); code < 0x80 {
			t.Errorf("mallory SUBSCRIBE %s granted %#x", f, code)
		}
	}
}

// countingStore counts SharesConversation calls on a real store.
type countingStore struct {
	history.Store
	shares atomic.Int64
}

func (c *countingStore) SharesConversation(ctx context.Context, a, b string) (bool, error) {
	c.shares.Add(1)
	return c.Store.SharesConversation(ctx, a, b)
}

// TestPresenceSubscribeLimits: filters beyond the per-SUBSCRIBE cap are
// refused, and a refused presence check is remembered, so a flood of
// presence filters costs the store at most one query per user.
func TestPresenceSubscribeLimits(t *testing.T) {
	s := &countingStore{Store: testkit.OpenSQLite(t)}
	e := setup(t, s)
	mallory := e.dial("mallory", "mallory", dialOpts{v5: true, noSub: true})
	var subs []paho.SubscribeOptions
	for i := 0; i < hooks.DefaultMaxSubscribeFilters+50; i++ {
		subs = append(subs, paho.SubscribeOptions{Topic: fmt.Sprintf("im/presence/u%d", i), QoS: 1})
	}
	for round := 0; round < 3; round++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		sa, err := mallory.v5.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
		cancel()
		if sa == nil {
			t.Fatalf("subscribe: %v", err)
		}
		for i, code := range sa.Reasons {
			want := byte(0x87)
			if i >= hooks.DefaultMaxSubscribeFilters {
				want = 0x8F
			}
			if code != want {
				t.Fatalf("round %d filter %d: %#x, want %#x", round, i, code, want)
			}
		}
	}
	if n := s.shares.Load(); n != hooks.DefaultMaxSubscribeFilters {
		t.Fatalf("%d store queries for 3 rounds of %d presence filters; want %d", n, len(subs), hooks.DefaultMaxSubscribeFilters)
	}
}

// TestMaxDevices: a user's sessions beyond MaxDevices are refused (0x97, or
// 0x03 for MQTT 3.1.1); taking a session over does not count; a device that
// left makes room.
func TestMaxDevices(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t), func(o *broker.Options) { o.MaxDevices = 2 })
	d1 := e.dial("alice/d1", "alice", dialOpts{})
	e.dial("alice/d2", "alice", dialOpts{v5: true})
	if _, code := rawConnack(t, e, connectPacket(t, "alice/d3", "alice", 30, 0)); code != 0x03 {
		t.Fatalf("third device (v3): CONNACK 0x%02x; want 0x03", code)
	}
	c5, ca, err := e.connectV5("alice/d4", "alice", testkit.Token(t, "alice"))
	if err == nil || ca == nil || ca.ReasonCode != 0x97 {
		t.Fatalf("third device (v5): %v %+v; want 0x97", err, ca)
	}
	_ = c5
	// Taking d1 over is fine.
	d1b := e.dial("alice/d1", "alice", dialOpts{})
	// Others are unaffected.
	e.dial("bob", "bob", dialOpts{})
	d1b.close()
	_ = d1
	time.Sleep(200 * time.Millisecond)
	e.dial("alice/d3", "alice", dialOpts{})
}

// TestMaxConnections: sessions beyond MaxConnections on the node are
// refused cleanly with a CONNACK (0x89 server busy; MQTT 3.1.1: 0x03
// server unavailable), before the process could run out of descriptors; a
// session that left makes room.
func TestMaxConnections(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t), func(o *broker.Options) { o.MaxConnections = 2 })
	e.dial("alice", "alice", dialOpts{})
	bob := e.dial("bob", "bob", dialOpts{v5: true})
	if _, code := rawConnack(t, e, connectPacket(t, "carol", "carol", 30, 0)); code != 0x03 {
		t.Fatalf("third session (v3): CONNACK 0x%02x; want 0x03", code)
	}
	if _, ca, err := e.connectV5("dave", "dave", testkit.Token(t, "dave")); err == nil || ca == nil || ca.ReasonCode != 0x89 {
		t.Fatalf("third session (v5): %v %+v; want 0x89", err, ca)
	}
	bob.close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, _, err := e.connectV5("dave", "dave", testkit.Token(t, "dave"))
		if err == nil {
			c.close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no room after bob left: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rawPublishes reads MQTT PUBLISH packets from conn, waiting up to wait for
// the first and until nothing came for idle, returning their packet ids
// (QoS > 0) and payloads; other packets are skipped.
func rawPublishes(t testing.TB, r *bufio.Reader, conn net.Conn, wait, idle time.Duration) (ids []uint16, payloads [][]byte) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(wait))
	defer conn.SetReadDeadline(time.Time{})
	for {
		if len(payloads) > 0 && r.Buffered() == 0 {
			conn.SetReadDeadline(time.Now().Add(idle))
		}
		h, err := r.ReadByte()
		if err != nil {
			return
		}
		n, mul := 0, 1
		for {
			b, err := r.ReadByte()
			if err != nil {
				return
			}
			n += int(b&0x7f) * mul
			mul *= 128
			if b&0x80 == 0 {
				break
			}
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatalf("short packet: %v", err)
		}
		if h>>4 != 3 {
			continue
		}
		tl := int(binary.BigEndian.Uint16(body))
		rest := body[2+tl:]
		if (h>>1)&3 > 0 {
			ids = append(ids, binary.BigEndian.Uint16(rest))
			rest = rest[2:]
		}
		payloads = append(payloads, rest)
	}
}

// silentDevice connects a raw MQTT 3.1.1 client for user that subscribes to
// its inbox at QoS 1 and never acknowledges anything.
func silentDevice(t testing.TB, e *env, clientID, user string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn := rawConnect(t, e, clientID, user, 60)
	t.Cleanup(func() { conn.Close() })
	sub := append([]byte{0, 1}, mqttStr("im/inbox/"+user)...)
	if _, err := conn.Write(packet(0x82, append(sub, 1))); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

// TestInflightBytesBounded: a device that never acknowledges holds at most
// DeviceInflightBytes of deliveries (plus one), the devices of one user at
// most UserInflightBytes; acknowledging lets the rest through.
func TestInflightBytesBounded(t *testing.T) {
	const body = 30000
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s, func(o *broker.Options) {
			o.DeviceInflightBytes = 100_000
			o.UserInflightBytes = 150_000
		})
		c1, r1 := silentDevice(t, e, "bob/a", "bob")
		c2, r2 := silentDevice(t, e, "bob/b", "bob")
		time.Sleep(300 * time.Millisecond) // both caught up (nothing to send)
		alice := e.dial("alice", "alice", dialOpts{v5: true, noSub: true})
		big := strings.Repeat("x", body)
		const sent = 20
		for i := 0; i < sent; i++ {
			alice.send("im/send/u/bob", 1, fmt.Sprintf(`{"cid":"c%d","body":%q}`, i, big))
		}
		ids1, first := rawPublishes(t, r1, c1, 5*time.Second, time.Second)
		ids2, _ := rawPublishes(t, r2, c2, 5*time.Second, 300*time.Millisecond)
		// Per device: 3 fit in 100,000 bytes and a 4th never starts; per
		// user: 150,000 bytes are 5 deliveries, plus one per device.
		if len(ids1) > 4 || len(ids2) > 4 || len(ids1)+len(ids2) > 6 {
			t.Fatalf("deliveries in flight without acknowledgement: %d and %d; want at most 4 each and 6 together", len(ids1), len(ids2))
		}
		if len(ids1) == 0 || len(ids2) == 0 {
			t.Fatalf("a device got nothing: %d and %d", len(ids1), len(ids2))
		}
		// Acknowledging everything brings all 20 to device a, in order.
		var cids []string
		record := func(ps [][]byte) {
			for _, p := range ps {
				var ev event
				mustUnmarshal(t, p, &ev)
				cids = append(cids, ev.CID)
			}
		}
		record(first)
		for len(cids) < sent {
			for _, id := range ids1 {
				c1.Write([]byte{0x40, 2, byte(id >> 8), byte(id)})
			}
			var more [][]byte
			ids1, more = rawPublishes(t, r1, c1, 10*time.Second, 200*time.Millisecond)
			if len(ids1) == 0 {
				t.Fatalf("device a stalled after %d of %d deliveries", len(cids), sent)
			}
			record(more)
		}
		for i, cid := range cids {
			if cid != fmt.Sprintf("c%d", i) {
				t.Fatalf("device a got %v, want c0..c%d in order", cids, sent-1)
			}
		}
	})
}

package broker_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

// TestDirect: v3 and v5 clients at QoS 1 and 2 exchange direct messages;
// every device of both users receives every message once, in seq order, with
// the right from (a spoofed "from" in the payload is ignored).
func TestDirect(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		alice3 := e.dialV3("alice/phone", "alice")
		alice5 := e.dialV5("alice/laptop", "alice")
		bob3 := e.dialV3("bob", "bob")
		bob5 := e.dialV5("bob/tablet", "bob")
		const n = 10
		for i := 0; i < n; i++ {
			sender, to := alice3, "bob"
			switch i % 4 {
			case 1:
				sender = alice5
			case 2:
				sender, to = bob3, "alice"
			case 3:
				sender, to = bob5, "alice"
			}
			qos := byte(1 + i%2)
			sender.send("im/send/u/"+to, qos, fmt.Sprintf(`{"cid":"c%d","body":{"n":%d},"from":"mallory"}`, i, i))
		}
		for _, c := range []*client{alice3, alice5, bob3, bob5} {
			for i := 0; i < n; i++ {
				ev := c.nextKind("message")
				want := "alice"
				if i%4 >= 2 {
					want = "bob"
				}
				if ev.Conv != "dm:alice:bob" || ev.Seq != int64(i+1) || ev.From != want || ev.CID != fmt.Sprintf("c%d", i) ||
					string(ev.Body) != fmt.Sprintf(`{"n":%d}`, i) || ev.Type != "text" || ev.ID == "" || ev.qos != 1 {
					t.Fatalf("%s message %d = %+v", c.id, i, ev)
				}
				if _, err := time.Parse("2006-01-02T15:04:05.000Z", ev.TS); err != nil {
					t.Fatalf("ts %q: %v", ev.TS, err)
				}
			}
			c.quiet(100 * time.Millisecond)
		}
	})
}

// TestGroup: a group created over REST; members (v3 and v5) exchange
// messages; a stranger cannot send; membership changes are messages.
func TestGroup(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s)
		alice, bob, carol := e.dialV5("alice", "alice"), e.dialV3("bob/1", "bob"), e.dialV3("carol", "carol")
		var g struct {
			ID, Conv string
			Members  []history.Member
		}
		if code := e.do("POST", "/v1/groups", "alice", `{"id":"team","name":"The Team","members":["bob","carol"]}`, &g); code != 201 {
			t.Fatalf("create group: %d", code)
		}
		if g.ID != "team" || g.Conv != "g:team" || len(g.Members) != 3 {
			t.Fatalf("group = %+v", g)
		}
		for _, c := range []*client{alice, bob, carol} {
			if ev := c.nextKind("message"); ev.Type != "group.created" || ev.Seq != 1 || ev.From != "alice" {
				t.Fatalf("%s: %+v", c.id, ev)
			}
		}
		alice.send("im/send/g/team", 2, `{"cid":"a1","body":"hello team"}`)
		bob.send("im/send/g/team", 1, `{"cid":"b1","body":"hi"}`)
		carol.send("im/send/g/team", 2, `{"body":"yo"}`)
		for _, c := range []*client{alice, bob, carol} {
			for i, from := range []string{"alice", "bob", "carol"} {
				ev := c.nextKind("message")
				if ev.Conv != "g:team" || ev.Seq != int64(i+2) || ev.From != from {
					t.Fatalf("%s: message %d = %+v", c.id, i, ev)
				}
			}
		}
		// A stranger gets not_member and 0x87; nobody receives anything.
		dave := e.dialV5("dave", "dave")
		code, _ := dave.publish("im/send/g/team", 1, `{"cid":"d1","body":"let me in"}`)
		if code != 0x87 {
			t.Fatalf("stranger's PUBACK = %#x, want 0x87", code)
		}
		if ev := dave.nextKind("error"); ev.Code != "not_member" || ev.CID != "d1" {
			t.Fatalf("stranger's error = %+v", ev)
		}
		// Removing carol: everyone, carol included, gets member.removed; then
		// carol can no longer send.
		if code := e.do("DELETE", "/v1/groups/team/members/carol", "alice", "", nil); code != 200 {
			t.Fatalf("remove carol: %d", code)
		}
		for _, c := range []*client{alice, bob, carol} {
			ev := c.nextKind("message")
			if ev.Type != "member.removed" || ev.Seq != 5 || ev.From != "alice" || !strings.Contains(string(ev.Body), `"carol"`) {
				t.Fatalf("%s: %+v", c.id, ev)
			}
		}
		if _, err := carol.publish("im/send/g/team", 1, `{"cid":"c2","body":"still here?"}`); err != nil {
			t.Fatalf("v3 publish after removal should be acked: %v", err)
		}
		if ev := carol.nextKind("error"); ev.Code != "not_member" {
			t.Fatalf("carol's error = %+v", ev)
		}
		alice.send("im/send/g/team", 1, `{"body":"bye carol"}`)
		if ev := bob.nextKind("message"); ev.Seq != 6 {
			t.Fatalf("bob: %+v", ev)
		}
		carol.quiet(200 * time.Millisecond)
		msgs, err := s.Messages(context.Background(), "g:team", 0, 100)
		if err != nil || len(msgs) != 6 {
			t.Fatalf("stored %d messages (%v), want 6", len(msgs), err)
		}
	})
}

// TestIdempotent: the same cid sent again (as a DUP resend or an app retry)
// is stored once, keeps its seq, is echoed to the sender again and is not
// delivered to the recipient twice.
func TestIdempotent(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		alice, bob := e.dialV5("alice", "alice"), e.dialV3("bob", "bob")
		alice.send("im/send/u/bob", 1, `{"cid":"x","body":"once"}`)
		first := alice.nextKind("message")
		bob.nextKind("message")
		for _, qos := range []byte{1, 2, 1} {
			alice.send("im/send/u/bob", qos, `{"cid":"x","body":"once"}`)
			again := alice.nextKind("message")
			if again.Seq != first.Seq || again.ID != first.ID {
				t.Fatalf("retry echo = %+v, want seq %d id %s", again, first.Seq, first.ID)
			}
		}
		bob.quiet(200 * time.Millisecond)
		alice.send("im/send/u/bob", 1, `{"cid":"y","body":"twice"}`)
		if ev := bob.nextKind("message"); ev.Seq != 2 || ev.CID != "y" {
			t.Fatalf("next message = %+v", ev)
		}
	})
}

// TestEphemeral: ephemeral sends reach online members who are contacts
// (here: they share a group) at QoS 0, are not stored and take no seq; to a
// stranger they are accepted and reach nobody.
func TestEphemeral(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s)
		alice, bob := e.dialV5("alice", "alice"), e.dialV5("bob", "bob")
		carol := e.dialV5("carol", "carol")
		e.do("POST", "/v1/groups", "alice", `{"id":"pair","name":"P","members":["bob"]}`, nil)
		alice.nextKind("message") // group.created
		alice.send("im/send/u/carol", 1, `{"type":"typing","body":true,"ephemeral":true}`)
		alice.send("im/send/u/bob", 1, `{"type":"typing","body":true,"ephemeral":true}`)
		ev := bob.nextKind("ephemeral")
		if ev.Kind != "ephemeral" || ev.From != "alice" || ev.Conv != "dm:alice:bob" || ev.Seq != 0 || ev.Type != "typing" || ev.qos != 0 {
			t.Fatalf("ephemeral = %+v", ev)
		}
		alice.quiet(100 * time.Millisecond)
		alice.send("im/send/u/bob", 1, `{"body":"real"}`)
		if ev := bob.nextKind("message"); ev.Seq != 1 {
			t.Fatalf("first stored message has seq %d", ev.Seq)
		}
		msgs, _ := s.Messages(context.Background(), "dm:alice:bob", 0, 10)
		if len(msgs) != 1 {
			t.Fatalf("stored %d messages, want 1", len(msgs))
		}
		carol.quiet(200 * time.Millisecond) // a stranger sees no typing
	})
}

// TestSendErrors: every send that can never succeed is refused with its code
// and reason, is not stored, and reaches nobody.
func TestSendErrors(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s, func(o *brokerOptions) { o.MaxPayload = 1024 })
		alice5, alice3 := e.dialV5("alice/5", "alice"), e.dialV3("alice/3", "alice")
		bob := e.dialV5("bob", "bob")
		big := `{"cid":"big","body":"` + strings.Repeat("x", 2000) + `"}`
		cases := []struct {
			name, topic, payload, code string
			reason                     byte
		}{
			{"NotJSON", "im/send/u/bob", `hello`, "invalid_payload", 0x99},
			{"NotObject", "im/send/u/bob", `[1,2]`, "invalid_payload", 0x99},
			{"NoBody", "im/send/u/bob", `{"cid":"nb"}`, "invalid_payload", 0x99},
			{"NullBody", "im/send/u/bob", `{"cid":"nb","body":null}`, "invalid_payload", 0x99},
			{"LongCID", "im/send/u/bob", `{"cid":"` + strings.Repeat("c", 65) + `","body":1}`, "invalid_payload", 0x99},
			{"LongType", "im/send/u/bob", `{"type":"` + strings.Repeat("t", 33) + `","body":1}`, "invalid_payload", 0x99},
			{"ReservedType", "im/send/u/bob", `{"type":"member.added","body":{"user":"alice"}}`, "invalid_payload", 0x99},
			{"BadUTF8", "im/send/u/bob", "{\"body\":\"\xff\"}", "invalid_payload", 0x99},
			{"NULInCID", "im/send/u/bob", `{"cid":"a\u0000b","body":"x"}`, "invalid_payload", 0x99},
			{"NULInType", "im/send/u/bob", `{"type":"x\u0000","body":"x"}`, "invalid_payload", 0x99},
			{"TooLarge", "im/send/u/bob", big, "too_large", 0x99},
			{"InvalidPeer", "im/send/u/b*b", `{"body":1}`, "invalid_peer", 0x90},
			{"Self", "im/send/u/alice", `{"body":1}`, "invalid_peer", 0x90},
			{"NoSuchGroup", "im/send/g/nope", `{"cid":"g","body":1}`, "no_such_group", 0x87},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				code, err := alice5.publish(tc.topic, 1, tc.payload)
				if err != nil || code != tc.reason {
					t.Fatalf("v5 PUBACK = %#x (%v), want %#x", code, err, tc.reason)
				}
				if ev := alice5.nextKind("error"); ev.Code != tc.code {
					t.Fatalf("v5 error event = %+v, want %s", ev, tc.code)
				}
				// v3 gets a normal PUBACK (so it stops resending) and the event.
				if _, err := alice3.publish(tc.topic, 1, tc.payload); err != nil {
					t.Fatalf("v3 publish: %v", err)
				}
				if ev := alice3.nextKind("error"); ev.Code != tc.code {
					t.Fatalf("v3 error event = %+v, want %s", ev, tc.code)
				}
				// QoS 2 on v5: a failed PUBREC.
				code, err = alice5.publish(tc.topic, 2, tc.payload)
				if err != nil || code != tc.reason {
					t.Fatalf("v5 PUBREC = %#x (%v), want %#x", code, err, tc.reason)
				}
				alice5.nextKind("error")
			})
		}
		bob.quiet(200 * time.Millisecond)
		msgs, _ := s.Messages(context.Background(), "dm:alice:bob", 0, 10)
		if len(msgs) != 0 {
			t.Fatalf("stored %d messages, want none", len(msgs))
		}
	})
}

// TestRateLimit: beyond the burst, sends are refused with 0x97 and
// rate_limited.
func TestRateLimit(t *testing.T) {
	s := testkit.OpenSQLite(t)
	e := setup(t, s, func(o *brokerOptions) { o.Rate, o.Burst = 1, 3 })
	alice := e.dialV5("alice", "alice")
	var limited int
	for i := 0; i < 6; i++ {
		code, err := alice.publish("im/send/u/bob", 1, fmt.Sprintf(`{"cid":"%d","body":1}`, i))
		if err != nil {
			t.Fatal(err)
		}
		if code == 0x97 {
			limited++
			if ev := alice.nextKind("error"); ev.Code != "rate_limited" {
				t.Fatalf("error = %+v", ev)
			}
		}
	}
	if limited < 2 {
		t.Fatalf("%d of 6 sends limited, want at least 2 with a burst of 3", limited)
	}
	msgs, _ := s.Messages(context.Background(), "dm:alice:bob", 0, 10)
	if len(msgs) != 6-limited {
		t.Fatalf("stored %d, want %d", len(msgs), 6-limited)
	}
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d: a refused send took a seq", i, m.Seq)
		}
	}
}

// TestDupResend: a QoS 1 PUBLISH re-sent with the DUP flag and the same cid
// (as a client does after a lost PUBACK) is stored once and keeps its seq;
// the recipient gets it once.
func TestDupResend(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s)
		bob := e.dial("bob", "bob", dialOpts{v5: true})
		conn := rawConnect(t, e, "alice/raw", "alice", 30)
		defer conn.Close()
		pub := publishPacket("im/send/u/bob", 1, `{"cid":"dup-1","body":"once"}`) // packet id 1
		dup := append([]byte{pub[0] | 0x08}, pub[1:]...)                          // the DUP flag
		for i, p := range [][]byte{pub, dup, dup} {
			if _, err := conn.Write(p); err != nil {
				t.Fatal(err)
			}
			ack := make([]byte, 4)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(conn, ack); err != nil || ack[0] != 0x40 || ack[3] != 1 {
				t.Fatalf("send %d: PUBACK %x, %v", i, ack, err)
			}
		}
		if ev := bob.nextKind("message"); ev.Seq != 1 || ev.CID != "dup-1" {
			t.Fatalf("bob got %+v", ev)
		}
		bob.quiet(300 * time.Millisecond)
		msgs, err := s.Messages(context.Background(), "dm:alice:bob", 0, 10)
		if err != nil || len(msgs) != 1 || msgs[0].Seq != 1 {
			t.Fatalf("stored %d messages (%v), want 1 with seq 1", len(msgs), err)
		}
	})
}

// TestReaddedMemberSeesNothingFromAway: a member removed and added back gets
// neither live nor caught-up messages sent while they were not a member.
func TestReaddedMemberSeesNothingFromAway(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		alice := e.dial("alice", "alice", dialOpts{v5: true})
		carol := e.dial("carol", "carol", dialOpts{})
		e.do("POST", "/v1/groups", "alice", `{"id":"g","name":"G","members":["carol"]}`, nil) // 1
		alice.send("im/send/g/g", 1, `{"body":"before"}`)                                     // 2
		for seq := int64(1); seq <= 2; seq++ {
			if ev := carol.nextKind("message"); ev.Seq != seq {
				t.Fatalf("carol got %+v, want seq %d", ev, seq)
			}
		}
		e.do("DELETE", "/v1/groups/g/members/carol", "alice", "", nil) // 3
		if ev := carol.nextKind("message"); ev.Type != "member.removed" || ev.Seq != 3 {
			t.Fatalf("carol got %+v", ev)
		}
		carol.close()
		alice.send("im/send/g/g", 1, `{"body":"secret while away"}`) // 4
		carol = e.dial("carol", "carol", dialOpts{})
		e.do("PUT", "/v1/groups/g/members/carol", "alice", `{"role":"member"}`, nil) // 5
		alice.send("im/send/g/g", 1, `{"body":"welcome back"}`)                      // 6
		// Messages from before the removal may come again (the cursor is
		// written every 200ms); seq 4 must never come.
		for got6 := false; !got6; {
			ev := carol.nextKind("message")
			if ev.Seq == 4 || strings.Contains(string(ev.Body), "secret") {
				t.Fatalf("carol got %+v, sent while she was not a member", ev)
			}
			got6 = ev.Seq == 6
		}
		for {
			select {
			case ev := <-carol.events:
				if ev.Kind == "message" && ev.Seq == 4 {
					t.Fatalf("carol got seq 4 late: %+v", ev)
				}
				continue
			case <-time.After(300 * time.Millisecond):
			}
			break
		}
	})
}

// TestResubscribe: unsubscribing from the inbox and subscribing again on the
// same connection resumes delivery, with what was sent meanwhile.
func TestResubscribe(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t))
	bob := e.dial("bob", "bob", dialOpts{v5: true})
	alice := e.dial("alice", "alice", dialOpts{noSub: true})
	alice.send("im/send/u/bob", 1, `{"body":1}`)
	bob.nextKind("message")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := bob.v5.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"im/inbox/bob"}}); err != nil {
		t.Fatal(err)
	}
	alice.send("im/send/u/bob", 1, `{"body":2}`)
	bob.quiet(200 * time.Millisecond)
	bob.subscribe("im/inbox/bob", 1)
	alice.send("im/send/u/bob", 1, `{"body":3}`)
	for _, want := range []int64{2, 3} {
		if ev := bob.nextKind("message"); ev.Seq != want {
			t.Fatalf("got seq %d, want %d", ev.Seq, want)
		}
	}
}

// TestTooLargeForClient: a delivery larger than a v5 client's Maximum Packet
// Size is skipped; the client stays connected and gets the next message.
func TestTooLargeForClient(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t))
	conn := mustDial(t, e.mqtt)
	got := make(chan event, 10)
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			got <- parseEvent(t, pr.Packet.Topic, pr.Packet.QoS, pr.Packet.Payload)
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	maxSize := uint32(600)
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "bob/tiny", KeepAlive: 30, CleanStart: true, Username: "bob", UsernameFlag: true,
		Password: []byte(testkit.Token(t, "bob")), PasswordFlag: true, Properties: &paho.ConnectProperties{MaximumPacketSize: &maxSize}}); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "im/inbox/bob", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	alice := e.dial("alice", "alice", dialOpts{noSub: true})
	alice.send("im/send/u/bob", 1, `{"body":"`+strings.Repeat("x", 1000)+`"}`)
	alice.send("im/send/u/bob", 1, `{"body":"small"}`)
	select {
	case ev := <-got:
		if ev.Seq != 2 {
			t.Fatalf("got %+v, want seq 2", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the small message did not arrive")
	}
}

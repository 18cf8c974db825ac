package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

// TestReaddedMemberSeesNothingFromAway: a member removed and added back gets
// neither live nor caught-up messages sent while they were not a member.
func TestReaddedMemberSeesNothingFromAway(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s)
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

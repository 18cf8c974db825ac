package broker_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/internal/testkit"
)

// anonV3 connects an MQTT 3.1.1 client without credentials.
func anonV3(t *testing.T, e *env, id string, o *pahov3.ClientOptions) (pahov3.Client, chan pahov3.Message) {
	t.Helper()
	got := make(chan pahov3.Message, 100)
	if o == nil {
		o = pahov3.NewClientOptions()
	}
	o.AddBroker("tcp://" + e.mqtt).SetClientID(id).SetAutoReconnect(false).
		SetDefaultPublishHandler(func(_ pahov3.Client, m pahov3.Message) { got <- m })
	c := pahov3.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("anonymous connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, got
}

func recv(t *testing.T, ch chan pahov3.Message) pahov3.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("nothing received")
	}
	return nil
}

// TestAnonymousMode: clients without credentials use topics outside im/ as a
// plain broker (QoS 0/1/2, retained, wills, shared subscriptions), never
// Parley's topics, and never a user's session.
func TestAnonymousMode(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t), func(o *broker.Options) { o.Anonymous = true })
	sub, got := anonV3(t, e, "sensor-sub", nil)
	pub, _ := anonV3(t, e, "sensor-pub", nil)
	sub.Subscribe("sensors/#", 2, nil).Wait()
	for qos := byte(0); qos <= 2; qos++ {
		if tok := pub.Publish("sensors/kitchen", qos, false, []byte{'0' + qos}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish QoS %d: %v", qos, tok.Error())
		}
		if m := recv(t, got); m.Topic() != "sensors/kitchen" || m.Payload()[0] != '0'+qos || m.Qos() != qos {
			t.Fatalf("QoS %d: got %s %q qos %d", qos, m.Topic(), m.Payload(), m.Qos())
		}
	}
	// Retained messages reach later subscribers. sub receives the publish
	// live first: mochi routes a publish after its PUBACK, so without this a
	// subscriber that comes fast enough gets the live copy (not retained)
	// before the retained one.
	sub.Subscribe("status/#", 1, nil).Wait()
	pub.Publish("status/boiler", 1, true, "on").Wait()
	if m := recv(t, got); string(m.Payload()) != "on" || m.Retained() {
		t.Fatalf("live: %q retained=%v", m.Payload(), m.Retained())
	}
	late, lateGot := anonV3(t, e, "late", nil)
	late.Subscribe("status/+", 1, nil).Wait()
	if m := recv(t, lateGot); string(m.Payload()) != "on" || !m.Retained() {
		t.Fatalf("retained: %q retained=%v", m.Payload(), m.Retained())
	}
	// A will is published when a client vanishes.
	conn, err := net.Dial("tcp", e.mqtt)
	if err != nil {
		t.Fatal(err)
	}
	wc := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := wc.Connect(ctx, &paho.Connect{ClientID: "willing", KeepAlive: 30, CleanStart: true,
		WillMessage: &paho.WillMessage{Topic: "sensors/will", Payload: []byte("gone"), QoS: 1}}); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if m := recv(t, got); m.Topic() != "sensors/will" || string(m.Payload()) != "gone" {
		t.Fatalf("will: %s %q", m.Topic(), m.Payload())
	}
	// Shared subscriptions: one of the group gets each message.
	s1, g1 := anonV3(t, e, "worker-1", nil)
	s2, g2 := anonV3(t, e, "worker-2", nil)
	s1.Subscribe("$share/workers/jobs", 1, nil).Wait()
	s2.Subscribe("$share/workers/jobs", 1, nil).Wait()
	for i := 0; i < 10; i++ {
		pub.Publish("jobs", 1, false, fmt.Sprintf("job-%d", i)).Wait()
	}
	testkit.Eventually(t, 10*time.Second, func() bool { return len(g1)+len(g2) >= 10 })
	jobs := map[string]int{}
	for len(g1)+len(g2) > 0 {
		select {
		case m := <-g1:
			jobs[string(m.Payload())]++
		case m := <-g2:
			jobs[string(m.Payload())]++
		}
	}
	for i := 0; i < 10; i++ {
		if job := fmt.Sprintf("job-%d", i); jobs[job] != 1 {
			t.Fatalf("shared subscription delivered %s %d times, want once (all: %v)", job, jobs[job], jobs)
		}
	}
	if len(jobs) != 10 {
		t.Fatalf("shared subscription delivered %v, want job-0..job-9", jobs)
	}

	// Parley's topics stay closed.
	v5 := paho.NewClient(paho.ClientConfig{Conn: mustDial(t, e.mqtt)})
	if _, err := v5.Connect(ctx, &paho.Connect{ClientID: "nosy", KeepAlive: 30, CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	defer v5.Disconnect(&paho.Disconnect{})
	for _, f := range []string{"im/inbox/alice", "im/#", "im/presence/alice"} {
		sa, _ := v5.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: f, QoS: 1}}})
		if sa == nil || sa.Reasons[0] != 0x87 {
			t.Fatalf("anonymous subscribe %s: %+v", f, sa)
		}
	}
	// Filters that begin with a wildcard are plain: granted, and never
	// deliver Parley's topics (TestWildcardsNeverDeliverParley).
	for _, f := range []string{"#", "+/inbox/alice"} {
		sa, _ := v5.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: f, QoS: 1}}})
		if sa == nil || sa.Reasons[0] != 1 {
			t.Fatalf("anonymous subscribe %s: %+v", f, sa)
		}
	}
	if pr, _ := v5.Publish(ctx, &paho.Publish{Topic: "im/send/u/alice", QoS: 1, Payload: []byte(`{"body":1}`)}); pr == nil || pr.ReasonCode != 0x87 {
		t.Fatalf("anonymous send: %+v", pr)
	}

	// An anonymous client named like a user does not take over the user.
	alice := e.dial("alice", "alice", dialOpts{v5: true})
	anonV3(t, e, "alice", nil)
	e.dial("bob", "bob", dialOpts{}).send("im/send/u/alice", 1, `{"body":"still yours"}`)
	if ev := alice.nextKind("message"); ev.From != "bob" {
		t.Fatalf("alice got %+v", ev)
	}
	// Credentials are still checked when given.
	if _, _, err := e.connectV5("alice/x", "alice", "forged"); err == nil {
		t.Fatal("a bad token was accepted in open mode")
	}
}

// TestNoAnonymousByDefault: without open mode, credentials are required.
func TestNoAnonymousByDefault(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t))
	_, ca, err := e.connectV5("sensor", "", "")
	if err == nil || ca == nil || ca.ReasonCode != 0x86 {
		t.Fatalf("anonymous connect: %+v, %v", ca, err)
	}
}

func mustDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

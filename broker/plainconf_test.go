package broker_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/internal/testkit"
)

// One test per behaviour the Eclipse Paho interoperability suites check
// (interoperability/client_test.py and client_test5.py), against a broker
// in open mode with the suites' ACL: everything but test/nosubscribe.
// scripts/paho-suite.sh runs the suites themselves when they are present.

func pahoSetup(t *testing.T) *env {
	t.Helper()
	return setup(t, testkit.OpenSQLite(t), func(o *broker.Options) { o.Anonymous = true },
		withACL(t, "* deny test/nosubscribe\n* readwrite #\n* readwrite $TopicA/#\n"))
}

func TestPahoRetainedMessages(t *testing.T) {
	e := pahoSetup(t)
	pub, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "pub", CleanStart: true})
	for i, topic := range []string{"TopicA", "TopicA/B", "Topic/C"} {
		pub.pub(&paho.Publish{Topic: topic, QoS: byte(i), Retain: true, Payload: []byte("qos " + topic)})
	}
	time.Sleep(100 * time.Millisecond)
	sub, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "sub", CleanStart: true})
	sub.subs("+/+", "TopicA")
	got := map[string]bool{}
	for _, m := range sub.drain(time.Second) {
		if !m.Retain {
			t.Errorf("%s arrived without the retain flag", m.Topic)
		}
		got[m.Topic] = true
	}
	if len(got) != 3 {
		t.Fatalf("retained messages: got %v, want TopicA, TopicA/B, Topic/C", got)
	}
	// An empty retained payload clears the message.
	for _, topic := range []string{"TopicA", "TopicA/B", "Topic/C"} {
		pub.pub(&paho.Publish{Topic: topic, QoS: 1, Retain: true})
	}
	late, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "late", CleanStart: true})
	late.subs("#")
	for _, m := range late.drain(500 * time.Millisecond) {
		if m.Retain { // (a live delivery of the clearing publish may come)
			t.Errorf("a cleared retained message came back: %s %q", m.Topic, m.Payload)
		}
	}
}

// TestPahoOfflineQueueing: MQTT 3.1.1, a persistent session gets what was
// published at QoS 1 and 2 while it was away.
func TestPahoOfflineQueueing(t *testing.T) {
	e := pahoSetup(t)
	o := pahov3.NewClientOptions().SetCleanSession(false)
	c, _ := anonV3(t, e, "offline", o)
	c.Subscribe("TopicA/#", 2, nil).Wait()
	c.Disconnect(100)
	pub, _ := anonV3(t, e, "pub3", nil)
	for i := 0; i < 3; i++ {
		pub.Publish("TopicA/B", byte(i), false, fmt.Sprintf("m%d", i)).Wait()
	}
	_, got := anonV3(t, e, "offline", pahov3.NewClientOptions().SetCleanSession(false))
	// QoS 0 messages may be dropped; QoS 1 and 2 must arrive, in order.
	var payloads []string
	for end := time.After(2 * time.Second); ; {
		select {
		case m := <-got:
			payloads = append(payloads, string(m.Payload()))
			continue
		case <-end:
		}
		break
	}
	if n := len(payloads); n < 2 || payloads[n-2] != "m1" || payloads[n-1] != "m2" {
		t.Fatalf("queued: %v, want ... m1 m2", payloads)
	}
}

func TestPahoUnsubscribe(t *testing.T) {
	e := pahoSetup(t)
	c, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "unsub", CleanStart: true})
	c.subs("TopicA/B", "TopicA/C", "TopicA/#")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.c.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"TopicA/B", "TopicA/#"}}); err != nil {
		t.Fatal(err)
	}
	c.pub(&paho.Publish{Topic: "TopicA/B", QoS: 1, Payload: []byte("b")})
	c.pub(&paho.Publish{Topic: "TopicA/C", QoS: 1, Payload: []byte("c")})
	if m := c.next(); m.Topic != "TopicA/C" {
		t.Fatalf("got %s, want TopicA/C only", m.Topic)
	}
	c.none(300 * time.Millisecond)
}

// TestPahoDollarTopics: # and + at the first level do not match $ topics.
func TestPahoDollarTopics(t *testing.T) {
	e := pahoSetup(t)
	c, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "dollar", CleanStart: true})
	c.subs("#", "+/+")
	c.drain(200 * time.Millisecond)
	c.pub(&paho.Publish{Topic: "$TopicA/B", QoS: 1, Payload: []byte("x")})
	for _, m := range c.drain(500 * time.Millisecond) {
		if m.Topic[0] == '$' {
			t.Fatalf("a wildcard matched %s", m.Topic)
		}
	}
	c.subs("$TopicA/+")
	c.pub(&paho.Publish{Topic: "$TopicA/B", QoS: 1, Payload: []byte("x")})
	if m := c.next(); m.Topic != "$TopicA/B" {
		t.Fatalf("got %s", m.Topic)
	}
}

func TestPahoSubscribeOptions(t *testing.T) {
	e := pahoSetup(t)
	c, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "opts", CleanStart: true})
	t.Run("NoLocal", func(t *testing.T) {
		c.sub(paho.SubscribeOptions{Topic: "TopicA", QoS: 1, NoLocal: true})
		other, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "other", CleanStart: true})
		other.subs("TopicA")
		c.pub(&paho.Publish{Topic: "TopicA", QoS: 1, Payload: []byte("own")})
		if m := other.next(); string(m.Payload) != "own" {
			t.Fatalf("other got %q", m.Payload)
		}
		c.none(300 * time.Millisecond)
	})
	t.Run("RetainAsPublished", func(t *testing.T) {
		c.sub(paho.SubscribeOptions{Topic: "TopicA/B", QoS: 1, RetainAsPublished: true})
		c.sub(paho.SubscribeOptions{Topic: "TopicA/C", QoS: 1})
		c.pub(&paho.Publish{Topic: "TopicA/B", QoS: 1, Retain: true, Payload: []byte("kept")})
		if m := c.next(); !m.Retain {
			t.Fatal("retain as published: the flag was cleared")
		}
		c.pub(&paho.Publish{Topic: "TopicA/C", QoS: 1, Retain: true, Payload: []byte("cleared")})
		if m := c.next(); m.Retain {
			t.Fatal("a live delivery kept the retain flag without retain as published")
		}
	})
	t.Run("RetainHandling", func(t *testing.T) {
		// mochi acknowledges a publish before it routes it: c waits for its
		// own copy, so that no subscription below races the live one.
		c.sub(paho.SubscribeOptions{Topic: "Topic/R", QoS: 1, RetainHandling: 2})
		c.pub(&paho.Publish{Topic: "Topic/R", QoS: 1, Retain: true, Payload: []byte("r")})
		if m := c.next(); string(m.Payload) != "r" {
			t.Fatalf("publisher's own copy: %q", m.Payload)
		}
		for _, rh := range []struct {
			handling byte
			want     []int // retained messages after the first and the second SUBSCRIBE
		}{{0, []int{1, 1}}, {1, []int{1, 0}}, {2, []int{0, 0}}} {
			d, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: fmt.Sprintf("rh%d", rh.handling), CleanStart: true})
			for i := 0; i < 2; i++ {
				d.sub(paho.SubscribeOptions{Topic: "Topic/R", QoS: 1, RetainHandling: rh.handling})
				if got := d.drain(300 * time.Millisecond); len(got) != rh.want[i] {
					var what []string
					for _, m := range got {
						what = append(what, fmt.Sprintf("%s %q retain=%v", m.Topic, m.Payload, m.Retain))
					}
					t.Errorf("retain handling %d, subscribe %d: %d retained (%s), want %d", rh.handling, i+1, len(got), strings.Join(what, "; "), rh.want[i])
				}
			}
		}
		c.pub(&paho.Publish{Topic: "Topic/R", QoS: 1, Retain: true})
	})
}

func TestPahoSubscriptionIdentifiers(t *testing.T) {
	e := pahoSetup(t)
	c, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "subid", CleanStart: true})
	two, three := 2, 3
	c.subWith(&paho.SubscribeProperties{SubscriptionIdentifier: &two}, paho.SubscribeOptions{Topic: "TopicA/+", QoS: 1})
	c.subWith(&paho.SubscribeProperties{SubscriptionIdentifier: &three}, paho.SubscribeOptions{Topic: "TopicA/B", QoS: 1})
	// paho.golang keeps one identifier of a PUBLISH; the suite checks the
	// list.
	id := func(topic string) int {
		c.pub(&paho.Publish{Topic: topic, QoS: 1, Payload: []byte("x")})
		m := c.next()
		c.drain(200 * time.Millisecond)
		if m.Properties == nil || m.Properties.SubscriptionIdentifier == nil {
			t.Fatalf("%s: no subscription identifier", topic)
		}
		return *m.Properties.SubscriptionIdentifier
	}
	if got := id("TopicA/C"); got != 2 {
		t.Fatalf("TopicA/C: identifier %d, want 2", got)
	}
	if got := id("TopicA/B"); got != 2 && got != 3 {
		t.Fatalf("TopicA/B: identifier %d, want 2 or 3", got)
	}
}

func TestPahoUserProperties(t *testing.T) {
	e := pahoSetup(t)
	c, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "props", CleanStart: true})
	c.subs("TopicA")
	c.pub(&paho.Publish{Topic: "TopicA", QoS: 2, Payload: []byte("x"), Properties: &paho.PublishProperties{
		User: paho.UserProperties{{Key: "a", Value: "2"}, {Key: "c", Value: "3"}}}})
	m := c.next()
	if m.Properties == nil || m.Properties.User.Get("a") != "2" || m.Properties.User.Get("c") != "3" {
		t.Fatalf("user properties: %+v", m.Properties)
	}
}

// TestPahoWillDelay: a will with a delay is published after the delay (and
// before the session expires), not at once.
func TestPahoWillDelay(t *testing.T) {
	e := pahoSetup(t)
	watcher, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "watcher", CleanStart: true})
	watcher.subs("TopicA/will")
	expiry := uint32(5)
	w, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "willing", CleanStart: true,
		Properties:     &paho.ConnectProperties{SessionExpiryInterval: &expiry},
		WillMessage:    &paho.WillMessage{Topic: "TopicA/will", QoS: 1, Payload: []byte("gone")},
		WillProperties: &paho.WillProperties{WillDelayInterval: ptr(uint32(2))}})
	start := time.Now()
	w.conn.Close()
	m := watcher.next()
	if d := time.Since(start); string(m.Payload) != "gone" || d < 1500*time.Millisecond {
		t.Fatalf("will %q after %v, want after 2s", m.Payload, d)
	}
}

func ptr[T any](v T) *T { return &v }

// TestPahoServerKeepAlive: an MQTT 5 client asking for a keep alive longer
// than the server's maximum (60 s) is told the maximum.
func TestPahoServerKeepAlive(t *testing.T) {
	e := pahoSetup(t)
	_, ca := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "ka", CleanStart: true, KeepAlive: 120})
	if ca.Properties == nil || ca.Properties.ServerKeepAlive == nil || *ca.Properties.ServerKeepAlive != 60 {
		t.Fatalf("CONNACK server keep alive: %+v", ca.Properties)
	}
	_, ca = dialPlain(t, e.mqtt, &paho.Connect{ClientID: "ka2", CleanStart: true, KeepAlive: 30})
	if ca.Properties != nil && ca.Properties.ServerKeepAlive != nil && *ca.Properties.ServerKeepAlive != 30 {
		t.Fatalf("a keep alive within the maximum was changed: %d", *ca.Properties.ServerKeepAlive)
	}
}

func TestPahoRequestResponse(t *testing.T) {
	e := pahoSetup(t)
	responder, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "responder", CleanStart: true})
	responder.subs("TopicA/req")
	requester, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "requester", CleanStart: true})
	requester.subs("TopicA/resp")
	requester.pub(&paho.Publish{Topic: "TopicA/req", QoS: 1, Payload: []byte("q"), Properties: &paho.PublishProperties{
		ResponseTopic: "TopicA/resp", CorrelationData: []byte("corr")}})
	req := responder.next()
	if req.Properties == nil || req.Properties.ResponseTopic != "TopicA/resp" || !bytes.Equal(req.Properties.CorrelationData, []byte("corr")) {
		t.Fatalf("request properties: %+v", req.Properties)
	}
	responder.pub(&paho.Publish{Topic: req.Properties.ResponseTopic, QoS: 1, Payload: []byte("a"),
		Properties: &paho.PublishProperties{CorrelationData: req.Properties.CorrelationData}})
	if resp := requester.next(); !bytes.Equal(resp.Properties.CorrelationData, []byte("corr")) {
		t.Fatalf("response properties: %+v", resp.Properties)
	}
}

// TestPahoRedeliveryOnReconnect: QoS 1 and 2 messages a persistent session
// received but did not acknowledge come again after it reconnects.
func TestPahoRedeliveryOnReconnect(t *testing.T) {
	e := pahoSetup(t)
	expiry := uint32(60)
	cp := func() *paho.Connect {
		return &paho.Connect{ClientID: "redeliver", CleanStart: false, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
	}
	c, _ := dialPlain(t, e.mqtt, cp(), plainOpts{manualAcks: true})
	c.subs("TopicA/#")
	pub, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "pubr", CleanStart: true})
	pub.pub(&paho.Publish{Topic: "TopicA/B", QoS: 1, Payload: []byte("one")})
	pub.pub(&paho.Publish{Topic: "TopicA/C", QoS: 2, Payload: []byte("two")})
	c.next()
	c.next()
	c.conn.Close() // no acknowledgements
	time.Sleep(200 * time.Millisecond)
	c2, ca := dialPlain(t, e.mqtt, cp())
	if !ca.SessionPresent {
		t.Fatal("session not present")
	}
	got := map[string]bool{}
	for _, m := range c2.drain(time.Second) {
		got[string(m.Payload)] = true
	}
	if !got["one"] || !got["two"] {
		t.Fatalf("redelivered %v, want one and two", got)
	}
}

// TestPahoOverlappingSubscriptions: a message matching two subscriptions of
// a client arrives once at the higher QoS, or once per subscription at
// each's QoS.
func TestPahoOverlappingSubscriptions(t *testing.T) {
	e := pahoSetup(t)
	c, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "overlap", CleanStart: true})
	c.sub(paho.SubscribeOptions{Topic: "TopicA/#", QoS: 2}, paho.SubscribeOptions{Topic: "TopicA/+", QoS: 1})
	c.pub(&paho.Publish{Topic: "TopicA/C", QoS: 2, Payload: []byte("o")})
	ms := c.drain(500 * time.Millisecond)
	switch {
	case len(ms) == 1 && ms[0].QoS == 2:
	case len(ms) == 2 && ms[0].QoS+ms[1].QoS == 3:
	default:
		t.Fatalf("overlapping: %d messages", len(ms))
	}
}

// TestPahoSubscribeFailure: a plain filter the operator's ACL denies is
// refused with 0x80 (on MQTT 5 too, where the Reason String says why; the
// Paho suites' client takes nothing else), a filter under Parley's prefix
// that the client may not read with 0x87 Not authorized.
func TestPahoSubscribeFailure(t *testing.T) {
	e := pahoSetup(t)
	c, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "fail", CleanStart: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, _ := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "test/nosubscribe", QoS: 2}, {Topic: "$share/g/test/nosubscribe", QoS: 1}, {Topic: "im/inbox/bob", QoS: 1}, {Topic: "test/ok", QoS: 1}}})
	if sa == nil || !bytes.Equal(sa.Reasons, []byte{0x80, 0x80, 0x87, 0x01}) {
		t.Fatalf("MQTT 5 SUBACK %+v, want 0x80 0x80 0x87 0x01", sa)
	}
	if sa.Properties == nil || !strings.Contains(sa.Properties.ReasonString, `"test/nosubscribe": `) {
		t.Fatalf("MQTT 5 SUBACK without the reason: %+v", sa.Properties)
	}
	v3, _ := anonV3(t, e, "fail3", nil)
	tok := v3.Subscribe("test/nosubscribe", 2, nil)
	tok.WaitTimeout(5 * time.Second)
	if code := tok.(*pahov3.SubscribeToken).Result()["test/nosubscribe"]; code != 0x80 {
		t.Fatalf("MQTT 3.1.1 SUBACK %#x, want 0x80", code)
	}
}

// TestPlainQueueOrder: the QoS 1 messages queued for a persistent session
// while it was away arrive in the order they were published (mochi alone
// sorts them by the second they were created in).
func TestPlainQueueOrder(t *testing.T) {
	e := pahoSetup(t)
	expiry := uint32(300)
	cp := func() *paho.Connect {
		return &paho.Connect{ClientID: "queue", CleanStart: false, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
	}
	c, _ := dialPlain(t, e.mqtt, cp())
	c.subs("q/#")
	c.disconnect()
	pub, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "qpub", CleanStart: true})
	const n = 500
	for i := 0; i < n; i++ {
		pub.pub(&paho.Publish{Topic: "q/x", QoS: 1, Payload: []byte(fmt.Sprint(i))})
	}
	// mochi queues for the sessions after the PUBACK: let the last one
	// land before the session is taken over (see docs/protocol.md, Plain
	// MQTT, deviations).
	time.Sleep(300 * time.Millisecond)
	c, _ = dialPlain(t, e.mqtt, cp())
	for i := 0; i < n; i++ {
		select {
		case m := <-c.got:
			if string(m.Payload) != fmt.Sprint(i) {
				t.Fatalf("message %d: got %s", i, m.Payload)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d of %d did not come", i, n)
		}
	}
}

// TestPlainMaxExpiry: Options.MQTTMaxExpiry bounds how long a retained
// message is kept.
func TestPlainMaxExpiry(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t), func(o *broker.Options) { o.Anonymous = true; o.MQTTMaxExpiry = time.Second })
	pub, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "pub", CleanStart: true})
	pub.pub(&paho.Publish{Topic: "status/a", QoS: 1, Retain: true, Payload: []byte("on")})
	c, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "early", CleanStart: true})
	c.subs("status/#")
	if m := c.next(); string(m.Payload) != "on" {
		t.Fatalf("got %q", m.Payload)
	}
	time.Sleep(3500 * time.Millisecond)
	late, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "late", CleanStart: true})
	late.subs("status/#")
	late.none(500 * time.Millisecond)
}

// TestPlainStateSurvivesRestart: a persistent session's subscriptions,
// queued messages and delayed will, and retained messages, survive closing
// the broker and starting another on the same store; the will of a client
// that disconnected normally does not come back.
func TestPlainStateSurvivesRestart(t *testing.T) {
	store := testkit.OpenSQLite(t)
	open := func(o *broker.Options) { o.Anonymous = true }
	e := setup(t, store, open)
	expiry := uint32(600)
	persistent := func(id string, will *paho.WillMessage) *paho.Connect {
		return &paho.Connect{ClientID: id, CleanStart: false, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry},
			WillMessage: will, WillProperties: &paho.WillProperties{WillDelayInterval: ptr(uint32(1))}}
	}
	sink, _ := dialPlain(t, e.mqtt, persistent("sink", nil))
	sink.subs("data/#")
	sink.disconnect()
	dialPlain(t, e.mqtt, persistent("vanishing", &paho.WillMessage{Topic: "status/vanishing", QoS: 1, Payload: []byte("gone")}))
	polite, _ := dialPlain(t, e.mqtt, persistent("polite", &paho.WillMessage{Topic: "status/polite", QoS: 1, Payload: []byte("gone")}))
	polite.disconnect()
	pub, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "pub", CleanStart: true})
	pub.pub(&paho.Publish{Topic: "status/boiler", QoS: 1, Retain: true, Payload: []byte("on")})
	for i := 0; i < 20; i++ {
		pub.pub(&paho.Publish{Topic: "data/x", QoS: 1, Payload: []byte(fmt.Sprint(i))})
	}
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.b.Close(ctx); err != nil {
		t.Fatal(err)
	}

	e2 := setup(t, store, open)
	watcher, _ := dialPlain(t, e2.mqtt, &paho.Connect{ClientID: "watcher", CleanStart: true})
	watcher.subs("status/#")
	if m := watcher.next(); m.Topic != "status/boiler" || string(m.Payload) != "on" || !m.Retain {
		t.Fatalf("retained after the restart: %s %q", m.Topic, m.Payload)
	}
	if m := watcher.next(); m.Topic != "status/vanishing" || string(m.Payload) != "gone" {
		t.Fatalf("will after the restart: %s %q", m.Topic, m.Payload)
	}
	watcher.none(1500 * time.Millisecond) // not the polite client's will
	sink, ca := dialPlain(t, e2.mqtt, persistent("sink", nil))
	if !ca.SessionPresent {
		t.Fatal("the session did not survive the restart")
	}
	for i := 0; i < 20; i++ {
		if m := sink.next(); string(m.Payload) != fmt.Sprint(i) {
			t.Fatalf("queued message %d: got %q", i, m.Payload)
		}
	}
	pub2, _ := dialPlain(t, e2.mqtt, &paho.Connect{ClientID: "pub", CleanStart: true})
	pub2.pub(&paho.Publish{Topic: "data/x", QoS: 1, Payload: []byte("after")})
	if m := sink.next(); string(m.Payload) != "after" {
		t.Fatalf("the subscription did not survive: got %q", m.Payload)
	}
}

// TestPahoFlowControl: a client that sends more QoS 2 publishes than the
// server's Receive Maximum without completing them gets DISCONNECT 0x93,
// and reads it although it goes on sending PUBRELs for the PUBRECs before
// it: the connection closes gracefully (lingering close), not with a reset
// (the Paho suite's test_flow_control2).
func TestPahoFlowControl(t *testing.T) {
	e := pahoSetup(t)
	conn, err := net.Dial("tcp", e.mqtt)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	var out bytes.Buffer
	cp := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: "flow"}}
	if err := cp.ConnectEncode(&out); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := conn.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	ack := readRawPacket(t, r)
	if ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %+v", ack)
	}
	max := int(ack.Properties.ReceiveMaximum)
	if max == 0 {
		max = 65535
	}
	out.Reset()
	for i := 1; i <= max+1; i++ {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, ProtocolVersion: 5,
			TopicName: "flow/topic", PacketID: uint16(i), Payload: []byte(fmt.Sprintf("message %d", i))}
		if err := pk.PublishEncode(&out); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	pubrecs := 0
	for {
		pk := readRawPacket(t, r)
		switch pk.FixedHeader.Type {
		case packets.Pubrec:
			pubrecs++
			rel := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, ProtocolVersion: 5, PacketID: pk.PacketID}
			var b bytes.Buffer
			if err := rel.PubrelEncode(&b); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Write(b.Bytes()); err != nil {
				t.Fatalf("PUBREL %d after %d PUBRECs: %v (the server reset the connection)", pk.PacketID, pubrecs, err)
			}
		case packets.Disconnect:
			if pk.ReasonCode != 0x93 {
				t.Fatalf("DISCONNECT %#x, want 0x93", pk.ReasonCode)
			}
			if pubrecs != max {
				t.Fatalf("%d PUBRECs before the DISCONNECT, want %d", pubrecs, max)
			}
			return
		default:
			t.Fatalf("unexpected packet %v", pk.FixedHeader.Type)
		}
	}
}

// readRawPacket reads and decodes one MQTT 5 packet from r.
func readRawPacket(t testing.TB, r *bufio.Reader) packets.Packet {
	t.Helper()
	pk, err := nextRawPacket(r)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// nextRawPacket reads one MQTT 5 packet from r and decodes the CONNACK,
// PUBREC and DISCONNECT packets; it returns the read error as it is (a
// deadline passed: os.ErrDeadlineExceeded).
func nextRawPacket(r *bufio.Reader) (packets.Packet, error) {
	var pk packets.Packet
	b, err := r.ReadByte()
	if err != nil {
		return pk, fmt.Errorf("read: %w", err)
	}
	pk.ProtocolVersion = 5
	if err := pk.FixedHeader.Decode(b); err != nil {
		return pk, err
	}
	n, mult := 0, 1
	for {
		c, err := r.ReadByte()
		if err != nil {
			return pk, fmt.Errorf("read: %w", err)
		}
		n += int(c&0x7f) * mult
		if c&0x80 == 0 {
			break
		}
		mult *= 128
	}
	pk.FixedHeader.Remaining = n
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return pk, fmt.Errorf("read: %w", err)
	}
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(buf)
	case packets.Pubrec:
		err = pk.PubrecDecode(buf)
	case packets.Disconnect:
		err = pk.DisconnectDecode(buf)
	}
	if err != nil {
		return pk, fmt.Errorf("decode %v: %w", pk.FixedHeader.Type, err)
	}
	return pk, nil
}

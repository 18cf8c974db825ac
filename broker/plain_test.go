package broker_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/internal/testkit"
)

// Plain MQTT outside the prefix: the rules of docs/protocol.md "Plain MQTT",
// over real sockets. plainconf_test.go holds one test per behaviour of the
// Eclipse Paho interoperability suites.

// pclient is a plain MQTT 5 client that records every PUBLISH it receives.
type pclient struct {
	t    testing.TB
	c    *paho.Client
	conn net.Conn
	got  chan *paho.Publish
}

// plainOpts are options of dialPlain.
type plainOpts struct {
	manualAcks bool // PUBACKs only through pclient.c.Ack
}

// dialPlain connects an MQTT 5 client to addr with cp (a client id, clean
// start, keep alive 30 s unless cp says otherwise).
func dialPlain(t testing.TB, addr string, cp *paho.Connect, o ...plainOpts) (*pclient, *paho.Connack) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &pclient{t: t, conn: conn, got: make(chan *paho.Publish, 10000)}
	cfg := paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			p.got <- pr.Packet
			return true, nil
		}}}
	if len(o) > 0 && o[0].manualAcks {
		cfg.EnableManualAcknowledgment = true
	}
	p.c = paho.NewClient(cfg)
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := p.c.Connect(ctx, cp)
	if err != nil {
		t.Fatalf("connect %s: %v (%+v)", cp.ClientID, err, ca)
	}
	t.Cleanup(func() { conn.Close() })
	return p, ca
}

// sub subscribes to each filter at QoS 1 (or with the options given) and
// returns the SUBACK's reason codes.
func (p *pclient) sub(opts ...paho.SubscribeOptions) []byte {
	p.t.Helper()
	return p.subWith(nil, opts...)
}

func (p *pclient) subWith(props *paho.SubscribeProperties, opts ...paho.SubscribeOptions) []byte {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := p.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts, Properties: props})
	if sa == nil {
		p.t.Fatalf("subscribe %+v: %v", opts, err)
	}
	return sa.Reasons
}

// subs subscribes to filters at QoS 1 and fails unless all are granted.
func (p *pclient) subs(filters ...string) {
	p.t.Helper()
	var opts []paho.SubscribeOptions
	for _, f := range filters {
		opts = append(opts, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	for i, code := range p.sub(opts...) {
		if code >= 0x80 {
			p.t.Fatalf("subscribe %s: %#x", filters[i], code)
		}
	}
}

// pub publishes and fails unless the broker accepted it.
func (p *pclient) pub(pk *paho.Publish) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pr, err := p.c.Publish(ctx, pk)
	if err != nil || (pr != nil && pr.ReasonCode >= 0x80) {
		p.t.Fatalf("publish %s: %+v, %v", pk.Topic, pr, err)
	}
}

// next returns the next message, failing after 5 s.
func (p *pclient) next() *paho.Publish {
	p.t.Helper()
	select {
	case m := <-p.got:
		return m
	case <-time.After(5 * time.Second):
		p.t.Fatal("no message within 5s")
	}
	return nil
}

// none fails when a message arrives within d.
func (p *pclient) none(d time.Duration) {
	p.t.Helper()
	select {
	case m := <-p.got:
		p.t.Fatalf("unexpected message on %s: %q", m.Topic, m.Payload)
	case <-time.After(d):
	}
}

// drain returns what arrived within d.
func (p *pclient) drain(d time.Duration) []*paho.Publish {
	var out []*paho.Publish
	end := time.After(d)
	for {
		select {
		case m := <-p.got:
			out = append(out, m)
		case <-end:
			return out
		}
	}
}

// disconnect sends DISCONNECT (reason 0) and closes the connection.
func (p *pclient) disconnect() {
	p.c.Disconnect(&paho.Disconnect{})
	p.conn.Close()
}

// TestWildcardsNeverDeliverParley: wildcard filters over everything (#,
// +/+, +/inbox/alice, a shared #) are granted in open mode, plain topics
// arrive through them, and nothing under the prefix ever does: not the
// inbox, not the retained presence, not even to the user the topic belongs
// to, who still gets both through exact subscriptions. Another user's inbox
// stays refused.
func TestWildcardsNeverDeliverParley(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t), func(o *broker.Options) { o.Anonymous = true })
	nosy, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "nosy", CleanStart: true})
	nosy.subs("#", "+/+", "+/+/+", "+/inbox/alice", "+/presence/#")
	sharer, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "sharer", CleanStart: true})
	sharer.subs("$share/g/#", "$SHARE/h/+/inbox/+")
	// alice herself, with wildcards next to her exact subscriptions.
	alice := e.dial("alice/phone", "alice", dialOpts{v5: true})
	alice.subscribe("im/presence/alice", 1)
	if code := alice.subscribe("#", 1); code >= 0x80 {
		t.Fatalf("alice: subscribe #: %#x", code)
	}
	if code := alice.subscribe("+/presence/+", 1); code >= 0x80 {
		t.Fatalf("alice: subscribe +/presence/+: %#x", code)
	}
	if code := alice.subscribe("im/inbox/bob", 1); code != 0x87 {
		t.Fatalf("alice: subscribe im/inbox/bob: %#x, want 0x87", code)
	}
	bob := e.dial("bob", "bob", dialOpts{v5: true})
	bob.send("im/send/u/alice", 1, `{"cid":"c1","body":"secret"}`)
	// alice gets her message once, through im/inbox/alice, and her presence
	// through im/presence/alice.
	var inbox, presence int
	for end := time.After(2 * time.Second); ; {
		select {
		case ev := <-alice.events:
			switch {
			case ev.topic == "im/inbox/alice" && ev.Kind == "message":
				inbox++
			case ev.topic == "im/presence/alice":
				presence++
			case strings.HasPrefix(ev.topic, "im/"):
			default:
				t.Errorf("alice got %s", ev.topic)
			}
			continue
		case <-end:
		}
		break
	}
	if inbox != 1 || presence == 0 {
		t.Fatalf("alice got the message %d times (want 1) and her presence %d times (want >0)", inbox, presence)
	}
	// A plain publish reaches the wildcards: the control (alice's client
	// reads only JSON, so she leaves them first).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := alice.v5.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"#", "+/presence/+"}}); err != nil {
		t.Fatal(err)
	}
	bob2, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "plain-pub", CleanStart: true})
	bob2.pub(&paho.Publish{Topic: "plain/x", QoS: 1, Payload: []byte("hi")})
	for _, c := range []*pclient{nosy, sharer} {
		var plain int
		for _, m := range c.drain(time.Second) {
			if strings.HasPrefix(m.Topic, "im/") || strings.HasPrefix(m.Topic, "$") {
				t.Errorf("a wildcard subscription leaked %s: %q", m.Topic, m.Payload)
			}
			if m.Topic == "plain/x" {
				plain++
			}
		}
		if plain == 0 {
			t.Errorf("plain/x did not reach the wildcard subscriber")
		}
	}
	// A late # subscriber gets no retained presence either.
	late, _ := dialPlain(t, e.mqtt, &paho.Connect{ClientID: "late", CleanStart: true})
	late.subs("#")
	for _, m := range late.drain(500 * time.Millisecond) {
		if strings.HasPrefix(m.Topic, "im/") {
			t.Errorf("a retained %s reached a late # subscriber", m.Topic)
		}
	}
}

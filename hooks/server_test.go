package hooks_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/parley-im/parley/history/sqlite"
	"github.com/parley-im/parley/hooks"
	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/delivery"
	"github.com/parley-im/parley/internal/send"
	"github.com/parley-im/parley/internal/wire"
)

// server is a mochi server with Parley's three hooks over the real engines
// and a real SQLite store, listening on a free local port.
type server struct {
	addr   string
	tokens *auth.Tokens
}

func startServer(t testing.TB) *server {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tokens := &auth.Tokens{Secret: []byte("a secret of at least thirty-two bytes")}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = hooks.MaxPacketSize(send.DefaultMaxPayload)
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: log, Capabilities: caps})
	topics := wire.Topics{}
	authz := &auth.Authorizer{Tokens: tokens, Topics: topics, Store: store}
	hub := &delivery.Hub{Store: store, Log: log, PublishPresence: hooks.PresencePublisher(srv, topics)}
	svc := &send.Service{Store: store, Groups: send.NewGroups(store), Deliver: hub, Log: log}
	if err := svc.Init(); err != nil {
		t.Fatal(err)
	}
	for _, h := range []mqtt.Hook{
		&hooks.Auth{Server: srv, Authorizer: authz, Log: log},
		&hooks.Publish{Service: svc, Topics: topics, Log: log},
		&hooks.Delivery{Hub: hub, Server: srv, Topics: topics},
	} {
		if err := srv.AddHook(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewNet("tcp", ln)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Close()
		svc.Committer.Close()
		store.Close()
	})
	return &server{addr: ln.Addr().String(), tokens: tokens}
}

// mqttClient is an MQTT 5 client whose inbox events arrive on events.
type mqttClient struct {
	c      *paho.Client
	events chan wire.Delivery
	// gone receives the reason code of a DISCONNECT from the server.
	gone chan byte
}

// dial connects clientID with user's token (or with password when set).
func (s *server) dial(t testing.TB, clientID, user, password string) (*mqttClient, *paho.Connack, error) {
	t.Helper()
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	if password == "" {
		if password, err = s.tokens.Sign(user, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	mc := &mqttClient{events: make(chan wire.Delivery, 1000), gone: make(chan byte, 1)}
	mc.c = paho.NewClient(paho.ClientConfig{
		Conn:               conn,
		OnServerDisconnect: func(d *paho.Disconnect) { mc.gone <- d.ReasonCode },
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			if !strings.HasPrefix(pr.Packet.Topic, "im/inbox/") {
				return true, nil // presence
			}
			// Events other than messages share some field names with other
			// types (a read event's mentions is a count): only messages
			// must decode as a Delivery.
			var d wire.Delivery
			if err := json.Unmarshal(pr.Packet.Payload, &d); err != nil && (d.Kind == "message" || d.Kind == "ephemeral" || d.Kind == "") {
				t.Errorf("inbox payload %q: %v", pr.Packet.Payload, err)
			}
			mc.events <- d
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := mc.c.Connect(ctx, &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true,
		Username: user, UsernameFlag: true, Password: []byte(password), PasswordFlag: true})
	if err != nil {
		conn.Close()
		return nil, ca, err
	}
	t.Cleanup(func() { mc.c.Disconnect(&paho.Disconnect{}) })
	return mc, ca, nil
}

func (mc *mqttClient) subscribe(t testing.TB, filter string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := mc.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if sa == nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return sa.Reasons[0]
}

func (mc *mqttClient) publish(t testing.TB, topic, payload string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pr, err := mc.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	if pr == nil {
		t.Fatalf("publish to %s: %v", topic, err)
	}
	return pr.ReasonCode
}

// next returns the next inbox event of kind, skipping others.
func (mc *mqttClient) next(t testing.TB, kind string) wire.Delivery {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case d := <-mc.events:
			if d.Kind == kind {
				return d
			}
		case <-timeout:
			t.Fatalf("no %s event within 10s", kind)
		}
	}
}

// TestHooksOverTCP: the three hooks over real engines, driven by an MQTT 5
// client: a send is acked after it is stored and reaches the peer's inbox
// with its body and the sender's as an echo; refusals carry their reason
// codes; a bad token and a foreign inbox are refused.
func TestHooksOverTCP(t *testing.T) {
	s := startServer(t)
	alice, _, err := s.dial(t, "alice/phone", "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	bob, _, err := s.dial(t, "bob", "bob", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mc   *mqttClient
		user string
	}{{alice, "alice"}, {bob, "bob"}} {
		if code := c.mc.subscribe(t, "im/inbox/"+c.user); code != 1 {
			t.Fatalf("SUBACK %#x for %s's inbox", code, c.user)
		}
	}
	if code := alice.publish(t, "im/send/u/bob", `{"cid":"c1","body":{"text":"hi"}}`); code != 0 {
		t.Fatalf("PUBACK %#x", code)
	}
	for _, mc := range []*mqttClient{bob, alice} {
		d := mc.next(t, "message")
		if d.Conv != "dm:alice:bob" || d.Seq != 1 || d.CID != "c1" || d.From != "alice" || string(d.Body) != `{"text":"hi"}` {
			t.Fatalf("delivered %+v", d)
		}
	}
	if code := bob.publish(t, "im/read", `{"conv":"dm:alice:bob","seq":1}`); code != 0 {
		t.Fatalf("read PUBACK %#x", code)
	}
	if d := alice.next(t, "read"); d.Conv != "dm:alice:bob" {
		t.Fatalf("receipt %+v", d)
	}

	for _, tc := range []struct {
		name, topic, payload string
		code                 byte
	}{
		{"ErrPayload", "im/send/u/bob", `{"cid":"bad","body":null}`, 0x99},
		{"ErrSelf", "im/send/u/alice", `{"body":1}`, 0x90},
		{"ErrNoGroup", "im/send/g/nope", `{"body":1}`, 0x87},
		{"ErrForeignTopic", "other/topic", `x`, 0x87},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code := alice.publish(t, tc.topic, tc.payload); code != tc.code {
				t.Fatalf("PUBACK %#x, want %#x", code, tc.code)
			}
		})
	}
	if code := alice.subscribe(t, "im/inbox/bob"); code < 0x80 {
		t.Fatalf("SUBACK %#x for another user's inbox", code)
	}
	if _, ca, err := s.dial(t, "carol", "carol", "not-a-token"); err == nil || ca == nil || ca.ReasonCode != 0x86 {
		t.Fatalf("connect with a bad token: %+v, %v", ca, err)
	}

	t.Run("TooManyFilters", func(t *testing.T) {
		subs := make([]paho.SubscribeOptions, hooks.DefaultMaxSubscribeFilters+1)
		for i := range subs {
			subs[i] = paho.SubscribeOptions{Topic: "im/presence/alice", QoS: 1}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sa, err := alice.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
		if sa == nil {
			t.Fatal(err)
		}
		if n := len(sa.Reasons); n != len(subs) || sa.Reasons[0] >= 0x80 || sa.Reasons[n-1] != 0x8F {
			t.Fatalf("SUBACK codes first %#x last %#x of %d", sa.Reasons[0], sa.Reasons[n-1], n)
		}
		if want := "1 filter beyond the limit of 100 per SUBSCRIBE"; sa.Properties == nil || sa.Properties.ReasonString != want {
			t.Fatalf("SUBACK reason string %+v, want %q", sa.Properties, want)
		}
	})
	t.Run("TakeOver", func(t *testing.T) {
		bob2, _, err := s.dial(t, "bob", "bob", "")
		if err != nil {
			t.Fatal(err)
		}
		select {
		case code := <-bob.gone:
			if code != 0x8E {
				t.Fatalf("the old session got DISCONNECT %#x, want 0x8E", code)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the old session was not disconnected")
		}
		bob2.subscribe(t, "im/inbox/bob")
		if code := alice.publish(t, "im/send/u/bob", `{"cid":"c2","body":"to the new session"}`); code != 0 {
			t.Fatalf("PUBACK %#x", code)
		}
		// The new session first catches up from the store (seq 1 again if
		// its cursor was not saved yet), then gets seq 2.
		d := bob2.next(t, "message")
		if d.Seq == 1 {
			d = bob2.next(t, "message")
		}
		if d.Seq != 2 || d.CID != "c2" || string(d.Body) != `"to the new session"` {
			t.Fatalf("the new session got %+v", d)
		}
	})
}

func TestHooksInit(t *testing.T) {
	for _, h := range []mqtt.Hook{&hooks.Auth{}, &hooks.Publish{}, &hooks.Delivery{}} {
		if err := h.Init(nil); err == nil {
			t.Errorf("%s: Init without its required fields succeeded", h.ID())
		}
		if !h.Provides(mqtt.OnSessionEstablished) {
			t.Errorf("%s does not provide OnSessionEstablished", h.ID())
		}
		if h.Provides(mqtt.OnRetainMessage) {
			t.Errorf("%s provides OnRetainMessage", h.ID())
		}
	}
}

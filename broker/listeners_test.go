package broker_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/url"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

// TestListeners: the same conversation works over TCP, WebSocket (/mqtt) and
// TLS, with listeners handed in as net.Listeners.
func TestListeners(t *testing.T) {
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pki := testkit.NewPKI(t)
	cert := pki.Issue(t, x509.ExtKeyUsageServerAuth)
	e := setup(t, testkit.OpenSQLite(t), func(o *broker.Options) {
		o.TLSListener = tlsLn
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	})
	bob := e.dialV5("bob", "bob")
	dial := func(id, broker string, cfg *tls.Config) pahov3.Client {
		o := pahov3.NewClientOptions().AddBroker(broker).SetClientID(id).SetUsername("alice").
			SetPassword(testkit.Token(t, "alice")).SetTLSConfig(cfg).SetAutoReconnect(false)
		c := pahov3.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("connect over %s: %v", broker, tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(0) })
		return c
	}
	ws := dial("alice/ws", (&url.URL{Scheme: "ws", Host: e.ws, Path: broker.WebsocketPath}).String(), nil)
	tl := dial("alice/tls", "ssl://"+tlsLn.Addr().String(), &tls.Config{RootCAs: pki.Pool, ServerName: "localhost"})
	for i, c := range []pahov3.Client{ws, tl} {
		got := make(chan struct{}, 10)
		c.Subscribe("im/inbox/alice", 1, func(pahov3.Client, pahov3.Message) { got <- struct{}{} }).Wait()
		if tok := c.Publish("im/send/u/bob", 1, false, `{"body":"over the wire"}`); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		if ev := bob.nextKind("message"); ev.Seq != int64(i+1) || ev.From != "alice" {
			t.Fatalf("bob got %+v", ev)
		}
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("no echo on the sender's inbox")
		}
	}
	if a := e.b.Addr("tls"); a == nil || a.String() != tlsLn.Addr().String() {
		t.Fatalf("Addr(tls) = %v", a)
	}
}

// TestHTTPBasics: /healthz and /readyz answer 200 on a healthy store, and /metrics
// serves Parley's metrics.
func TestHTTPBasics(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t))
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if code := e.do("GET", p, "", "", nil); code != 200 {
			t.Fatalf("GET %s = %d", p, code)
		}
	}
	alice := e.dialV5("alice", "alice")
	alice.send("im/send/u/bob", 1, `{"body":1}`)
	alice.nextKind("message")
	// The echo can arrive before the send is counted (the count follows
	// the commit, the delivery is handed out inside it): wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for _, want := range []string{`parley_messages_received_total{result="stored"} 1`, "parley_connections 1", "parley_store_latency_seconds_bucket", "parley_messages_delivered_total"} {
		for req, _ := e.get("/metrics"); !contains(req, want); req, _ = e.get("/metrics") {
			if time.Now().After(deadline) {
				t.Fatalf("/metrics lacks %q", want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// slowPing is a store whose Ping waits for release (or its context): a
// store whose connections are all taken by a storm of connects.
type slowPing struct {
	history.Store
	release chan struct{}
}

func (s slowPing) Ping(ctx context.Context) error {
	select {
	case <-s.release:
		return s.Store.Ping(ctx)
	case <-ctx.Done():
		return history.Errorf(history.EUNAVAILABLE, "ping: %v", ctx.Err())
	}
}

// TestReadyzDuringStorm: while the store answers other calls, /readyz says
// 200 at once, without queuing its own ping behind them (its ping is stuck
// here). When nothing answers, it pings and says 503: TestDatabaseOutage.
func TestReadyzDuringStorm(t *testing.T) {
	s := slowPing{Store: testkit.OpenSQLite(t), release: make(chan struct{})}
	e := setup(t, s)
	alice := e.dialV5("alice", "alice") // claims, reads its state: the store answers
	alice.send("im/send/u/bob", 1, `{"body":1}`)
	alice.nextKind("message")
	if code := e.do("GET", "/readyz", "", "", nil); code != 200 {
		t.Fatalf("GET /readyz right after store calls = %d, want 200 without a ping", code)
	}
	for range 3 {
		time.Sleep(400 * time.Millisecond)
		alice.send("im/send/u/bob", 1, `{"body":2}`) // the store keeps answering
		alice.nextKind("message")
		if code := e.do("GET", "/readyz", "", "", nil); code != 200 {
			t.Fatalf("GET /readyz while the store answers = %d, want 200", code)
		}
	}
	close(s.release)
}

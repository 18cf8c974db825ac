package broker_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/url"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/parley-im/parley/broker"
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
	req, _ := e.get("/metrics")
	for _, want := range []string{`parley_messages_received_total{result="stored"} 1`, "parley_connections 1", "parley_store_latency_seconds_bucket", "parley_messages_delivered_total"} {
		if !contains(req, want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
}

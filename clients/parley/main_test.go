package parley_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/broker/brokertest"
	"github.com/parley-im/parley/clients/parley"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/sqlite"
	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/pgtest"
	"github.com/parley-im/parley/internal/testkit"
)

var testSecret = []byte(testkit.Secret)

// The server the examples talk to, started by TestMain.
var (
	exampleBroker string // MQTT URL
	exampleHTTP   string // REST base URL
)

// exampleToken returns a token for user, as `parleyd token USER` prints.
func exampleToken(user string) string {
	tok, err := (&auth.Tokens{Secret: testSecret}).Sign(user, time.Hour)
	if err != nil {
		panic(err)
	}
	return tok
}

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	stop, err := startExampleServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, "example server:", err)
		return 1
	}
	defer stop()
	return pgtest.Main(m)
}

// startExampleServer starts a broker on a SQLite store in a temporary
// directory, on loopback ports.
func startExampleServer() (stop func(), err error) {
	dir, err := os.MkdirTemp("", "parley-examples-")
	if err != nil {
		return nil, err
	}
	store, err := sqlite.Open(context.Background(), dir, nil)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	b, err := broker.New(broker.Options{Store: store, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		JWTSecret: testSecret, Logger: testkit.Logger(), Rate: -1})
	if err == nil {
		err = b.Start(context.Background())
	}
	if err != nil {
		store.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	exampleBroker = "tcp://" + b.Addr("mqtt").String()
	exampleHTTP = "http://" + b.Addr("http").String()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.Close(ctx)
		store.Close()
		os.RemoveAll(dir)
	}, nil
}

// env is a broker on loopback ports that a test may restart on the same
// store and the same ports.
type env struct {
	t testing.TB
	*brokertest.Server
}

// setup starts a broker on store; mod changes its options.
func setup(t testing.TB, store history.Store, mod ...func(*broker.Options)) *env {
	t.Helper()
	opts := broker.Options{Store: store, MQTTAddr: "127.0.0.1:0", WSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		JWTSecret: testSecret, Logger: testkit.Logger(), Rate: -1}
	for _, f := range mod {
		f(&opts)
	}
	return &env{t: t, Server: brokertest.Start(t, opts)}
}

// options returns client options for user's device on e.
func (e *env) options(user, device string) parley.Options {
	return parley.Options{
		Broker: "tcp://" + e.Addr("mqtt"), HTTP: "http://" + e.Addr("http"), Token: testkit.Token(e.t, user), Device: device,
		Logger: testkit.Logger(), MaxReconnectInterval: time.Second,
	}
}

// dial connects user's device; mod changes the options.
func (e *env) dial(user, device string, mod ...func(*parley.Options)) *parley.Client {
	e.t.Helper()
	o := e.options(user, device)
	for _, f := range mod {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := parley.Dial(ctx, o)
	if err != nil {
		e.t.Fatalf("Dial %s/%s: %v", user, device, err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// nextEvent returns c's next event of one of kinds, skipping others.
func nextEvent(t testing.TB, c *parley.Client, kinds ...parley.EventKind) parley.Event {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("%s: events closed", c.ClientID())
			}
			for _, k := range kinds {
				if ev.Kind == k {
					return ev
				}
			}
		case <-deadline:
			t.Fatalf("%s: no %v event within 15s", c.ClientID(), kinds)
		}
	}
}

// messages returns the next n messages c surfaces in conv, skipping other
// events and conversations.
func messages(t testing.TB, c *parley.Client, conv string, n int) []parley.Message {
	t.Helper()
	var out []parley.Message
	deadline := time.After(30 * time.Second)
	for len(out) < n {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("%s: events closed", c.ClientID())
			}
			if ev.Kind == parley.EventError {
				t.Logf("%s: error event: %v", c.ClientID(), ev.Err)
			}
			if ev.Kind == parley.EventMessage && ev.Message.Conv == conv {
				out = append(out, ev.Message)
			}
		case <-deadline:
			t.Fatalf("%s: %d of %d messages of %s within 30s: %v", c.ClientID(), len(out), n, conv, seqsOf(out))
		}
	}
	return out
}

// noMessage fails when c surfaces a message within d.
func noMessage(t testing.TB, c *parley.Client, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev := <-c.Events():
			if ev.Kind == parley.EventMessage {
				t.Fatalf("%s: unexpected message %s #%d %q", c.ClientID(), ev.Message.Conv, ev.Message.Seq, ev.Message.Body)
			}
		case <-deadline:
			return
		}
	}
}

// forEachStore runs f as a subtest per store (see testkit.ForEachStore) with
// a broker set up on that store.
func forEachStore(t *testing.T, f func(t *testing.T, e *env)) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) { f(t, setup(t, s)) })
}

// mustSend sends body to to as c and fails the test if the send fails.
func mustSend(t testing.TB, ctx context.Context, c *parley.Client, to parley.Target, body any, opts ...parley.SendOption) parley.Message {
	t.Helper()
	m, err := c.Send(ctx, to, body, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func seqsOf(ms []parley.Message) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/broker/brokertest"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/pgtest"
	"github.com/parley-im/parley/internal/s3test"
	"github.com/parley-im/parley/internal/testkit"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	s3test.Stop()
	os.Exit(code)
}

var testSecret = []byte(testkit.Secret)

// env is a running broker on loopback ports.
type env struct {
	t    testing.TB
	b    *broker.Broker
	mqtt string
	ws   string
	http string
}

// setup starts a broker on store with every listener on a free port; the
// per-user rates of sends and uploads are off unless mod sets them.
func setup(t testing.TB, store history.Store, mod ...func(*broker.Options)) *env {
	t.Helper()
	opts := broker.Options{
		Store: store, MQTTAddr: "127.0.0.1:0", WSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		JWTSecret: testSecret, Logger: testkit.Logger(), Rate: -1, UploadRate: -1,
	}
	for _, f := range mod {
		f(&opts)
	}
	s := brokertest.Start(t, opts)
	e := &env{t: t, b: s.Broker(), mqtt: s.Addr("mqtt"), ws: s.Addr("ws"), http: "http://" + s.Addr("http")}
	return e
}

// forEachStore runs f as a subtest on each store (testkit.ForEachStore)
// with a broker on it.
func forEachStore(t *testing.T, f func(t *testing.T, e *env)) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) { f(t, setup(t, s)) })
}

// event is what arrives on a topic: the decoded inbox event and the
// packet's topic, QoS and payload.
type event struct {
	testkit.Event
	qos   byte
	topic string
	raw   []byte
}

// client is a test MQTT client, v3.1.1 (paho.mqtt.golang) or v5 (paho.golang).
type client struct {
	t      testing.TB
	id     string
	events chan event
	v3     pahov3.Client
	v5     *paho.Client
	// seen is the highest seq per conversation that nextMessage returned.
	seen map[string]int64
}

func parseEvent(t testing.TB, topic string, qos byte, payload []byte) event {
	var ev event
	if err := json.Unmarshal(payload, &ev); err != nil {
		t.Errorf("inbox payload on %s is not JSON: %q", topic, payload)
	}
	ev.qos, ev.topic, ev.raw = qos, topic, append([]byte(nil), payload...)
	return ev
}

// dialV3 connects a v3.1.1 client with user's token and subscribes to the
// inbox at QoS 1.
func (e *env) dialV3(clientID, user string) *client {
	e.t.Helper()
	c, err := e.connectV3(clientID, user, testkit.Token(e.t, user))
	if err != nil {
		e.t.Fatalf("connect %s: %v", clientID, err)
	}
	c.subscribe("im/inbox/"+user, 1)
	return c
}

func (e *env) connectV3(clientID, username, password string) (*client, error) {
	c := &client{t: e.t, id: clientID, events: make(chan event, 10000)}
	o := pahov3.NewClientOptions().AddBroker("tcp://" + e.mqtt).SetClientID(clientID).
		SetUsername(username).SetPassword(password).SetProtocolVersion(4).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ pahov3.Client, m pahov3.Message) {
			c.events <- parseEvent(e.t, m.Topic(), m.Qos(), m.Payload())
		})
	c.v3 = pahov3.NewClient(o)
	tok := c.v3.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	e.t.Cleanup(func() { c.v3.Disconnect(0) })
	return c, nil
}

// dialV5 connects a v5 client with user's token and subscribes to the inbox
// at QoS 2 (deliveries then come at QoS 1).
func (e *env) dialV5(clientID, user string) *client {
	e.t.Helper()
	c, ca, err := e.connectV5(clientID, user, testkit.Token(e.t, user))
	if err != nil {
		e.t.Fatalf("connect %s: %v (%+v)", clientID, err, ca)
	}
	c.subscribe("im/inbox/"+user, 2)
	return c
}

func (e *env) connectV5(clientID, username, password string) (*client, *paho.Connack, error) {
	return e.connectV5With(&paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true,
		Username: username, UsernameFlag: username != "", Password: []byte(password), PasswordFlag: password != ""}, 10000)
}

// connectV5With connects a v5 client with cp; up to buf events wait in its
// events channel.
func (e *env) connectV5With(cp *paho.Connect, buf int) (*client, *paho.Connack, error) {
	conn, err := net.Dial("tcp", e.mqtt)
	if err != nil {
		return nil, nil, err
	}
	c := &client{t: e.t, id: cp.ClientID, events: make(chan event, buf)}
	c.v5 = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.events <- parseEvent(e.t, pr.Packet.Topic, pr.Packet.QoS, pr.Packet.Payload)
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.v5.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		return nil, ca, err
	}
	e.t.Cleanup(func() { c.v5.Disconnect(&paho.Disconnect{}) })
	return c, ca, nil
}

// subscribe subscribes and returns the SUBACK code.
func (c *client) subscribe(filter string, qos byte) byte {
	c.t.Helper()
	if c.v3 != nil {
		tok := c.v3.Subscribe(filter, qos, nil)
		if !tok.WaitTimeout(5 * time.Second) {
			c.t.Fatalf("%s: subscribe %s timed out", c.id, filter)
		}
		st, _ := tok.(*pahov3.SubscribeToken)
		for _, code := range st.Result() { // one filter; paho may rename $share filters
			return code
		}
		c.t.Fatalf("%s: no SUBACK code for %s", c.id, filter)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.v5.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if sa == nil {
		c.t.Fatalf("%s: subscribe %s: %v", c.id, filter, err)
	}
	return sa.Reasons[0]
}

// publish publishes payload and returns the v5 reason code (0 for v3 after
// its ack) or an error when no ack came.
func (c *client) publish(topic string, qos byte, payload string) (byte, error) {
	c.t.Helper()
	if c.v3 != nil {
		tok := c.v3.Publish(topic, qos, false, payload)
		if !tok.WaitTimeout(3 * time.Second) {
			return 0, fmt.Errorf("no ack")
		}
		return 0, tok.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	pr, err := c.v5.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)})
	if pr != nil {
		return pr.ReasonCode, nil
	}
	return 0, err
}

// send publishes a message and fails the test unless it was acked.
func (c *client) send(topic string, qos byte, payload string) {
	c.t.Helper()
	code, err := c.publish(topic, qos, payload)
	if err != nil || code >= 0x80 {
		c.t.Fatalf("%s: publish to %s: code %#x, %v", c.id, topic, code, err)
	}
}

// next returns the next event, failing after a timeout.
func (c *client) next() event {
	c.t.Helper()
	select {
	case ev := <-c.events:
		return ev
	case <-time.After(10 * time.Second):
		c.t.Fatalf("%s: no event within 10s", c.id)
	}
	return event{}
}

// nextOn returns the next event on topic, skipping others.
func (c *client) nextOn(topic string) event {
	c.t.Helper()
	for {
		if ev := c.next(); ev.topic == topic {
			return ev
		}
	}
}

// nextKind returns the next event of kind, skipping others.
func (c *client) nextKind(kind string) event {
	c.t.Helper()
	for {
		if ev := c.next(); ev.Kind == kind {
			return ev
		}
	}
}

// quiet fails if anything but a receipt arrives within d.
func (c *client) quiet(d time.Duration) {
	c.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev := <-c.events:
			if ev.Kind != "delivered" && ev.Kind != "read" {
				c.t.Fatalf("%s: unexpected event %+v", c.id, ev)
			}
		case <-deadline:
			return
		}
	}
}

// request sends an HTTP request as user ("" for none) with body (nil for
// none) and hdr, pairs of header names and values, and returns the response
// with its body read.
func (e *env) request(method, path, user string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.http+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+testkit.Token(e.t, user))
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// do sends an HTTP request as user ("" for none) and decodes the JSON reply.
func (e *env) do(method, path, user, body string, out any) int {
	e.t.Helper()
	resp, b := e.request(method, path, user, strings.NewReader(body))
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: reply %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

type apiErr struct {
	Error struct{ Code, Message string } `json:"error"`
}

type brokerOptions = broker.Options

// withACL returns an option that sets the ACL parsed from rules.
func withACL(t testing.TB, rules string) func(*broker.Options) {
	t.Helper()
	acl, err := auth.ParseACL(strings.NewReader(rules))
	if err != nil {
		t.Fatal(err)
	}
	return func(o *broker.Options) { o.ACL = acl }
}

// get fetches path and returns the body.
func (e *env) get(path string) (string, int) {
	e.t.Helper()
	resp, err := http.Get(e.http + path)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// dialOpts are options of dial.
type dialOpts struct {
	v5         bool
	persistent bool // clean session false (v3) / session expiry (v5)
	noSub      bool // do not subscribe to the inbox
}

// dial connects clientID as user with options, subscribing to the inbox at
// QoS 1 unless told not to.
func (e *env) dial(clientID, user string, o dialOpts) *client {
	e.t.Helper()
	if !o.v5 {
		c := &client{t: e.t, id: clientID, events: make(chan event, 100000)}
		po := pahov3.NewClientOptions().AddBroker("tcp://" + e.mqtt).SetClientID(clientID).
			SetUsername(user).SetPassword(testkit.Token(e.t, user)).SetCleanSession(!o.persistent).
			SetAutoReconnect(false).SetOrderMatters(true).SetKeepAlive(30 * time.Second).
			SetDefaultPublishHandler(func(_ pahov3.Client, m pahov3.Message) {
				c.events <- parseEvent(e.t, m.Topic(), m.Qos(), m.Payload())
			})
		c.v3 = pahov3.NewClient(po)
		if tok := c.v3.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			e.t.Fatalf("connect %s: %v", clientID, tok.Error())
		}
		e.t.Cleanup(func() { c.v3.Disconnect(0) })
		if !o.noSub {
			c.subscribe("im/inbox/"+user, 1)
		}
		return c
	}
	cp := &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: !o.persistent,
		Username: user, UsernameFlag: true, Password: []byte(testkit.Token(e.t, user)), PasswordFlag: true}
	if o.persistent {
		expiry := uint32(3600)
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	}
	c, _, err := e.connectV5With(cp, 100000)
	if err != nil {
		e.t.Fatalf("connect %s: %v", clientID, err)
	}
	if !o.noSub {
		c.subscribe("im/inbox/"+user, 1)
	}
	return c
}

// close disconnects the client cleanly.
func (c *client) close() {
	if c.v3 != nil {
		c.v3.Disconnect(50)
		return
	}
	c.v5.Disconnect(&paho.Disconnect{})
}

// collector checks what a client that dedups on (conv, seq) surfaces: per
// conversation, the first seq is the expected start (1 unless told
// otherwise), each new seq follows the previous one, and a seq seen before
// carries the same message (id and body) as the first time.
type collector struct {
	last   map[string]int64            // conv -> highest seq surfaced
	first  map[string]int64            // conv -> first seq surfaced
	ids    map[string]map[int64]string // conv -> seq -> id
	bodies map[string]map[int64]string // conv -> seq -> body
	// start is the seq each conversation must begin at; a conversation not
	// in it must begin at 1 unless anyStart is set.
	start    map[string]int64
	anyStart bool
	dups     int
	n        int
}

func newCollector() *collector {
	return &collector{last: map[string]int64{}, first: map[string]int64{}, ids: map[string]map[int64]string{},
		bodies: map[string]map[int64]string{}, start: map[string]int64{}}
}

// add records a message event; it fails on a gap, a reorder, a first seq
// other than the expected start, or a known seq with another message.
func (col *collector) add(t testing.TB, ev event) {
	t.Helper()
	last, seen := col.last[ev.Conv]
	if seen && ev.Seq <= last {
		if ev.Seq < col.first[ev.Conv] {
			t.Fatalf("%s: seq %d after the first surfaced seq %d", ev.Conv, ev.Seq, col.first[ev.Conv])
		}
		if id := col.ids[ev.Conv][ev.Seq]; id != ev.ID {
			t.Fatalf("%s: seq %d is %s, earlier %s: two messages under one seq", ev.Conv, ev.Seq, ev.ID, id)
		}
		if body := col.bodies[ev.Conv][ev.Seq]; body != string(ev.Body) {
			t.Fatalf("%s: seq %d (%s) has body %s, earlier %s", ev.Conv, ev.Seq, ev.ID, ev.Body, body)
		}
		col.dups++
		return
	}
	if !seen {
		want, known := col.start[ev.Conv]
		if !known && !col.anyStart {
			want, known = 1, true
		}
		if known && ev.Seq != want {
			t.Fatalf("%s: first seq %d, want %d", ev.Conv, ev.Seq, want)
		}
		col.first[ev.Conv] = ev.Seq
		col.ids[ev.Conv] = map[int64]string{}
		col.bodies[ev.Conv] = map[int64]string{}
	} else if ev.Seq != last+1 {
		t.Fatalf("%s: seq %d after %d: out of order or missing", ev.Conv, ev.Seq, last)
	}
	col.last[ev.Conv] = ev.Seq
	col.ids[ev.Conv][ev.Seq] = ev.ID
	col.bodies[ev.Conv][ev.Seq] = string(ev.Body)
	col.n++
}

// noDups fails the test if any message was surfaced more than once.
func (col *collector) noDups(t testing.TB, who string) {
	t.Helper()
	if col.dups != 0 {
		t.Errorf("%s: %d messages delivered again under a seq already surfaced", who, col.dups)
	}
}

// waitCursors waits until the store holds, for device of user, a cursor at
// least at each conversation's seq in want: from then on a reconnect of the
// device re-sends nothing it acknowledged.
func waitCursors(t testing.TB, s history.Store, device, user string, want map[string]int64) {
	t.Helper()
	var got map[string]int64
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := s.Device(context.Background(), device, user)
		if err != nil {
			t.Fatalf("read the cursors of %s: %v", device, err)
		}
		got = st.Cursors
		behind := false
		for conv, seq := range want {
			behind = behind || got[conv] < seq
		}
		if !behind {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: cursors %v after 10s, want at least %v", device, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// drain collects message events until want new messages were surfaced.
func (col *collector) drain(t testing.TB, c *client, want int) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for col.n < want {
		select {
		case ev := <-c.events:
			if ev.Kind == "message" {
				col.add(t, ev)
			}
		case <-deadline:
			t.Fatalf("%s: surfaced %d of %d messages within 60s", c.id, col.n, want)
		}
	}
}

func mustUnmarshal(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("unmarshal %q: %v", b, err)
	}
}

// rawConnect opens a TCP connection and sends an MQTT 3.1.1 CONNECT with the
// given keepalive (seconds), then reads the CONNACK; it sends nothing else.
func rawConnect(t testing.TB, e *env, clientID, user string, keepalive uint16) net.Conn {
	t.Helper()
	conn, code := rawConnack(t, e, connectPacket(t, clientID, user, keepalive, 0))
	if code != 0 {
		t.Fatalf("raw CONNACK return code 0x%02x", code)
	}
	return conn
}

// rawConnack opens a TCP connection, closed when the test ends, sends the
// MQTT 3.1.1 CONNECT packet connect and reads the CONNACK; it returns the
// connection and the CONNACK's return code.
func rawConnack(t testing.TB, e *env, connect []byte) (net.Conn, byte) {
	t.Helper()
	conn, err := net.Dial("tcp", e.mqtt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write(connect); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(conn, ack); err != nil || ack[0] != 0x20 {
		t.Fatalf("raw CONNACK %v, %v", ack, err)
	}
	conn.SetReadDeadline(time.Time{})
	return conn, ack[3]
}

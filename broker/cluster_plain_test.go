package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

// Plain MQTT across the nodes of a cluster (docs/protocol.md "Plain MQTT",
// cluster mode): publishes, retained messages, shared subscriptions and
// persistent sessions, over real sockets, on one PostgreSQL and one NATS.

// plainACL lets everyone publish to secret/# without reading it back, and
// read and write everything else.
const plainACL = "* write secret/#\n* readwrite #\n"

func plainCluster(t *testing.T, n int) *cluster {
	t.Helper()
	return startCluster(t, n, func(o *broker.Options) {
		o.Anonymous = true
		withACL(t, plainACL)(o)
	})
}

// watch connects a live subscriber to filter on each node of c, in node
// order: once one got a publish, its node has applied it.
func (c *cluster) watch(t *testing.T, filter string) []*pclient {
	t.Helper()
	var watchers []*pclient
	for i, n := range c.nodes {
		w, _ := dialPlain(t, n.mqtt, &paho.Connect{ClientID: fmt.Sprintf("watch%d", i), CleanStart: true})
		w.subs(filter)
		watchers = append(watchers, w)
	}
	return watchers
}

// addNode starts one more node of c.
func (c *cluster) addNode(t *testing.T) *env {
	t.Helper()
	e := setup(t, testkit.OpenPostgres(t, c.url), func(o *broker.Options) {
		o.NATSURL = c.nats.ClientURL()
		o.NodeID = fmt.Sprintf("node%d", len(c.nodes))
		o.Anonymous = true
		withACL(t, plainACL)(o)
	})
	c.nodes = append(c.nodes, e)
	return e
}

// TestClusterPlainPublish: a publish on one node reaches the subscribers of
// every node once, with its QoS (capped by the subscription's), its MQTT 5
// properties, and the receiving node's read ACL.
func TestClusterPlainPublish(t *testing.T) {
	c := plainCluster(t, 2)
	n0, n1 := c.nodes[0].mqtt, c.nodes[1].mqtt
	remote, _ := dialPlain(t, n1, &paho.Connect{ClientID: "remote", CleanStart: true})
	remote.sub(paho.SubscribeOptions{Topic: "sensors/#", QoS: 2})
	all, _ := dialPlain(t, n1, &paho.Connect{ClientID: "all", CleanStart: true})
	all.subs("#")
	local, _ := dialPlain(t, n0, &paho.Connect{ClientID: "local", CleanStart: true})
	local.subs("sensors/#")
	v3, v3got := anonV3(t, c.nodes[1], "v3", nil)
	if tok := v3.Subscribe("sensors/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	pub, _ := dialPlain(t, n0, &paho.Connect{ClientID: "pub", CleanStart: true})

	pub.pub(&paho.Publish{Topic: "sensors/t1", QoS: 2, Payload: []byte("21.5"), Properties: &paho.PublishProperties{
		User:        paho.UserProperties{{Key: "unit", Value: "C"}, {Key: "room", Value: "kitchen"}},
		ContentType: "text/plain", ResponseTopic: "reply/t1", CorrelationData: []byte("corr-1"),
		MessageExpiry: ptr(uint32(300)), PayloadFormat: ptr(byte(1)),
	}})
	pub.pub(&paho.Publish{Topic: "secret/x", QoS: 1, Payload: []byte("hidden")})
	pub.pub(&paho.Publish{Topic: "sensors/t2", QoS: 0, Payload: []byte("marker")})

	m := remote.next()
	if m.Topic != "sensors/t1" || string(m.Payload) != "21.5" || m.QoS != 2 {
		t.Fatalf("remote got %s %q at QoS %d", m.Topic, m.Payload, m.QoS)
	}
	p := m.Properties
	if p == nil || p.User.Get("unit") != "C" || p.User.Get("room") != "kitchen" || p.ContentType != "text/plain" ||
		p.ResponseTopic != "reply/t1" || !bytes.Equal(p.CorrelationData, []byte("corr-1")) ||
		p.MessageExpiry == nil || *p.MessageExpiry > 300 || *p.MessageExpiry < 1 || p.PayloadFormat == nil || *p.PayloadFormat != 1 {
		t.Fatalf("properties across nodes: %+v", p)
	}
	if m := remote.next(); m.Topic != "sensors/t2" || m.QoS != 0 {
		t.Fatalf("remote got %s at QoS %d, want sensors/t2 at 0", m.Topic, m.QoS)
	}
	// The receiving node's ACL: secret/x, published between the two, is
	// not delivered through #.
	for _, want := range []string{"sensors/t1", "sensors/t2"} {
		if m := all.next(); m.Topic != want {
			t.Fatalf("# on node 1 got %s, want %s", m.Topic, want)
		}
	}
	// Once on the publishing node: no echo from the other node.
	for _, want := range []string{"sensors/t1", "sensors/t2"} {
		if m := local.next(); m.Topic != want {
			t.Fatalf("node 0 got %s, want %s", m.Topic, want)
		}
	}
	// An MQTT 3.1.1 subscriber on the other node, at its QoS.
	if m := recv(t, v3got); m.Topic() != "sensors/t1" || string(m.Payload()) != "21.5" || m.Qos() != 1 {
		t.Fatalf("v3 on node 1 got %s %q at QoS %d", m.Topic(), m.Payload(), m.Qos())
	}
	// The way back.
	back, _ := anonV3(t, c.nodes[1], "back", nil)
	if tok := back.Publish("sensors/back", 1, false, "from node 1"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if m := local.next(); m.Topic != "sensors/back" || string(m.Payload) != "from node 1" || m.QoS != 1 {
		t.Fatalf("node 0 got %s %q at QoS %d", m.Topic, m.Payload, m.QoS)
	}
	if m := remote.next(); m.Topic != "sensors/back" {
		t.Fatalf("node 1 got %s", m.Topic)
	}
	local.none(300 * time.Millisecond)
	remote.none(0)
}

// TestClusterPlainRetained: a retained message set on one node is seen by
// new subscriptions on every node, a clear on another node clears it
// everywhere, and a node started later loads them from the store.
func TestClusterPlainRetained(t *testing.T) {
	c := plainCluster(t, 2)
	n0, n1 := c.nodes[0].mqtt, c.nodes[1].mqtt
	watchers := c.watch(t, "status/#")
	pub0, _ := dialPlain(t, n0, &paho.Connect{ClientID: "pub0", CleanStart: true})
	pub0.pub(&paho.Publish{Topic: "status/boiler", QoS: 1, Retain: true, Payload: []byte("on"),
		Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "by", Value: "node0"}}}})
	pub0.pub(&paho.Publish{Topic: "status/pump", QoS: 1, Retain: true, Payload: []byte("off")})
	for _, w := range watchers {
		w.next()
		w.next()
	}
	late1, _ := dialPlain(t, n1, &paho.Connect{ClientID: "late1", CleanStart: true})
	late1.subs("status/boiler")
	m := late1.next()
	if m.Topic != "status/boiler" || string(m.Payload) != "on" || !m.Retain || m.Properties == nil || m.Properties.User.Get("by") != "node0" {
		t.Fatalf("retained on node 1: %s %q retain %v %+v", m.Topic, m.Payload, m.Retain, m.Properties)
	}

	// Cleared on node 1: gone on node 0 too.
	pub1, _ := dialPlain(t, n1, &paho.Connect{ClientID: "pub1", CleanStart: true})
	pub1.pub(&paho.Publish{Topic: "status/boiler", QoS: 1, Retain: true})
	pub1.pub(&paho.Publish{Topic: "status/valve", QoS: 1, Retain: true, Payload: []byte("open")})
	for _, w := range watchers {
		w.next()
		w.next()
	}
	if got := retained(t, n0, "late0", "status/#"); len(got) != 2 || got["status/pump"] != "off" || got["status/valve"] != "open" {
		t.Fatalf("retained on node 0 after the clear on node 1: %v, want pump and valve", got)
	}

	// A node that starts now finds them in the store.
	n2 := c.addNode(t)
	if got := retained(t, n2.mqtt, "late2", "status/#"); len(got) != 2 || got["status/pump"] != "off" || got["status/valve"] != "open" {
		t.Fatalf("retained on a new node: %v, want pump and valve", got)
	}
}

// retained connects clientID to addr, subscribes to filter and returns the
// retained messages it gets within 500 ms, payload by topic.
func retained(t *testing.T, addr, clientID, filter string) map[string]string {
	t.Helper()
	c, _ := dialPlain(t, addr, &paho.Connect{ClientID: clientID, CleanStart: true})
	c.subs(filter)
	got := map[string]string{}
	for _, m := range c.drain(500 * time.Millisecond) {
		got[m.Topic] = string(m.Payload)
	}
	return got
}

// TestClusterPlainShared: a shared subscription with members on two nodes
// gets each message once, whichever node it was published on, and members
// on both nodes get some.
func TestClusterPlainShared(t *testing.T) {
	c := plainCluster(t, 2)
	n0, n1 := c.nodes[0].mqtt, c.nodes[1].mqtt
	const filter = "$share/workers/jobs/#"
	members := map[string]*pclient{}
	for _, m := range []struct{ id, addr string }{{"w0a", n0}, {"w0b", n0}, {"w1", n1}} {
		p, _ := dialPlain(t, m.addr, &paho.Connect{ClientID: m.id, CleanStart: true})
		p.subs(filter)
		members[m.id] = p
	}
	pub0, _ := dialPlain(t, n0, &paho.Connect{ClientID: "pub0", CleanStart: true})
	pub1, _ := dialPlain(t, n1, &paho.Connect{ClientID: "pub1", CleanStart: true})
	// Wait until each node knows the other's members: probes published on
	// one node reach a member on the other.
	probe := func(pub *pclient, want ...string) {
		t.Helper()
		for i := 0; ; i++ {
			if i == 500 {
				t.Fatalf("no probe reached %v", want)
			}
			pub.pub(&paho.Publish{Topic: "jobs/probe", QoS: 1, Payload: []byte("probe")})
			for _, id := range want {
				for _, m := range members[id].drain(20 * time.Millisecond) {
					if string(m.Payload) == "probe" {
						return
					}
				}
			}
		}
	}
	probe(pub0, "w1")
	probe(pub1, "w0a", "w0b")

	const n = 60
	for i := 0; i < n; i++ {
		pub := pub0
		if i%2 == 1 {
			pub = pub1
		}
		pub.pub(&paho.Publish{Topic: fmt.Sprintf("jobs/%d", i), QoS: 1, Payload: []byte(fmt.Sprint(i))})
	}
	seen := map[string]string{}
	perNode := map[string]int{}
	deadline := time.Now().Add(10 * time.Second)
	for len(seen) < n && time.Now().Before(deadline) {
		for id, p := range members {
			for _, m := range p.drain(20 * time.Millisecond) {
				if string(m.Payload) == "probe" {
					continue
				}
				if other, dup := seen[string(m.Payload)]; dup {
					t.Fatalf("message %s delivered twice: to %s and %s", m.Payload, other, id)
				}
				seen[string(m.Payload)] = id
				perNode[id[:2]]++
			}
		}
	}
	if len(seen) != n {
		t.Fatalf("%d of %d messages reached the group", len(seen), n)
	}
	for _, p := range members {
		for _, m := range p.drain(300 * time.Millisecond) {
			if string(m.Payload) != "probe" {
				t.Fatalf("message %s delivered twice", m.Payload)
			}
		}
	}
	if perNode["w0"] == 0 || perNode["w1"] == 0 {
		t.Fatalf("members per node: %v, want both nodes", perNode)
	}
}

// queued returns the messages stored as queued for client (anonymous
// clients' ids are stored as anon:ID).
func queued(t *testing.T, s history.MQTTStater, client string) []string {
	t.Helper()
	recs, err := s.MQTTSession(context.Background(), client)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		if r.Kind == history.MQTTInflight {
			out = append(out, string(r.Data))
		}
	}
	return out
}

// waitQueued waits until client has n queued messages in the store.
func waitQueued(t *testing.T, s history.MQTTStater, client string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(queued(t, s, client)) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d messages queued in the store, want %d", client, len(queued(t, s, client)), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterPlainSessionMoves: a persistent session that was on node 0
// reconnects to node 1 and gets, in order, what was queued for it while it
// was away (published on node 1); its subscription moved with it (a publish
// on node 0 reaches it once); and back on node 0 it gets what node 1
// queued meanwhile, and nothing twice.
func TestClusterPlainSessionMoves(t *testing.T) {
	c := plainCluster(t, 2)
	n0, n1 := c.nodes[0].mqtt, c.nodes[1].mqtt
	store := testkit.OpenPostgres(t, c.url).(history.MQTTStater)
	expiry := uint32(600)
	session := func() *paho.Connect {
		return &paho.Connect{ClientID: "meter", CleanStart: false, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
	}
	s, _ := dialPlain(t, n0, session())
	s.subs("data/#")
	s.disconnect()
	pub1, _ := dialPlain(t, n1, &paho.Connect{ClientID: "pub1", CleanStart: true})
	const n = 20
	for i := 0; i < n; i++ {
		pub1.pub(&paho.Publish{Topic: "data/x", QoS: 1, Payload: []byte(fmt.Sprint(i))})
	}
	waitQueued(t, store, "anon:meter", n) // node 0 queued them for its session

	s, ca := dialPlain(t, n1, session())
	if !ca.SessionPresent {
		t.Fatal("the session did not move to node 1")
	}
	for i := 0; i < n; i++ {
		if m := s.next(); string(m.Payload) != fmt.Sprint(i) {
			t.Fatalf("queued message %d: got %q", i, m.Payload)
		}
	}
	pub0, _ := dialPlain(t, n0, &paho.Connect{ClientID: "pub0", CleanStart: true})
	pub0.pub(&paho.Publish{Topic: "data/y", QoS: 1, Payload: []byte("live")})
	if m := s.next(); string(m.Payload) != "live" {
		t.Fatalf("after the move: got %q, want live", m.Payload)
	}
	s.none(300 * time.Millisecond)
	waitQueued(t, store, "anon:meter", 0) // all acknowledged
	s.disconnect()

	pub0.pub(&paho.Publish{Topic: "data/z", QoS: 1, Payload: []byte("while away")})
	waitQueued(t, store, "anon:meter", 1) // node 1 queued it
	s, ca = dialPlain(t, n0, session())
	if !ca.SessionPresent {
		t.Fatal("the session did not move back to node 0")
	}
	if m := s.next(); string(m.Payload) != "while away" {
		t.Fatalf("back on node 0: got %q", m.Payload)
	}
	pub1.pub(&paho.Publish{Topic: "data/w", QoS: 1, Payload: []byte("last")})
	if m := s.next(); string(m.Payload) != "last" {
		t.Fatalf("back on node 0, live: got %q", m.Payload)
	}
	s.none(300 * time.Millisecond)
}

// TestClusterPlainTakeover: a client id that connects on another node takes
// the session over: the first connection is closed, and a clean start
// there ends the stored session.
func TestClusterPlainTakeover(t *testing.T) {
	c := plainCluster(t, 2)
	store := testkit.OpenPostgres(t, c.url).(history.MQTTStater)
	expiry := uint32(600)
	first, _ := dialPlain(t, c.nodes[0].mqtt, &paho.Connect{ClientID: "dup", CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	first.subs("dup/#")
	dialPlain(t, c.nodes[1].mqtt, &paho.Connect{ClientID: "dup", CleanStart: true})
	select {
	case <-first.c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the connection on node 0 was not taken over")
	}
	if recs, err := store.MQTTSession(context.Background(), "anon:dup"); err != nil || len(recs) != 0 {
		t.Fatalf("after a clean start elsewhere the stored session remains: %d records, %v", len(recs), err)
	}
	pub, _ := dialPlain(t, c.nodes[0].mqtt, &paho.Connect{ClientID: "pub", CleanStart: true})
	pub.pub(&paho.Publish{Topic: "dup/x", QoS: 1, Payload: []byte("x")})
	if got := strings.Join(queued(t, store, "anon:dup"), ","); got != "" {
		t.Fatalf("node 0 still queues for the old session: %s", got)
	}
}

// TestClusterPlainWillDelay: the will of a client that went away without
// DISCONNECT is published to every node after its delay, unless the client
// reconnects first, to any node.
func TestClusterPlainWillDelay(t *testing.T) {
	c := plainCluster(t, 2)
	n0, n1 := c.nodes[0].mqtt, c.nodes[1].mqtt
	watchers := c.watch(t, "status/#")
	expiry := uint32(600)
	withWill := func(id string, delay uint32) *paho.Connect {
		return &paho.Connect{ClientID: id, CleanStart: false, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry},
			WillMessage:    &paho.WillMessage{Topic: "status/" + id, QoS: 1, Payload: []byte("gone")},
			WillProperties: &paho.WillProperties{WillDelayInterval: ptr(delay), User: paho.UserProperties{{Key: "why", Value: "lost"}}}}
	}
	// Back on the other node within the delay: no will.
	back, _ := dialPlain(t, n0, withWill("back", 3))
	back.conn.Close()
	dialPlain(t, n1, withWill("back", 3))
	// Gone for good: its will reaches both nodes.
	lost, _ := dialPlain(t, n1, withWill("lost", 1))
	lost.conn.Close()
	for _, w := range watchers {
		m := w.next()
		if m.Topic != "status/lost" || string(m.Payload) != "gone" || m.Properties == nil || m.Properties.User.Get("why") != "lost" {
			t.Fatalf("will: %s %q %+v", m.Topic, m.Payload, m.Properties)
		}
	}
	watchers[0].none(3 * time.Second) // not the will of the client that came back
	watchers[1].none(0)
}

// TestClusterPlainNodeGone: a persistent session whose node shut down
// comes back on another node, with what that node had queued for it.
func TestClusterPlainNodeGone(t *testing.T) {
	c := plainCluster(t, 2)
	n0, n1 := c.nodes[0].mqtt, c.nodes[1].mqtt
	store := testkit.OpenPostgres(t, c.url).(history.MQTTStater)
	expiry := uint32(600)
	session := &paho.Connect{ClientID: "orphan", CleanStart: false, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
	s, _ := dialPlain(t, n0, session)
	s.subs("data/#")
	s.disconnect()
	pub, _ := dialPlain(t, n1, &paho.Connect{ClientID: "pub", CleanStart: true})
	for i := 0; i < 5; i++ {
		pub.pub(&paho.Publish{Topic: "data/x", QoS: 1, Payload: []byte(fmt.Sprint(i))})
	}
	waitQueued(t, store, "anon:orphan", 5)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.nodes[0].b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s, ca := dialPlain(t, n1, session)
	if !ca.SessionPresent {
		t.Fatal("the session of the node that left did not come back")
	}
	for i := 0; i < 5; i++ {
		if m := s.next(); string(m.Payload) != fmt.Sprint(i) {
			t.Fatalf("queued message %d: got %q", i, m.Payload)
		}
	}
	pub.pub(&paho.Publish{Topic: "data/y", QoS: 1, Payload: []byte("live")})
	if m := s.next(); string(m.Payload) != "live" {
		t.Fatalf("after the move: got %q", m.Payload)
	}
}

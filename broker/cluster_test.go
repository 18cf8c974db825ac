package broker_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/internal/pgtest"
	"github.com/parley-im/parley/internal/testkit"
)

// cluster is n Parley nodes on one PostgreSQL database and one NATS server.
type cluster struct {
	nodes []*env
	nats  *natsserver.Server
	url   string
}

func startCluster(t *testing.T, n int, mod func(*broker.Options)) *cluster {
	t.Helper()
	c := &cluster{url: pgtest.DB(t)}
	c.nats = testkit.RunNATS(t, nil)
	for i := 0; i < n; i++ {
		store := testkit.OpenPostgres(t, c.url)
		c.nodes = append(c.nodes, setup(t, store, func(o *broker.Options) {
			o.NATSURL = c.nats.ClientURL()
			o.NodeID = fmt.Sprintf("node%d", i)
			if mod != nil {
				mod(o)
			}
		}))
	}
	return c
}

// TestClusterDelivery: direct and group messages cross nodes, in order, to
// every device; a read marker on one node reaches devices on another.
func TestClusterDelivery(t *testing.T) {
	c := startCluster(t, 3, nil)
	alice := c.nodes[0].dial("alice/a", "alice", dialOpts{v5: true})
	alice2 := c.nodes[2].dial("alice/b", "alice", dialOpts{})
	bob := c.nodes[1].dial("bob", "bob", dialOpts{v5: true})
	carol := c.nodes[2].dial("carol", "carol", dialOpts{})
	for i := 0; i < 20; i++ {
		alice.send("im/send/u/bob", 1, fmt.Sprintf(`{"cid":"a%d","body":%d}`, i, i))
	}
	for _, cl := range []*client{bob, alice, alice2} {
		col := newCollector()
		col.drain(t, cl, 20)
		if col.last["dm:alice:bob"] != 20 {
			t.Fatalf("%s: %v", cl.id, col.last)
		}
	}
	c.nodes[1].do("POST", "/v1/groups", "bob", `{"id":"trio","name":"Trio","members":["alice","carol"]}`, nil)
	carol.send("im/send/g/trio", 1, `{"body":"from node 2"}`)
	for _, cl := range []*client{alice, alice2, bob, carol} {
		for seq := int64(1); seq <= 2; seq++ {
			if ev := cl.nextKind("message"); ev.Conv != "g:trio" || ev.Seq != seq {
				t.Fatalf("%s got %+v, want g:trio seq %d", cl.id, ev, seq)
			}
		}
	}
	bob.send("im/read", 1, `{"conv":"dm:alice:bob","seq":20}`)
	for _, cl := range []*client{alice, alice2} {
		if ev := cl.nextKind("read"); ev.User != "bob" || ev.Seq != 20 {
			t.Fatalf("%s: read %+v", cl.id, ev)
		}
	}
}

// TestClusterTakeover: the same client id connecting on another node takes
// the session over: the first node drops its copy.
func TestClusterTakeover(t *testing.T) {
	c := startCluster(t, 2, nil)
	first := c.nodes[0].dial("bob/phone", "bob", dialOpts{})
	second := c.nodes[1].dial("bob/phone", "bob", dialOpts{})
	deadline := time.Now().Add(10 * time.Second)
	for first.v3.IsConnectionOpen() {
		if time.Now().After(deadline) {
			t.Fatal("the session on the first node was not taken over")
		}
		time.Sleep(50 * time.Millisecond)
	}
	alice := c.nodes[0].dial("alice", "alice", dialOpts{noSub: true})
	alice.send("im/send/u/bob", 1, `{"body":"to the new session"}`)
	if ev := second.nextKind("message"); ev.Seq != 1 {
		t.Fatalf("got %+v", ev)
	}
}

// TestClusterRepair: with 5% of NATS deliveries dropped, a NATS server
// restart mid-stream and a node killed mid-stream, every device still ends
// with seqs 1..N of every conversation, each surfaced once after dedup.
func TestClusterRepair(t *testing.T) {
	c := startCluster(t, 3, func(o *broker.Options) {
		broker.WithClusterDropRate(0.05)(o)
		o.ClusterSweep = 500 * time.Millisecond
		// bob's devices are new: without this, a first catch-up that runs
		// after more than 50 sends (a loaded machine) starts at the latest
		// 50, as documented, and the check from seq 1 fails.
		o.NewDeviceBacklog = 1 << 20
	})
	port := c.nats.Addr().(*net.TCPAddr).Port
	bob := c.nodes[1].dial("bob", "bob", dialOpts{v5: true})
	carol := c.nodes[2].dial("carol", "carol", dialOpts{})
	c.nodes[0].do("POST", "/v1/groups", "alice", `{"id":"g","name":"G","members":["bob","carol"]}`, nil)
	const n = 150
	var wg sync.WaitGroup
	acked := make([]int, 2)
	for s, node := range []int{0, 2} {
		wg.Add(1)
		go func(s, node int) {
			defer wg.Done()
			user := []string{"alice", "dave"}[s]
			cl := c.nodes[node].dial(user+"/s", user, dialOpts{noSub: true})
			for i := 0; i < n; i++ {
				if _, err := cl.publish("im/send/u/bob", 1, fmt.Sprintf(`{"cid":"%d","body":%d}`, i, i)); err == nil {
					acked[s]++
				}
				if user == "alice" {
					cl.publish("im/send/g/g", 1, fmt.Sprintf(`{"cid":"g%d","body":%d}`, i, i))
				}
			}
		}(s, node)
	}
	time.Sleep(300 * time.Millisecond)
	c.nats.Shutdown() // the bus goes away mid-stream...
	time.Sleep(500 * time.Millisecond)
	c.nats = testkit.RunNATS(t, &natsserver.Options{Port: port}) // ...and comes back on the same port
	wg.Wait()
	// Every send was acknowledged by a node, so it is in the store.
	if acked[0] != n || acked[1] != n {
		t.Fatalf("acked %v, want %d each", acked, n)
	}
	colB, colC := newCollector(), newCollector()
	colB.drain(t, bob, 2*n+n+1) // two DMs and the group (with group.created)
	colC.drain(t, carol, n+1)
	for conv, last := range colB.last {
		want := int64(n)
		if conv == "g:g" {
			want = n + 1
		}
		if last != want {
			t.Fatalf("bob: %s ends at %d, want %d", conv, last, want)
		}
	}
	t.Logf("bob: %d messages, %d duplicates dropped; carol: %d, %d", colB.n, colB.dups, colC.n, colC.dups)
	colB.noDups(t, "bob")
	colC.noDups(t, "carol")

	// Kill node 2 mid-stream: what it acknowledged is not lost.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dave := c.nodes[2].dial("dave/2", "dave", dialOpts{noSub: true})
	sent := 0
	for i := 0; i < 30; i++ {
		if i == 15 {
			go c.nodes[2].b.Close(ctx)
		}
		if _, err := dave.publish("im/send/u/bob", 1, fmt.Sprintf(`{"cid":"k%d","body":%d}`, i, i)); err == nil {
			sent = i + 1
		} else {
			break
		}
	}
	if sent == 0 {
		t.Fatal("nothing acknowledged before the kill")
	}
	for colB.last["dm:bob:dave"] < int64(n+sent) {
		select {
		case ev := <-bob.events:
			if ev.Kind == "message" {
				colB.add(t, ev)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("bob has dm:bob:dave up to %d, want at least %d", colB.last["dm:bob:dave"], n+sent)
		}
	}
	colB.noDups(t, "bob after the node stopped")
}

// TestClusterPresence: a user's presence is cluster-wide.
func TestClusterPresence(t *testing.T) {
	c := startCluster(t, 2, nil)
	alice := c.nodes[0].dial("alice", "alice", dialOpts{v5: true})
	bob := c.nodes[1].dial("bob", "bob", dialOpts{v5: true})
	bob.send("im/send/u/alice", 1, `{"body":"hi"}`)
	alice.send("im/send/u/bob", 1, `{"body":"hi"}`) // contacts: both wrote
	if code := alice.subscribe("im/presence/bob", 1); code != 1 {
		t.Fatalf("subscribe presence: %#x", code)
	}
	want := func(online bool) {
		t.Helper()
		for alice.nextOn("im/presence/bob").Online != online {
		}
	}
	want(true) // bob is on node 1 only
	bob.close()
	want(false)
	c.nodes[1].dial("bob", "bob", dialOpts{v5: true})
	want(true)
}

// TestClusterMessageChanges: edits, reactions, deletes and settings made on
// one node reach the devices on the others, and each node's REST API shows
// the same state and counts.
func TestClusterMessageChanges(t *testing.T) {
	c := startCluster(t, 2, nil)
	alice := c.nodes[0].dial("alice", "alice", dialOpts{v5: true})
	bob := c.nodes[1].dial("bob/a", "bob", dialOpts{})
	bob2 := c.nodes[0].dial("bob/b", "bob", dialOpts{})
	alice.post("im/send/u/bob", `{"cid":"a1","body":"hi","mentions":["bob"]}`)
	alice.post("im/send/u/bob", `{"op":"edit","cid":"a2","target":1,"body":"hi!"}`)
	bob.post("im/send/u/alice", `{"op":"react","cid":"b1","target":1,"emoji":"👍"}`)
	for _, want := range []string{"text", "message.edited", "reaction.added"} {
		if m := bob2.nextMessage(); m.Type != want {
			t.Fatalf("bob/b on node 0 got %+v, want %s", m, want)
		}
	}
	if m := alice.nextMessage(); m.Type != "reaction.added" || m.Emoji != "👍" {
		t.Fatalf("alice got %+v", m)
	}
	for i, n := range c.nodes {
		m := n.message("alice", "dm:alice:bob", 1)
		if m.Body != "hi!" || m.EditedAt == nil || m.Reactions["👍"].Count != float64(1) {
			t.Fatalf("node %d shows %+v", i, m)
		}
		if cv := n.conversation("bob", "dm:alice:bob"); cv.Unread != 1 || cv.Mentions != 1 {
			t.Fatalf("node %d: bob's counts %+v", i, cv)
		}
	}
	if st := c.nodes[1].do("PUT", "/v1/conversations/dm:alice:bob/settings", "bob", `{"archived":true}`, nil); st != 200 {
		t.Fatalf("settings: %d", st)
	}
	if ev := bob2.nextKind("settings"); !ev.Archived {
		t.Fatalf("bob/b settings event %+v", ev)
	}
	alice.post("im/send/u/bob", `{"op":"delete","cid":"a3","target":1}`)
	for _, want := range []string{"message.edited", "reaction.added", "message.deleted"} { // (seq 1 came with bob/a's post)
		if m := bob.nextMessage(); m.Type != want || m.Target != 1 {
			t.Fatalf("bob/a on node 1 got %+v, want %s", m, want)
		}
	}
	if cv := c.nodes[0].conversation("bob", "dm:alice:bob"); cv.Unread != 0 || cv.Mentions != 0 || !cv.Archived {
		t.Fatalf("bob's conversation after the delete %+v", cv)
	}
}

// TestClusterWebhookTakeover: one node at a time serves the webhook; when
// it goes away another takes over within seconds, and the receiver gets
// every event, in seq order per conversation.
func TestClusterWebhookTakeover(t *testing.T) {
	secret := []byte("s")
	rcv := newReceiver(t, secret)
	c := startCluster(t, 2, func(o *broker.Options) {
		o.WebhookURLs, o.WebhookSecret = []string{rcv.srv.URL}, secret
		o.OutboxPoll, o.OutboxMinBackoff = 20*time.Millisecond, 20*time.Millisecond
	})
	alice := c.nodes[1].dial("alice", "alice", dialOpts{})
	for i := range 5 {
		alice.post("im/send/u/bob", fmt.Sprintf(`{"cid":"a%d","body":%d}`, i, i))
	}
	rcv.waitFor(5)
	// The node that serves the sink is the one that reports its lag.
	serving := func(e *env) bool {
		body, _ := e.get("/metrics")
		return strings.Contains(body, `parley_outbox_lag_events{sink="webhook:`)
	}
	leader := -1
	for i, n := range c.nodes {
		if serving(n) {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no node reports serving the webhook")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	c.nodes[leader].b.Close(ctx)
	cancel()
	other := c.nodes[1-leader]
	for i := range 5 {
		if st := other.do("POST", "/v1/users/bob/messages", "alice", fmt.Sprintf(`{"cid":"t%d","body":%d}`, i, i), nil); st != 201 {
			t.Fatalf("send on the other node: %d", st)
		}
	}
	checkOrder(t, rcv.waitFor(10))
	if !serving(other) {
		t.Fatal("the other node delivered but does not report serving the sink")
	}
}

// TestClusterFiles: with a blob store all nodes share, a file uploaded on
// one node and attached to a message is served by every node to members,
// and to nobody else.
func TestClusterFiles(t *testing.T) {
	blobs := t.TempDir()
	c := startCluster(t, 2, func(o *broker.Options) { o.BlobDir = blobs })
	st, up, ae := c.nodes[0].postFile("alice", "text/plain", []byte("shared notes"))
	if st != 201 {
		t.Fatalf("upload on node 0: %d %+v", st, ae)
	}
	body := fmt.Sprintf(`{"cid":"f1","body":"see file","attachments":[{"id":%q,"name":"notes.txt"}]}`, up.ID)
	if st := c.nodes[0].do("POST", "/v1/users/bob/messages", "alice", body, nil); st != 201 {
		t.Fatalf("send with the file: %d", st)
	}
	for i, n := range c.nodes {
		resp, b := n.getFile("/v1/files/"+up.ID, "bob")
		if resp.StatusCode != 200 || string(b) != "shared notes" {
			t.Fatalf("node %d serves bob %d %q", i, resp.StatusCode, b)
		}
		if resp, _ := n.getFile("/v1/files/"+up.ID, "carol"); resp.StatusCode != 404 {
			t.Fatalf("node %d serves carol, a stranger: %d", i, resp.StatusCode)
		}
	}
}

// TestClusterAccountDeletion: deleting an account on one node disconnects
// the user's devices on every node, and its token stops working there.
func TestClusterAccountDeletion(t *testing.T) {
	c := startCluster(t, 2, nil)
	gone := c.nodes[1].dial("alice/b", "alice", dialOpts{})
	if st := c.nodes[0].do("DELETE", "/v1/users/me", "alice", "", nil); st != 200 {
		t.Fatalf("delete account: %d", st)
	}
	testkit.Eventually(t, 10*time.Second, func() bool { return !gone.v3.IsConnectionOpen() })
	// Node 1 refuses the old token too (at once once it heard of the
	// deletion; within auth.DefaultRevocationTTL in any case).
	testkit.Eventually(t, 10*time.Second, func() bool { return c.nodes[1].do("GET", "/v1/conversations", "alice", "", nil) == 401 })
}

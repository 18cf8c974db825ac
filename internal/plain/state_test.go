package plain

import (
	"context"
	"errors"
	"testing"

	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/sqlite"
)

// setup returns a State on a fresh SQLite store, as node (cluster mode
// when not empty).
func setup(t testing.TB, node string) *State {
	t.Helper()
	store, err := sqlite.Open(context.Background(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &State{Store: store, Node: node}
}

func publish(topic string, id uint16) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: topic,
		Payload: []byte("p"), PacketID: id}
}

// TestState: a persistent session's client, subscriptions and queued
// messages survive a restart (a new State on the same store); Parley's own
// topics are never stored; a clean start forgets the session.
func TestState(t *testing.T) {
	s := setup(t, "")
	c := storage.Client{ID: "dev1", ProtocolVersion: 4, Will: storage.ClientWill{TopicName: "im/inbox/x", Flag: 1}}
	s.Establish(c, true, 0)
	s.Subscribed("dev1", []packets.Subscription{{Filter: "a/#"}, {Filter: "im/inbox/x"}, {Filter: "b"}}, []byte{1, 0, 0x87})
	s.Queued("dev1", publish("a/b", 7))
	s.Queued("dev1", publish("im/inbox/x", 8))
	s.Retain("dev1", publish("r/t", 0), false)

	again := &State{Store: s.Store}
	clients, err := again.Clients()
	if err != nil || len(clients) != 1 || clients[0].ID != "dev1" || clients[0].Will.TopicName != "" {
		t.Fatalf("clients %+v (%v): want dev1 without its will on Parley's topics", clients, err)
	}
	subs, _ := again.Subscriptions()
	if len(subs) != 1 || subs[0].Filter != "a/#" || subs[0].Qos != 1 {
		t.Fatalf("subscriptions %+v: want a/# alone", subs)
	}
	msgs, _ := again.Inflight()
	if len(msgs) != 1 || msgs[0].PacketID != 7 {
		t.Fatalf("inflight %+v: want packet 7 alone", msgs)
	}
	if r, _ := again.Retained(); len(r) != 1 || r[0].TopicName != "r/t" {
		t.Fatalf("retained %+v", r)
	}
	again.Completed("dev1", 7)
	if msgs, _ := (&State{Store: s.Store}).Inflight(); len(msgs) != 0 {
		t.Fatalf("inflight after Completed: %+v", msgs)
	}
	again.Establish(c, false, 0)
	if clients, _ := (&State{Store: s.Store}).Clients(); len(clients) != 0 || again.Persistent("dev1") {
		t.Fatalf("a clean start kept the session: %+v", clients)
	}
}

// TestStateCluster: a node loads only the sessions it holds; another node
// adopts one with its subscriptions and queued messages; Replay publishes
// this node's pending publishes only, and deletes them.
func TestStateCluster(t *testing.T) {
	n1 := setup(t, "n1")
	n2 := &State{Store: n1.Store, Node: "n2"}
	n1.Establish(storage.Client{ID: "dev1", ProtocolVersion: 5}, true, 0)
	n1.Subscribed("dev1", []packets.Subscription{{Filter: "a/#"}}, []byte{1})
	n1.Queued("dev1", publish("a/b", 3))
	if clients, _ := n2.Clients(); len(clients) != 0 {
		t.Fatalf("n2 loaded n1's session: %+v", clients)
	}
	if node, found := n2.Holder("dev1"); !found || node != "n1" {
		t.Fatalf("holder %q %v", node, found)
	}
	s := n2.Adopt("dev1")
	if s == nil || s.Client.ID != "dev1" || len(s.Subscriptions) != 1 || len(s.Inflight) != 1 || !n2.Persistent("dev1") {
		t.Fatalf("adopted %+v", s)
	}
	if n2.Adopt("nobody") != nil {
		t.Fatal("adopted a session that is not stored")
	}

	n1.PutPending("dev9", "dev9", publish("a/b", 1))
	n2.PutPending("dev9", "dev9", publish("a/c", 1))
	var got []string
	fail := errors.New("fail")
	if err := n1.Replay(func(pk packets.Packet) error { got = append(got, pk.TopicName); return fail }); err != nil {
		t.Fatal(err)
	}
	if err := n1.Replay(func(pk packets.Packet) error { got = append(got, pk.TopicName); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := n1.Replay(func(pk packets.Packet) error { got = append(got, pk.TopicName); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "a/b" || got[1] != "a/b" {
		t.Fatalf("replayed %v: want n1's a/b, kept after a failure, then deleted", got)
	}
}

// TestWanted: a publish is pending when a persistent session subscribes,
// directly or in a share group.
func TestWanted(t *testing.T) {
	s := setup(t, "")
	s.Establish(storage.Client{ID: "p", ProtocolVersion: 4}, true, 0)
	sub := packets.Subscription{}
	for name, c := range map[string]struct {
		subs   map[string]packets.Subscription
		shared map[string]map[string]packets.Subscription
		want   bool
	}{
		"None":      {nil, nil, false},
		"Direct":    {map[string]packets.Subscription{"x": sub, "p": sub}, nil, true},
		"Shared":    {nil, map[string]map[string]packets.Subscription{"$share/g/a": {"p": sub}}, true},
		"NotStored": {map[string]packets.Subscription{"x": sub}, map[string]map[string]packets.Subscription{"$share/g/a": {"y": sub}}, false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := s.Wanted(c.subs, c.shared); got != c.want {
				t.Fatalf("Wanted = %v", got)
			}
		})
	}
}

// TestPending: DeletePending deletes the record PutPending wrote for the
// same connection, and only that: an id that was never recorded, one a
// connection forgotten since recorded, or one recorded by the connection a
// takeover replaced, leaves the store alone.
func TestPending(t *testing.T) {
	s := setup(t, "")
	store := &deleteCounter{MQTTStater: s.Store}
	s.Store = store
	ctx := context.Background()
	count := func() int {
		t.Helper()
		recs, err := s.Store.MQTTState(ctx, history.MQTTPending)
		if err != nil {
			t.Fatal(err)
		}
		return len(recs)
	}
	s.PutPending("c1", "c1", publish("a/b", 3))
	s.PutPending("c2", "c2", publish("a/b", 4))
	if n := count(); n != 2 {
		t.Fatalf("%d pending records after two PutPending, want 2", n)
	}
	s.DeletePending("c1", "c1", 9) // never recorded
	if n := count(); n != 2 {
		t.Fatalf("%d pending records after deleting an id never put, want 2", n)
	}
	if store.deletes != 0 {
		t.Fatalf("%d store deletes for an id never put, want none", store.deletes)
	}
	s.DeletePending("c1", "c1", 3)
	if n := count(); n != 1 {
		t.Fatalf("%d pending records after DeletePending, want 1", n)
	}
	if store.deletes != 1 {
		t.Fatalf("%d store deletes after one DeletePending of a recorded id, want 1", store.deletes)
	}
	s.ForgetPending("c2") // its connection ended without OnPublished
	s.DeletePending("c2", "c2", 4)
	if n := count(); n != 1 {
		t.Fatalf("%d pending records: a forgotten publish's record must stay for Replay", n)
	}
	if store.deletes != 1 {
		t.Fatalf("%d store deletes: a forgotten publish's must make none, want 1 in all", store.deletes)
	}

	// Client c3 connects twice (connections old and new): new takes the
	// session over while old's publish 5 is in progress.
	s.PutPending("old", "c3", publish("a/b", 5))
	s.PutPending("new", "c3", publish("a/b", 6))
	s.DeletePending("new", "c3", 5) // a publish 5 of new that was not pending
	if n := count(); n != 3 {
		t.Fatalf("%d pending records: the new connection deleted the old one's, want 3", n)
	}
	s.ForgetPending("old") // its OnDisconnect, after new's PutPending
	s.DeletePending("new", "c3", 6)
	if n := count(); n != 2 {
		t.Fatalf("%d pending records: forgetting the old connection lost the new one's publish, want 2", n)
	}
	if len(s.pending) != 0 {
		t.Fatalf("pending ids left in memory: %v", s.pending)
	}
}

// deleteCounter counts the DeleteMQTT calls that reach a store.
type deleteCounter struct {
	history.MQTTStater
	deletes int
}

func (d *deleteCounter) DeleteMQTT(ctx context.Context, kind byte, client, key string) error {
	d.deletes++
	return d.MQTTStater.DeleteMQTT(ctx, kind, client, key)
}

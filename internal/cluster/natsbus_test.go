package cluster

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/parley-im/parley/internal/testkit"
)

// localDelivery is one DeliverLocal call.
type localDelivery struct {
	users   []string
	conv    string
	seq     int64
	qos     byte
	payload string
}

// fakeLocal is a Local that records every call. LocalUsers answers users;
// when gate is set, DeliverLocal waits for it to be closed first.
type fakeLocal struct {
	users []string
	gate  chan struct{}

	mu sync.Mutex
	record
}

// record is what a fakeLocal recorded.
type record struct {
	deliveries []localDelivery
	resyncs    int
	takeovers  []string // "client epoch"
	presence   []string // "user node on"
	nodeUsers  map[string][]string
	forgotten  []string
	groups     []string // ForgetGroup calls
}

func (l *fakeLocal) DeliverLocal(users []string, conv string, seq int64, qos byte, payload []byte) {
	if l.gate != nil {
		<-l.gate
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deliveries = append(l.deliveries, localDelivery{slices.Clone(users), conv, seq, qos, string(payload)})
}

func (l *fakeLocal) Resync() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.resyncs++
}

func (l *fakeLocal) TakeOver(clientID string, epoch int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.takeovers = append(l.takeovers, fmt.Sprintf("%s %d", clientID, epoch))
}

func (l *fakeLocal) SetPresence(user, node string, on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.presence = append(l.presence, fmt.Sprintf("%s %s %v", user, node, on))
}

func (l *fakeLocal) SetNodeUsers(node string, users []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.nodeUsers == nil {
		l.nodeUsers = map[string][]string{}
	}
	l.nodeUsers[node] = slices.Clone(users)
}

func (l *fakeLocal) ForgetNode(node string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forgotten = append(l.forgotten, node)
	delete(l.nodeUsers, node)
}

func (l *fakeLocal) LocalUsers() []string { return l.users }

func (l *fakeLocal) forgetGroup(group string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.groups = append(l.groups, group)
}

// until polls cond, under l's lock, until it holds; it fails the test after
// 10s with what.
func (l *fakeLocal) until(t testing.TB, what string, cond func(*fakeLocal) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		ok := cond(l)
		l.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Fatalf("%s: not within 10s; deliveries %+v resyncs %d takeovers %v presence %v nodes %v forgotten %v groups %v",
				what, l.deliveries, l.resyncs, l.takeovers, l.presence, l.nodeUsers, l.forgotten, l.groups)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// snapshot returns a copy of what l recorded, taken under its lock.
func (l *fakeLocal) snapshot() record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return record{deliveries: slices.Clone(l.deliveries), resyncs: l.resyncs, takeovers: slices.Clone(l.takeovers),
		presence: slices.Clone(l.presence), nodeUsers: maps.Clone(l.nodeUsers), forgotten: slices.Clone(l.forgotten), groups: slices.Clone(l.groups)}
}

var quiet = testkit.Logger()

// connect starts a Bus for node on the NATS server at url, with users as its
// local users; mod, when set, changes the bus before Connect. The bus is
// closed when the test ends.
func connect(t testing.TB, url, node string, users []string, mod func(*Bus, *fakeLocal)) (*Bus, *fakeLocal) {
	t.Helper()
	l := &fakeLocal{users: users}
	b := &Bus{Node: node, Local: l, ForgetGroup: l.forgetGroup, Log: quiet, Sweep: -1}
	if mod != nil {
		mod(b, l)
	}
	if err := b.Connect(url); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, l
}

// pair connects buses A and B to one server, A with user alice and B with
// bob, and waits until each has heard of the other.
func pair(t testing.TB, mod func(*Bus, *fakeLocal)) (a, b *Bus, la, lb *fakeLocal) {
	t.Helper()
	ns := testkit.RunNATS(t, nil)
	a, la = connect(t, ns.ClientURL(), "A", []string{"alice"}, mod)
	b, lb = connect(t, ns.ClientURL(), "B", []string{"bob"}, mod)
	la.until(t, "A hears of B", func(l *fakeLocal) bool { return slices.Equal(l.nodeUsers["B"], []string{"bob"}) })
	lb.until(t, "B hears of A", func(l *fakeLocal) bool { return slices.Equal(l.nodeUsers["A"], []string{"alice"}) })
	return a, b, la, lb
}

// subscribe makes b interested in user and waits until the NATS server has
// the subscription.
func subscribe(t testing.TB, b *Bus, user string, on bool) {
	t.Helper()
	b.Interest(user, on)
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// fence sends kicks from a to b until one arrives: everything a published
// before it has then been handled by b (one connection each way, one receive
// goroutine, in order). It sends again because a kick may itself be dropped
// (a slow consumer).
func fence(t testing.TB, a *Bus, lb *fakeLocal) {
	t.Helper()
	fenceWith(t, func(client string) { a.Kick(client, 1) }, lb)
}

// fenceRaw is fence for a plain NATS connection publishing on the default
// prefix.
func fenceRaw(t testing.TB, raw *nats.Conn, lb *fakeLocal) {
	t.Helper()
	fenceWith(t, func(client string) {
		if err := raw.Publish("parley.kick", fmt.Appendf(nil, `{"client":%q,"epoch":1,"node":"raw"}`, client)); err != nil {
			t.Error(err)
		}
	}, lb)
}

func fenceWith(t testing.TB, kick func(client string), lb *fakeLocal) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		client := fmt.Sprintf("fence-%d-%d", time.Now().UnixNano(), i)
		kick(client)
		retry := time.Now().Add(100 * time.Millisecond)
		for time.Now().Before(retry) {
			lb.mu.Lock()
			// The fence, and any fence before it that arrived late, are
			// not part of what the test checks.
			arrived := slices.Contains(lb.takeovers, client+" 1")
			lb.takeovers = slices.DeleteFunc(lb.takeovers, func(s string) bool { return strings.HasPrefix(s, "fence-") })
			lb.mu.Unlock()
			if arrived {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatal("fence: no kick arrived within 10s")
		}
	}
}

func TestBusConnectRefused(t *testing.T) {
	l := &fakeLocal{}
	for _, tc := range []struct {
		name, url, contains string
		bus                 *Bus
	}{
		{"ErrNoNode", "nats://127.0.0.1:1", "required", &Bus{Local: l, ForgetGroup: l.forgetGroup}},
		{"ErrNoLocal", "nats://127.0.0.1:1", "required", &Bus{Node: "A", ForgetGroup: l.forgetGroup}},
		{"ErrNoForgetGroup", "nats://127.0.0.1:1", "required", &Bus{Node: "A", Local: l}},
		{"ErrAuth", "nats://127.0.0.1:1", "not both", &Bus{Node: "A", Local: l, ForgetGroup: l.forgetGroup, Auth: Auth{CredsFile: "a", NKeyFile: "b"}}},
		{"ErrUnreachable", "nats://parley:s3cret@127.0.0.1:1", "natsbus: connect nats://parley:xxxxx@127.0.0.1:1", &Bus{Node: "A", Local: l, ForgetGroup: l.forgetGroup, Log: quiet}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.bus.Connect(tc.url)
			if err == nil || !strings.HasPrefix(err.Error(), "natsbus: ") || !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("Connect = %v, want an error containing %q", err, tc.contains)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("the error shows the password: %v", err)
			}
			if err := tc.bus.Close(); err != nil {
				t.Fatalf("Close of a bus that never connected: %v", err)
			}
		})
	}
}

// TestBusDefaults: Connect fills in the documented defaults, and Close may
// be called twice.
func TestBusDefaults(t *testing.T) {
	ns := testkit.RunNATS(t, nil)
	l := &fakeLocal{}
	b := &Bus{Node: "A", Local: l, ForgetGroup: l.forgetGroup}
	if err := b.Connect(ns.ClientURL()); err != nil {
		t.Fatal(err)
	}
	if b.Prefix != DefaultPrefix || b.Heartbeat != DefaultHeartbeat || b.Sweep != DefaultSweep || b.Log == nil {
		t.Fatalf("defaults not applied: prefix %q heartbeat %v sweep %v", b.Prefix, b.Heartbeat, b.Sweep)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if !b.nc.IsClosed() {
		t.Fatal("the NATS connection is still open after Close")
	}
}

// TestBusDeliver: a stored message and an event published by one node reach
// the other node's DeliverLocal for the users it is interested in, with
// their bookkeeping and payload intact; after the interest ends, nothing
// more arrives; a malformed frame is dropped.
func TestBusDeliver(t *testing.T) {
	a, b, la, lb := pair(t, nil)
	subscribe(t, b, "bob", true)
	subscribe(t, b, "bo.b/é", true) // any user id maps to one subject token
	a.Deliver([]string{"bob", "carol", "bo.b/é"}, "dm:alice:bob", 42, 1, []byte(`{"kind":"message","seq":42}`))
	a.Deliver([]string{"bob"}, "", 0, 0, []byte(`{"kind":"typing"}`))
	fence(t, a, lb)
	want := []localDelivery{
		{[]string{"bob"}, "dm:alice:bob", 42, 1, `{"kind":"message","seq":42}`},
		{[]string{"bo.b/é"}, "dm:alice:bob", 42, 1, `{"kind":"message","seq":42}`},
		{[]string{"bob"}, "", 0, 0, `{"kind":"typing"}`},
	}
	got := lb.snapshot().deliveries
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("B got %+v, want %+v", got, want)
	}
	// A is not interested in anyone: it gets nothing, its own publications
	// included.
	fence(t, b, la)
	if d := la.snapshot().deliveries; len(d) != 0 {
		t.Fatalf("A got %+v", d)
	}

	t.Run("Malformed", func(t *testing.T) {
		raw, err := nats.Connect(a.nc.ConnectedUrl())
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		if err := raw.Publish(b.userSubject("bob"), []byte("not a frame")); err != nil {
			t.Fatal(err)
		}
		if err := raw.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := raw.Publish(b.userSubject("bob"), appendFrame(nil, frame{conv: "g:team", seq: 7, qos: 1, payload: []byte(`after`)})); err != nil {
			t.Fatal(err)
		}
		fenceRaw(t, raw, lb)
		if d := lb.snapshot().deliveries; len(d) != 4 || d[3].conv != "g:team" || d[3].seq != 7 || d[3].payload != "after" {
			t.Fatalf("B got %+v, want the well-formed delivery only", d[3:])
		}
	})

	t.Run("Unsubscribed", func(t *testing.T) {
		subscribe(t, b, "bob", false)
		subscribe(t, b, "bob", false) // no interest to end: a no-op
		a.Deliver([]string{"bob"}, "dm:alice:bob", 43, 1, []byte(`lost`))
		fence(t, a, lb)
		if d := lb.snapshot().deliveries; len(d) != 4 {
			t.Fatalf("B got %+v after its interest ended", d[4:])
		}
		// Interest again: deliveries resume.
		subscribe(t, b, "bob", true)
		subscribe(t, b, "bob", true) // already interested: one subscription
		a.Deliver([]string{"bob"}, "dm:alice:bob", 44, 1, []byte(`back`))
		fence(t, a, lb)
		if d := lb.snapshot().deliveries; len(d) != 5 || d[4].seq != 44 {
			t.Fatalf("B got %+v, want one delivery of seq 44", d[4:])
		}
	})
}

// TestBusPresence: a node's interest reaches the other node as presence,
// and a node that joins learns who is on the nodes already there.
func TestBusPresence(t *testing.T) {
	_, b, la, _ := pair(t, nil)
	subscribe(t, b, "bob", true)
	la.until(t, "bob on B", func(l *fakeLocal) bool { return slices.Contains(l.presence, "bob B true") })
	subscribe(t, b, "bob", false)
	la.until(t, "bob off B", func(l *fakeLocal) bool { return slices.Contains(l.presence, "bob B false") })
	if p := la.snapshot().presence; !slices.Equal(p, []string{"bob B true", "bob B false"}) {
		t.Fatalf("A saw presence %v", p)
	}
}

// TestBusControl: a kick and a group invalidation reach the other node;
// a node ignores its own messages (echoed by another connection) and
// malformed ones.
func TestBusControl(t *testing.T) {
	a, b, la, lb := pair(t, nil)
	a.Kick("alice/phone", 7)
	a.Invalidate("team")
	if err := a.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	lb.until(t, "kick and invalidation", func(l *fakeLocal) bool {
		return slices.Equal(l.takeovers, []string{"alice/phone 7"}) && slices.Equal(l.groups, []string{"team"})
	})
	// A's own messages were on the server before this fence: A ignored them.
	fence(t, b, la)
	if s := la.snapshot(); len(s.takeovers) != 0 || len(s.groups) != 0 {
		t.Fatalf("A acted on its own messages: %+v", s)
	}

	raw, err := nats.Connect(b.nc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for subj, data := range map[string]string{
		"parley.kick":     `{"client":"x","epoch":1,"node":"B"}`,
		"parley.group":    `{"group":"g","node":"B"}`,
		"parley.presence": `{"user":"u","node":"B","on":true}`,
		"parley.node":     `{"node":"B","users":["u"]}`,
	} {
		if err := raw.Publish(subj, []byte(data)); err != nil {
			t.Fatal(err)
		}
		if err := raw.Publish(subj, []byte(`{not json`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}
	fenceRaw(t, raw, lb)
	s := lb.snapshot()
	if len(s.takeovers) != 1 || len(s.groups) != 1 || len(s.presence) != 0 {
		t.Fatalf("B acted on its own or malformed messages: %+v", s)
	}
	if _, ok := s.nodeUsers["B"]; ok {
		t.Fatal("B recorded itself as a node")
	}
}

// TestBusLeaseExpiry: with short heartbeats, a node that dies without a word
// (its NATS connection cut, no Close) loses its presence on the others
// after three heartbeats; a node that comes back is announced again.
func TestBusLeaseExpiry(t *testing.T) {
	short := func(b *Bus, _ *fakeLocal) { b.Heartbeat = 20 * time.Millisecond }
	ns := testkit.RunNATS(t, nil)
	_, la := connect(t, ns.ClientURL(), "A", []string{"alice"}, short)
	b, _ := connect(t, ns.ClientURL(), "B", []string{"bob"}, short)
	la.until(t, "A hears of B", func(l *fakeLocal) bool { return slices.Equal(l.nodeUsers["B"], []string{"bob"}) })

	// The hard kill: B's connection goes; its goroutines stay, failing to
	// publish, as a frozen process would.
	b.nc.Close()
	la.until(t, "A forgets B", func(l *fakeLocal) bool { return slices.Contains(l.forgotten, "B") })
	if f := la.snapshot().forgotten; slices.ContainsFunc(f, func(n string) bool { return n != "B" }) {
		t.Fatalf("A forgot %v, want only B", f)
	}
	// A dead connection fails quietly: no panic, no subscription kept.
	b.Deliver([]string{"alice"}, "dm:alice:bob", 1, 1, []byte(`x`))
	b.Interest("carol", true)
	b.mu.Lock()
	_, subscribed := b.subs["carol"]
	b.mu.Unlock()
	if subscribed {
		t.Fatal("interest recorded on a closed connection")
	}

	// B comes back under the same id: A hears of it again.
	connect(t, ns.ClientURL(), "B", []string{"bob", "bobby"}, short)
	la.until(t, "A hears of B again", func(l *fakeLocal) bool { return slices.Equal(l.nodeUsers["B"], []string{"bob", "bobby"}) })
}

// TestBusServerRestart: when the NATS server restarts, every node catches
// its devices up from the store (Resync), and deliveries flow again.
func TestBusServerRestart(t *testing.T) {
	first := testkit.RunNATS(t, nil)
	port := first.Addr().(*net.TCPAddr).Port
	a, la := connect(t, first.ClientURL(), "A", []string{"alice"}, nil)
	b, lb := connect(t, first.ClientURL(), "B", []string{"bob"}, nil)
	subscribe(t, b, "bob", true)
	lb.until(t, "B hears of A", func(l *fakeLocal) bool { return l.nodeUsers["A"] != nil })
	if r := la.snapshot().resyncs + lb.snapshot().resyncs; r != 0 {
		t.Fatalf("%d resyncs before the restart", r)
	}

	first.Shutdown()
	first.WaitForShutdown()
	testkit.RunNATS(t, &natsserver.Options{Port: port})
	for _, l := range []*fakeLocal{la, lb} {
		l.until(t, "resync after the restart", func(l *fakeLocal) bool { return l.resyncs >= 1 })
	}
	// B's interest survived the restart.
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	a.Deliver([]string{"bob"}, "dm:alice:bob", 9, 1, []byte(`after the restart`))
	lb.until(t, "a delivery after the restart", func(l *fakeLocal) bool {
		return len(l.deliveries) == 1 && l.deliveries[0].seq == 9 && l.deliveries[0].payload == "after the restart"
	})
}

// TestBusSlowConsumer: when deliveries arrive faster than this node hands
// them on, NATS drops some; the node then catches every device up from the
// store (Resync).
func TestBusSlowConsumer(t *testing.T) {
	gate := make(chan struct{})
	a, b, _, lb := pair(t, func(b *Bus, l *fakeLocal) {
		if b.Node == "B" {
			l.gate = gate
		}
	})
	var release sync.Once
	open := func() { release.Do(func() { close(gate) }) }
	t.Cleanup(open) // before the buses close, should the test fail
	subscribe(t, b, "bob", true)
	// Block B's receive goroutine, then overflow its queue.
	users := make([]string, cap(b.in)+100)
	for i := range users {
		users[i] = "bob"
	}
	a.Deliver(users, "dm:alice:bob", 1, 1, []byte(`x`))
	lb.until(t, "resync after a slow consumer", func(l *fakeLocal) bool { return l.resyncs >= 1 })
	open()
	fence(t, a, lb)
	if n := len(lb.snapshot().deliveries); n >= len(users) || n == 0 {
		t.Fatalf("B handed on %d of %d deliveries, want some dropped", n, len(users))
	}
}

// TestBusDropRate: the test hook drops that share of incoming deliveries.
func TestBusDropRate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rate     float64
		min, max int // of 1000 delivered
	}{
		{"All", 1, 0, 0},
		{"Half", 0.5, 350, 650}, // 10 standard deviations either side
		{"None", 0, 1000, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, _, lb := pair(t, func(b *Bus, _ *fakeLocal) { b.DropRate = tc.rate })
			subscribe(t, b, "bob", true)
			for seq := int64(1); seq <= 1000; seq++ {
				a.Deliver([]string{"bob"}, "dm:alice:bob", seq, 1, []byte(`x`))
			}
			fence(t, a, lb)
			if n := len(lb.snapshot().deliveries); n < tc.min || n > tc.max {
				t.Fatalf("%d of 1000 delivered at drop rate %v, want %d to %d", n, tc.rate, tc.min, tc.max)
			}
		})
	}
}

// TestBusSweep: the periodic sweep catches every device up from the store.
func TestBusSweep(t *testing.T) {
	ns := testkit.RunNATS(t, nil)
	_, l := connect(t, ns.ClientURL(), "A", nil, func(b *Bus, _ *fakeLocal) { b.Sweep = 10 * time.Millisecond })
	l.until(t, "three sweeps", func(l *fakeLocal) bool { return l.resyncs >= 3 })
}

// TestBusPrefix: buses with different prefixes share a server without
// hearing each other.
func TestBusPrefix(t *testing.T) {
	ns := testkit.RunNATS(t, nil)
	a, la := connect(t, ns.ClientURL(), "A", []string{"alice"}, func(b *Bus, _ *fakeLocal) { b.Prefix = "one" })
	_, lx := connect(t, ns.ClientURL(), "X", []string{"xavier"}, func(b *Bus, _ *fakeLocal) { b.Prefix = "two" })
	b, lb := connect(t, ns.ClientURL(), "B", []string{"bob"}, func(b *Bus, _ *fakeLocal) { b.Prefix = "one" })
	la.until(t, "A hears of B", func(l *fakeLocal) bool { return l.nodeUsers["B"] != nil })
	subscribe(t, b, "bob", true)
	a.Deliver([]string{"bob"}, "dm:alice:bob", 1, 1, []byte(`one`))
	a.Invalidate("team")
	fence(t, a, lb)
	if d := lb.snapshot().deliveries; len(d) != 1 || d[0].payload != "one" {
		t.Fatalf("B got %+v", d)
	}
	s := lx.snapshot()
	if len(s.deliveries) != 0 || len(s.groups) != 0 || len(s.takeovers) != 0 || len(s.presence) != 0 {
		t.Fatalf("X on another prefix heard %+v", s)
	}
	lx.mu.Lock()
	defer lx.mu.Unlock()
	if len(lx.nodeUsers) != 0 {
		t.Fatalf("X on another prefix heard of nodes %v", lx.nodeUsers)
	}
}

// TestBusJoin: a node that joins learns at once who is on the nodes already
// there, without waiting for their next heartbeat.
func TestBusJoin(t *testing.T) {
	ns := testkit.RunNATS(t, nil)
	never := func(b *Bus, _ *fakeLocal) { b.Heartbeat = time.Hour }
	a, la := connect(t, ns.ClientURL(), "A", []string{"alice", "ann"}, never)
	if err := a.nc.Flush(); err != nil { // A's subscriptions are on the server
		t.Fatal(err)
	}
	_, lb := connect(t, ns.ClientURL(), "B", []string{"bob"}, never)
	lb.until(t, "B learns A's users", func(l *fakeLocal) bool { return slices.Equal(l.nodeUsers["A"], []string{"alice", "ann"}) })
	la.until(t, "A learns B's users", func(l *fakeLocal) bool { return slices.Equal(l.nodeUsers["B"], []string{"bob"}) })
}

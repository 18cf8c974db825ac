package broker_test

import (
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

// prunedDevices reads parley_devices_pruned_total from /metrics.
func prunedDevices(t *testing.T, e *env) int {
	t.Helper()
	body, code := e.get("/metrics")
	m := regexp.MustCompile(`(?m)^parley_devices_pruned_total (\d+)$`).FindStringSubmatch(body)
	if code != 200 || m == nil {
		t.Fatalf("GET /metrics: %d, no parley_devices_pruned_total", code)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestDeviceTTL: a device unseen for DeviceTTL is forgotten with its cursors
// and comes back as a new device (the new-device backlog, not everything it
// missed); devices connected for longer than the TTL are never forgotten.
func TestDeviceTTL(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		const ttl = 600 * time.Millisecond
		e := setup(t, s, func(o *broker.Options) { o.DeviceTTL = ttl; o.NewDeviceBacklog = 1 })
		phone := e.dial("alice/phone", "alice", dialOpts{v5: true})
		bob := e.dial("bob", "bob", dialOpts{noSub: true})
		old := e.dial("alice/old", "alice", dialOpts{})
		old.close()
		for _, body := range []string{"1", "2", "3"} {
			bob.send("im/send/u/alice", 1, `{"body":`+body+`}`)
		}
		for seq := int64(1); seq <= 3; seq++ {
			if m := phone.nextKind("message"); m.Seq != seq {
				t.Fatalf("phone got seq %d, want %d", m.Seq, seq)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for prunedDevices(t, e) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("alice/old was not pruned within 10s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		// Several TTLs later only alice/old is gone: the connected devices
		// stay, although they connected longer than the TTL ago.
		time.Sleep(3 * ttl)
		if n := prunedDevices(t, e); n != 1 {
			t.Fatalf("%d devices pruned, want 1 (alice/old)", n)
		}
		st, err := s.Device(context.Background(), "alice/phone", "alice")
		if err != nil || st.New || st.Cursors["dm:alice:bob"] != 3 {
			t.Fatalf("alice/phone after the TTL: %+v, %v; want known with its cursor at 3", st, err)
		}
		// alice/old had no cursor in the conversation: known, it would get all
		// three messages; forgotten, it is new and gets the backlog of one.
		old = e.dial("alice/old", "alice", dialOpts{})
		if m := old.nextKind("message"); m.Seq != 3 {
			t.Fatalf("alice/old got seq %d first, want 3 (the new-device backlog)", m.Seq)
		}
		old.quiet(200 * time.Millisecond)
	})
}

// storeOps reads the number of store calls per operation from /metrics
// (the counts of parley_store_latency_seconds).
func storeOps(t *testing.T, e *env) map[string]int {
	t.Helper()
	body, code := e.get("/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d", code)
	}
	ops := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^parley_store_latency_seconds_count\{op="([a-z_]+)"\} (\d+)$`).FindAllStringSubmatch(body, -1) {
		ops[m[1]], _ = strconv.Atoi(m[2])
	}
	return ops
}

// TestConnectStoreRoundTrips: a known device that connects with nothing
// new costs a fixed number of store calls: its session claim and its
// state, nothing per conversation or per message; and when many connect at
// once, their claims and states share calls (a reconnect storm costs far
// fewer store calls than devices). Counted, not timed.
func TestConnectStoreRoundTrips(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s)
		const n = 40
		bob := e.dial("bob", "bob", dialOpts{noSub: true})
		for i := range n {
			bob.send("im/send/u/"+userN(i), 1, `{"body":"hi"}`)
		}
		var first []*client
		for i := range n {
			c := e.dial(userN(i)+"/phone", userN(i), dialOpts{})
			c.nextKind("message")
			first = append(first, c)
		}
		// Every device is known and caught up (its cursor stored: it
		// acknowledged before it left). One reconnects alone.
		for i, c := range first {
			waitCursors(t, s, userN(i)+"/phone", userN(i), map[string]int64{history.DirectConvID("bob", userN(i)): 1})
			c.close()
		}
		time.Sleep(300 * time.Millisecond) // the last cursor flush ends
		before := storeOps(t, e)
		c := e.dial(userN(0)+"/phone", userN(0), dialOpts{})
		waitOps(t, e, before, 2)
		c.quiet(300 * time.Millisecond) // room for any other call to show
		delta := opsSince(storeOps(t, e), before)
		if total(delta) > 2 || delta["claims"] != 1 || delta["devices"] != 1 {
			t.Fatalf("one reconnect with nothing new made store calls %v; want claims 1, devices 1", delta)
		}
		c.close()

		// All reconnect at once: at most one claim and one state call each,
		// and in practice far fewer, batched.
		before = storeOps(t, e)
		done := make(chan *client, n)
		for i := range n {
			go func() { done <- e.dial(userN(i)+"/phone", userN(i), dialOpts{}) }()
		}
		for range n {
			defer (<-done).close()
		}
		waitOps(t, e, before, 2)
		time.Sleep(300 * time.Millisecond)
		delta = opsSince(storeOps(t, e), before)
		if delta["claims"] > n || delta["devices"] > n || total(delta)-delta["claims"]-delta["devices"] > 2 {
			t.Fatalf("%d devices reconnecting at once made store calls %v", n, delta)
		}
		t.Logf("%d devices reconnecting at once: store calls %v", n, delta)
	})
}

func userN(i int) string { return "u" + strconv.Itoa(i) }

// waitOps waits until at least want store calls were made since before and
// returns them.
func waitOps(t *testing.T, e *env, before map[string]int, want int) map[string]int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d := opsSince(storeOps(t, e), before)
		if total(d) >= want {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("store calls since: %v, want %d", d, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func opsSince(now, before map[string]int) map[string]int {
	d := map[string]int{}
	for op, v := range now {
		if v > before[op] {
			d[op] = v - before[op]
		}
	}
	return d
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

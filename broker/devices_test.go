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

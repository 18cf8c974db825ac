package plain

import (
	"maps"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestShares: Note counts this node's members per group and reports
// changes; Assign and Select agree on the node of each group, weighted by
// members; Parley's topics and plain filters are not share groups.
func TestShares(t *testing.T) {
	s := &Shares{Node: "n0"}
	counts, changed := s.Note("c1", slices.Values([]string{"$share/g/a/#", "a/b", "$share/p/im/inbox/x"}))
	if !changed || !maps.Equal(counts, map[string]int{"$share/g/a/#": 1}) {
		t.Fatalf("counts %v changed %v", counts, changed)
	}
	if _, changed := s.Note("c1", slices.Values([]string{"$share/g/a/#"})); changed {
		t.Fatal("the same groups reported as changed")
	}
	if counts, changed := s.Note("c2", slices.Values([]string{"a/b"})); changed || !maps.Equal(counts, map[string]int{"$share/g/a/#": 1}) {
		t.Fatalf("a client without shared filters: counts %v changed %v", counts, changed)
	}
	s.SetRemote("n1", map[string]int{"$share/g/a/#": 3})
	picks := map[string]int{}
	for i := range 400 {
		pk := publish("a/b", uint16(i))
		node := s.Assign(pk)["$share/g/a/#"]
		picks[node]++
		shared := map[string]map[string]packets.Subscription{"$share/g/a/#": {"c1": {}}}
		s.Select(shared, pk)
		if _, kept := shared["$share/g/a/#"]; kept != (node == "n0") {
			t.Fatalf("publish %d: Assign picked %q, Select kept it here: %v", i, node, kept)
		}
	}
	if picks["n0"] < 50 || picks["n1"] < 200 || picks["n0"]+picks["n1"] != 400 {
		t.Fatalf("picks %v: want about 1 in 4 on n0", picks)
	}
	if a := s.Assign(publish("other", 1)); len(a) != 0 {
		t.Fatalf("assigned %v for a topic no group covers", a)
	}
	s.SetRemote("n1", nil)
	if counts, changed := s.Note("c1", nil); !changed || len(counts) != 0 {
		t.Fatalf("after the member left: %v %v", counts, changed)
	}
	if a := s.Assign(publish("a/b", 1)); len(a) != 0 {
		t.Fatalf("assigned %v with no members anywhere", a)
	}
	shared := map[string]map[string]packets.Subscription{"$share/g/a/#": {}, "$share/h/a/#": {}}
	s.SelectAssigned(shared, map[string]string{"$share/g/a/#": "n0", "$share/h/a/#": "n1"})
	if _, ok := shared["$share/g/a/#"]; !ok || len(shared) != 1 {
		t.Fatalf("SelectAssigned kept %v", shared)
	}
}

func TestCrosses(t *testing.T) {
	for topic, want := range map[string]bool{"a/b": true, "": false, "im/inbox/x": false, "$SYS/uptime": false, "$parley/void": false} {
		if got := Crosses(Shares{}.Topics, topic); got != want {
			t.Errorf("Crosses(%q) = %v", topic, got)
		}
	}
}

// TestTimers: a newer After replaces the older; Cancel and Stop drop.
func TestTimers(t *testing.T) {
	var ts Timers
	var fired atomic.Int32
	ts.After("a", 10*time.Millisecond, func() { fired.Add(1) })
	ts.After("a", 20*time.Millisecond, func() { fired.Add(10) })
	ts.After("b", 10*time.Millisecond, func() { fired.Add(100) })
	ts.Cancel("b")
	ts.After("c", time.Hour, func() { fired.Add(1000) })
	time.Sleep(100 * time.Millisecond)
	ts.Stop()
	if n := fired.Load(); n != 10 {
		t.Fatalf("fired %d, want the newer a alone", n)
	}
}

// TestRequeue: the queue starts after the largest gap in the circle of
// packet ids, and uint16(Created) increases along it.
func TestRequeue(t *testing.T) {
	for name, c := range map[string]struct {
		ids  []uint16
		want []uint16
	}{
		"InOrder": {[]uint16{3, 1, 2}, []uint16{1, 2, 3}},
		"Wrapped": {[]uint16{2, 65534, 1, 65535}, []uint16{65534, 65535, 1, 2}},
		"One":     {[]uint16{5}, []uint16{5}},
	} {
		t.Run(name, func(t *testing.T) {
			var queued []packets.Packet
			for _, id := range c.ids {
				queued = append(queued, packets.Packet{PacketID: id, Created: 1_000_000})
			}
			Requeue(queued)
			for i, p := range queued {
				if p.PacketID != c.want[i] {
					t.Fatalf("order %v, want %v", queued, c.want)
				}
				if i > 0 && (uint16(p.Created) <= uint16(queued[i-1].Created) || p.Created > 1_000_000) {
					t.Fatalf("created times %d after %d", p.Created, queued[i-1].Created)
				}
			}
		})
	}
}

package plain

import (
	"encoding/binary"
	"hash/fnv"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/wire"
)

// Crosses reports whether a publish on topic goes to the other nodes of a
// cluster: plain topics, not $SYS (each node's own) nor the void of refused
// wills.
func Crosses(topics wire.Topics, topic string) bool {
	return topic != "" && !topics.Owns(topic) && topic != auth.VoidTopic && !strings.HasPrefix(topic, "$SYS/")
}

// Shares is the bookkeeping of shared subscriptions ($share/GROUP/FILTER)
// across a cluster: this node's members of each share group, the members
// the other nodes announced, and the node whose members get a publish, at
// random weighted by members, the same on every call for one publish. The
// zero value is ready once Node and Topics are set. Safe for concurrent use.
type Shares struct {
	// Node is this node's id.
	Node string
	// Topics is Parley's topic layout: its filters are never shared here.
	Topics wire.Topics

	mu        sync.Mutex
	remote    map[string]map[string]int      // other nodes' share groups: node → filter → members
	local     map[string]map[string]struct{} // this node's share groups, by client
	announced map[string]int                 // what Note reported last
}

// SetRemote records the share groups of node: filter → members; nil when
// node left.
func (s *Shares) SetRemote(node string, shares map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if shares == nil {
		delete(s.remote, node)
		return
	}
	if s.remote == nil {
		s.remote = map[string]map[string]int{}
	}
	s.remote[node] = shares
}

// Note records the filters client subscribes to (all of them, nil for
// none; the shared ones outside the prefix count) and returns this node's
// members per share group (read only: Shares keeps the map), changed
// reporting whether they differ from what Note returned last (the other
// nodes must be told). A client without shared filters, now or before,
// changes nothing and costs no recount.
func (s *Shares) Note(client string, filters iter.Seq[string]) (counts map[string]int, changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var fs map[string]struct{}
	if filters != nil {
		for f := range filters {
			if t, shared := wire.StripShare(f); shared && !s.Topics.Owns(t) {
				if fs == nil {
					fs = map[string]struct{}{}
				}
				fs[f] = struct{}{}
			}
		}
	}
	if len(fs) == 0 {
		if _, had := s.local[client]; !had {
			return s.announced, false
		}
		delete(s.local, client)
	} else {
		if s.local == nil {
			s.local = map[string]map[string]struct{}{}
		}
		s.local[client] = fs
	}
	counts = map[string]int{}
	for _, fs := range s.local {
		for f := range fs {
			counts[f]++
		}
	}
	if maps.Equal(counts, s.announced) {
		return counts, false
	}
	s.announced = counts
	return counts, true
}

// Assign picks, for every share group that covers pk's topic and has
// members somewhere, the node whose members get pk.
func (s *Shares) Assign(pk packets.Packet) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	consider := func(f string) {
		if _, done := out[f]; done {
			return
		}
		filter, _ := wire.StripShare(f)
		if auth.Covers(filter, pk.TopicName) {
			if node := s.choose(f, pk); node != "" {
				out[f] = node
			}
		}
	}
	for _, fs := range s.local {
		for f := range fs {
			consider(f)
		}
	}
	for _, fs := range s.remote {
		for f := range fs {
			consider(f)
		}
	}
	return out
}

// Select deletes from shared (share group filter → members here) the
// groups whose copy of pk, published here, goes to another node's members.
func (s *Shares) Select(shared map[string]map[string]packets.Subscription, pk packets.Packet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for f := range shared {
		if s.choose(f, pk) != s.Node {
			delete(shared, f)
		}
	}
}

// SelectAssigned deletes from shared the groups that assigned, what the
// publishing node chose (see Assign), does not give to this node.
func (s *Shares) SelectAssigned(shared map[string]map[string]packets.Subscription, assigned map[string]string) {
	for f := range shared {
		if assigned[f] != s.Node {
			delete(shared, f)
		}
	}
}

// choose picks the node whose members of share group f get pk: at random,
// weighted by each node's members, from a hash of pk, so that the calls for
// one publish (Select, then Assign) agree. "" when no node has members.
// s.mu is held.
func (s *Shares) choose(f string, pk packets.Packet) string {
	type cand struct {
		node    string
		members int
	}
	var cands []cand
	total := 0
	if n := s.localMembers(f); n > 0 {
		cands = append(cands, cand{s.Node, n})
		total += n
	}
	for _, node := range slices.Sorted(maps.Keys(s.remote)) {
		if n := s.remote[node][f]; n > 0 {
			cands = append(cands, cand{node, n})
			total += n
		}
	}
	if total == 0 {
		return ""
	}
	hash := fnv.New64a()
	hash.Write([]byte(f))
	hash.Write([]byte{0})
	hash.Write([]byte(pk.Origin))
	hash.Write(binary.AppendVarint([]byte{0}, pk.Created))
	hash.Write(binary.AppendUvarint(nil, uint64(pk.PacketID)))
	hash.Write([]byte(pk.TopicName))
	hash.Write(pk.Payload)
	pick := int(hash.Sum64() % uint64(total))
	for _, c := range cands {
		if pick < c.members {
			return c.node
		}
		pick -= c.members
	}
	return cands[len(cands)-1].node
}

// localMembers counts this node's clients in share group f; s.mu is held.
func (s *Shares) localMembers(f string) int {
	n := 0
	for _, fs := range s.local {
		if _, ok := fs[f]; ok {
			n++
		}
	}
	return n
}

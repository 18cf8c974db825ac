package hooks

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/cluster"
	"github.com/parley-im/parley/internal/wire"
)

// PlainBus carries plain MQTT between the nodes of a cluster
// (cluster.Bus).
type PlainBus interface {
	// PublishPlain sends a publish frame to every other node.
	PublishPlain(frame []byte)
	// ClaimPlain tells the other nodes that client connected here and waits
	// until holder, when it is another live node, released its session.
	ClaimPlain(client string, resume bool, holder string)
	// SharePlain announces this node's shared subscriptions: filter →
	// members.
	SharePlain(shares map[string]int)
}

// Cluster is the mochi hook of plain MQTT (topics outside the prefix) in
// cluster mode, where nodes share one store and a PlainBus:
//
//   - Publishes. Every publish on a plain topic, wills included, is sent to
//     the other nodes after it was handed to this node's subscribers; a node
//     injects what it receives through Injector, for its own subscribers
//     only (it is neither sent on nor stored again). QoS, the retain flag
//     and the MQTT 5 properties travel with it; each node checks its own
//     subscribers' read access.
//   - Retained messages: a retained publish updates every node's retained
//     messages; the publishing node stores it (Storage).
//   - Shared subscriptions: the node a message is published on picks, for
//     each share group with members anywhere, the node whose members get it,
//     at random weighted by the members each node announced; that node
//     gives it to one of its members, the others to none.
//   - Sessions: a client that connects claims its client id on every node;
//     the node that held its session drops it (disconnecting the client
//     there) and this node takes the stored session over (Storage.adopt).
//   - Wills with a delay are published by this hook (mochi's own timers
//     cannot be stopped from another node), unless their client reconnects,
//     here or elsewhere, first.
type Cluster struct {
	mqtt.HookBase

	// Server is the broker; required.
	Server *mqtt.Server
	// Topics is Parley's topic layout: its topics never cross here.
	Topics wire.Topics
	// Bus carries plain MQTT to the other nodes; required.
	Bus PlainBus
	// Node is this node's id; required.
	Node string
	// Injector is the inline client through which other nodes' publishes
	// are injected; required (Server.NewClient(nil, "local", id, true)).
	Injector *mqtt.Client
	// Storage, when set, keeps the sessions, which can then move between
	// nodes.
	Storage *Storage
	// Log defaults to slog.Default().
	Log *slog.Logger

	willer  *mqtt.Client                      // inline client of the delayed wills
	current atomic.Pointer[map[string]string] // share assignments of the publish being injected

	mu        sync.Mutex
	remote    map[string]map[string]int      // other nodes' shared subscriptions: node → filter → members
	local     map[string]map[string]struct{} // this node's shared filters, by client
	announced map[string]int                 // what the bus was told last
	wills     map[string]*delayedWill        // delayed wills by client
}

// ID implements mqtt.Hook.
func (h *Cluster) ID() string { return "parley-cluster" }

// Provides implements mqtt.Hook.
func (h *Cluster) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublished, mqtt.OnWill, mqtt.OnWillSent, mqtt.OnSelectSubscribers, mqtt.OnSessionEstablish,
		mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnDisconnect, mqtt.OnClientExpired:
		return true
	}
	return false
}

// Init implements mqtt.Hook.
func (h *Cluster) Init(any) error {
	if h.Server == nil || h.Bus == nil || h.Node == "" || h.Injector == nil {
		return errors.New("hooks: Cluster needs Server, Bus, Node and Injector")
	}
	if h.Log == nil {
		h.Log = slog.Default()
	}
	h.willer = h.Server.NewClient(nil, "local", "\x00parley-will", true)
	// What they inject keeps MQTT 5's message expiry.
	h.Injector.Properties.ProtocolVersion, h.willer.Properties.ProtocolVersion = 5, 5
	h.remote = map[string]map[string]int{}
	h.local = map[string]map[string]struct{}{}
	h.wills = map[string]*delayedWill{}
	return nil
}

// Stop implements mqtt.Hook: delayed wills still waiting are dropped.
func (h *Cluster) Stop() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, w := range h.wills {
		w.timer.Stop()
		delete(h.wills, id)
	}
	return nil
}

// crosses reports whether a publish on topic goes to the other nodes: plain
// topics, not $SYS (each node's own) nor the void of refused wills.
func (h *Cluster) crosses(topic string) bool {
	return topic != "" && !h.Topics.Owns(topic) && topic != auth.VoidTopic && !strings.HasPrefix(topic, "$SYS/")
}

// OnPublished sends a plain publish made here to the other nodes.
func (h *Cluster) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if cl == h.Injector || pk.Ignore || !h.crosses(pk.TopicName) {
		return
	}
	h.forward(pk)
}

// OnWillSent sends a will published here at once to the other nodes
// (delayed wills are published by sendWill, through OnPublished).
func (h *Cluster) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline || pk.Connect.WillProperties.WillDelayInterval > 0 || !h.crosses(pk.TopicName) {
		return
	}
	h.forward(pk)
}

// forward encodes pk with the nodes chosen for its share groups and hands
// it to the bus.
func (h *Cluster) forward(pk packets.Packet) {
	assigned := h.assign(pk)
	out := pk.Copy(false)
	out.ProtocolVersion = 5
	out.Mods.AllowResponseInfo = true
	out.FixedHeader.Dup = false
	out.Properties.TopicAlias, out.Properties.TopicAliasFlag = 0, false
	out.Properties.SubscriptionIdentifier = nil
	if out.FixedHeader.Qos > 0 && out.PacketID == 0 {
		out.PacketID = 1 // a valid PUBLISH; the receiving node ignores it
	}
	var buf bytes.Buffer
	if err := out.PublishEncode(&buf); err != nil {
		h.Log.Error("encoding a publish for the cluster", "error", err, "topic", pk.TopicName)
		return
	}
	frame := binary.AppendUvarint(nil, uint64(len(assigned)))
	for _, f := range slices.Sorted(maps.Keys(assigned)) {
		frame = cluster.AppendString(cluster.AppendString(frame, f), assigned[f])
	}
	h.Bus.PublishPlain(append(frame, buf.Bytes()...))
}

// PlainPublish implements cluster.Plain: it injects a publish from another
// node for this node's subscribers. Only the bus's goroutine calls it.
func (h *Cluster) PlainPublish(node string, frame []byte) {
	pk, assigned, err := parsePlainFrame(frame)
	if err != nil {
		h.Log.Warn("malformed plain publish dropped", "node", node, "error", err)
		return
	}
	h.current.Store(&assigned)
	defer h.current.Store(nil)
	if err := h.Server.InjectPacket(h.Injector, pk); err != nil {
		h.Log.Warn("injecting a plain publish", "node", node, "topic", pk.TopicName, "error", err)
	}
}

// parsePlainFrame decodes what forward encoded.
func parsePlainFrame(b []byte) (packets.Packet, map[string]string, error) {
	errFrame := errors.New("malformed frame")
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return packets.Packet{}, nil, errFrame
	}
	b = b[k:]
	assigned := make(map[string]string, n)
	for i := uint64(0); i < n; i++ {
		f, rest, ok := cluster.ReadString(b)
		if !ok {
			return packets.Packet{}, nil, errFrame
		}
		node, rest, ok := cluster.ReadString(rest)
		if !ok {
			return packets.Packet{}, nil, errFrame
		}
		assigned[f], b = node, rest
	}
	if len(b) < 2 {
		return packets.Packet{}, nil, errFrame
	}
	pk := packets.Packet{ProtocolVersion: 5}
	if err := pk.FixedHeader.Decode(b[0]); err != nil || pk.FixedHeader.Type != packets.Publish {
		return packets.Packet{}, nil, errFrame
	}
	r := bytes.NewReader(b[1:])
	length, _, err := packets.DecodeLength(r)
	if err != nil || length != r.Len() {
		return packets.Packet{}, nil, errFrame
	}
	pk.FixedHeader.Remaining = length
	if err := pk.PublishDecode(b[len(b)-length:]); err != nil {
		return packets.Packet{}, nil, err
	}
	return pk, assigned, nil
}

// OnSelectSubscribers keeps the share groups whose message goes to this
// node's members: for a publish from another node, those it assigned here;
// for a publish made here, those choose picks this node for.
func (h *Cluster) OnSelectSubscribers(subs *mqtt.Subscribers, pk packets.Packet) *mqtt.Subscribers {
	if pk.Origin == h.Injector.ID {
		assigned := h.current.Load()
		for f := range subs.Shared {
			if assigned == nil || (*assigned)[f] != h.Node {
				delete(subs.Shared, f)
			}
		}
		return subs
	}
	if !h.crosses(pk.TopicName) {
		return subs
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for f := range subs.Shared {
		if h.choose(f, pk) != h.Node {
			delete(subs.Shared, f)
		}
	}
	return subs
}

// assign picks, for every share group that covers pk's topic and has
// members somewhere, the node whose members get pk.
func (h *Cluster) assign(pk packets.Packet) map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]string{}
	consider := func(f string) {
		if _, done := out[f]; done {
			return
		}
		filter, _ := wire.StripShare(f)
		if auth.Covers(filter, pk.TopicName) {
			if node := h.choose(f, pk); node != "" {
				out[f] = node
			}
		}
	}
	for _, fs := range h.local {
		for f := range fs {
			consider(f)
		}
	}
	for _, fs := range h.remote {
		for f := range fs {
			consider(f)
		}
	}
	return out
}

// choose picks the node whose members of share group f get pk: at random,
// weighted by each node's members, from a hash of pk, so that the two calls
// for one publish (OnSelectSubscribers, then forward) agree. "" when no
// node has members. h.mu is held.
func (h *Cluster) choose(f string, pk packets.Packet) string {
	type cand struct {
		node    string
		members int
	}
	var cands []cand
	total := 0
	if n := h.localMembers(f); n > 0 {
		cands = append(cands, cand{h.Node, n})
		total += n
	}
	for _, node := range slices.Sorted(maps.Keys(h.remote)) {
		if n := h.remote[node][f]; n > 0 {
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

// localMembers counts this node's clients in share group f; h.mu is held.
func (h *Cluster) localMembers(f string) int {
	n := 0
	for _, fs := range h.local {
		if _, ok := fs[f]; ok {
			n++
		}
	}
	return n
}

// PlainShares implements cluster.Plain.
func (h *Cluster) PlainShares(node string, shares map[string]int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if shares == nil {
		delete(h.remote, node)
		return
	}
	h.remote[node] = shares
}

// noteShares records the shared subscriptions of client id (nil: none)
// and tells the bus when this node's groups changed.
func (h *Cluster) noteShares(id string, subs map[string]packets.Subscription) {
	h.mu.Lock()
	fs := map[string]struct{}{}
	for f := range subs {
		if _, shared := wire.StripShare(f); shared && !h.owned(f) {
			fs[f] = struct{}{}
		}
	}
	if len(fs) == 0 {
		delete(h.local, id)
	} else {
		h.local[id] = fs
	}
	counts := map[string]int{}
	for _, fs := range h.local {
		for f := range fs {
			counts[f]++
		}
	}
	changed := !maps.Equal(counts, h.announced)
	if changed {
		h.announced = counts
	}
	h.mu.Unlock()
	if changed {
		h.Bus.SharePlain(counts)
	}
}

func (h *Cluster) owned(filter string) bool {
	f, _ := wire.StripShare(filter)
	return h.Topics.Owns(f)
}

// OnSubscribed notes the client's shared subscriptions.
func (h *Cluster) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) {
	if !cl.Net.Inline {
		h.noteShares(cl.ID, cl.State.Subscriptions.GetAll())
	}
}

// OnUnsubscribed notes the client's shared subscriptions.
func (h *Cluster) OnUnsubscribed(cl *mqtt.Client, _ packets.Packet) {
	if !cl.Net.Inline {
		h.noteShares(cl.ID, cl.State.Subscriptions.GetAll())
	}
}

// OnDisconnect forgets the shared subscriptions of a session that ends.
func (h *Cluster) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if !cl.Net.Inline && expire && !cl.IsTakenOver() {
		h.noteShares(cl.ID, nil)
	}
}

// OnClientExpired forgets the shared subscriptions of an expired session.
func (h *Cluster) OnClientExpired(cl *mqtt.Client) { h.noteShares(cl.ID, nil) }

// Rescan notes the shared subscriptions of every session (those restored
// from the store at start-up); call it once the server serves.
func (h *Cluster) Rescan() {
	for id, cl := range h.Server.Clients.GetAll() {
		if !cl.Net.Inline {
			h.noteShares(id, cl.State.Subscriptions.GetAll())
		}
	}
}

// OnSessionEstablish claims the client id on the other nodes before the
// client inherits its session: the node holding the session drops it,
// then this node takes over its stored state (or, for a clean start,
// deletes it).
//
// Parley's devices (authenticated clients) are left out: their sessions
// move by their epochs (the delivery hook claims one before the CONNACK
// and the bus takes the older session over on every node), which orders
// claims, where a plain claim could arrive after a newer connect. A
// device's plain MQTT state (subscriptions outside the prefix of a
// persistent session) stays on the node it was made on.
func (h *Cluster) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline || device(cl) {
		return
	}
	h.cancelWill(cl.ID)
	resume := !pk.Connect.Clean
	holder, found := "", false
	if h.Storage != nil {
		holder, found = h.Storage.holder(cl.ID)
	}
	h.Bus.ClaimPlain(cl.ID, resume, holder)
	if !found || holder == h.Node {
		return
	}
	if _, here := h.Server.Clients.Get(cl.ID); here {
		return // a copy held here wins (the store lagged behind)
	}
	if !resume {
		h.Storage.forget(cl.ID)
		return
	}
	if old := h.Storage.adopt(cl.ID); old != nil {
		h.noteShares(cl.ID, old.State.Subscriptions.GetAll())
	}
}

// PlainClaim implements cluster.Plain: client connected to node, which
// takes its session over; this node disconnects the client (0x8E session
// taken over) and drops the session from memory, leaving its stored state
// to node. A will with a delay is not published when the session goes on
// there.
func (h *Cluster) PlainClaim(client, node string, resume bool) {
	h.cancelWill(client)
	cl, ok := h.Server.Clients.Get(client)
	if !ok || cl.Net.Inline {
		return
	}
	if h.Storage != nil {
		h.Storage.disown(client)
	}
	if resume && cl.Properties.Will.WillDelayInterval > 0 {
		atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
	}
	if !cl.Closed() {
		// Not on the bus's goroutine: a client that does not read would
		// hold it. A DISCONNECT not written within a second is given up.
		go func() {
			done := make(chan struct{})
			go func() {
				_ = h.Server.DisconnectClient(cl, packets.ErrSessionTakenOver)
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(time.Second):
				cl.Stop(packets.ErrSessionTakenOver)
			}
		}()
	}
	for f := range cl.State.Subscriptions.GetAll() {
		h.Server.Topics.Unsubscribe(f, client)
		cl.State.Subscriptions.Delete(f)
	}
	cl.ClearInflights()
	if now, ok := h.Server.Clients.Get(client); ok && now == cl {
		h.Server.Clients.Delete(client)
	}
	h.noteShares(client, nil)
	h.Log.Debug("plain session moved", "client", client, "to", node)
}

// OnWill takes over a will with a delay: mochi gets a void will instead,
// and sendWill publishes the real one after the delay unless its client
// connects again first, on any node.
func (h *Cluster) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if cl.Net.Inline || will.WillDelayInterval == 0 || !h.crosses(will.TopicName) {
		return will, nil
	}
	id, delay := cl.ID, time.Duration(will.WillDelayInterval)*time.Second
	h.mu.Lock()
	if old := h.wills[id]; old != nil {
		old.timer.Stop()
	}
	w := &delayedWill{}
	w.timer = time.AfterFunc(delay, func() { h.sendWill(id, w, will) })
	h.wills[id] = w
	h.mu.Unlock()
	return mqtt.Will{TopicName: auth.VoidTopic, WillDelayInterval: will.WillDelayInterval}, nil
}

// delayedWill is a will waiting for its delay; its timer is set under
// Cluster.mu.
type delayedWill struct{ timer *time.Timer }

// sendWill publishes a delayed will w that was not cancelled.
func (h *Cluster) sendWill(id string, w *delayedWill, will mqtt.Will) {
	h.mu.Lock()
	if h.wills[id] != w {
		h.mu.Unlock()
		return
	}
	delete(h.wills, id)
	h.mu.Unlock()
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: will.Qos, Retain: will.Retain},
		TopicName:   will.TopicName, Payload: will.Payload, Properties: packets.Properties{User: will.User},
		PacketID: uint16(will.Qos),
	}
	if err := h.Server.InjectPacket(h.willer, pk); err != nil {
		h.Log.Error("publishing a delayed will", "client", id, "error", err)
	}
}

// cancelWill drops the delayed will of client id, if any.
func (h *Cluster) cancelWill(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if w := h.wills[id]; w != nil {
		w.timer.Stop()
		delete(h.wills, id)
	}
}

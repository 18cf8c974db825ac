package hooks

import (
	"errors"
	"log/slog"
	"maps"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/plain"
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
//     the other nodes (plain.EncodeFrame) after it was handed to this node's
//     subscribers; a node injects what it receives through Injector, for its
//     own subscribers only (it is neither sent on nor stored again). Each
//     node checks its own subscribers' read access.
//   - Retained messages: a retained publish updates every node's retained
//     messages; the publishing node stores it (Storage).
//   - Shared subscriptions: the node a message is published on picks, for
//     each share group, the node whose members get it (plain.Shares); that
//     node gives it to one of its members, the others to none.
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
	shares  plain.Shares
	wills   plain.Timers // delayed wills by client
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
	h.shares.Node, h.shares.Topics = h.Node, h.Topics
	return nil
}

// Stop implements mqtt.Hook: delayed wills still waiting are dropped.
func (h *Cluster) Stop() error {
	h.wills.Stop()
	return nil
}

// OnPublished sends a plain publish made here to the other nodes.
func (h *Cluster) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if cl != h.Injector && !pk.Ignore && plain.Crosses(h.Topics, pk.TopicName) {
		h.forward(pk)
	}
}

// OnWillSent sends a will published here at once to the other nodes
// (delayed wills are published by sendWill, through OnPublished).
func (h *Cluster) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if !cl.Net.Inline && pk.Connect.WillProperties.WillDelayInterval == 0 && plain.Crosses(h.Topics, pk.TopicName) {
		h.forward(pk)
	}
}

// forward hands pk, with the nodes chosen for its share groups, to the bus.
func (h *Cluster) forward(pk packets.Packet) {
	frame, err := plain.EncodeFrame(pk, h.shares.Assign(pk))
	if err != nil {
		h.Log.Error("encoding a publish for the cluster", "error", err, "topic", pk.TopicName)
		return
	}
	h.Bus.PublishPlain(frame)
}

// PlainPublish implements cluster.Plain: it injects a publish from another
// node for this node's subscribers. Only the bus's goroutine calls it.
func (h *Cluster) PlainPublish(node string, frame []byte) {
	pk, assigned, err := plain.DecodeFrame(frame)
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

// OnSelectSubscribers keeps the share groups whose message goes to this
// node's members: for a publish from another node, those it assigned here;
// for a publish made here, those plain.Shares picks this node for.
func (h *Cluster) OnSelectSubscribers(subs *mqtt.Subscribers, pk packets.Packet) *mqtt.Subscribers {
	if pk.Origin == h.Injector.ID {
		var assigned map[string]string
		if p := h.current.Load(); p != nil {
			assigned = *p
		}
		h.shares.SelectAssigned(subs.Shared, assigned)
	} else if plain.Crosses(h.Topics, pk.TopicName) {
		h.shares.Select(subs.Shared, pk)
	}
	return subs
}

// PlainShares implements cluster.Plain.
func (h *Cluster) PlainShares(node string, shares map[string]int) { h.shares.SetRemote(node, shares) }

// noteShares records the shared subscriptions of client id (nil: none)
// and tells the bus when this node's groups changed.
func (h *Cluster) noteShares(id string, subs map[string]packets.Subscription) {
	if counts, changed := h.shares.Note(id, maps.Keys(subs)); changed {
		h.Bus.SharePlain(counts)
	}
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
	h.wills.Cancel(cl.ID)
	resume := !pk.Connect.Clean
	holder, found := "", false
	if h.Storage != nil {
		holder, found = h.Storage.State.Holder(cl.ID)
	}
	h.Bus.ClaimPlain(cl.ID, resume, holder)
	if !found || holder == h.Node {
		return
	}
	if _, here := h.Server.Clients.Get(cl.ID); here {
		return // a copy held here wins (the store lagged behind)
	}
	if !resume {
		h.Storage.State.Forget(cl.ID)
	} else if old := h.Storage.adopt(cl.ID); old != nil {
		h.noteShares(cl.ID, old.State.Subscriptions.GetAll())
	}
}

// PlainClaim implements cluster.Plain: client connected to node, which
// takes its session over; this node disconnects the client (0x8E session
// taken over) and drops the session from memory, leaving its stored state
// to node. A will with a delay is not published when the session goes on
// there.
func (h *Cluster) PlainClaim(client, node string, resume bool) {
	h.wills.Cancel(client)
	cl, ok := h.Server.Clients.Get(client)
	if !ok || cl.Net.Inline {
		return
	}
	if h.Storage != nil {
		h.Storage.State.Disown(client)
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
	if cl.Net.Inline || will.WillDelayInterval == 0 || !plain.Crosses(h.Topics, will.TopicName) {
		return will, nil
	}
	id := cl.ID
	h.wills.After(id, time.Duration(will.WillDelayInterval)*time.Second, func() { h.sendWill(id, will) })
	return mqtt.Will{TopicName: auth.VoidTopic, WillDelayInterval: will.WillDelayInterval}, nil
}

// sendWill publishes the delayed will of client id.
func (h *Cluster) sendWill(id string, will mqtt.Will) {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: will.Qos, Retain: will.Retain},
		TopicName:   will.TopicName, Payload: will.Payload, Properties: packets.Properties{User: will.User},
		PacketID: uint16(will.Qos),
	}
	if err := h.Server.InjectPacket(h.willer, pk); err != nil {
		h.Log.Error("publishing a delayed will", "client", id, "error", err)
	}
}

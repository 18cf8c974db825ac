package hooks

import (
	"maps"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/plain"
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

// forward hands pk, with the nodes chosen for its share groups, to the bus.
func (h *Plain) forward(pk packets.Packet) {
	frame, err := plain.EncodeFrame(pk, h.shares.Assign(pk))
	if err != nil {
		h.Log.Error("encoding a publish for the cluster", "error", err, "topic", pk.TopicName)
		return
	}
	h.Bus.PublishPlain(frame)
}

// PlainPublish implements cluster.Plain: it injects a publish from another
// node for this node's subscribers only (it is neither sent on nor stored
// again). Only the bus's goroutine calls it.
func (h *Plain) PlainPublish(node string, frame []byte) {
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
func (h *Plain) OnSelectSubscribers(subs *mqtt.Subscribers, pk packets.Packet) *mqtt.Subscribers {
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
func (h *Plain) PlainShares(node string, shares map[string]int) { h.shares.SetRemote(node, shares) }

// noteShares records the shared subscriptions of client id (nil: none)
// and tells the bus when this node's groups changed.
func (h *Plain) noteShares(id string, subs map[string]packets.Subscription) {
	if counts, changed := h.shares.Note(id, maps.Keys(subs)); changed {
		h.Bus.SharePlain(counts)
	}
}

// claim claims the client id of cl on the other nodes before it inherits
// its session: the node holding the session drops it, then this node takes
// over its stored state (or, for a clean start, deletes it).
//
// Parley's devices (authenticated clients) are left out: their sessions
// move by their epochs (the delivery hook claims one before the CONNACK
// and the bus takes the older session over on every node), which orders
// claims, where a plain claim could arrive after a newer connect. A
// device's plain MQTT state (subscriptions outside the prefix of a
// persistent session) stays on the node it was made on.
func (h *Plain) claim(cl *mqtt.Client, pk packets.Packet) {
	if device(cl) {
		return
	}
	h.wills.Cancel(cl.ID)
	resume := !pk.Connect.Clean
	holder, found := "", false
	if h.State != nil {
		holder, found = h.State.Holder(cl.ID)
	}
	h.Bus.ClaimPlain(cl.ID, resume, holder)
	if !found || holder == h.Node {
		return
	}
	if _, here := h.Server.Clients.Get(cl.ID); here {
		return // a copy held here wins (the store lagged behind)
	}
	if !resume {
		h.State.Forget(cl.ID)
	} else if old := h.adopt(cl.ID); old != nil {
		h.noteShares(cl.ID, old.State.Subscriptions.GetAll())
	}
}

// adopt loads the stored session of id, which another node held, into the
// server, as a disconnected session that the connecting client then takes
// over. It returns the session's client, nil when there is none.
func (h *Plain) adopt(id string) *mqtt.Client {
	s := h.State.Adopt(id)
	if s == nil {
		return nil
	}
	c := s.Client
	cl := h.Server.NewClient(nil, c.Listener, c.ID, false)
	cl.Properties.Username, cl.Properties.Clean, cl.Properties.ProtocolVersion = c.Username, c.Clean, c.ProtocolVersion
	cl.Properties.Props = plain.Properties(c.Properties)
	// The will belongs to the connection that left; the connecting client
	// brings its own.
	cl.Stop(packets.ErrSessionTakenOver)
	for _, sub := range s.Subscriptions {
		h.Server.Topics.Subscribe(id, sub)
		cl.State.Subscriptions.Add(sub.Filter, sub)
	}
	for _, pk := range s.Inflight {
		cl.State.Inflight.Set(pk)
	}
	h.Server.Clients.Add(cl)
	return cl
}

// PlainClaim implements cluster.Plain: client connected to node, which
// takes its session over; this node disconnects the client (0x8E session
// taken over) and drops the session from memory, leaving its stored state
// to node. A will with a delay is not published when the session goes on
// there.
func (h *Plain) PlainClaim(client, node string, resume bool) {
	h.wills.Cancel(client)
	cl, ok := h.Server.Clients.Get(client)
	if !ok || cl.Net.Inline {
		return
	}
	if h.State != nil {
		h.State.Disown(client)
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

// OnWill takes over a will with a delay (cluster mode; mochi's own timers
// cannot be stopped from another node): mochi gets a void will instead,
// and sendWill publishes the real one after the delay unless its client
// connects again first, on any node.
func (h *Plain) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if cl.Net.Inline || will.WillDelayInterval == 0 || !plain.Crosses(h.Topics, will.TopicName) {
		return will, nil
	}
	id := cl.ID
	h.wills.After(id, time.Duration(will.WillDelayInterval)*time.Second, func() { h.sendWill(id, will) })
	return mqtt.Will{TopicName: auth.VoidTopic, WillDelayInterval: will.WillDelayInterval}, nil
}

// sendWill publishes the delayed will of client id.
func (h *Plain) sendWill(id string, will mqtt.Will) {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: will.Qos, Retain: will.Retain},
		TopicName:   will.TopicName, Payload: will.Payload, Properties: packets.Properties{User: will.User},
		PacketID: uint16(will.Qos),
	}
	if err := h.Server.InjectPacket(h.willer, pk); err != nil {
		h.Log.Error("publishing a delayed will", "client", id, "error", err)
	}
}

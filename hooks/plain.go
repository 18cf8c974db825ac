package hooks

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/internal/plain"
	"github.com/parley-im/parley/internal/wire"
)

// Plain is the mochi hook of plain MQTT (topics outside the prefix): it
// hands the state to keep to a plain.State and, in cluster mode, carries
// publishes, share groups, session claims and delayed wills between the
// nodes over a PlainBus (see internal/plain for both). Every write happens
// before mochi acknowledges the packet that caused it (SUBACK, PUBACK,
// PUBREC), except the messages queued for sessions, which mochi hands out
// after acknowledging the publish: for those a publish matching a
// persistent session is first recorded as pending (in OnPublish, before the
// PUBACK), and Start publishes again what a crash left pending.
type Plain struct {
	mqtt.HookBase

	// Server is the broker; required.
	Server *mqtt.Server
	// Topics is Parley's topic layout: its topics are never kept nor
	// carried here.
	Topics wire.Topics
	// State keeps the sessions and retained messages in the store; nil
	// keeps them in memory only. Init gives it Topics, Node and Log where
	// it has none of its own.
	State *plain.State
	// Bus, in cluster mode, carries plain MQTT to the other nodes; nil on
	// one node. Node is then required.
	Bus PlainBus
	// Node is this node's id (cluster mode).
	Node string
	// Injector is the inline client through which other nodes' publishes
	// are injected (cluster mode): their node stores them. Nil: Init
	// creates one (Server.NewClient(nil, "local", "\x00parley-cluster",
	// true)).
	Injector *mqtt.Client
	// Log defaults to slog.Default().
	Log *slog.Logger

	willer   *mqtt.Client                      // inline client of the delayed wills (cluster mode)
	current  atomic.Pointer[map[string]string] // share assignments of the publish being injected
	shares   plain.Shares
	wills    plain.Timers // delayed wills by client (cluster mode)
	restored plain.Timers // wills of restored sessions, waiting for their delay
}

// ID implements mqtt.Hook.
func (h *Plain) ID() string { return "parley-plain" }

// Provides implements mqtt.Hook.
func (h *Plain) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablish, mqtt.OnDisconnect, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnWillSent,
		mqtt.OnClientExpired, mqtt.OnPublished:
		return true
	case mqtt.OnRetainMessage, mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped, mqtt.OnRetainedExpired, mqtt.OnPublish,
		mqtt.StoredClients, mqtt.StoredSubscriptions, mqtt.StoredInflightMessages, mqtt.StoredRetainedMessages:
		return h.State != nil
	case mqtt.OnWill, mqtt.OnSelectSubscribers:
		return h.Bus != nil
	}
	return false
}

// Init implements mqtt.Hook.
func (h *Plain) Init(any) error {
	if h.Server == nil || (h.State != nil && h.State.Store == nil) {
		return errors.New("hooks: Plain needs Server (and a Store in its State)")
	}
	if h.Log == nil {
		h.Log = slog.Default()
	}
	if h.State != nil {
		if h.State.Topics == (wire.Topics{}) {
			h.State.Topics = h.Topics
		}
		if h.State.Node == "" {
			h.State.Node = h.Node
		}
		if h.State.Log == nil {
			h.State.Log = h.Log
		}
	}
	if h.Bus == nil {
		return nil
	}
	if h.Node == "" {
		return errors.New("hooks: Plain with a Bus needs Node")
	}
	if h.Injector == nil {
		h.Injector = h.Server.NewClient(nil, "local", "\x00parley-cluster", true)
	}
	h.willer = h.Server.NewClient(nil, "local", "\x00parley-will", true)
	// What they inject keeps MQTT 5's message expiry.
	h.Injector.Properties.ProtocolVersion, h.willer.Properties.ProtocolVersion = 5, 5
	h.shares.Node, h.shares.Topics = h.Node, h.Topics
	return nil
}

// Stop implements mqtt.Hook: wills still waiting are dropped.
func (h *Plain) Stop() error {
	h.wills.Stop()
	h.restored.Stop()
	return nil
}

// persistent reports whether State keeps the session of cl.
func (h *Plain) persistent(cl *mqtt.Client) bool {
	return h.State != nil && !cl.Net.Inline && h.State.Persistent(cl.ID)
}

// client is cl in mochi's storable form.
func client(cl *mqtt.Client) storage.Client {
	return storage.Client{ID: cl.ID, Remote: cl.Net.Remote, Listener: cl.Net.Listener, Username: cl.Properties.Username,
		Clean: cl.Properties.Clean, ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties: plain.ClientProperties(cl.Properties.Props), Will: storage.ClientWill(cl.Properties.Will)}
}

// OnSessionEstablish, in cluster mode, claims the session (see claim);
// then it stores a persistent session's client, or forgets the stored
// session of a client that starts clean, before the CONNACK.
func (h *Plain) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	if h.Bus != nil {
		h.claim(cl, pk)
	}
	if h.State != nil {
		persists := !cl.Properties.Clean
		if cl.Properties.ProtocolVersion == 5 {
			persists = cl.Properties.Props.SessionExpiryInterval > 0
		}
		c := storage.Client{ID: cl.ID} // all a clean start needs
		if persists {
			c = client(cl)
		}
		h.State.Establish(c, persists, cl.StopTime())
	}
}

// OnWillSent, in cluster mode, sends a will published here at once to the
// other nodes (delayed wills are published by sendWill, through
// OnPublished), and stores the client without the will it no longer has.
func (h *Plain) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if h.Bus != nil && !cl.Net.Inline && pk.Connect.WillProperties.WillDelayInterval == 0 && plain.Crosses(h.Topics, pk.TopicName) {
		h.forward(pk)
	}
	if h.persistent(cl) {
		h.State.PutClient(client(cl), cl.StopTime())
	}
}

// OnDisconnect forgets the connection's publishes in progress (see
// State.ForgetPending), however it ended; then it forgets a session that
// ends with its connection (unless another connection took it over), and
// stores a persistent one again: a normal DISCONNECT has removed its will,
// or changed its expiry, and the time it went away counts.
func (h *Plain) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if cl.Net.Inline {
		return
	}
	if h.State != nil {
		h.State.ForgetPending(cl) // taken over too: its publishes in progress are its own
	}
	if cl.IsTakenOver() {
		return
	}
	if h.Bus != nil && expire {
		h.noteShares(cl.ID, nil)
	}
	if !h.persistent(cl) || errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) {
		return
	}
	if expire {
		h.State.Forget(cl.ID)
	} else if cl.Net.Conn != nil {
		h.State.PutClient(client(cl), cl.StopTime())
	}
}

// OnClientExpired forgets an expired session.
func (h *Plain) OnClientExpired(cl *mqtt.Client) {
	if h.Bus != nil {
		h.noteShares(cl.ID, nil)
	}
	if h.persistent(cl) {
		h.State.Forget(cl.ID)
	}
}

// OnSubscribed notes the client's shared subscriptions (cluster mode) and
// stores the granted subscriptions of a persistent session.
func (h *Plain) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if h.Bus != nil && !cl.Net.Inline {
		h.noteShares(cl.ID, cl.State.Subscriptions.GetAll())
	}
	if h.State != nil {
		h.State.Subscribed(cl.ID, pk.Filters, codes)
	}
}

// OnUnsubscribed notes the client's shared subscriptions (cluster mode)
// and deletes the stored subscriptions.
func (h *Plain) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if h.Bus != nil && !cl.Net.Inline {
		h.noteShares(cl.ID, cl.State.Subscriptions.GetAll())
	}
	if h.State != nil {
		h.State.Unsubscribed(cl.ID, pk.Filters)
	}
}

// OnRetainMessage stores (or, r == -1, deletes) a retained message, before
// the publish is acknowledged; another node's is stored there.
func (h *Plain) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	if h.Injector == nil || cl != h.Injector {
		h.State.Retain(cl.ID, pk, r == -1)
	}
}

// OnRetainedExpired deletes an expired retained message.
func (h *Plain) OnRetainedExpired(topic string) { h.State.RetainedExpired(topic) }

// OnQosPublish stores a QoS 1 or 2 message queued or sent to a persistent
// session.
func (h *Plain) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	h.State.Queued(cl.ID, pk)
}

// OnQosComplete deletes a stored message the session acknowledged.
func (h *Plain) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	h.State.Completed(cl.ID, pk.PacketID)
}

// OnQosDropped deletes a stored message mochi dropped (expired).
func (h *Plain) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	h.State.Completed(cl.ID, pk.PacketID)
}

// pending reports whether pk is a QoS 1 or 2 publish outside the prefix
// that a persistent session subscribes to.
func (h *Plain) pending(cl *mqtt.Client, pk packets.Packet) bool {
	if !h.mayPend(cl, pk) {
		return false
	}
	subs := h.Server.Topics.Subscribers(pk.TopicName)
	return h.State.Wanted(subs.Subscriptions, subs.Shared)
}

// mayPend reports whether publish pk of cl is of the kind that can be
// recorded as pending: a plain QoS 1 or 2 publish of a client, with State.
func (h *Plain) mayPend(cl *mqtt.Client, pk packets.Packet) bool {
	return h.State != nil && pk.FixedHeader.Qos > 0 && !cl.Net.Inline && !h.Topics.Owns(pk.TopicName)
}

// OnPublish records a publish for persistent sessions as pending, before
// mochi acknowledges it (OnPublished deletes it once the sessions have it).
func (h *Plain) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if h.pending(cl, pk) {
		h.State.PutPending(cl, cl.ID, pk)
	}
	return pk, nil
}

// OnPublished sends a plain publish made here to the other nodes (cluster
// mode) and deletes its pending record.
func (h *Plain) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if h.Bus != nil && cl != h.Injector && !pk.Ignore && plain.Crosses(h.Topics, pk.TopicName) {
		h.forward(pk)
	}
	if h.mayPend(cl, pk) {
		h.State.DeletePending(cl, cl.ID, pk.PacketID) // only what OnPublish recorded
	}
}

// StoredClients implements mqtt.Hook.
func (h *Plain) StoredClients() ([]storage.Client, error) { return h.State.Clients() }

// StoredSubscriptions implements mqtt.Hook.
func (h *Plain) StoredSubscriptions() ([]storage.Subscription, error) { return h.State.Subscriptions() }

// StoredInflightMessages implements mqtt.Hook.
func (h *Plain) StoredInflightMessages() ([]storage.Message, error) { return h.State.Inflight() }

// StoredRetainedMessages implements mqtt.Hook.
func (h *Plain) StoredRetainedMessages() ([]storage.Message, error) { return h.State.Retained() }

// Start, once the server serves, publishes again the publishes a crash
// left pending (acknowledged to their senders, perhaps not queued for the
// sessions; a session may get one twice), schedules the wills of the
// sessions restored from the store (which mochi does not: each is
// published after its delay, counted from now, unless its client has
// reconnected by then), and notes their shared subscriptions (cluster
// mode). Its error is that of reading the pending publishes.
func (h *Plain) Start() error {
	for id, cl := range h.Server.Clients.GetAll() {
		if cl.Net.Inline {
			continue
		}
		if h.State != nil && cl.Closed() && atomic.LoadUint32(&cl.Properties.Will.Flag) == 1 {
			will := cl.Properties.Will
			h.restored.After(id, time.Duration(will.WillDelayInterval)*time.Second, func() { h.sendRestoredWill(cl, will) })
		}
		if h.Bus != nil {
			h.noteShares(id, cl.State.Subscriptions.GetAll())
		}
	}
	if h.State == nil {
		return nil
	}
	return h.State.Replay(func(pk packets.Packet) error {
		return h.Server.Publish(pk.TopicName, pk.Payload, false, pk.FixedHeader.Qos)
	})
}

// sendRestoredWill publishes the will of a restored session whose client
// is still away, then stores the session without it.
func (h *Plain) sendRestoredWill(cl *mqtt.Client, will mqtt.Will) {
	if now, ok := h.Server.Clients.Get(cl.ID); !ok || now != cl || !cl.Closed() {
		return // reconnected or gone
	}
	if !atomic.CompareAndSwapUint32(&cl.Properties.Will.Flag, 1, 0) {
		return
	}
	if err := h.Server.Publish(will.TopicName, will.Payload, will.Retain, will.Qos); err != nil {
		h.Log.Error("publishing a restored will", "error", err, "client", cl.ID)
	}
	cl.Properties.Will = mqtt.Will{}
	if h.persistent(cl) {
		h.State.PutClient(client(cl), cl.StopTime())
	}
}

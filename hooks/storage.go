package hooks

import (
	"errors"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/internal/plain"
)

// Storage is the mochi storage hook of the plain MQTT state (plain.State,
// which says what is kept). Every write happens before mochi acknowledges
// the packet that caused it (SUBACK, PUBACK, PUBREC), except the messages
// queued for sessions, which mochi hands out after acknowledging the
// publish: for those a publish matching a persistent session is first
// recorded as pending (in OnPublish, before the PUBACK), and Replay
// publishes again what a crash left pending.
type Storage struct {
	mqtt.HookBase

	// State keeps the state; required (its Store too).
	State *plain.State
	// Server is the broker; required (OnPublish looks up subscribers).
	Server *mqtt.Server
	// Remote, in cluster mode, is the inline client through which the
	// publishes of other nodes are injected: their node stores them.
	Remote *mqtt.Client

	wills plain.Timers // wills of restored sessions, waiting for their delay
}

// ID implements mqtt.Hook.
func (h *Storage) ID() string { return "parley-storage" }

// Provides implements mqtt.Hook.
func (h *Storage) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablish, mqtt.OnDisconnect, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnRetainMessage, mqtt.OnWillSent, mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped,
		mqtt.OnClientExpired, mqtt.OnRetainedExpired, mqtt.OnPublish, mqtt.OnPublished,
		mqtt.StoredClients, mqtt.StoredSubscriptions, mqtt.StoredInflightMessages, mqtt.StoredRetainedMessages:
		return true
	}
	return false
}

// Init implements mqtt.Hook.
func (h *Storage) Init(any) error {
	if h.State == nil || h.State.Store == nil || h.Server == nil {
		return errors.New("hooks: Storage needs State (with a Store) and Server")
	}
	return nil
}

// persists reports whether cl's session outlives its connection.
func persists(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// client is cl in mochi's storable form.
func client(cl *mqtt.Client) storage.Client {
	return storage.Client{ID: cl.ID, Remote: cl.Net.Remote, Listener: cl.Net.Listener, Username: cl.Properties.Username,
		Clean: cl.Properties.Clean, ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties: plain.ClientProperties(cl.Properties.Props), Will: storage.ClientWill(cl.Properties.Will)}
}

// OnSessionEstablish stores a persistent session's client, or forgets the
// stored session of a client that starts clean, before the CONNACK.
func (h *Storage) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if !cl.Net.Inline {
		h.State.Establish(client(cl), persists(cl), cl.StopTime())
	}
}

// OnWillSent stores the client without the will it no longer has.
func (h *Storage) OnWillSent(cl *mqtt.Client, _ packets.Packet) {
	if h.State.Persistent(cl.ID) {
		h.State.PutClient(client(cl), cl.StopTime())
	}
}

// OnDisconnect forgets a session that ends with its connection (unless
// another connection took it over), and stores a persistent one again: a
// normal DISCONNECT has removed its will, or changed its expiry, and the
// time it went away counts.
func (h *Storage) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if cl.Net.Inline || !h.State.Persistent(cl.ID) || errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) || cl.IsTakenOver() {
		return
	}
	if expire {
		h.State.Forget(cl.ID)
	} else if cl.Net.Conn != nil {
		h.State.PutClient(client(cl), cl.StopTime())
	}
}

// OnClientExpired forgets an expired session.
func (h *Storage) OnClientExpired(cl *mqtt.Client) {
	if h.State.Persistent(cl.ID) {
		h.State.Forget(cl.ID)
	}
}

// OnSubscribed stores the granted subscriptions of a persistent session.
func (h *Storage) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	h.State.Subscribed(cl.ID, pk.Filters, codes)
}

// OnUnsubscribed deletes the subscriptions.
func (h *Storage) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	h.State.Unsubscribed(cl.ID, pk.Filters)
}

// OnRetainMessage stores (or, r == -1, deletes) a retained message, before
// the publish is acknowledged.
func (h *Storage) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	if h.Remote == nil || cl != h.Remote {
		h.State.Retain(cl.ID, pk, r == -1)
	}
}

// OnRetainedExpired deletes an expired retained message.
func (h *Storage) OnRetainedExpired(topic string) { h.State.RetainedExpired(topic) }

// OnQosPublish stores a QoS 1 or 2 message queued or sent to a persistent
// session.
func (h *Storage) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	h.State.Queued(cl.ID, pk)
}

// OnQosComplete deletes a stored message the session acknowledged.
func (h *Storage) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	h.State.Completed(cl.ID, pk.PacketID)
}

// OnQosDropped deletes a stored message mochi dropped (expired).
func (h *Storage) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	h.State.Completed(cl.ID, pk.PacketID)
}

// pending reports whether pk is a QoS 1 or 2 publish outside the prefix
// that a persistent session subscribes to.
func (h *Storage) pending(cl *mqtt.Client, pk packets.Packet) bool {
	if pk.FixedHeader.Qos == 0 || cl.Net.Inline || h.State.Topics.Owns(pk.TopicName) {
		return false
	}
	subs := h.Server.Topics.Subscribers(pk.TopicName)
	return h.State.Wanted(subs.Subscriptions, subs.Shared)
}

// OnPublish records a publish for persistent sessions as pending, before
// mochi acknowledges it (OnPublished deletes it once the sessions have it).
func (h *Storage) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if h.pending(cl, pk) {
		h.State.PutPending(cl.ID, pk)
	}
	return pk, nil
}

// OnPublished deletes the pending record of a publish.
func (h *Storage) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if h.pending(cl, pk) {
		h.State.DeletePending(cl.ID, pk.PacketID)
	}
}

// StoredClients implements mqtt.Hook.
func (h *Storage) StoredClients() ([]storage.Client, error) { return h.State.Clients() }

// StoredSubscriptions implements mqtt.Hook.
func (h *Storage) StoredSubscriptions() ([]storage.Subscription, error) {
	return h.State.Subscriptions()
}

// StoredInflightMessages implements mqtt.Hook.
func (h *Storage) StoredInflightMessages() ([]storage.Message, error) { return h.State.Inflight() }

// StoredRetainedMessages implements mqtt.Hook.
func (h *Storage) StoredRetainedMessages() ([]storage.Message, error) { return h.State.Retained() }

// Replay publishes again the publishes a crash left pending (acknowledged
// to their senders, perhaps not queued for the sessions), and schedules the
// wills of the restored sessions (which mochi does not): each is published
// after its delay, counted from now, unless its client has reconnected by
// then. Call it once the server serves; a session may get a pending
// publish twice.
func (h *Storage) Replay() error {
	for _, cl := range h.Server.Clients.GetAll() {
		if cl.Net.Inline || !cl.Closed() || atomic.LoadUint32(&cl.Properties.Will.Flag) == 0 {
			continue
		}
		will := cl.Properties.Will
		h.wills.After(cl.ID, time.Duration(will.WillDelayInterval)*time.Second, func() { h.sendWill(cl, will) })
	}
	return h.State.Replay(func(pk packets.Packet) error {
		return h.Server.Publish(pk.TopicName, pk.Payload, false, pk.FixedHeader.Qos)
	})
}

// sendWill publishes the will of a restored session whose client is still
// away, then stores the session without it.
func (h *Storage) sendWill(cl *mqtt.Client, will mqtt.Will) {
	if now, ok := h.Server.Clients.Get(cl.ID); !ok || now != cl || !cl.Closed() {
		return // reconnected or gone
	}
	if !atomic.CompareAndSwapUint32(&cl.Properties.Will.Flag, 1, 0) {
		return
	}
	if err := h.Server.Publish(will.TopicName, will.Payload, will.Retain, will.Qos); err != nil {
		h.Server.Log.Error("publishing a restored will", "error", err, "client", cl.ID)
	}
	cl.Properties.Will = mqtt.Will{}
	h.OnWillSent(cl, packets.Packet{})
}

// adopt loads the stored session of id, which another node held, into the
// server, as a disconnected session that the connecting client then takes
// over (cluster mode). It returns the session's client, nil when there is
// none.
func (h *Storage) adopt(id string) *mqtt.Client {
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

// Stop implements mqtt.Hook: restored wills still waiting are dropped.
func (h *Storage) Stop() error {
	h.wills.Stop()
	return nil
}

package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/wire"
)

// Storage is the mochi storage hook on Parley's store: it keeps the plain
// MQTT state (topics outside the prefix only; Parley's own topics live in
// the store's messages and cursors) across restarts and kill -9:
// persistent sessions (MQTT 3.1.1 clean session 0, MQTT 5 session expiry
// above 0) with their wills, subscriptions and queued QoS 1 and 2 messages,
// and retained messages. Every write happens before mochi acknowledges the
// packet that caused it (SUBACK, PUBACK, PUBREC), except the messages
// queued for sessions, which mochi hands out after acknowledging the
// publish: for those a publish matching a persistent session is first
// recorded as pending (in OnPublish, before the PUBACK), and Replay
// publishes again what a crash left pending. A failed write is logged; the
// broker goes on from memory.
type Storage struct {
	mqtt.HookBase

	// Store keeps the state; required.
	Store history.MQTTStater
	// Server is the broker; required (OnPublish looks up subscribers).
	Server *mqtt.Server
	// Topics is Parley's topic layout, whose topics are never stored here.
	Topics wire.Topics
	// Log defaults to slog.Default().
	Log *slog.Logger
	// Node, in cluster mode, names this node: nodes share the store, each
	// session is held (restored, and its will published) by the node it
	// was last connected to, and retained messages are shared. Empty: one
	// node owns the whole state.
	Node string
	// Remote, in cluster mode, is the inline client through which the
	// publishes of other nodes are injected: their node stores them.
	Remote *mqtt.Client

	mu         sync.Mutex
	wills      []*time.Timer                  // wills of restored sessions, waiting for their delay
	persistent map[string]bool                // client ids of persistent sessions
	inflight   map[string]map[uint16]struct{} // stored queued messages by client and packet id
}

// storageTimeout bounds one write.
const storageTimeout = 10 * time.Second

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
	if h.Store == nil || h.Server == nil {
		return errors.New("hooks: Storage needs Store and Server")
	}
	if h.Log == nil {
		h.Log = slog.Default()
	}
	h.persistent = map[string]bool{}
	h.inflight = map[string]map[uint16]struct{}{}
	return nil
}

// storedClient is a session's client as stored: mochi's encoding and the
// node that holds the session (cluster mode).
type storedClient struct {
	storage.Client
	Node string `json:"parley_node,omitempty"`
	// Disconnected is when the client went away (Unix seconds), 0 while
	// connected: a node that adopts the session checks its expiry.
	Disconnected int64 `json:"parley_disconnected,omitempty"`
}

func (h *Storage) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), storageTimeout)
}

func (h *Storage) put(recs ...history.MQTTRecord) {
	ctx, cancel := h.ctx()
	defer cancel()
	if err := h.Store.PutMQTT(ctx, recs...); err != nil {
		h.Log.Error("storing mqtt state", "error", err, "kind", string(recs[0].Kind), "client", recs[0].Client)
	}
}

func (h *Storage) del(kind byte, client, key string) {
	ctx, cancel := h.ctx()
	defer cancel()
	if err := h.Store.DeleteMQTT(ctx, kind, client, key); err != nil {
		h.Log.Error("deleting mqtt state", "error", err, "kind", string(kind), "client", client)
	}
}

// persists reports whether cl's session outlives its connection.
func persists(cl *mqtt.Client) bool {
	if cl.Net.Inline {
		return false
	}
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

func (h *Storage) isPersistent(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.persistent[id]
}

// OnSessionEstablish stores a persistent session's client, or forgets the
// stored session of a client that starts clean, before the CONNACK: once
// the client reads it, it may send packets whose handling should not wait
// for the store.
func (h *Storage) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	if !persists(cl) {
		if h.isPersistent(cl.ID) {
			h.forget(cl.ID)
		}
		return
	}
	h.mu.Lock()
	h.persistent[cl.ID] = true
	h.mu.Unlock()
	h.putClient(cl)
}

// OnWillSent stores the client without the will it no longer has.
func (h *Storage) OnWillSent(cl *mqtt.Client, _ packets.Packet) {
	if h.isPersistent(cl.ID) {
		h.putClient(cl)
	}
}

func (h *Storage) putClient(cl *mqtt.Client) {
	props := cl.Properties.Props.Copy(false)
	c := storage.Client{
		ID: cl.ID, T: storage.ClientKey, Remote: cl.Net.Remote, Listener: cl.Net.Listener,
		Username: cl.Properties.Username, Clean: cl.Properties.Clean, ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties: storage.ClientProperties{
			SessionExpiryInterval: props.SessionExpiryInterval, SessionExpiryIntervalFlag: props.SessionExpiryIntervalFlag,
			AuthenticationMethod: props.AuthenticationMethod, AuthenticationData: props.AuthenticationData,
			RequestProblemInfo: props.RequestProblemInfo, RequestProblemInfoFlag: props.RequestProblemInfoFlag,
			RequestResponseInfo: props.RequestResponseInfo, ReceiveMaximum: props.ReceiveMaximum,
			TopicAliasMaximum: props.TopicAliasMaximum, User: props.User, MaximumPacketSize: props.MaximumPacketSize,
		},
		Will: storage.ClientWill(cl.Properties.Will),
	}
	if h.Topics.Owns(c.Will.TopicName) {
		c.Will = storage.ClientWill{}
	}
	data, err := json.Marshal(storedClient{Client: c, Node: h.Node, Disconnected: cl.StopTime()})
	if err != nil {
		h.Log.Error("encoding mqtt client", "error", err, "client", cl.ID)
		return
	}
	h.put(history.MQTTRecord{Kind: history.MQTTClient, Client: cl.ID, Data: data})
}

// forget deletes a session from the store.
func (h *Storage) forget(id string) {
	h.mu.Lock()
	delete(h.persistent, id)
	delete(h.inflight, id)
	h.mu.Unlock()
	ctx, cancel := h.ctx()
	defer cancel()
	if err := h.Store.DeleteMQTTClient(ctx, id); err != nil {
		h.Log.Error("deleting mqtt session", "error", err, "client", id)
	}
}

// OnDisconnect forgets a session that ends with its connection (unless
// another connection took it over), and stores a persistent one again: a
// normal DISCONNECT has removed its will, or changed its expiry, and the
// time it went away counts.
func (h *Storage) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if cl.Net.Inline || !h.isPersistent(cl.ID) || errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) || cl.IsTakenOver() {
		return
	}
	if expire {
		h.forget(cl.ID)
		return
	}
	if cl.Net.Conn != nil {
		h.putClient(cl)
	}
}

// OnClientExpired forgets an expired session.
func (h *Storage) OnClientExpired(cl *mqtt.Client) {
	if h.isPersistent(cl.ID) {
		h.forget(cl.ID)
	}
}

// OnSubscribed stores the granted subscriptions of a persistent session
// outside the prefix.
func (h *Storage) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if !h.isPersistent(cl.ID) {
		return
	}
	var recs []history.MQTTRecord
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= 0x80 || h.owned(f.Filter) {
			continue
		}
		s := storage.Subscription{ID: f.Filter, T: storage.SubscriptionKey, Client: cl.ID, Qos: codes[i], Filter: f.Filter,
			Identifier: f.Identifier, NoLocal: f.NoLocal, RetainHandling: f.RetainHandling, RetainAsPublished: f.RetainAsPublished}
		data, err := s.MarshalBinary()
		if err != nil {
			continue
		}
		recs = append(recs, history.MQTTRecord{Kind: history.MQTTSubscription, Client: cl.ID, Key: f.Filter, Data: data})
	}
	if len(recs) > 0 {
		h.put(recs...)
	}
}

// owned reports whether a filter is under the prefix.
func (h *Storage) owned(filter string) bool {
	f, _ := wire.StripShare(filter)
	return h.Topics.Owns(f)
}

// OnUnsubscribed deletes the subscriptions.
func (h *Storage) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if !h.isPersistent(cl.ID) {
		return
	}
	for _, f := range pk.Filters {
		if !h.owned(f.Filter) {
			h.del(history.MQTTSubscription, cl.ID, f.Filter)
		}
	}
}

// OnRetainMessage stores (or, r == -1, deletes) a retained message outside
// the prefix, before the publish is acknowledged.
func (h *Storage) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	if h.Topics.Owns(pk.TopicName) || (h.Remote != nil && cl == h.Remote) {
		return
	}
	if r == -1 {
		h.del(history.MQTTRetained, "", pk.TopicName)
		return
	}
	data, err := message(pk, cl.ID).MarshalBinary()
	if err != nil {
		return
	}
	h.put(history.MQTTRecord{Kind: history.MQTTRetained, Key: pk.TopicName, Data: data})
}

// OnRetainedExpired deletes an expired retained message.
func (h *Storage) OnRetainedExpired(topic string) {
	if !h.Topics.Owns(topic) {
		h.del(history.MQTTRetained, "", topic)
	}
}

// message is pk in mochi's storable form.
func message(pk packets.Packet, client string) storage.Message {
	props := pk.Properties.Copy(false)
	return storage.Message{
		Client: client, Origin: pk.Origin, FixedHeader: pk.FixedHeader, TopicName: pk.TopicName, Payload: pk.Payload,
		Created: pk.Created, PacketID: pk.PacketID,
		Properties: storage.MessageProperties{
			PayloadFormat: props.PayloadFormat, PayloadFormatFlag: props.PayloadFormatFlag,
			MessageExpiryInterval: props.MessageExpiryInterval, ContentType: props.ContentType,
			ResponseTopic: props.ResponseTopic, CorrelationData: props.CorrelationData,
			SubscriptionIdentifier: props.SubscriptionIdentifier, User: props.User,
		},
	}
}

// OnQosPublish stores a QoS 1 or 2 message queued or sent to a persistent
// session.
func (h *Storage) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, resends int) {
	if pk.FixedHeader.Type != packets.Publish || h.Topics.Owns(pk.TopicName) || !h.isPersistent(cl.ID) {
		return
	}
	id := pk.PacketID
	h.mu.Lock()
	ids := h.inflight[cl.ID]
	if ids == nil {
		ids = map[uint16]struct{}{}
		h.inflight[cl.ID] = ids
	}
	_, stored := ids[id]
	ids[id] = struct{}{}
	h.mu.Unlock()
	if stored && pk.FixedHeader.Dup {
		return // sent again on reconnect: stored already
	}
	data, err := message(pk, cl.ID).MarshalBinary()
	if err != nil {
		return
	}
	h.put(history.MQTTRecord{Kind: history.MQTTInflight, Client: cl.ID, Key: strconv.Itoa(int(id)), Data: data})
}

// OnQosComplete deletes a stored message the session acknowledged.
func (h *Storage) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	h.mu.Lock()
	_, stored := h.inflight[cl.ID][pk.PacketID]
	delete(h.inflight[cl.ID], pk.PacketID)
	h.mu.Unlock()
	if stored {
		h.del(history.MQTTInflight, cl.ID, strconv.Itoa(int(pk.PacketID)))
	}
}

// OnQosDropped deletes a stored message mochi dropped (expired).
func (h *Storage) OnQosDropped(cl *mqtt.Client, pk packets.Packet) { h.OnQosComplete(cl, pk) }

// OnPublish records a QoS 1 or 2 publish outside the prefix that a
// persistent session subscribes to as pending, before mochi acknowledges it
// (OnPublished deletes it once the sessions have it).
func (h *Storage) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Qos == 0 || cl.Net.Inline || h.Topics.Owns(pk.TopicName) || !h.wanted(pk.TopicName) {
		return pk, nil
	}
	data, err := message(pk, cl.ID).MarshalBinary()
	if err == nil {
		h.put(history.MQTTRecord{Kind: history.MQTTPending, Client: cl.ID, Key: h.pendingKey(pk.PacketID), Data: data})
	}
	return pk, nil
}

// OnPublished deletes the pending record of a publish.
func (h *Storage) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Qos == 0 || cl.Net.Inline || h.Topics.Owns(pk.TopicName) || !h.wanted(pk.TopicName) {
		return
	}
	h.del(history.MQTTPending, cl.ID, h.pendingKey(pk.PacketID))
}

// pendingKey is the key of a pending publish: its packet id, after the
// node in cluster mode (a client may publish with the same id on two
// nodes, one after the other).
func (h *Storage) pendingKey(id uint16) string {
	if h.Node == "" {
		return strconv.Itoa(int(id))
	}
	return h.Node + "/" + strconv.Itoa(int(id))
}

// wanted reports whether a persistent session subscribes to topic.
func (h *Storage) wanted(topic string) bool {
	subs := h.Server.Topics.Subscribers(topic)
	h.mu.Lock()
	defer h.mu.Unlock()
	for id := range subs.Subscriptions {
		if h.persistent[id] {
			return true
		}
	}
	for _, group := range subs.Shared {
		for id := range group {
			if h.persistent[id] {
				return true
			}
		}
	}
	return false
}

// Replay publishes again the publishes a crash left pending (acknowledged
// to their senders, perhaps not queued for the sessions), then deletes
// them, and schedules the wills of the restored sessions (which mochi does
// not): each is published after its delay, counted from now, unless its
// client has reconnected by then. Call it once the server serves; a
// session may get a pending publish twice.
func (h *Storage) Replay() error {
	for _, cl := range h.Server.Clients.GetAll() {
		if cl.Net.Inline || !cl.Closed() || atomic.LoadUint32(&cl.Properties.Will.Flag) == 0 {
			continue
		}
		will := cl.Properties.Will
		delay := time.Duration(will.WillDelayInterval) * time.Second
		h.mu.Lock()
		h.wills = append(h.wills, time.AfterFunc(delay, func() { h.sendWill(cl, will) }))
		h.mu.Unlock()
	}
	ctx, cancel := h.ctx()
	defer cancel()
	recs, err := h.Store.MQTTState(ctx, history.MQTTPending)
	if err != nil {
		return fmt.Errorf("hooks: replay pending publishes: %w", err)
	}
	for _, r := range recs {
		if h.Node != "" && !strings.HasPrefix(r.Key, h.Node+"/") {
			continue // another node's
		}
		var m storage.Message
		if err := m.UnmarshalBinary(r.Data); err == nil {
			pk := m.ToPacket()
			if err := h.Server.Publish(pk.TopicName, pk.Payload, false, pk.FixedHeader.Qos); err != nil {
				h.Log.Error("replaying a pending publish", "error", err, "topic", pk.TopicName)
				continue
			}
		}
		h.del(history.MQTTPending, r.Client, r.Key)
	}
	return nil
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
		h.Log.Error("publishing a restored will", "error", err, "client", cl.ID)
	}
	cl.Properties.Will = mqtt.Will{}
	if h.isPersistent(cl.ID) {
		h.putClient(cl)
	}
}

// Stop implements mqtt.Hook: restored wills still waiting are dropped.
func (h *Storage) Stop() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range h.wills {
		t.Stop()
	}
	h.wills = nil
	return nil
}

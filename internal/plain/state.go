// Package plain owns the plain MQTT state (topics outside Parley's prefix)
// that mochi-mqtt leaves to its embedder: the persistent sessions, retained
// and queued messages kept in the store (State), and in cluster mode the
// choice of node per share group (Shares), the frames that carry plain
// publishes between nodes, the delayed wills (Timers) and the order in which
// a resumed session's queued messages go out again (Requeue). It speaks
// mochi's packets and storage types, but knows nothing of its server: the
// hooks package turns mochi callbacks into calls on it.
package plain

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/wire"
)

// State keeps the plain MQTT state in the store across restarts and kill
// -9: persistent sessions (MQTT 3.1.1 clean session 0, MQTT 5 session
// expiry above 0) with their wills, subscriptions and queued QoS 1 and 2
// messages, retained messages, and the publishes recorded as pending until
// the sessions have them. It remembers which sessions are persistent and
// which of their queued messages it stored. A failed write is logged; the
// broker goes on from memory. The zero value needs only Store. Safe for
// concurrent use.
type State struct {
	// Store keeps the state; required.
	Store history.MQTTStater
	// Topics is Parley's topic layout, whose topics are never stored here.
	Topics wire.Topics
	// Node, in cluster mode, names this node: nodes share the store, each
	// session is held by the node it was last connected to. Empty: one node
	// owns the whole state.
	Node string
	// Log defaults to slog.Default().
	Log *slog.Logger

	mu         sync.Mutex
	persistent map[string]bool                // client ids of persistent sessions
	inflight   map[string]map[uint16]struct{} // stored queued messages by client and packet id
	// pending are the packet ids of the publishes each connection (not
	// client id: across a takeover two connections of one client publish
	// at once) had PutPending record and DeletePending has not deleted
	// yet: mochi calls OnPublish and OnPublished one after the other on
	// the connection's goroutine, so a connection has one at a time.
	pending map[any][]uint16
}

// timeout bounds one read or write of the store.
const timeout = 10 * time.Second

// storedClient is a session's client as stored: mochi's encoding and the
// node that holds the session (cluster mode).
type storedClient struct {
	storage.Client
	Node string `json:"parley_node,omitempty"`
	// Disconnected is when the client went away (Unix seconds), 0 while
	// connected: a node that adopts the session checks its expiry.
	Disconnected int64 `json:"parley_disconnected,omitempty"`
}

func (s *State) log() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), timeout)
}

func (s *State) put(recs ...history.MQTTRecord) {
	ctx, cancel := ctx()
	defer cancel()
	if err := s.Store.PutMQTT(ctx, recs...); err != nil {
		s.log().Error("storing mqtt state", "error", err, "kind", string(recs[0].Kind), "client", recs[0].Client)
	}
}

func (s *State) del(kind byte, client, key string) {
	ctx, cancel := ctx()
	defer cancel()
	if err := s.Store.DeleteMQTT(ctx, kind, client, key); err != nil {
		s.log().Error("deleting mqtt state", "error", err, "kind", string(kind), "client", client)
	}
}

// Persistent reports whether this node holds the persistent session of id.
func (s *State) Persistent(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.persistent[id]
}

// hold records that this node holds the persistent session of id, with
// the stored queued messages ids (nil: keep those known); s.mu is held.
func (s *State) hold(id string, ids map[uint16]struct{}) {
	if s.persistent == nil {
		s.persistent, s.inflight = map[string]bool{}, map[string]map[uint16]struct{}{}
	}
	s.persistent[id] = true
	if ids != nil {
		s.inflight[id] = ids
	}
}

// Establish stores the client of a session that persists (see PutClient),
// or forgets the stored session of a client that starts clean (of c, only
// its ID is read then).
func (s *State) Establish(c storage.Client, persists bool, disconnected int64) {
	if !persists {
		if s.Persistent(c.ID) {
			s.Forget(c.ID)
		}
		return
	}
	s.mu.Lock()
	s.hold(c.ID, nil)
	s.mu.Unlock()
	s.PutClient(c, disconnected)
}

// PutClient stores the client of a persistent session, without a will on
// Parley's topics; disconnected is when it went away (Unix seconds), 0
// while connected.
func (s *State) PutClient(c storage.Client, disconnected int64) {
	c.T = storage.ClientKey
	if s.Topics.Owns(c.Will.TopicName) {
		c.Will = storage.ClientWill{}
	}
	data, err := json.Marshal(storedClient{Client: c, Node: s.Node, Disconnected: disconnected})
	if err != nil {
		s.log().Error("encoding mqtt client", "error", err, "client", c.ID)
		return
	}
	s.put(history.MQTTRecord{Kind: history.MQTTClient, Client: c.ID, Data: data})
}

// Forget deletes the session of id from memory and from the store.
func (s *State) Forget(id string) {
	s.Disown(id)
	ctx, cancel := ctx()
	defer cancel()
	if err := s.Store.DeleteMQTTClient(ctx, id); err != nil {
		s.log().Error("deleting mqtt session", "error", err, "client", id)
	}
}

// Disown forgets, in memory only, that this node holds the session of id:
// another node took it over and holds its stored state now.
func (s *State) Disown(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.persistent, id)
	delete(s.inflight, id)
}

// owned reports whether filter (shared or not) is under Parley's prefix.
func (s *State) owned(filter string) bool {
	f, _ := wire.StripShare(filter)
	return s.Topics.Owns(f)
}

// Subscribed stores the subscriptions granted (codes below 0x80) to the
// persistent session of client, outside the prefix.
func (s *State) Subscribed(client string, filters []packets.Subscription, codes []byte) {
	if !s.Persistent(client) {
		return
	}
	var recs []history.MQTTRecord
	for i, f := range filters {
		if i >= len(codes) || codes[i] >= 0x80 || s.owned(f.Filter) {
			continue
		}
		sub := storage.Subscription{ID: f.Filter, T: storage.SubscriptionKey, Client: client, Qos: codes[i], Filter: f.Filter,
			Identifier: f.Identifier, NoLocal: f.NoLocal, RetainHandling: f.RetainHandling, RetainAsPublished: f.RetainAsPublished}
		data, err := sub.MarshalBinary()
		if err != nil {
			continue
		}
		recs = append(recs, history.MQTTRecord{Kind: history.MQTTSubscription, Client: client, Key: f.Filter, Data: data})
	}
	if len(recs) > 0 {
		s.put(recs...)
	}
}

// Unsubscribed deletes the subscriptions of the persistent session of
// client.
func (s *State) Unsubscribed(client string, filters []packets.Subscription) {
	if !s.Persistent(client) {
		return
	}
	for _, f := range filters {
		if !s.owned(f.Filter) {
			s.del(history.MQTTSubscription, client, f.Filter)
		}
	}
}

// Retain stores the retained message pk of client outside the prefix, or
// deletes it when remove is set.
func (s *State) Retain(client string, pk packets.Packet, remove bool) {
	if s.Topics.Owns(pk.TopicName) {
		return
	}
	if remove {
		s.del(history.MQTTRetained, "", pk.TopicName)
		return
	}
	data, err := message(pk, client).MarshalBinary()
	if err != nil {
		return
	}
	s.put(history.MQTTRecord{Kind: history.MQTTRetained, Key: pk.TopicName, Data: data})
}

// RetainedExpired deletes an expired retained message.
func (s *State) RetainedExpired(topic string) {
	if !s.Topics.Owns(topic) {
		s.del(history.MQTTRetained, "", topic)
	}
}

// Queued stores a QoS 1 or 2 publish pk queued or sent to the persistent
// session of client, once: a copy sent again (Dup) is stored already.
func (s *State) Queued(client string, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Publish || s.Topics.Owns(pk.TopicName) {
		return
	}
	id := pk.PacketID
	s.mu.Lock()
	if !s.persistent[client] {
		s.mu.Unlock()
		return
	}
	ids := s.inflight[client]
	if ids == nil {
		ids = map[uint16]struct{}{}
		s.inflight[client] = ids
	}
	_, stored := ids[id]
	ids[id] = struct{}{}
	s.mu.Unlock()
	if stored && pk.FixedHeader.Dup {
		return
	}
	data, err := message(pk, client).MarshalBinary()
	if err != nil {
		return
	}
	s.put(history.MQTTRecord{Kind: history.MQTTInflight, Client: client, Key: strconv.Itoa(int(id)), Data: data})
}

// Completed deletes the stored queued message id of client (acknowledged,
// or dropped).
func (s *State) Completed(client string, id uint16) {
	s.mu.Lock()
	_, stored := s.inflight[client][id]
	delete(s.inflight[client], id)
	s.mu.Unlock()
	if stored {
		s.del(history.MQTTInflight, client, strconv.Itoa(int(id)))
	}
}

// Wanted reports whether a persistent session is among the subscribers of
// a publish outside the prefix (plain and shared, by client id).
func (s *State) Wanted(subs map[string]packets.Subscription, shared map[string]map[string]packets.Subscription) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range subs {
		if s.persistent[id] {
			return true
		}
	}
	for _, group := range shared {
		for id := range group {
			if s.persistent[id] {
				return true
			}
		}
	}
	return false
}

// PutPending records publish pk of client, received over connection conn
// (any comparable value, one per connection), as pending, before it is
// acknowledged: Replay publishes it again should the node stop before
// DeletePending.
func (s *State) PutPending(conn any, client string, pk packets.Packet) {
	data, err := message(pk, client).MarshalBinary()
	if err != nil {
		return
	}
	s.mu.Lock()
	if s.pending == nil {
		s.pending = map[any][]uint16{}
	}
	s.pending[conn] = append(s.pending[conn], pk.PacketID)
	s.mu.Unlock()
	s.put(history.MQTTRecord{Kind: history.MQTTPending, Client: client, Key: s.pendingKey(pk.PacketID), Data: data})
}

// DeletePending deletes the pending record of client's publish id, if
// PutPending wrote one for the same connection conn: for any other publish
// it costs a map lookup.
func (s *State) DeletePending(conn any, client string, id uint16) {
	s.mu.Lock()
	ids := s.pending[conn]
	i := slices.Index(ids, id)
	if i >= 0 {
		if ids = slices.Delete(ids, i, i+1); len(ids) == 0 {
			delete(s.pending, conn)
		} else {
			s.pending[conn] = ids
		}
	}
	s.mu.Unlock()
	if i >= 0 {
		s.del(history.MQTTPending, client, s.pendingKey(id))
	}
}

// ForgetPending forgets the publishes in progress on connection conn, once
// it has ended, however it ended (the records stay, for Replay): mochi did
// not call OnPublished for them.
func (s *State) ForgetPending(conn any) {
	s.mu.Lock()
	delete(s.pending, conn)
	s.mu.Unlock()
}

// pendingKey is the key of a pending publish: its packet id, after the
// node in cluster mode (a client may publish with the same id on two
// nodes, one after the other).
func (s *State) pendingKey(id uint16) string {
	if s.Node == "" {
		return strconv.Itoa(int(id))
	}
	return s.Node + "/" + strconv.Itoa(int(id))
}

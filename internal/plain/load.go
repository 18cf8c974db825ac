package plain

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/history"
)

// What State loads from the store: the state mochi restores at start-up
// (its Stored* hook methods), the pending publishes to replay and, in
// cluster mode, the session of a client that moves here from another node.

// Clients returns the stored clients of the sessions this node holds, and
// remembers them as persistent.
func (s *State) Clients() ([]storage.Client, error) {
	var out []storage.Client
	err := s.load(history.MQTTClient, func(r history.MQTTRecord) error {
		var c storedClient
		if err := json.Unmarshal(r.Data, &c); err != nil {
			return err
		}
		if c.Node != s.Node && s.Node != "" {
			return nil // held by another node
		}
		s.mu.Lock()
		s.hold(c.ID, nil)
		s.mu.Unlock()
		out = append(out, c.Client)
		return nil
	})
	return out, err
}

// Subscriptions returns the stored subscriptions of the sessions loaded by
// Clients.
func (s *State) Subscriptions() ([]storage.Subscription, error) {
	return loadAll(s, history.MQTTSubscription, func(sub *storage.Subscription) bool { return s.Persistent(sub.Client) })
}

// Inflight returns the stored queued messages of the sessions loaded by
// Clients.
func (s *State) Inflight() ([]storage.Message, error) {
	return loadAll(s, history.MQTTInflight, func(m *storage.Message) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.persistent[m.Client] {
			return false // another node's session
		}
		if s.inflight[m.Client] == nil {
			s.inflight[m.Client] = map[uint16]struct{}{}
		}
		s.inflight[m.Client][m.PacketID] = struct{}{}
		return true
	})
}

// Retained returns the stored retained messages.
func (s *State) Retained() ([]storage.Message, error) {
	return loadAll(s, history.MQTTRetained, func(*storage.Message) bool { return true })
}

// loadAll returns the records of kind in mochi's storable form T, those
// that keep accepts.
func loadAll[T any, PT interface {
	*T
	UnmarshalBinary([]byte) error
}](s *State, kind byte, keep func(*T) bool) ([]T, error) {
	var out []T
	err := s.load(kind, func(r history.MQTTRecord) error {
		var v T
		if err := PT(&v).UnmarshalBinary(r.Data); err != nil {
			return err
		}
		if keep(&v) {
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

// load calls fn with every record of kind; a record fn cannot read is
// logged and skipped.
func (s *State) load(kind byte, fn func(history.MQTTRecord) error) error {
	ctx, cancel := ctx()
	defer cancel()
	recs, err := s.Store.MQTTState(ctx, kind)
	if err != nil {
		return fmt.Errorf("plain: load mqtt state %c: %w", kind, err)
	}
	for _, r := range recs {
		if err := fn(r); err != nil {
			s.log().Error("skipping unreadable mqtt state", "error", err, "kind", string(kind), "client", r.Client, "key", r.Key)
		}
	}
	return nil
}

// Replay hands publish every publish that this node left pending (see
// PutPending), then deletes it; a publish that publish fails is logged and
// kept.
func (s *State) Replay(publish func(packets.Packet) error) error {
	ctx, cancel := ctx()
	defer cancel()
	recs, err := s.Store.MQTTState(ctx, history.MQTTPending)
	if err != nil {
		return fmt.Errorf("plain: replay pending publishes: %w", err)
	}
	for _, r := range recs {
		if s.Node != "" && !strings.HasPrefix(r.Key, s.Node+"/") {
			continue // another node's
		}
		var m storage.Message
		if err := m.UnmarshalBinary(r.Data); err == nil {
			pk := m.ToPacket()
			if err := publish(pk); err != nil {
				s.log().Error("replaying a pending publish", "error", err, "topic", pk.TopicName)
				continue
			}
		}
		s.del(history.MQTTPending, r.Client, r.Key)
	}
	return nil
}

// Holder reads which node holds the stored session of id (cluster mode);
// found is false when id has no stored session.
func (s *State) Holder(id string) (node string, found bool) {
	ctx, cancel := ctx()
	defer cancel()
	recs, err := s.Store.MQTTSession(ctx, id)
	if err != nil {
		s.log().Error("reading an mqtt session", "error", err, "client", id)
		return "", false
	}
	for _, r := range recs {
		if r.Kind == history.MQTTClient {
			var c storedClient
			if err := json.Unmarshal(r.Data, &c); err == nil {
				return c.Node, true
			}
		}
	}
	return "", false
}

// Session is a stored session that this node adopts.
type Session struct {
	// Client is the session's client; its will belongs to the connection
	// that left.
	Client storage.Client
	// Subscriptions are its subscriptions.
	Subscriptions []packets.Subscription
	// Inflight are its queued messages.
	Inflight []packets.Packet
}

// Adopt loads the stored session of id, which another node held, and
// records that this node holds it now (cluster mode). It returns nil when
// there is none, or when it expired while its node was away (it is
// forgotten then).
func (s *State) Adopt(id string) *Session {
	ctx, cancel := ctx()
	defer cancel()
	recs, err := s.Store.MQTTSession(ctx, id)
	if err != nil {
		s.log().Error("reading an mqtt session", "error", err, "client", id)
		return nil
	}
	var out *Session
	for _, r := range recs {
		if r.Kind != history.MQTTClient {
			continue
		}
		var c storedClient
		if err := json.Unmarshal(r.Data, &c); err != nil {
			s.log().Error("skipping unreadable mqtt state", "error", err, "client", id)
			return nil
		}
		if p := c.Properties; c.ProtocolVersion == 5 && p.SessionExpiryIntervalFlag && c.Disconnected > 0 &&
			c.Disconnected+int64(p.SessionExpiryInterval) < time.Now().Unix() {
			s.Forget(id) // expired while its node was away
			return nil
		}
		out = &Session{Client: c.Client}
	}
	if out == nil {
		return nil
	}
	ids := map[uint16]struct{}{}
	for _, r := range recs {
		switch r.Kind {
		case history.MQTTSubscription:
			var sub storage.Subscription
			if err := sub.UnmarshalBinary(r.Data); err == nil {
				out.Subscriptions = append(out.Subscriptions, packets.Subscription{Filter: sub.Filter,
					RetainHandling: sub.RetainHandling, Qos: sub.Qos, RetainAsPublished: sub.RetainAsPublished,
					NoLocal: sub.NoLocal, Identifier: sub.Identifier})
			}
		case history.MQTTInflight:
			var m storage.Message
			if err := m.UnmarshalBinary(r.Data); err == nil {
				out.Inflight = append(out.Inflight, m.ToPacket())
				ids[m.PacketID] = struct{}{}
			}
		}
	}
	s.mu.Lock()
	s.hold(id, ids)
	s.mu.Unlock()
	return out
}

package hooks

import (
	"encoding/json"
	"fmt"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/history"
)

// What the storage hook loads from the store: the state mochi restores at
// start-up (its Stored* methods) and, in cluster mode, the session of a
// client that moves here from another node.

// StoredClients implements mqtt.Hook.
func (h *Storage) StoredClients() ([]storage.Client, error) {
	var out []storage.Client
	err := h.load(history.MQTTClient, func(r history.MQTTRecord) error {
		var c storedClient
		if err := json.Unmarshal(r.Data, &c); err != nil {
			return err
		}
		if c.Node != h.Node && h.Node != "" {
			return nil // held by another node
		}
		h.mu.Lock()
		h.persistent[c.ID] = true
		h.mu.Unlock()
		out = append(out, c.Client)
		return nil
	})
	return out, err
}

// StoredSubscriptions implements mqtt.Hook.
func (h *Storage) StoredSubscriptions() ([]storage.Subscription, error) {
	var out []storage.Subscription
	err := h.load(history.MQTTSubscription, func(r history.MQTTRecord) error {
		var s storage.Subscription
		if err := s.UnmarshalBinary(r.Data); err != nil {
			return err
		}
		if h.isPersistent(s.Client) {
			out = append(out, s)
		}
		return nil
	})
	return out, err
}

// StoredInflightMessages implements mqtt.Hook.
func (h *Storage) StoredInflightMessages() ([]storage.Message, error) {
	var out []storage.Message
	err := h.load(history.MQTTInflight, func(r history.MQTTRecord) error {
		var m storage.Message
		if err := m.UnmarshalBinary(r.Data); err != nil {
			return err
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if !h.persistent[m.Client] {
			return nil // another node's session
		}
		if h.inflight[m.Client] == nil {
			h.inflight[m.Client] = map[uint16]struct{}{}
		}
		h.inflight[m.Client][m.PacketID] = struct{}{}
		out = append(out, m)
		return nil
	})
	return out, err
}

// StoredRetainedMessages implements mqtt.Hook.
func (h *Storage) StoredRetainedMessages() ([]storage.Message, error) {
	var out []storage.Message
	err := h.load(history.MQTTRetained, func(r history.MQTTRecord) error {
		var m storage.Message
		if err := m.UnmarshalBinary(r.Data); err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	return out, err
}

func (h *Storage) load(kind byte, fn func(history.MQTTRecord) error) error {
	ctx, cancel := h.ctx()
	defer cancel()
	recs, err := h.Store.MQTTState(ctx, kind)
	if err != nil {
		return fmt.Errorf("hooks: load mqtt state %c: %w", kind, err)
	}
	for _, r := range recs {
		if err := fn(r); err != nil {
			h.Log.Error("skipping unreadable mqtt state", "error", err, "kind", string(kind), "client", r.Client, "key", r.Key)
		}
	}
	return nil
}

// holder reads which node holds the stored session of id (cluster mode);
// found is false when id has no stored session.
func (h *Storage) holder(id string) (node string, found bool) {
	ctx, cancel := h.ctx()
	defer cancel()
	recs, err := h.Store.MQTTSession(ctx, id)
	if err != nil {
		h.Log.Error("reading an mqtt session", "error", err, "client", id)
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

// adopt loads the stored session of id, which another node held, into the
// server, as a disconnected session that the connecting client then takes
// over (cluster mode). It returns the session's client, nil when there is
// none.
func (h *Storage) adopt(id string) *mqtt.Client {
	ctx, cancel := h.ctx()
	defer cancel()
	recs, err := h.Store.MQTTSession(ctx, id)
	if err != nil {
		h.Log.Error("reading an mqtt session", "error", err, "client", id)
		return nil
	}
	var cl *mqtt.Client
	for _, r := range recs {
		if r.Kind != history.MQTTClient {
			continue
		}
		var c storedClient
		if err := json.Unmarshal(r.Data, &c); err != nil {
			h.Log.Error("skipping unreadable mqtt state", "error", err, "client", id)
			return nil
		}
		if p := c.Properties; c.ProtocolVersion == 5 && p.SessionExpiryIntervalFlag && c.Disconnected > 0 &&
			c.Disconnected+int64(p.SessionExpiryInterval) < time.Now().Unix() {
			h.forget(id) // expired while its node was away
			return nil
		}
		cl = h.Server.NewClient(nil, c.Listener, c.ID, false)
		cl.Properties.Username = c.Username
		cl.Properties.Clean = c.Clean
		cl.Properties.ProtocolVersion = c.ProtocolVersion
		p := c.Properties
		cl.Properties.Props = packets.Properties{
			SessionExpiryInterval: p.SessionExpiryInterval, SessionExpiryIntervalFlag: p.SessionExpiryIntervalFlag,
			AuthenticationMethod: p.AuthenticationMethod, AuthenticationData: p.AuthenticationData,
			RequestProblemInfoFlag: p.RequestProblemInfoFlag, RequestProblemInfo: p.RequestProblemInfo,
			RequestResponseInfo: p.RequestResponseInfo, ReceiveMaximum: p.ReceiveMaximum,
			TopicAliasMaximum: p.TopicAliasMaximum, User: p.User, MaximumPacketSize: p.MaximumPacketSize,
		}
		// The will belongs to the connection that left; the connecting
		// client brings its own.
		cl.Stop(packets.ErrSessionTakenOver)
	}
	if cl == nil {
		return nil
	}
	ids := map[uint16]struct{}{}
	for _, r := range recs {
		switch r.Kind {
		case history.MQTTSubscription:
			var s storage.Subscription
			if err := s.UnmarshalBinary(r.Data); err != nil {
				continue
			}
			sub := packets.Subscription{Filter: s.Filter, RetainHandling: s.RetainHandling, Qos: s.Qos,
				RetainAsPublished: s.RetainAsPublished, NoLocal: s.NoLocal, Identifier: s.Identifier}
			h.Server.Topics.Subscribe(id, sub)
			cl.State.Subscriptions.Add(s.Filter, sub)
		case history.MQTTInflight:
			var m storage.Message
			if err := m.UnmarshalBinary(r.Data); err != nil {
				continue
			}
			cl.State.Inflight.Set(m.ToPacket())
			ids[m.PacketID] = struct{}{}
		}
	}
	h.mu.Lock()
	h.persistent[id] = true
	h.inflight[id] = ids
	h.mu.Unlock()
	h.Server.Clients.Add(cl)
	return cl
}

// disown forgets, in memory only, that this node holds the session of id:
// another node took it over and holds its stored state now.
func (h *Storage) disown(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.persistent, id)
	delete(h.inflight, id)
}

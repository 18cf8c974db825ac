package hooks

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-im/parley/internal/auth"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/internal/delivery"
	"github.com/parley-im/parley/internal/wire"
)

// Delivery is the mochi hook of the delivery engine: it tells Hub of the
// sessions, inbox subscriptions and acknowledgements of the authenticated
// clients. It starts Hub in Init and closes it in Stop.
type Delivery struct {
	mqtt.HookBase

	// Hub delivers inboxes; required.
	Hub *delivery.Hub
	// Server is the broker the hook is added to; required.
	Server *mqtt.Server
	// Topics is Parley's topic layout.
	Topics wire.Topics
	// Log defaults to slog.Default().
	Log *slog.Logger

	// claimed holds the session epochs claimed in OnConnect until
	// OnSessionEstablished registers the device.
	claimed sync.Map     // *mqtt.Client -> claim
	swept   atomic.Int64 // when forgetStaleClaims last ran (UnixNano)
}

// claim is a session epoch claimed for a client that has not yet received
// its CONNACK.
type claim struct {
	epoch int64
	at    time.Time
}

// ID implements mqtt.Hook.
func (h *Delivery) ID() string { return "parley-delivery" }

// Provides implements mqtt.Hook.
func (h *Delivery) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnDisconnect,
		mqtt.OnPacketRead, mqtt.OnPublishDropped:
		return true
	}
	return false
}

// Init implements mqtt.Hook: it starts Hub.
func (h *Delivery) Init(any) error {
	if h.Hub == nil || h.Server == nil {
		return errors.New("hooks: Delivery needs Hub and Server")
	}
	return h.Hub.Start()
}

// Stop implements mqtt.Hook: it stops the writers and writes the cursors.
func (h *Delivery) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return h.Hub.Close(ctx)
}

func (h *Delivery) conn(cl *mqtt.Client) conn {
	return conn{cl: cl, srv: h.Server, inbox: h.Topics.Inbox(auth.UserOf(cl.ID))}
}

// device reports whether cl is a device: an authenticated client.
func device(cl *mqtt.Client) bool { return !cl.Net.Inline && !auth.IsAnonymous(cl.ID) }

// OnConnect claims the session epoch of an authenticated device before its
// CONNACK (the Auth hook, added before this one, has authenticated it).
// When the store cannot do it, the CONNECT is refused with Server
// unavailable (MQTT 5 0x88, 3.1.1 0x03) and the client tries again later:
// a session without an epoch would run unfenced.
func (h *Delivery) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	if !device(cl) {
		return nil
	}
	epoch, err := h.Hub.Claim(cl.ID)
	if err != nil {
		h.log().Warn("connect refused: claim session epoch", "client", cl.ID, "error", err)
		code := packets.ErrServerUnavailable
		if cl.Properties.ProtocolVersion < 5 {
			code = packets.Err3ServerUnavailable
		}
		if err := h.Server.SendConnack(cl, code, false, nil); err != nil {
			return err
		}
		return packets.ErrServerUnavailable
	}
	h.claimed.Store(cl, claim{epoch: epoch, at: time.Now()})
	return nil
}

func (h *Delivery) log() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.Default()
}

// OnSessionEstablish runs before a reconnecting client inherits its
// persistent session: it removes the session's unacknowledged inbox
// deliveries, which the broker would resend out of order. The catch-up sends
// them again, in order, from the device's cursors.
func (h *Delivery) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if !device(cl) {
		return
	}
	existing, ok := h.Server.Clients.Get(cl.ID)
	if !ok {
		return
	}
	inbox := h.Topics.Inbox(auth.UserOf(cl.ID))
	for _, pk := range existing.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type == packets.Publish && pk.TopicName == inbox {
			if existing.State.Inflight.Delete(pk.PacketID) {
				existing.State.Inflight.IncreaseSendQuota()
			}
		}
	}
}

// OnSessionEstablished registers the device and, when its persistent session
// already holds the inbox subscription, starts its deliveries.
func (h *Delivery) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if !device(cl) {
		return
	}
	c := h.conn(cl)
	v, ok := h.claimed.LoadAndDelete(cl)
	if !ok {
		// Not claimed in OnConnect (a client attached another way): claim
		// now, and drop it if that fails.
		if err := h.Hub.Connect(c); err != nil {
			h.log().Warn("claim session epoch", "client", cl.ID, "error", err)
			cl.Stop(err)
			return
		}
	} else {
		h.Hub.Register(c, v.(claim).epoch)
	}
	h.forgetStaleClaims()
	if sub, ok := cl.State.Subscriptions.Get(c.inbox); ok {
		h.Hub.Subscribe(c, sub.Qos)
	}
}

// staleClaim is how long a claim may wait for its session: a client whose
// CONNACK could not be written never reaches OnSessionEstablished.
const staleClaim = time.Minute

// forgetStaleClaims drops the claims of clients that never got their
// session, at most once per staleClaim.
func (h *Delivery) forgetStaleClaims() {
	now := time.Now()
	last := h.swept.Load()
	if now.Sub(time.Unix(0, last)) < staleClaim || !h.swept.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	h.claimed.Range(func(k, v any) bool {
		if now.Sub(v.(claim).at) > staleClaim {
			h.claimed.Delete(k)
		}
		return true
	})
}

// OnSubscribed starts the device's deliveries when it subscribes to its
// inbox.
func (h *Delivery) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	c := h.conn(cl)
	for i, f := range pk.Filters {
		if f.Filter == c.inbox && i < len(codes) && codes[i] < 0x80 {
			h.Hub.Subscribe(c, codes[i])
		}
	}
}

// OnUnsubscribed stops deliveries to a device that left its inbox.
func (h *Delivery) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	c := h.conn(cl)
	for _, f := range pk.Filters {
		if f.Filter == c.inbox {
			h.Hub.Unsubscribe(c)
		}
	}
}

// OnDisconnect forgets the device.
func (h *Delivery) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if device(cl) {
		h.Hub.Disconnect(h.conn(cl))
	}
}

// OnPacketRead hands the PUBACKs and PUBCOMPs of a device to Hub, which
// counts only those of its own deliveries.
func (h *Delivery) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Puback || pk.FixedHeader.Type == packets.Pubcomp {
		h.Hub.Acknowledge(h.conn(cl), pk.PacketID)
	}
	return pk, nil
}

// OnPublishDropped makes the device catch up from the store: the broker
// dropped a packet to it.
func (h *Delivery) OnPublishDropped(cl *mqtt.Client, _ packets.Packet) {
	h.Hub.Dropped(h.conn(cl))
}

// PresencePublisher returns a delivery.Hub.PublishPresence that publishes
// through srv, retained at QoS 1 on the user's presence topic.
func PresencePublisher(srv *mqtt.Server, topics wire.Topics) func(user string, payload []byte) error {
	return func(user string, payload []byte) error {
		return srv.Publish(topics.Presence(user), payload, true, 1)
	}
}

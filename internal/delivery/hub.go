// Package delivery delivers inboxes. Every device (client id) subscribed to
// its inbox has a writer that sends it each conversation's messages in seq
// order: live messages as they are stored, and, after a connect, a dropped
// delivery or a gap, a catch-up read from the store after the device's
// cursors. The cursor of a device and conversation is the highest seq up to
// which the device acknowledged every message; cursors are written to the
// store in batches, with delivered receipts for direct conversations. The
// package also keeps presence (a user is present while any node has one of
// their devices) and, in cluster mode, which users other nodes have.
//
// Nothing depends on the broker's memory: the store and the seq numbers are
// the truth. The package knows nothing of MQTT: a connection is a Conn, which
// the hooks package implements over mochi-mqtt.
//
// # Locks
//
// Each concern has its own mutex: Hub.mu (the registry of devices),
// device.mu (one writer), userBytes.mu, cursors.mu and cursors.flushMu,
// presence.mu and nodes.mu. Where two are held together they are taken in
// this order, never the other way round:
//
//	cursors.flushMu -> Hub.mu                 (a flush sends receipts with DeliverEvent)
//	cursors.flushMu -> device.mu -> cursors.mu (a catch-up marks a cursor holding device.mu)
//	presence.mu -> nodes.mu                   (a presence change reads both sides at once)
//	device.mu -> the Conn's own locks          (mochi's inflight table)
//	device.mu -> Hub.spawnMu                   (a writer starts: spawn)
//
// Hub.mu and userBytes.mu are never held while another lock is taken, and no
// lock is held while presence is published or a Remote is called.
package delivery

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/metrics"
	"github.com/parley-im/parley/internal/wire"
)

// Defaults of Hub.
const (
	DefaultNewDeviceBacklog = 50
	DefaultCatchupLimit     = 500
	DefaultWindow           = 64
	DefaultDeviceQueue      = 1024
	DefaultFlushInterval    = 200 * time.Millisecond
	// DefaultDeviceInflightBytes bounds the payload bytes of a device's
	// unacknowledged deliveries.
	DefaultDeviceInflightBytes = 4 << 20
	// DefaultUserInflightBytes bounds the payload bytes of the
	// unacknowledged deliveries of all devices of one user on this node.
	DefaultUserInflightBytes = 16 << 20
)

// Hub is the registry of the devices connected to this node, which
// DeliverMessage and DeliverEvent fan out to. Set its fields, then Start it;
// Close stops it. A Hub that was never started accepts deliveries and drops
// them (it has no devices).
type Hub struct {
	// Store is required.
	Store history.Store
	// NewDeviceBacklog is how many of each conversation's latest messages a
	// device that never connected before receives; default 50.
	NewDeviceBacklog int
	// CatchupLimit bounds the messages of one conversation sent in a
	// catch-up; beyond it the device gets a gap event; default 500.
	CatchupLimit int
	// Window bounds the unacknowledged deliveries per device; default 64
	// (or the client's Receive Maximum when lower).
	Window int
	// Queue bounds the live deliveries waiting for a device's writer; on
	// overflow the device falls back to a catch-up; default 1024.
	DeviceQueue int
	// FlushInterval is how often cursors and delivery receipts are written;
	// default 200ms.
	FlushInterval time.Duration
	// DeviceInflightBytes bounds the payload bytes of one device's
	// unacknowledged deliveries; default DefaultDeviceInflightBytes. A
	// device may always have one delivery in flight, whatever its size.
	DeviceInflightBytes int64
	// UserInflightBytes bounds the payload bytes of the unacknowledged
	// deliveries of all devices of one user on this node; default
	// DefaultUserInflightBytes (again, each device may always have one).
	UserInflightBytes int64
	// Log defaults to slog.Default().
	Log *slog.Logger
	// Metrics, when set, counts catch-ups.
	Metrics *metrics.Metrics
	// PublishPresence, when set, publishes a user's presence payload
	// (retained, on the user's presence topic).
	PublishPresence func(user string, payload []byte) error
	// OnClaim, when set, is told of every new session epoch (cluster mode
	// uses it to take the session over on other nodes).
	OnClaim func(clientID string, epoch int64)
	// Remote, when set, carries deliveries to other nodes (cluster mode).
	Remote Remote

	// retry is the first delay before a failed catch-up is retried; it
	// doubles up to maxRetry. Default 100ms.
	retry time.Duration

	mu      sync.Mutex
	devices map[string]*device          // connected devices by client id
	online  map[string]map[*device]bool // connected devices by user

	bytes    userBytes
	cursors  cursors
	presence presence

	// claims and states batch the store work of connects (see batcher).
	claims *batcher[string, int64]
	states *batcher[history.DeviceRef, history.DeviceState]

	done chan struct{}
	wg   sync.WaitGroup
	// spawnMu orders the writers' wg.Add before Close's wg.Wait: a writer
	// is started under its read lock unless closing is set.
	spawnMu sync.RWMutex
	closing bool
}

// spawnWriter starts d's writer goroutine unless the hub is closing.
func (h *Hub) spawnWriter(d *device) bool {
	h.spawnMu.RLock()
	defer h.spawnMu.RUnlock()
	if h.closing {
		return false
	}
	h.wg.Add(1)
	go d.run()
	return true
}

// maxRetry bounds the delay between two attempts of a failing catch-up.
const maxRetry = 5 * time.Second

// Start applies the defaults and starts the cursor flusher. It fails without
// a Store.
func (h *Hub) Start() error {
	if h.Store == nil {
		return errors.New("delivery: Hub needs a Store")
	}
	orDefault(&h.NewDeviceBacklog, DefaultNewDeviceBacklog)
	orDefault(&h.CatchupLimit, DefaultCatchupLimit)
	orDefault(&h.Window, DefaultWindow)
	orDefault(&h.DeviceQueue, DefaultDeviceQueue)
	orDefault(&h.FlushInterval, DefaultFlushInterval)
	orDefault(&h.DeviceInflightBytes, DefaultDeviceInflightBytes)
	orDefault(&h.UserInflightBytes, DefaultUserInflightBytes)
	if h.Log == nil {
		h.Log = slog.Default()
	}
	orDefault(&h.retry, 100*time.Millisecond)
	h.mu.Lock()
	h.devices = map[string]*device{}
	h.online = map[string]map[*device]bool{}
	h.mu.Unlock()
	h.done = make(chan struct{})
	h.claims = newBatcher(h.Store.Claims)
	h.states = newBatcher(h.Store.Devices)
	h.wg.Add(3)
	go h.flushLoop()
	go func() { defer h.wg.Done(); h.claims.loop(h.done) }()
	go func() { defer h.wg.Done(); h.states.loop(h.done) }()
	return nil
}

// orDefault sets *v to def when it is zero or negative.
func orDefault[T ~int | ~int64](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Close stops the writers and the flusher and writes the cursors, bounded by
// ctx. It returns the error of that last write.
func (h *Hub) Close(ctx context.Context) error {
	if h.done == nil {
		return nil
	}
	select {
	case <-h.done:
		return nil
	default:
	}
	close(h.done)
	h.spawnMu.Lock()
	h.closing = true
	h.spawnMu.Unlock()
	h.wg.Wait()
	return h.flush(ctx)
}

// Connected returns the client ids of the devices connected to this node.
func (h *Hub) Connected() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.AppendSeq(make([]string, 0, len(h.devices)), maps.Keys(h.devices))
}

// Claim claims a new session epoch for the device clientID, which fences
// the cursor writes of any older session of this client id, here or on
// another node. The claims of devices connecting at the same time share a
// store transaction. A device whose claim fails must not go on (its
// session would run unfenced): the broker refuses its CONNECT and the
// client tries again.
func (h *Hub) Claim(clientID string) (int64, error) {
	if h.claims == nil {
		return 0, errStopped
	}
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	epoch, err := h.claims.do(ctx, h.done, clientID)
	if err != nil {
		return 0, err
	}
	if h.OnClaim != nil {
		h.OnClaim(clientID, epoch)
	}
	return epoch, nil
}

// Connect claims a session epoch for c (Claim) and registers it
// (Register); on a failed claim it registers nothing.
func (h *Hub) Connect(c Conn) error {
	epoch, err := h.Claim(c.ID())
	if err != nil {
		return err
	}
	h.Register(c, epoch)
	return nil
}

// Register registers a device whose session was established with the
// epoch Claim gave it. The user's first device makes the user present.
// Deliveries start with Subscribe.
func (h *Hub) Register(c Conn, epoch int64) {
	id, user := c.ID(), c.User()
	d := newDevice(h, c, epoch)
	h.mu.Lock()
	old := h.devices[id]
	h.devices[id] = d
	if h.online[user] == nil {
		h.online[user] = map[*device]bool{}
	}
	h.online[user][d] = true
	h.mu.Unlock()
	first, changed := h.presence.up(user)
	if old != nil {
		old.close()
		old.release()
	}
	if first && h.Remote != nil {
		h.Remote.Interest(user, true)
	}
	if changed {
		h.publishPresence(user, true)
	}
}

// deviceState records the device's connection and reads its state (see
// history.Store.Device), batched with other devices' catch-ups.
func (h *Hub) deviceState(ctx context.Context, id, user string) (history.DeviceState, error) {
	return h.states.do(ctx, h.done, history.DeviceRef{Device: id, User: user})
}

// Subscribe starts deliveries to the device of c at qos (the inbox
// subscription's; at most 1), or, when it subscribes again after
// Unsubscribe, catches it up on what it missed meanwhile.
func (h *Hub) Subscribe(c Conn, qos byte) {
	if d := h.device(c); d != nil {
		d.start(qos)
	}
}

// Unsubscribe stops deliveries to the device of c (it left its inbox).
func (h *Hub) Unsubscribe(c Conn) {
	if d := h.device(c); d != nil {
		d.mu.Lock()
		d.subscribed = false
		d.mu.Unlock()
	}
}

// Disconnect forgets the device of c and releases its unacknowledged
// deliveries (the catch-up sends them again, in order, when it returns). The
// user's last device makes the user absent.
func (h *Hub) Disconnect(c Conn) {
	id, user := c.ID(), c.User()
	h.mu.Lock()
	var gone *device
	if d := h.devices[id]; d != nil && d.conn == c {
		delete(h.devices, id)
		gone = d
	}
	removed := 0
	for d := range h.online[user] {
		if d.conn == c {
			delete(h.online[user], d)
			removed++
		}
	}
	if len(h.online[user]) == 0 {
		delete(h.online, user)
	}
	h.mu.Unlock()
	if gone != nil {
		gone.close()
		gone.release()
	}
	for range removed {
		last, changed := h.presence.down(user)
		if last && h.Remote != nil {
			h.Remote.Interest(user, false)
		}
		if changed {
			h.publishPresence(user, false)
		}
	}
}

// Acknowledge records the PUBACK (or PUBCOMP) of packet id from c. Only
// deliveries this node's writer sent count: their packet ids are kept per
// device with the conv and seq they carried, so a look-alike payload on any
// other topic (a plain MQTT topic, a will) can never move a cursor or cause a
// delivered receipt.
func (h *Hub) Acknowledge(c Conn, id uint16) {
	d := h.device(c)
	if d == nil {
		return
	}
	o, ok := d.take(id)
	if !ok {
		return
	}
	if o.conv != "" {
		d.ack(o.conv, o.seq)
	} else {
		d.wakeWriter()
	}
}

// Dropped notes that the broker dropped a packet to c (a slow client).
// Parley's own deliveries are written directly, so this concerns only other
// traffic, but a full client is a reason to re-check from the store: the
// device catches up again from its acknowledged cursors.
func (h *Hub) Dropped(c Conn) {
	if d := h.device(c); d != nil {
		d.mu.Lock()
		d.resync = true
		d.enterSync()
		d.mu.Unlock()
		d.signal()
	}
}

// DeliverMessage hands a stored message to every connected device of users,
// on this node and (in cluster mode) the others. Callers deliver a
// conversation's messages in seq order.
func (h *Hub) DeliverMessage(users []string, m history.Message) {
	payload := wire.MessageDelivery(m)
	h.deliverLocal(users, item{conv: m.Conv, seq: m.Seq, payload: payload, qos: 1})
	if h.Remote != nil {
		h.Remote.Deliver(users, m.Conv, m.Seq, 1, payload)
	}
}

// DeliverMessageAck is DeliverMessage that also writes ack, the
// acknowledgement of the publish that stored m (an MQTT PUBACK), to c, the
// connection that sent it: just before m's echo to c and in the same
// Write. It reports false when c has no writer here (not subscribed yet,
// or gone); m is delivered all the same and the caller writes ack itself.
// c is compared with the Conns of the devices, as the Hub does (==).
func (h *Hub) DeliverMessageAck(users []string, m history.Message, c any, ack []byte) bool {
	payload := wire.MessageDelivery(m)
	it := item{conv: m.Conv, seq: m.Seq, payload: payload, qos: 1}
	acked := false
	for _, d := range h.devicesOf(users) {
		if !acked && any(d.conn) == c {
			if acked = d.offerAck(ack, it); acked {
				continue
			}
		}
		d.offer(it)
	}
	if h.Remote != nil {
		h.Remote.Deliver(users, m.Conv, m.Seq, 1, payload)
	}
	return acked
}

// WriteAck queues ack, an acknowledgement of a publish from c, for c's
// writer, behind what is queued for it, so that acknowledgements leave in
// the order of their publishes whether or not they went with an echo
// (DeliverMessageAck). It reports false when c has no writer here: the
// caller writes ack itself.
func (h *Hub) WriteAck(c any, ack []byte) bool {
	cc, ok := c.(Conn)
	if !ok {
		return false
	}
	d := h.device(cc)
	return d != nil && d.offerAck(ack, item{})
}

// DeliverEvent hands an event (not stored, no seq) to every connected device
// of users, on this node and (in cluster mode) the others, at qos.
func (h *Hub) DeliverEvent(users []string, payload []byte, qos byte) {
	h.deliverLocal(users, item{payload: payload, qos: qos})
	if h.Remote != nil {
		h.Remote.Deliver(users, "", 0, qos, payload)
	}
}

func (h *Hub) deliverLocal(users []string, it item) {
	for _, d := range h.devicesOf(users) {
		d.offer(it)
	}
}

func (h *Hub) device(c Conn) *device {
	h.mu.Lock()
	defer h.mu.Unlock()
	if d := h.devices[c.ID()]; d != nil && d.conn == c {
		return d
	}
	return nil
}

func (h *Hub) devicesOf(users []string) []*device {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*device
	for _, u := range users {
		for d := range h.online[u] {
			out = append(out, d)
		}
	}
	return out
}

// stopping is closed by Close; nil (never closed) before Start.
func (h *Hub) stopping() <-chan struct{} { return h.done }

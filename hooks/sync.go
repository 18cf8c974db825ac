package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/parley-im/parley/internal/auth"

	"github.com/parley-im/parley/internal/metrics"
	"github.com/parley-im/parley/internal/wire"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/history"
)

// Defaults of Sync.
const (
	DefaultNewDeviceBacklog = 50
	DefaultCatchupLimit     = 500
	DefaultWindow           = 64
	DefaultQueue            = 1024
	DefaultFlushInterval    = 200 * time.Millisecond
	// DefaultDeviceInflightBytes bounds the payload bytes of a device's
	// unacknowledged deliveries.
	DefaultDeviceInflightBytes = 4 << 20
	// DefaultUserInflightBytes bounds the payload bytes of the
	// unacknowledged deliveries of all devices of one user on this node.
	DefaultUserInflightBytes = 16 << 20
)

// Sync delivers inboxes. Every device (client id) subscribed to its inbox has
// a writer that sends it each conversation's messages in seq order: live
// messages as they are stored, and, after a connect, a dropped delivery or a
// gap, a catch-up read from the store after the device's cursors. The cursor
// of a device and conversation is the highest seq up to which the device
// acknowledged every message; cursors are written to the store in batches.
// Nothing depends on the broker's memory: the store and the seq numbers are
// the truth.
type Sync struct {
	mqtt.HookBase

	// Store is required.
	Store history.Store
	// Topics is Parley's topic layout.
	Topics wire.Topics
	// Server, when set, receives presence messages (retained, on
	// PREFIX/presence/USER).
	Server *mqtt.Server
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
	Queue int
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
	// OnClaim, when set, is told of every new session epoch (cluster mode
	// uses it to take the session over on other nodes).
	OnClaim func(clientID string, epoch int64)
	// Remote, when set, carries deliveries to other nodes (cluster mode).
	Remote Remote

	mu      sync.Mutex
	devices map[string]*device          // connected devices by client id
	online  map[string]map[*device]bool // connected devices by user
	remote  map[string]map[string]bool  // nodes with devices, by user (cluster mode)
	lastRx  map[string]int64            // delivered receipts already sent, by conv+"\x00"+user
	dirty   map[cursorKey]dirtyCursor
	recv    map[cursorKey]int64 // delivered receipts to send: by conv and recipient
	inBytes map[string]int64    // payload bytes awaiting acknowledgement, by user
	done    chan struct{}
	wg      sync.WaitGroup
	flushMu sync.Mutex
}

type cursorKey struct{ a, b string }

type dirtyCursor struct{ seq, epoch int64 }

// ID implements mqtt.Hook.
func (s *Sync) ID() string { return "parley-sync" }

// Provides implements mqtt.Hook.
func (s *Sync) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnDisconnect,
		mqtt.OnPacketRead, mqtt.OnPublishDropped:
		return true
	}
	return false
}

// Init implements mqtt.Hook; it starts the flusher.
func (s *Sync) Init(any) error {
	if s.Store == nil {
		return errors.New("hooks: Sync needs a Store")
	}
	if s.NewDeviceBacklog <= 0 {
		s.NewDeviceBacklog = DefaultNewDeviceBacklog
	}
	if s.CatchupLimit <= 0 {
		s.CatchupLimit = DefaultCatchupLimit
	}
	if s.Window <= 0 {
		s.Window = DefaultWindow
	}
	if s.Queue <= 0 {
		s.Queue = DefaultQueue
	}
	if s.FlushInterval <= 0 {
		s.FlushInterval = DefaultFlushInterval
	}
	if s.DeviceInflightBytes <= 0 {
		s.DeviceInflightBytes = DefaultDeviceInflightBytes
	}
	if s.UserInflightBytes <= 0 {
		s.UserInflightBytes = DefaultUserInflightBytes
	}
	if s.Log == nil {
		s.Log = slog.Default()
	}
	s.devices = map[string]*device{}
	s.online = map[string]map[*device]bool{}
	s.lastRx = map[string]int64{}
	s.dirty = map[cursorKey]dirtyCursor{}
	s.recv = map[cursorKey]int64{}
	s.inBytes = map[string]int64{}
	s.done = make(chan struct{})
	s.wg.Add(1)
	go s.flusher()
	return nil
}

// Stop implements mqtt.Hook: it stops the writers and writes the cursors.
func (s *Sync) Stop() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	close(s.done)
	s.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.flush(ctx)
}

// item is one delivery waiting for a device's writer.
type item struct {
	conv    string // "" for events
	seq     int64
	payload []byte
	qos     byte
}

// device is the delivery state of one connected client.
type device struct {
	s    *Sync
	id   string
	user string
	cl   *mqtt.Client
	// epoch is the session epoch claimed at connect; it fences cursor writes.
	epoch int64

	mu         sync.Mutex
	subscribed bool
	started    bool
	closed     bool
	syncing    bool // catching up: live messages are skipped, the store has them
	missed     bool // a live message was skipped during this catch-up pass
	resync     bool // restart the catch-up from the acknowledged cursors
	queue      []item
	sent       map[string]int64 // conv -> highest seq queued or written
	written    map[string]int64 // conv -> highest seq written
	acked      map[string]*frontier
	// out holds the deliveries this writer put in the client's inflight
	// table, by packet id, until acknowledged: only their PUBACKs move
	// cursors. outBytes is the sum of their payload sizes.
	out      map[uint16]outDelivery
	outBytes int64
	wake     chan struct{}
	ackWake  chan struct{}
	qos      byte
	stopped  chan struct{}
}

// outDelivery is one of Parley's own deliveries awaiting its PUBACK.
type outDelivery struct {
	conv string // "" for events
	seq  int64
	size int64
}

// frontier is the highest seq up to which every message was acknowledged,
// with the acknowledged seqs above it.
type frontier struct {
	seq   int64
	above map[int64]bool
}

func (f *frontier) ack(seq int64) bool {
	if seq <= f.seq {
		return false
	}
	if seq != f.seq+1 {
		if f.above == nil {
			f.above = map[int64]bool{}
		}
		f.above[seq] = true
		return false
	}
	f.seq = seq
	for f.above[f.seq+1] {
		delete(f.above, f.seq+1)
		f.seq++
	}
	return true
}

func (s *Sync) device(cl *mqtt.Client) *device {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.devices[cl.ID]; d != nil && d.cl == cl {
		return d
	}
	return nil
}

// Connected returns the client ids of the devices connected to this node.
func (s *Sync) Connected() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.devices))
	for id := range s.devices {
		ids = append(ids, id)
	}
	return ids
}

// OnSessionEstablish runs before a reconnecting client inherits its
// persistent session: it removes the session's unacknowledged inbox
// deliveries, which the broker would resend out of order. The catch-up sends
// them again, in order, from the device's cursors.
func (s *Sync) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if s.Server == nil || cl.Net.Inline || auth.IsAnonymous(cl.ID) {
		return
	}
	existing, ok := s.Server.Clients.Get(cl.ID)
	if !ok {
		return
	}
	inbox := s.Topics.Inbox(auth.UserOf(cl.ID))
	for _, pk := range existing.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type == packets.Publish && pk.TopicName == inbox {
			if existing.State.Inflight.Delete(pk.PacketID) {
				existing.State.Inflight.IncreaseSendQuota()
			}
		}
	}
}

// OnSessionEstablished registers the device and, when its persistent session
// already holds the inbox subscription, starts its catch-up. The user's first
// device makes the user present.
func (s *Sync) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline || auth.IsAnonymous(cl.ID) {
		return
	}
	user := auth.UserOf(cl.ID)
	// A new session epoch fences the cursor writes of any older session of
	// this client id, here or on another node.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	epoch, err := s.Store.Claim(ctx, cl.ID)
	cancel()
	if err != nil {
		s.Log.Warn("claim session epoch", "client", cl.ID, "error", err)
	}
	if s.OnClaim != nil && err == nil {
		s.OnClaim(cl.ID, epoch)
	}
	d := &device{s: s, id: cl.ID, user: user, cl: cl, epoch: epoch, sent: map[string]int64{}, written: map[string]int64{}, acked: map[string]*frontier{},
		out:  map[uint16]outDelivery{},
		wake: make(chan struct{}, 1), ackWake: make(chan struct{}, 1), stopped: make(chan struct{})}
	s.mu.Lock()
	old := s.devices[cl.ID]
	s.devices[cl.ID] = d
	if s.online[user] == nil {
		s.online[user] = map[*device]bool{}
	}
	first := len(s.online[user]) == 0
	wasOnline := !first || len(s.remote[user]) > 0
	s.online[user][d] = true
	s.mu.Unlock()
	if old != nil {
		old.close()
		old.release()
	}
	if first && s.Remote != nil {
		s.Remote.Interest(user, true)
	}
	if !wasOnline {
		s.presence(user, true)
	}
	if sub, ok := cl.State.Subscriptions.Get(s.Topics.Inbox(user)); ok {
		d.start(sub.Qos)
	}
}

// OnSubscribed starts the device's delivery when it subscribes to its inbox.
func (s *Sync) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	inbox := s.Topics.Inbox(auth.UserOf(cl.ID))
	for i, f := range pk.Filters {
		if f.Filter == inbox && i < len(codes) && codes[i] < 0x80 {
			if d := s.device(cl); d != nil {
				d.start(codes[i])
			}
		}
	}
}

// OnUnsubscribed stops deliveries to a device that left its inbox.
func (s *Sync) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	inbox := s.Topics.Inbox(auth.UserOf(cl.ID))
	for _, f := range pk.Filters {
		if f.Filter == inbox {
			if d := s.device(cl); d != nil {
				d.mu.Lock()
				d.subscribed = false
				d.mu.Unlock()
			}
		}
	}
}

// OnDisconnect forgets the device; the user's last device makes the user
// absent.
func (s *Sync) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if cl.Net.Inline || auth.IsAnonymous(cl.ID) {
		return
	}
	user := auth.UserOf(cl.ID)
	s.mu.Lock()
	var gone *device
	if d := s.devices[cl.ID]; d != nil && d.cl == cl {
		delete(s.devices, cl.ID)
		gone = d
	}
	last := false
	for d := range s.online[user] {
		if d.cl == cl {
			delete(s.online[user], d)
			if len(s.online[user]) == 0 {
				delete(s.online, user)
				last = true
			}
		}
	}
	stillOnline := len(s.remote[user]) > 0
	s.mu.Unlock()
	if gone != nil {
		gone.close()
		gone.release()
	}
	if last && s.Remote != nil {
		s.Remote.Interest(user, false)
	}
	if last && !stillOnline {
		s.presence(user, false)
	}
}

// OnPacketRead records the acknowledgement of an inbox delivery. Only
// deliveries this node's writer sent count: their packet ids are kept per
// device with the conv and seq they carried, so a look-alike payload on any
// other topic (a plain MQTT topic, a will) can never move a cursor or cause a
// delivered receipt.
func (s *Sync) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Puback && pk.FixedHeader.Type != packets.Pubcomp {
		return pk, nil
	}
	d := s.device(cl)
	if d == nil {
		return pk, nil
	}
	o, ok := d.take(pk.PacketID)
	if !ok {
		return pk, nil
	}
	if o.conv != "" {
		d.ack(o.conv, o.seq)
	} else {
		d.wakeWriter()
	}
	return pk, nil
}

// take removes the record of the delivery with packet id id, if this writer
// sent it and it is still the client's inflight packet of that id.
func (d *device) take(id uint16) (outDelivery, bool) {
	d.mu.Lock()
	o, ok := d.out[id]
	if ok {
		delete(d.out, id)
		d.outBytes -= o.size
	}
	d.mu.Unlock()
	if !ok {
		return o, false
	}
	d.s.addUserBytes(d.user, -o.size)
	inflight, found := d.cl.State.Inflight.Get(id)
	if !found || inflight.FixedHeader.Type != packets.Publish || inflight.TopicName != d.s.Topics.Inbox(d.user) || int64(len(inflight.Payload)) != o.size {
		// The broker dropped our delivery (expiry) and reused the id: this
		// acknowledgement is not for us.
		return o, false
	}
	return o, true
}

// reconcile forgets the recorded deliveries that are no longer in the
// client's inflight table (the broker expired them), so that they stop
// counting against the window.
func (d *device) reconcile() {
	inbox := d.s.Topics.Inbox(d.user)
	d.mu.Lock()
	var freed int64
	for id, o := range d.out {
		pk, ok := d.cl.State.Inflight.Get(id)
		if !ok || pk.FixedHeader.Type != packets.Publish || pk.TopicName != inbox {
			delete(d.out, id)
			d.outBytes -= o.size
			freed += o.size
		}
	}
	d.mu.Unlock()
	if freed > 0 {
		d.s.addUserBytes(d.user, -freed)
	}
}

// release forgets every recorded delivery of a device that is gone and
// removes them from its client's inflight table: a persistent session would
// otherwise keep them in memory until it expires, and the catch-up sends them
// again, in order, when the device returns.
func (d *device) release() {
	d.mu.Lock()
	out, freed := d.out, d.outBytes
	d.out, d.outBytes = map[uint16]outDelivery{}, 0
	d.mu.Unlock()
	inbox := d.s.Topics.Inbox(d.user)
	for id := range out {
		if pk, ok := d.cl.State.Inflight.Get(id); ok && pk.FixedHeader.Type == packets.Publish && pk.TopicName == inbox {
			if d.cl.State.Inflight.Delete(id) {
				d.cl.State.Inflight.IncreaseSendQuota()
			}
		}
	}
	if freed > 0 {
		d.s.addUserBytes(d.user, -freed)
	}
}

// addUserBytes adds n to the bytes in flight to user's devices.
func (s *Sync) addUserBytes(user string, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inBytes[user] += n
	if s.inBytes[user] <= 0 {
		delete(s.inBytes, user)
	}
}

func (s *Sync) userBytes(user string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inBytes[user]
}

// InflightBytes returns the payload bytes of unacknowledged deliveries to
// user's devices on this node.
func (s *Sync) InflightBytes(user string) int64 { return s.userBytes(user) }

// OnPublishDropped notes that the broker dropped a delivery to a slow client;
// Parley's own deliveries are written directly, so this concerns only other
// traffic, but a full client is a reason to re-check from the store.
func (s *Sync) OnPublishDropped(cl *mqtt.Client, _ packets.Packet) {
	if d := s.device(cl); d != nil {
		d.mu.Lock()
		d.resync = true
		d.enterSync()
		d.mu.Unlock()
		d.signal()
	}
}

// DeliverMessage hands a stored message to every connected device of users.
// Callers deliver a conversation's messages in seq order.
func (s *Sync) DeliverMessage(users []string, m history.Message) {
	payload := wire.MessageDelivery(m)
	s.deliverLocal(users, item{conv: m.Conv, seq: m.Seq, payload: payload, qos: 1})
	if s.Remote != nil {
		s.Remote.Deliver(users, payload, 1, true)
	}
}

// DeliverEvent hands an event (not stored, no seq) to every connected device
// of users, on this node and (in cluster mode) the others, at qos.
func (s *Sync) DeliverEvent(users []string, payload []byte, qos byte) {
	s.deliverLocal(users, item{payload: payload, qos: qos})
	if s.Remote != nil {
		s.Remote.Deliver(users, payload, qos, false)
	}
}

// DeliverLocal hands an inbox payload to the devices of users on this node:
// a stored message delivery (message true: its conv and seq are read from
// the payload, and each device gets it once, in seq order) or an event.
// Cluster mode calls it for deliveries from other nodes.
func (s *Sync) DeliverLocal(users []string, payload []byte, qos byte, message bool) {
	it := item{payload: payload, qos: qos}
	if message {
		conv, seq, ok := deliveryHead(payload)
		if !ok {
			s.Log.Warn("malformed message delivery dropped")
			return
		}
		it.conv, it.seq = conv, seq
	}
	s.deliverLocal(users, it)
}

func (s *Sync) deliverLocal(users []string, it item) {
	for _, d := range s.devicesOf(users) {
		d.offer(it)
	}
}

// Remote carries deliveries, interest and session takeovers to other nodes
// (cluster mode). Implementations must not block.
type Remote interface {
	// Deliver sends an inbox payload for users to the other nodes (see
	// Sync.DeliverLocal).
	Deliver(users []string, payload []byte, qos byte, message bool)
	// Interest tells the other nodes that this node has (on) or no longer
	// has devices of user.
	Interest(user string, on bool)
}

// Resync makes every device on this node catch up from the store: after a
// lost connection to the other nodes, and periodically as a sweep.
func (s *Sync) Resync() {
	s.mu.Lock()
	ds := make([]*device, 0, len(s.devices))
	for _, d := range s.devices {
		ds = append(ds, d)
	}
	s.mu.Unlock()
	for _, d := range ds {
		d.mu.Lock()
		if d.started && d.subscribed && !d.closed {
			d.enterSync()
		}
		d.mu.Unlock()
		d.signal()
	}
}

// TakeOver disconnects the local session of clientID if its epoch is older
// than epoch: the client connected again elsewhere.
func (s *Sync) TakeOver(clientID string, epoch int64) {
	s.mu.Lock()
	d := s.devices[clientID]
	s.mu.Unlock()
	if d == nil || d.epoch >= epoch || s.Server == nil {
		return
	}
	s.Log.Info("session taken over on another node", "client", clientID, "epoch", d.epoch, "new_epoch", epoch)
	_ = s.Server.DisconnectClient(d.cl, packets.ErrSessionTakenOver)
}

// SetPresence records whether user has devices on another node, and
// publishes the user's presence when the cluster-wide answer changes.
func (s *Sync) SetPresence(user, node string, on bool) {
	s.mu.Lock()
	if s.remote == nil {
		s.remote = map[string]map[string]bool{}
	}
	before := len(s.online[user]) > 0 || len(s.remote[user]) > 0
	if on {
		if s.remote[user] == nil {
			s.remote[user] = map[string]bool{}
		}
		s.remote[user][node] = true
	} else if s.remote[user] != nil {
		delete(s.remote[user], node)
		if len(s.remote[user]) == 0 {
			delete(s.remote, user)
		}
	}
	after := len(s.online[user]) > 0 || len(s.remote[user]) > 0
	s.mu.Unlock()
	if before != after {
		s.presence(user, after)
	}
}

// LocalUsers lists the users with devices on this node.
func (s *Sync) LocalUsers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.online))
	for u := range s.online {
		out = append(out, u)
	}
	return out
}

// SetNodeUsers makes users exactly the users present on node (its
// heartbeat), repairing lost presence messages.
func (s *Sync) SetNodeUsers(node string, users []string) {
	listed := make(map[string]bool, len(users))
	for _, u := range users {
		listed[u] = true
	}
	s.mu.Lock()
	var gone []string
	for u, nodes := range s.remote {
		if nodes[node] && !listed[u] {
			gone = append(gone, u)
		}
	}
	s.mu.Unlock()
	for _, u := range gone {
		s.SetPresence(u, node, false)
	}
	for _, u := range users {
		s.SetPresence(u, node, true)
	}
}

// ForgetNode drops every user's presence on node (its lease expired).
func (s *Sync) ForgetNode(node string) {
	s.mu.Lock()
	var users []string
	for u, nodes := range s.remote {
		if nodes[node] {
			users = append(users, u)
		}
	}
	s.mu.Unlock()
	for _, u := range users {
		s.SetPresence(u, node, false)
	}
}

func (s *Sync) devicesOf(users []string) []*device {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*device
	for _, u := range users {
		for d := range s.online[u] {
			out = append(out, d)
		}
	}
	return out
}

// offer queues a live delivery, or leaves it to the catch-up.
func (d *device) offer(it item) {
	d.mu.Lock()
	if d.closed || !d.subscribed {
		d.mu.Unlock()
		return
	}
	if it.conv != "" {
		sent, known := d.sent[it.conv]
		switch {
		case d.syncing:
			d.missed = true
			d.mu.Unlock()
			return
		case known && it.seq <= sent:
			d.mu.Unlock()
			return // already written
		case known && it.seq > sent+1, len(d.queue) >= d.s.Queue:
			// A gap (a message this node did not fan out) or a full queue:
			// read from the store instead.
			d.enterSync()
			d.mu.Unlock()
			d.signal()
			return
		}
		if !known {
			if it.seq > 1 {
				// A conversation new to this device that did not begin here
				// (a group it joined, or messages stored through another
				// node): the store knows where the device starts.
				d.enterSync()
				d.mu.Unlock()
				d.signal()
				return
			}
			d.acked[it.conv] = &frontier{seq: 0}
		}
		d.sent[it.conv] = it.seq
	} else if len(d.queue) >= d.s.Queue {
		d.mu.Unlock()
		return // events are best effort
	}
	d.queue = append(d.queue, it)
	d.mu.Unlock()
	d.signal()
}

// isNew reports whether this is the device's first connection: its first
// session epoch, or (without one) the store's first sight of it.
func (d *device) isNew(st history.DeviceState) bool {
	if d.epoch > 0 {
		return d.epoch == 1
	}
	return st.New
}

// enterSync switches the device to catching up: queued messages are dropped
// (the catch-up reads them from the store) and its position goes back to
// what was written. d.mu is held.
func (d *device) enterSync() {
	d.syncing, d.missed = true, true
	events := d.queue[:0]
	for _, it := range d.queue {
		if it.conv == "" {
			events = append(events, it)
		}
	}
	d.queue = events
	for conv := range d.sent {
		if w, ok := d.written[conv]; ok {
			d.sent[conv] = w
		} else if f := d.acked[conv]; f != nil {
			d.sent[conv] = f.seq
		} else {
			delete(d.sent, conv)
		}
	}
}

func (d *device) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// start begins deliveries to the device at the subscription's QoS.
func (d *device) start(qos byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	if d.started {
		if !d.subscribed {
			// Subscribed again: catch up on what was skipped meanwhile.
			d.subscribed = true
			d.enterSync()
			d.signal()
		}
		return
	}
	d.started, d.subscribed, d.syncing = true, true, true
	if qos > 1 {
		qos = 1
	}
	d.qos = qos
	d.s.wg.Add(1)
	go d.run()
}

func (d *device) close() {
	d.mu.Lock()
	already := d.closed
	d.closed = true
	d.queue = nil
	d.mu.Unlock()
	if !already {
		close(d.stopped)
	}
}

func (d *device) done() bool {
	select {
	case <-d.stopped:
		return true
	case <-d.s.done:
		return true
	default:
		return d.cl.Closed()
	}
}

// run is the device's writer.
func (d *device) run() {
	defer d.s.wg.Done()
	backoff := 100 * time.Millisecond
	for !d.done() {
		d.mu.Lock()
		syncing := d.syncing
		var it item
		have := false
		if !syncing && len(d.queue) > 0 {
			it, d.queue = d.queue[0], d.queue[1:]
			have = true
		}
		d.mu.Unlock()
		if syncing {
			if err := d.catchUp(); err != nil {
				if !d.done() {
					d.s.Log.Warn("catch-up failed, retrying", "client", d.id, "error", err)
				}
				select {
				case <-time.After(backoff):
				case <-d.stopped:
				case <-d.s.done:
				}
				if backoff < 5*time.Second {
					backoff *= 2
				}
				continue
			}
			backoff = 100 * time.Millisecond
			continue
		}
		if have {
			if err := d.write(it); err != nil {
				return
			}
			continue
		}
		select {
		case <-d.wake:
		case <-d.stopped:
		case <-d.s.done:
		}
	}
}

// catchUp sends every stored message after the device's position, per
// conversation in seq order, and returns once a pass completed with no live
// message skipped meanwhile (the device is then live).
func (d *device) catchUp() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.stopped:
		case <-d.s.done:
		case <-ctx.Done():
		}
		cancel()
	}()
	if d.s.Metrics != nil {
		d.s.Metrics.Catchups.Inc()
	}
	// A live message skipped from here on sets missed again; clearing it
	// before each read of the store makes sure the read sees it or another
	// pass follows.
	d.mu.Lock()
	d.missed = false
	d.mu.Unlock()
	st, err := d.s.Store.Device(ctx, d.id, d.user)
	if err != nil {
		return err
	}
	d.s.Log.Debug("catch-up", "client", d.id, "convs", len(st.Convs), "new", st.New, "cursors", len(st.Cursors))
	d.mu.Lock()
	if d.resync {
		// Something was dropped: start again from what was acknowledged.
		for conv, f := range d.acked {
			d.sent[conv], d.written[conv] = f.seq, f.seq
		}
		d.resync = false
	}
	d.mu.Unlock()
	for {
		for _, h := range st.Convs {
			if err := d.catchUpConv(ctx, st, h); err != nil {
				return err
			}
		}
		d.mu.Lock()
		if !d.missed {
			d.syncing = false
			d.s.Log.Debug("caught up", "client", d.id, "sent", len(d.sent))
			d.mu.Unlock()
			return nil
		}
		d.mu.Unlock()
		// Live messages arrived meanwhile: another pass picks them up.
		d.mu.Lock()
		d.missed = false
		d.mu.Unlock()
		if st, err = d.s.Store.Device(ctx, d.id, d.user); err != nil {
			return err
		}
	}
}

func (d *device) catchUpConv(ctx context.Context, st history.DeviceState, h history.ConvHead) error {
	d.mu.Lock()
	from, known := d.sent[h.Conv]
	if !known {
		cursor, has := st.Cursors[h.Conv]
		switch {
		case has:
			from = cursor
		case d.isNew(st):
			from = max(h.First-1, h.Last-int64(d.s.NewDeviceBacklog))
		default:
			from = h.First - 1
		}
		if !has && from > 0 {
			// Remember where this device starts, so that an interrupted first
			// catch-up resumes here and not at the beginning.
			d.s.markCursor(d, h.Conv, from, false)
		}
	}
	// Never below the first message the user may see: a re-added member
	// does not get what was sent while they were away.
	if from < h.First-1 {
		from = h.First - 1
		if f := d.acked[h.Conv]; f != nil && f.seq < from {
			d.acked[h.Conv] = &frontier{seq: from}
		}
	}
	d.sent[h.Conv] = from
	if _, ok := d.acked[h.Conv]; !ok {
		d.acked[h.Conv] = &frontier{seq: from}
	}
	d.mu.Unlock()
	if h.Last <= from {
		return nil
	}
	if h.Last-from > int64(d.s.CatchupLimit) {
		before := h.Last - int64(d.s.CatchupLimit) + 1
		gap, _ := json.Marshal(struct {
			Kind   string `json:"kind"`
			Conv   string `json:"conv"`
			After  int64  `json:"after"`
			Before int64  `json:"before"`
		}{"gap", h.Conv, from, before})
		if err := d.write(item{payload: gap, qos: d.qos}); err != nil {
			return err
		}
		d.mu.Lock()
		from = before - 1
		d.sent[h.Conv] = from
		// The client fills the gap over REST: the cursor moves past it.
		if f := d.acked[h.Conv]; f.seq < from {
			d.acked[h.Conv] = &frontier{seq: from, above: f.above}
			d.s.markCursor(d, h.Conv, from, false)
		}
		d.mu.Unlock()
	}
	for from < h.Last {
		limit := min(h.Last-from, 100)
		msgs, err := d.s.Store.Messages(ctx, h.Conv, from, int(limit))
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			return nil
		}
		for _, m := range msgs {
			if m.Seq > h.Last {
				return nil
			}
			if err := d.write(item{conv: m.Conv, seq: m.Seq, payload: wire.MessageDelivery(m), qos: d.qos}); err != nil {
				return err
			}
			d.mu.Lock()
			if m.Seq > d.sent[m.Conv] {
				d.sent[m.Conv] = m.Seq
			}
			d.mu.Unlock()
			from = m.Seq
		}
	}
	return nil
}

var errDeviceGone = errors.New("device gone")

// writeTimeout bounds one write to a client.
const writeTimeout = 30 * time.Second

// write sends one delivery to the client, waiting while the window of
// unacknowledged deliveries is full.
func (d *device) write(it item) error {
	cl := d.cl
	qos := min(it.qos, d.qos)
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		TopicName:   d.s.Topics.Inbox(d.user),
		Payload:     it.payload,
		Created:     time.Now().Unix(),
	}
	if qos > 0 {
		window := d.s.Window
		if rm := int(cl.Properties.Props.ReceiveMaximum); rm > 0 && rm < window {
			window = rm
		}
		size := int64(len(it.payload))
		for d.full(window, size) {
			d.s.Log.Debug("window full", "client", d.id, "inflight", cl.State.Inflight.Len(), "window", window)
			select {
			case <-d.ackWake:
			case <-time.After(time.Second):
				d.reconcile()
			case <-d.stopped:
				return errDeviceGone
			case <-d.s.done:
				return errDeviceGone
			}
			if cl.Closed() {
				return errDeviceGone
			}
		}
		id, err := cl.NextPacketID()
		if err == nil && id < serverPacketIDFloor {
			raisePacketIDs(cl)
			id, err = cl.NextPacketID()
		}
		if err != nil {
			return err
		}
		pk.PacketID = uint16(id)
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return errDeviceGone
		}
		d.out[pk.PacketID] = outDelivery{conv: it.conv, seq: it.seq, size: size}
		d.outBytes += size
		d.mu.Unlock()
		d.s.addUserBytes(d.user, size)
		cl.State.Inflight.Set(pk)
		cl.State.Inflight.DecreaseSendQuota()
	}
	// A client that takes no data for WriteTimeout is dropped: it reconnects
	// and catches up, and nobody waits on its socket meanwhile.
	if c := cl.Net.Conn; c != nil {
		_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	}
	err := cl.WritePacket(pk)
	if c := cl.Net.Conn; c != nil {
		// Back to the keepalive deadline the broker keeps (1.5 keepalives).
		var keep time.Time
		if ka := cl.State.Keepalive; ka > 0 {
			keep = time.Now().Add(time.Duration(ka+ka/2) * time.Second)
		}
		_ = c.SetWriteDeadline(keep)
	}
	if err != nil && qos > 0 {
		d.take(pk.PacketID)
		if cl.State.Inflight.Delete(pk.PacketID) {
			cl.State.Inflight.IncreaseSendQuota()
		}
	}
	if errors.Is(err, packets.ErrPacketTooLarge) {
		// Larger than the client's Maximum Packet Size: it can never take
		// it. Skip it (the client can read it over REST) rather than loop.
		d.s.Log.Warn("delivery larger than the client accepts, skipped", "client", d.id, "conv", it.conv, "seq", it.seq)
		if it.conv != "" {
			d.ack(it.conv, it.seq)
		}
		return nil
	}
	if err != nil {
		cl.Stop(fmt.Errorf("write delivery: %w", err))
		return errDeviceGone
	}
	if it.conv != "" {
		d.mu.Lock()
		if it.seq > d.written[it.conv] {
			d.written[it.conv] = it.seq
		}
		d.mu.Unlock()
		if qos == 0 {
			d.ack(it.conv, it.seq) // at most once: written is as good as it gets
		}
	}
	return nil
}

// full reports whether a delivery of size bytes must wait: the window of
// unacknowledged deliveries is full, or their bytes would exceed the
// device's or the user's bound. A device with nothing in flight never waits
// for bytes, so that every delivery eventually goes out.
func (d *device) full(window int, size int64) bool {
	if d.cl.State.Inflight.Len() >= window {
		return true
	}
	d.mu.Lock()
	mine := d.outBytes
	d.mu.Unlock()
	if mine == 0 {
		return false
	}
	return mine+size > d.s.DeviceInflightBytes || d.s.userBytes(d.user)+size > d.s.UserInflightBytes
}

// wakeWriter wakes the writer if it waits for the window.
func (d *device) wakeWriter() {
	select {
	case d.ackWake <- struct{}{}:
	default:
	}
}

// ack records that the device acknowledged seq of conv.
func (d *device) ack(conv string, seq int64) {
	d.wakeWriter()
	d.mu.Lock()
	f := d.acked[conv]
	if f == nil {
		f = &frontier{seq: seq - 1}
		d.acked[conv] = f
	}
	moved := f.ack(seq)
	at := f.seq
	d.mu.Unlock()
	if moved {
		d.s.markCursor(d, conv, at, true)
	}
}

// markCursor records a cursor to write at the next flush; receipt asks for a
// delivery receipt too (acknowledged messages, not skipped ones).
func (s *Sync) markCursor(d *device, conv string, seq int64, receipt bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := cursorKey{d.id, conv}
	if seq > s.dirty[k].seq || d.epoch != s.dirty[k].epoch {
		s.dirty[k] = dirtyCursor{seq: seq, epoch: d.epoch}
	}
	if !receipt {
		return
	}
	if kind, _, _, ok := history.ParseConvID(conv); ok && kind == history.KindDirect {
		rk := cursorKey{conv, d.user}
		if seq > s.recv[rk] {
			s.recv[rk] = seq
		}
	}
}

func (s *Sync) flusher() {
	defer s.wg.Done()
	t := time.NewTicker(s.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := s.flush(ctx); err != nil {
				s.Log.Warn("write cursors", "error", err)
			}
			cancel()
		}
	}
}

// flush writes dirty cursors and sends coalesced delivery receipts.
func (s *Sync) flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	dirty, recv := s.dirty, s.recv
	s.dirty, s.recv = map[cursorKey]dirtyCursor{}, map[cursorKey]int64{}
	if len(s.lastRx) > 100000 {
		s.lastRx = map[string]int64{} // forget old receipts: at worst one is repeated
	}
	s.mu.Unlock()
	for k, seq := range recv {
		conv, user := k.a, k.b
		key := conv + "\x00" + user
		s.mu.Lock()
		if seq <= s.lastRx[key] {
			s.mu.Unlock()
			continue
		}
		s.lastRx[key] = seq
		s.mu.Unlock()
		_, a, b, _ := history.ParseConvID(conv)
		peer := a
		if peer == user {
			peer = b
		}
		payload, _ := json.Marshal(receipt{Kind: "delivered", Conv: conv, User: user, Seq: seq})
		s.DeliverEvent([]string{peer}, payload, 1)
	}
	if len(dirty) == 0 {
		return nil
	}
	cs := make([]history.Cursor, 0, len(dirty))
	for k, c := range dirty {
		cs = append(cs, history.Cursor{Device: k.a, Conv: k.b, Seq: c.seq, Epoch: c.epoch})
	}
	if err := s.Store.SaveCursors(ctx, cs); err != nil {
		// Keep them for the next flush.
		s.mu.Lock()
		for k, c := range dirty {
			if c.seq > s.dirty[k].seq {
				s.dirty[k] = c
			}
		}
		s.mu.Unlock()
		return err
	}
	return nil
}

// receipt is a read or delivered event.
type receipt struct {
	Kind string `json:"kind"`
	Conv string `json:"conv"`
	User string `json:"user"`
	Seq  int64  `json:"seq"`
}

// presence publishes the retained presence of user.
func (s *Sync) presence(user string, online bool) {
	if s.Server == nil {
		return
	}
	b, _ := json.Marshal(struct {
		User     string `json:"user"`
		Online   bool   `json:"online"`
		LastSeen string `json:"last_seen"`
	}{user, online, time.Now().UTC().Format(wire.TSLayout)})
	if err := s.Server.Publish(s.Topics.Presence(user), b, true, 1); err != nil {
		s.Log.Warn("publish presence", "user", user, "error", err)
	}
}

// deliveryHead reads conv and seq from a message delivery payload, which
// MessageDelivery writes as {"kind":"message","conv":"...","seq":N,...}.
func deliveryHead(b []byte) (string, int64, bool) {
	const prefix = `{"kind":"message","conv":"`
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return "", 0, false
	}
	b = b[len(prefix):]
	i := 0
	for i < len(b) && b[i] != '"' {
		i++
	}
	conv := string(b[:i])
	const seqKey = `","seq":`
	b = b[i:]
	if len(b) < len(seqKey) || string(b[:len(seqKey)]) != seqKey {
		return "", 0, false
	}
	b = b[len(seqKey):]
	j := 0
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	seq, err := strconv.ParseInt(string(b[:j]), 10, 64)
	if err != nil {
		return "", 0, false
	}
	return conv, seq, true
}

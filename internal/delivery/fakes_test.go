package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

// fakeConn is a client connection that records what it is sent. Its
// inflight table holds the QoS 1 deliveries until ack or expire.
type fakeConn struct {
	id, user string
	rm       int // Receive Maximum

	mu        sync.Mutex
	next      uint16
	inflight  map[uint16]int // packet id -> payload size
	got       []sent
	dropped   []uint16
	maxOut    int             // most inflight deliveries seen at a Write
	maxBytes  int             // most inflight payload bytes seen at a Write
	acking    map[uint16]bool // acknowledged, not yet out of inflight
	tooLarge  int             // payloads above this many bytes fail with ErrTooLarge (0: none)
	failSend  error           // Write fails with it
	staged    []sent          // appended, not yet written
	writes    int             // successful Writes
	closed    bool
	stopErr   error
	takenOver bool
	onSend    func() // called for each delivery written, after it is recorded
	// acks records the acknowledgements written (non-zero bytes in a
	// Write's buffer), each with the Write it came in and how many
	// deliveries were written before it.
	acks []writtenAck
}

type writtenAck struct {
	b      byte
	write  int
	before int
}

type sent struct {
	id      uint16
	qos     byte
	payload []byte
}

func newConn(id string) *fakeConn {
	user := id
	for i := range id {
		if id[i] == '/' {
			user = id[:i]
			break
		}
	}
	return &fakeConn{id: id, user: user, next: 1 << 15, inflight: map[uint16]int{}}
}

func (c *fakeConn) ID() string          { return c.id }
func (c *fakeConn) User() string        { return c.user }
func (c *fakeConn) ReceiveMaximum() int { return c.rm }

func (c *fakeConn) Inflight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.inflight)
}

func (c *fakeConn) PacketID() (uint16, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		c.next++
		if c.next == 0 {
			c.next = 1 << 15
		}
		if _, used := c.inflight[c.next]; !used {
			return c.next, nil
		}
	}
}

// Append stages a delivery; Write writes what is staged. The buffer gets one
// byte per packet.
func (c *fakeConn) Append(buf []byte, id uint16, payload []byte, qos byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tooLarge > 0 && len(payload) > c.tooLarge {
		return buf, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(payload))
	}
	if c.closed {
		return buf, errors.New("closed")
	}
	if qos > 0 {
		c.inflight[id] = len(payload)
	}
	c.staged = append(c.staged, sent{id: id, qos: qos, payload: payload})
	return append(buf, 0), nil
}

func (c *fakeConn) Write(buf []byte) error {
	c.mu.Lock()
	staged := c.staged
	c.staged = nil
	deliveries := 0
	for _, b := range buf {
		if b == 0 {
			deliveries++
		}
	}
	if deliveries != len(staged) {
		c.mu.Unlock()
		panic(fmt.Sprintf("Write of %d packets, %d staged", deliveries, len(staged)))
	}
	if c.failSend != nil {
		for _, s := range staged {
			delete(c.inflight, s.id)
		}
		err := c.failSend
		c.mu.Unlock()
		return err
	}
	c.writes++
	n := len(c.got)
	for _, b := range buf {
		if b == 0 {
			n++
		} else {
			c.acks = append(c.acks, writtenAck{b: b, write: c.writes, before: n})
		}
	}
	total, out := 0, 0
	for pid, n := range c.inflight {
		if !c.acking[pid] { // acknowledged, on its way out of the table
			total += n
			out++
		}
	}
	c.maxOut = max(c.maxOut, out)
	c.maxBytes = max(c.maxBytes, total)
	c.got = append(c.got, staged...)
	onSend := c.onSend
	c.mu.Unlock()
	if onSend != nil {
		for range staged {
			onSend()
		}
	}
	return nil
}

func (c *fakeConn) Pending(id uint16) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.inflight[id]
	return n, ok
}

func (c *fakeConn) Drop(id uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.inflight[id]; ok {
		delete(c.inflight, id)
		c.dropped = append(c.dropped, id)
	}
}

func (c *fakeConn) Stop(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed, c.stopErr = true, err
}

func (c *fakeConn) TakeOver() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed, c.takenOver = true, true
}

func (c *fakeConn) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// ack acknowledges the delivery id the way mochi does: the hook sees the
// PUBACK, then the inflight record goes.
func (c *fakeConn) ack(h *Hub, id uint16) {
	c.mu.Lock()
	if c.acking == nil {
		c.acking = map[uint16]bool{}
	}
	c.acking[id] = true // the PUBACK is in: no longer counted as in flight
	c.mu.Unlock()
	h.Acknowledge(c, id)
	c.mu.Lock()
	delete(c.inflight, id)
	delete(c.acking, id)
	c.mu.Unlock()
}

// ackAll acknowledges every inflight delivery in packet id order.
func (c *fakeConn) ackAll(h *Hub) {
	for _, id := range c.pendingIDs() {
		c.ack(h, id)
	}
}

// expire removes id from the inflight table without an acknowledgement.
func (c *fakeConn) expire(id uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, id)
}

func (c *fakeConn) pendingIDs() []uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]uint16, 0, len(c.inflight))
	for id := range c.inflight {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// event is a delivery as the client decodes it.
type event struct {
	Kind   string          `json:"kind"`
	Conv   string          `json:"conv"`
	Seq    int64           `json:"seq"`
	User   string          `json:"user"`
	Body   json.RawMessage `json:"body"`
	After  int64           `json:"after"`
	Before int64           `json:"before"`
	Online bool            `json:"online"`
	id     uint16
	qos    byte
}

func (c *fakeConn) events(t testing.TB) []event {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]event, 0, len(c.got))
	for _, s := range c.got {
		var e event
		if err := json.Unmarshal(s.payload, &e); err != nil {
			t.Fatalf("delivery %q: %v", s.payload, err)
		}
		e.id, e.qos = s.id, s.qos
		out = append(out, e)
	}
	return out
}

// seqs returns the seqs of the message deliveries of conv, in order.
func (c *fakeConn) seqs(t testing.TB, conv string) []int64 {
	t.Helper()
	var out []int64
	for _, e := range c.events(t) {
		if e.Kind == "message" && e.Conv == conv {
			out = append(out, e.Seq)
		}
	}
	return out
}

// waitMessages waits until c got exactly n messages of conv.
func (c *fakeConn) waitMessages(t testing.TB, conv string, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d messages of %s to %s", n, conv, c.id), func() bool { return len(c.seqs(t, conv)) == n })
}

// wantSeqs fails t unless the messages c got in conv are exactly the seqs
// from..to, in order, each once.
func (c *fakeConn) wantSeqs(t testing.TB, conv string, from, to int64) {
	t.Helper()
	if got := c.seqs(t, conv); !slices.Equal(got, seqRange(from, to)) {
		t.Fatalf("got %v, want %d..%d exactly once", got, from, to)
	}
}

// kinds returns the deliveries of kind.
func (c *fakeConn) kinds(t testing.TB, kind string) []event {
	t.Helper()
	var out []event
	for _, e := range c.events(t) {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func (c *fakeConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

// faultStore wraps a real store. before, when set, runs ahead of each call
// of the wrapped methods with the operation's name and how many calls of it
// there were, this one included; a non-nil error fails the call. It may
// block.
type faultStore struct {
	history.Store

	mu     sync.Mutex
	calls  map[string]int
	before func(ctx context.Context, op string, n int) error
}

var errStore = errors.New("store unavailable")

func (s *faultStore) enter(ctx context.Context, op string) error {
	s.mu.Lock()
	s.calls[op]++
	n, before := s.calls[op], s.before
	s.mu.Unlock()
	if before != nil {
		return before(ctx, op, n)
	}
	return nil
}

func (s *faultStore) setBefore(f func(ctx context.Context, op string, n int) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.before = f
	s.calls = map[string]int{}
}

func (s *faultStore) count(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

func (s *faultStore) Device(ctx context.Context, device, user string) (history.DeviceState, error) {
	if err := s.enter(ctx, "Device"); err != nil {
		return history.DeviceState{}, err
	}
	return s.Store.Device(ctx, device, user)
}

// Devices counts and fails each device as a Device call.
func (s *faultStore) Devices(ctx context.Context, devs []history.DeviceRef) ([]history.DeviceState, error) {
	for range devs {
		if err := s.enter(ctx, "Device"); err != nil {
			return nil, err
		}
	}
	return s.Store.Devices(ctx, devs)
}

// Claims counts and fails each device as a Claim call.
func (s *faultStore) Claims(ctx context.Context, devices []string) ([]int64, error) {
	for range devices {
		if err := s.enter(ctx, "Claim"); err != nil {
			return nil, err
		}
	}
	return s.Store.Claims(ctx, devices)
}

func (s *faultStore) Messages(ctx context.Context, conv string, after int64, limit int) ([]history.Message, error) {
	if err := s.enter(ctx, "Messages"); err != nil {
		return nil, err
	}
	return s.Store.Messages(ctx, conv, after, limit)
}

func (s *faultStore) SaveCursors(ctx context.Context, cs []history.Cursor) error {
	if err := s.enter(ctx, "SaveCursors"); err != nil {
		return err
	}
	return s.Store.SaveCursors(ctx, cs)
}

func (s *faultStore) Claim(ctx context.Context, device string) (int64, error) {
	if err := s.enter(ctx, "Claim"); err != nil {
		return 0, err
	}
	return s.Store.Claim(ctx, device)
}

// env is a started Hub over a faultStore on SQLite.
type env struct {
	t     testing.TB
	hub   *Hub
	store *faultStore
	real  history.Store
}

// setup starts a Hub over a fresh SQLite store; opt adjusts the Hub before
// Start. The Hub is closed when the test ends.
func setup(t testing.TB, opt ...func(*Hub)) *env {
	t.Helper()
	st := testkit.OpenSQLite(t)
	fs := &faultStore{Store: st, calls: map[string]int{}}
	h := &Hub{Store: fs, FlushInterval: 5 * time.Millisecond, retry: 5 * time.Millisecond,
		Log: testkit.Logger()}
	for _, o := range opt {
		o(h)
	}
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		fs.setBefore(nil)
		if err := h.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return &env{t: t, hub: h, store: fs, real: st}
}

// send stores a message from from in conv and returns it (without
// delivering it).
func (e *env) send(conv, from, body string) history.Message {
	e.t.Helper()
	now := time.Now()
	m, _, err := e.real.Append(context.Background(), history.NewMessage{Conv: conv, ID: history.NewID(now), From: from, TS: now,
		Type: "text", Body: json.RawMessage(fmt.Sprintf("%q", body))})
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// deliverDuring makes the first call of op to the store, before it goes on,
// send n messages of conv from and deliver them live to users.
func (e *env) deliverDuring(op, conv, from string, users []string, n int) {
	var once sync.Once
	e.store.setBefore(func(_ context.Context, o string, _ int) error {
		if o == op {
			once.Do(func() {
				for _, m := range e.sendN(conv, from, n) {
					e.hub.DeliverMessage(users, m)
				}
			})
		}
		return nil
	})
}

// sendN stores n messages.
func (e *env) sendN(conv, from string, n int) []history.Message {
	e.t.Helper()
	out := make([]history.Message, n)
	for i := range out {
		out[i] = e.send(conv, from, fmt.Sprintf("m%d", i+1))
	}
	return out
}

// connect connects and subscribes a device at qos.
func (e *env) connect(id string, qos byte) *fakeConn {
	e.t.Helper()
	c := newConn(id)
	if err := e.hub.Connect(c); err != nil {
		e.t.Fatal(err)
	}
	e.hub.Subscribe(c, qos)
	return c
}

// backlog sets up a hub with opt in which alice sends n messages to bob
// before bob/phone connects (Receive Maximum 1), and returns both.
func backlog(t testing.TB, n int, opt ...func(*Hub)) (*env, *fakeConn) {
	t.Helper()
	e := setup(t, opt...)
	e.sendN(dm, "alice", n)
	return e, e.connect("bob/phone", 1)
}

// cursor returns the stored cursor of device in conv (0 when none).
func (e *env) cursor(device, conv string) int64 {
	e.t.Helper()
	st, err := e.real.Device(context.Background(), device, newConn(device).user)
	if err != nil {
		e.t.Fatal(err)
	}
	return st.Cursors[conv]
}

// waitCursor waits until the stored cursor of device in conv is seq.
func (e *env) waitCursor(device, conv string, seq int64) {
	e.t.Helper()
	waitFor(e.t, fmt.Sprintf("cursor %d of %s in %s", seq, device, conv), func() bool { return e.cursor(device, conv) == seq })
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// drain acknowledges c's deliveries as they come until it got want
// messages of conv, and all of them.
func drain(t testing.TB, h *Hub, c *fakeConn, conv string, want int) {
	t.Helper()
	for len(c.seqs(t, conv)) < want {
		waitFor(t, fmt.Sprintf("%d messages of %s", want, conv), func() bool {
			return c.Inflight() > 0 || len(c.seqs(t, conv)) >= want
		})
		c.ackAll(h)
	}
	c.ackAll(h)
}

func seqRange(from, to int64) []int64 {
	var out []int64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// runner drives one run: one broker, one topology, one set of clients.
type runner struct {
	cfg   *config
	srv   *server
	tp    *topology
	mode  string
	users []*user
	clean bool          // CONNECT clean session flag
	conns *connsRun     // the connections scenario's state; nil in the traffic scenario
	cpu   time.Duration // process CPU time used during the send phase

	drainTime time.Duration // how long the drain waited
	drainCut  bool          // deliveries were still arriving when it gave up

	// set when the send phase starts and ends (Unix nanoseconds)
	sendStart, sendEnd atomic.Int64
	measuring          atomic.Bool
	stop               chan struct{} // closed at the end of the send phase

	sent, acked          atomic.Int64
	delivered, echoes    atomic.Int64 // all bench messages received, raw
	phaseDelivered       atomic.Int64 // … while measuring
	phaseEchoes          atomic.Int64
	lastDelivery         atomic.Int64
	lat, connLat         *histogram
	connected            atomic.Int64 // devices connected in the connect phase
	connectFailures      atomic.Int64
	lostConns            atomic.Int64
	gaps, foreign, other atomic.Int64

	mu       sync.Mutex
	problems []string       // first few connection and protocol errors
	refused  map[string]int // error events by code
}

// user is one simulated user: device 0 sends, every device receives.
type user struct {
	r       *runner
	idx     int
	name    string
	topic   string
	devices []*device
	offline bool
	slots   chan struct{} // one per unacknowledged send
	buf     []byte

	mu      sync.Mutex
	sent    []msgRec // by counter n
	pending map[uint16]int32
	nextPID uint16
}

// msgRec is one send: its intended or actual send time and when its
// acknowledgement arrived (0: not acknowledged).
type msgRec struct {
	t, ack  int64
	refused bool
}

// device is one connection of a user, with everything it received.
type device struct {
	u         *user
	idx       int
	id        string
	node      int // the node it connects to (an index into srv.addrs)
	c         *conn
	ever      bool    // connected at least once
	recs      []rec   // bench messages in arrival order
	times     []int64 // their arrival times, for devices that go offline
	liveSince atomic.Int64
	closing   atomic.Bool
	lost      atomic.Bool  // a connection dropped without our asking
	msg       delivery     // scratch for the reader goroutine
	maxSeq    int64        // the highest seq received, on the reader goroutine
	distinct  atomic.Int64 // messages received with a seq above all before: arrivals less duplicates

	wentDown  int   // len(recs) when it went offline
	downAt    int64 // when it went offline
	reconnect int64 // when it started reconnecting
}

// rec is one received message: sender, counter and (Parley) seq.
type rec struct {
	sender, n int32
	seq       int64
}

func newRunner(cfg *config, srv *server, tp *topology) *runner {
	r := &runner{cfg: cfg, srv: srv, tp: tp, mode: srv.mode, lat: new(histogram), connLat: new(histogram),
		stop: make(chan struct{}), refused: map[string]int{}}
	r.clean = r.mode == modeParley || cfg.Offline == 0
	for i, name := range tp.users {
		u := &user{r: r, idx: i, name: name, topic: tp.sendTopic(r.mode, i), slots: make(chan struct{}, cfg.Inflight),
			pending: map[uint16]int32{}}
		u.offline = cfg.Offline > 0 && int(float64(i+1)*cfg.Offline) > int(float64(i)*cfg.Offline)
		for d := range tp.devices {
			u.devices = append(u.devices, &device{u: u, idx: d, id: tp.clientID(i, d), node: tp.node(i, d, len(srv.addrs))})
		}
		r.users = append(r.users, u)
	}
	return r
}

func (r *runner) problem(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.problems) < 10 {
		r.problems = append(r.problems, fmt.Sprintf(format, a...))
	}
}

// connectAll connects every device, paced at --connect-rate, and returns
// when all have connected or failed.
func (r *runner) connectAll(ctx context.Context) time.Duration {
	var wg sync.WaitGroup
	start := time.Now()
	sem := make(chan struct{}, r.cfg.ConnectConcurrency) // bounds connects in progress
	k := 0
	for d := range r.tp.devices {
		for _, u := range r.users {
			dev := u.devices[d]
			at := start
			if r.cfg.ConnectRate > 0 {
				at = start.Add(time.Duration(float64(k) / r.cfg.ConnectRate * float64(time.Second)))
			}
			k++
			wg.Add(1)
			go func() {
				defer wg.Done()
				if !sleepUntil(ctx, at) {
					return
				}
				sem <- struct{}{}
				defer func() { <-sem }()
				if err := r.connect(ctx, dev); err != nil {
					r.connectFailures.Add(1)
					r.problem("connect %s: %v", dev.id, err)
				} else {
					r.connected.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	return time.Since(start)
}

// connect dials the device, subscribes it to its inbox (and, in the raw
// scenario with groups, its group topic) at QoS 1 and watches the connection.
func (r *runner) connect(ctx context.Context, dev *device) error {
	c, err := r.dialDevice(ctx, dev)
	if err != nil {
		return err
	}
	r.attach(dev, c)
	return nil
}

// dialDevice dials the device and subscribes it; the connect latency is
// recorded.
func (r *runner) dialDevice(ctx context.Context, dev *device) (*conn, error) {
	u := dev.u
	username, password, err := r.srv.credentials(u.name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.DialTimeout)
	defer cancel()
	t0 := time.Now()
	var onAck func(uint16, int64)
	if dev.idx == 0 {
		onAck = u.onAck
	}
	dev.closing.Store(false)
	o := dialOptions{addr: r.srv.addrs[dev.node], clientID: dev.id, username: username, password: password, clean: r.clean}
	if r.conns != nil {
		o.local, o.small = r.conns.source(u.idx), true
	}
	c, err := dial(ctx, o, dev.onPublish, onAck)
	if err != nil {
		return nil, err
	}
	dev.liveSince.Store(time.Now().UnixNano())
	if !c.sessionPresent { // a kept session has its subscriptions
		if err := c.subscribe(ctx, 1, r.tp.filters(r.mode, u.idx)...); err != nil {
			c.close()
			return nil, err
		}
	}
	hist := r.connLat
	if r.conns != nil && r.conns.storming.Load() {
		hist = r.conns.redialLat
	}
	hist.record(time.Since(t0).Nanoseconds())
	return c, nil
}

// attach makes c the device's connection and watches it: a connection that
// drops without our asking is lost, unless the connections scenario's storm
// takes it over.
func (r *runner) attach(dev *device, c *conn) {
	u := dev.u
	u.mu.Lock()
	dev.c, dev.ever = c, true
	u.mu.Unlock()
	go func() {
		<-c.done
		if dev.closing.Load() {
			return
		}
		if r.conns != nil && r.conns.dropped(dev) {
			return
		}
		dev.lost.Store(true)
		r.lostConns.Add(1)
		r.problem("%s: connection lost: %v", dev.id, c.err)
	}()
}

// onPublish records a received PUBLISH; it runs on the device's reader.
func (dev *device) onPublish(_, payload []byte, now int64) {
	r := dev.u.r
	d := &dev.msg
	if !parseDelivery(payload, d) {
		r.foreign.Add(1)
		return
	}
	if r.mode == modeParley {
		switch string(d.kind) {
		case "message":
		case "error":
			r.refusal(d)
			return
		case "gap":
			r.gaps.Add(1)
			return
		default: // receipts and other events
			return
		}
	}
	s, n, ok := parseCID(d.cid, r.tp.run)
	if !ok || s >= len(r.users) {
		r.other.Add(1) // group.created and anything not sent by this run
		return
	}
	dev.recs = append(dev.recs, rec{sender: int32(s), n: int32(n), seq: d.seq})
	if dev.u.offline || r.conns != nil {
		dev.times = append(dev.times, now)
	}
	if d.seq > dev.maxSeq {
		dev.maxSeq = d.seq
		dev.distinct.Add(1)
	}
	measuring := r.measuring.Load()
	if s == dev.u.idx {
		r.echoes.Add(1)
		if measuring {
			r.phaseEchoes.Add(1)
		}
		return
	}
	r.delivered.Add(1)
	r.lastDelivery.Store(now)
	if measuring {
		r.phaseDelivered.Add(1)
	}
	if d.hasT && d.t >= dev.liveSince.Load() && (r.conns == nil || !r.conns.storming.Load()) {
		r.lat.record(now - d.t)
	}
}

// refusedCount is the number of error events for sends so far.
func (r *runner) refusedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := 0
	for _, c := range r.refused {
		k += c
	}
	return k
}

// refusal records an error event for a send.
func (r *runner) refusal(d *delivery) {
	r.mu.Lock()
	r.refused[string(d.code)]++
	r.mu.Unlock()
	if s, n, ok := parseCID(d.cid, r.tp.run); ok && s < len(r.users) {
		u := r.users[s]
		u.mu.Lock()
		if n < len(u.sent) {
			u.sent[n].refused = true
		}
		u.mu.Unlock()
	}
}

// sendPhase runs the senders until --duration or --count, with the offline
// users leaving and coming back; it returns once every sender has stopped
// and its outstanding sends were acknowledged (or 10s passed).
func (r *runner) sendPhase(ctx context.Context, progress io.Writer) {
	cfg := r.cfg
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(len(r.users)) / cfg.Rate * float64(time.Second))
	}
	cpu := processCPU()
	start := time.Now()
	r.sendStart.Store(start.UnixNano())
	r.measuring.Store(true)
	var wg sync.WaitGroup
	for _, u := range r.users {
		if u.devices[0].c == nil {
			continue // could not connect: counted as a connect failure
		}
		first := start
		if interval > 0 { // spread the senders over one interval
			first = start.Add(time.Duration(int64(interval) * int64(u.idx) / int64(len(r.users))))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.userMain(ctx, u, interval, start, first)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	stopProgress := r.progress(progress, start)
	var timeout <-chan time.Time
	if cfg.Duration > 0 {
		timeout = time.After(cfg.Duration)
	}
	select {
	case <-timeout:
	case <-done: // --count reached by every sender
	case <-ctx.Done():
	}
	r.sendEnd.Store(time.Now().UnixNano())
	r.cpu = processCPU() - cpu
	r.measuring.Store(false)
	close(r.stop)
	<-done
	stopProgress()
}

// userMain is one user's send phase.
func (r *runner) userMain(ctx context.Context, u *user, interval time.Duration, start, first time.Time) {
	defer func() {
		u.waitAcks(10 * time.Second)
		if n := u.inflight(); n > 0 {
			r.problem("%s: %d sends still unacknowledged at the end", u.devices[0].id, n)
		}
	}()
	if !u.offline {
		u.sendLoop(nil, interval, first)
		return
	}
	away := start.Add(time.Duration(float64(r.cfg.Duration) * offlineFrom))
	back := start.Add(time.Duration(float64(r.cfg.Duration) * offlineTo))
	pause := make(chan struct{})
	t := time.AfterFunc(time.Until(away), func() { close(pause) })
	defer t.Stop()
	if !u.sendLoop(pause, interval, first) {
		return
	}
	u.waitAcks(5 * time.Second)
	for _, dev := range u.devices {
		if dev.c == nil {
			continue
		}
		dev.closing.Store(true)
		dev.c.disconnect()
		dev.wentDown, dev.downAt = len(dev.recs), time.Now().UnixNano()
	}
	select {
	case <-time.After(time.Until(back)):
	case <-r.stop:
	case <-ctx.Done():
	}
	for _, dev := range u.devices {
		if dev.c == nil {
			continue
		}
		// Back on the next node, as behind a load balancer: the
		// catch-up then comes from a node the device never used.
		dev.node = (dev.node + 1) % len(r.srv.addrs)
		dev.reconnect = time.Now().UnixNano()
		if err := r.connect(ctx, dev); err != nil {
			r.connectFailures.Add(1)
			r.problem("reconnect %s: %v", dev.id, err)
			dev.c = nil
		}
	}
	if u.devices[0].c == nil {
		return
	}
	u.sendLoop(nil, interval, time.Now())
}

// expected is the number of deliveries the acknowledged sends should cause.
func (r *runner) expected() int64 {
	var total int64
	for _, s := range r.users {
		s.mu.Lock()
		var acked int64
		for _, m := range s.sent {
			if m.ack != 0 && !m.refused {
				acked++
			}
		}
		s.mu.Unlock()
		for _, m := range r.tp.convs[r.tp.convOf[s.idx]].members {
			if !r.tp.receives(r.mode, m, s.idx) {
				continue
			}
			for _, dev := range r.users[m].devices {
				if dev.ever {
					total += acked
				}
			}
		}
	}
	return total
}

// drain waits for outstanding deliveries: until every expected delivery has
// arrived, nothing arrived for 5 seconds, or --drain passed. It records how
// long it waited and whether deliveries were still arriving at the end.
func (r *runner) drain(ctx context.Context) {
	start := time.Now()
	defer func() { r.drainTime = time.Since(start) }()
	want := r.expected()
	deadline := start.Add(r.cfg.DrainWait)
	last, lastChange := int64(-1), time.Now()
	for ctx.Err() == nil {
		got := r.delivered.Load() + r.echoes.Load()
		if got >= want {
			time.Sleep(200 * time.Millisecond) // stragglers: duplicates are counted too
			return
		}
		if got != last {
			last, lastChange = got, time.Now()
		} else if time.Since(lastChange) > 5*time.Second {
			return
		}
		if time.Now().After(deadline) {
			r.drainCut = true
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// disconnectAll closes every connection.
func (r *runner) disconnectAll() {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, u := range r.users {
		for _, dev := range u.devices {
			if dev.c == nil {
				continue
			}
			dev.closing.Store(true)
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				dev.c.disconnect()
			}()
		}
	}
	wg.Wait()
}

// progress prints a status line on w once a second until the returned
// function is called; w nil prints nothing.
func (r *runner) progress(w io.Writer, start time.Time) func() {
	if w == nil {
		return func() {}
	}
	var lastAck, lastDel int64
	stop := every(time.Second, func() {
		ack, del := r.acked.Load(), r.delivered.Load()
		fmt.Fprintf(w, "\r\033[K%s %3.0fs  acked %d/s  delivered %d/s  p99 %s  in flight %d",
			r.srv.name, time.Since(start).Seconds(), ack-lastAck, del-lastDel,
			fmtMs(r.lat.quantile(0.99)), r.sent.Load()-r.acked.Load())
		lastAck, lastDel = ack, del
	})
	return func() {
		stop()
		fmt.Fprint(w, "\r\033[K")
	}
}

// every calls f every d in a goroutine until the returned function is
// called, which returns once f is no longer running.
func every(d time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				f()
			}
		}
	}()
	return func() { close(done); <-finished }
}

func sleepUntil(ctx context.Context, at time.Time) bool {
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// closed reports whether the connection's reader has ended.
func (c *conn) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

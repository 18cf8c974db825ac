package main

// The reconnect storm of the connections scenario: parleyd killed and
// started again, every device redialing, and what it took until all were
// back and caught up.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// dropped is called when dev's connection dropped without the load
// generator asking. During a storm it redials the device (and reports true);
// otherwise the connection is lost.
func (cr *connsRun) dropped(dev *device) bool {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if !cr.storming.Load() || cr.stormOver {
		return false
	}
	cr.redials.Add(1)
	cr.redialing.Add(1)
	go func() {
		defer cr.redials.Done()
		defer cr.redialing.Add(-1)
		cr.redial(dev)
	}()
	return true
}

// redial reconnects dev after a storm's kill, with the --storm-backoff
// policy, until it is connected or --storm-timeout has passed since the
// kill. Sends that were in flight on the old connection will never be
// acknowledged: their window slots are released.
func (cr *connsRun) redial(dev *device) {
	r := cr.r
	cfg := r.cfg
	deadline := time.Unix(0, cr.killAt).Add(cfg.StormTimeout)
	for attempt := 0; ; attempt++ {
		at := time.Now().Add(cr.backoff(attempt))
		if at.After(deadline) {
			at = deadline
		}
		if !sleepUntil(cr.ctx, at) || !time.Now().Before(deadline) {
			break
		}
		cr.dials.Add(1)
		c, err := r.dialDevice(cr.ctx, dev)
		if err != nil {
			cr.failed.Add(1)
			cr.failure(err)
			continue
		}
		u := dev.u
		u.mu.Lock()
		for pid := range u.pending {
			delete(u.pending, pid)
			<-u.slots
		}
		u.mu.Unlock()
		r.attach(dev, c)
		if cr.back[u.idx].Swap(time.Now().UnixNano()) == 0 {
			cr.backCount.Add(1)
		}
		return
	}
	cr.gaveUp.Add(1)
	dev.lost.Store(true)
	r.lostConns.Add(1)
	r.problem("%s: not reconnected after the storm", dev.id)
}

// failure counts a failed redial by kind.
func (cr *connsRun) failure(err error) {
	kind := failKind(err)
	cr.mu.Lock()
	if cr.failures == nil {
		cr.failures = map[string]int{}
	}
	cr.failures[kind]++
	cr.mu.Unlock()
}

// failKind sorts a dialDevice error by the step that failed and why.
func failKind(err error) string {
	msg := err.Error()
	why := "other"
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		why = "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		why = "connection reset"
	case errors.Is(err, io.EOF):
		why = "closed"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		why = "timeout"
	}
	switch {
	case strings.HasPrefix(msg, "dial "):
		return "TCP connect: " + why
	case strings.HasPrefix(msg, "send CONNECT"), strings.HasPrefix(msg, "read CONNACK"):
		return "no CONNACK: " + why
	case errors.Is(err, errRefused):
		return "CONNECT refused: " + msg[strings.LastIndex(msg, "code"):]
	case strings.Contains(msg, "SUBACK"), why == "timeout":
		return "no SUBACK: " + why
	}
	return "other: " + msg
}

// backoff is the wait before redial attempt k (0 is the first).
func (cr *connsRun) backoff(k int) time.Duration {
	const ceiling = 10 * time.Second
	k = min(k, 20)
	b := cr.r.cfg.StormBackoff
	if b == 0 { // paho's reconnect, which the SDK uses: at once, then 1s, 2s, ... 10s
		if k == 0 {
			return 0
		}
		return min(time.Second<<(k-1), ceiling)
	}
	return rand.N(min(b<<k, ceiling))
}

// stormResult is the reconnect storm after a kill -9 of parleyd. Times are
// from the kill.
type stormResult struct {
	Devices int `json:"devices"` // connected at the kill
	// RestartSeconds: until the new parleyd answered /readyz with 200.
	RestartSeconds float64 `json:"restart_seconds"`
	// FirstBackSeconds: until the first device had its SUBACK again.
	FirstBackSeconds float64 `json:"first_back_seconds"`
	// AllConnectedSeconds: until the last device had its SUBACK again.
	AllConnectedSeconds float64 `json:"all_connected_seconds"`
	// CaughtUpSeconds: until every device connected at the kill had every
	// message acknowledged before the last device was back (before and
	// during the storm). 0 when some never did (Incomplete).
	CaughtUpSeconds float64 `json:"caught_up_seconds"`
	Incomplete      int     `json:"incomplete_devices"`
	Reconnected     int64   `json:"reconnected"`
	GaveUp          int64   `json:"gave_up"`
	// NotBack counts the devices never connected again before
	// --storm-timeout (AllConnectedSeconds is then 0).
	NotBack int64 `json:"not_back"`
	// MaxOpenFDs is the most descriptors the new parleyd had open,
	// sampled every 500 ms.
	MaxOpenFDs  int64 `json:"parleyd_max_open_fds"`
	Dials       int64 `json:"dials"`
	FailedDials int64 `json:"failed_dials"`
	// Failures counts the failed dials by the step that failed and why.
	Failures map[string]int `json:"failures,omitempty"`
	// Redials' time from dial to SUBACK, the successful ones.
	RedialP50Ms float64 `json:"redial_p50_ms"`
	RedialP99Ms float64 `json:"redial_p99_ms"`
	// GET /readyz every 100 ms from the kill until caught up: probes,
	// those not 200 (including while parleyd was down), and those not 200
	// after the new parleyd first answered 200.
	ReadyzProbes            int     `json:"readyz_probes"`
	ReadyzFailed            int     `json:"readyz_failed"`
	ReadyzFailedAfterReady  int     `json:"readyz_failed_after_ready"`
	ReadyzTimeouts          int     `json:"readyz_timeouts"` // no answer within 1 s
	ReadyzLongestFailSecond float64 `json:"readyz_longest_failure_seconds"`
	// Live messages: sent from the kill to the catch-up, to devices that
	// were connected again when they were sent.
	Latency      latencies `json:"latency_ms"`
	SkippedSends int64     `json:"skipped_sends"`
}

// storm kills parleyd, starts it again on the same store and ports, and
// waits until every device that was connected is connected again and has
// received every message acknowledged until then (or --storm-timeout).
// The per-message figures are computed after the run by stormFigures.
func (cr *connsRun) storm(ctx context.Context) (*stormResult, error) {
	r, d := cr.r, cr.d
	out := &stormResult{}
	var devices []*device
	for _, u := range r.users {
		if dev := u.devices[0]; dev.c != nil && !dev.lost.Load() {
			devices = append(devices, dev)
		}
	}
	out.Devices = len(devices)
	cr.killAt = time.Now().UnixNano()
	cr.refusedBeforeStorm = r.refusedCount()
	cr.storming.Store(true)

	// /readyz every 100 ms, as a load balancer would probe.
	var readyAt atomic.Int64 // when the new parleyd first answered 200
	client := &http.Client{Timeout: time.Second}
	var failStart time.Time
	stopReadyz := every(100*time.Millisecond, func() {
		code, err := d.readyz(ctx, client)
		now := time.Now()
		out.ReadyzProbes++
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			out.ReadyzTimeouts++
		}
		if code == http.StatusOK {
			readyAt.CompareAndSwap(0, now.UnixNano())
			if !failStart.IsZero() {
				out.ReadyzLongestFailSecond = max(out.ReadyzLongestFailSecond, now.Sub(failStart).Seconds())
				failStart = time.Time{}
			}
			return
		}
		out.ReadyzFailed++
		if readyAt.Load() != 0 {
			out.ReadyzFailedAfterReady++
		}
		if failStart.IsZero() {
			failStart = now
		}
	})
	defer stopReadyz()
	stopFDs := every(500*time.Millisecond, cr.sampleFDs) // parleyd's open descriptors
	defer stopFDs()

	stopProgress := cr.stormProgress(len(devices))
	defer stopProgress()
	d.kill()
	if err := d.start(ctx); err != nil {
		return nil, fmt.Errorf("restart parleyd: %w", err)
	}
	out.RestartSeconds = time.Since(time.Unix(0, cr.killAt)).Seconds()

	deadline := time.Unix(0, cr.killAt).Add(r.cfg.StormTimeout)
	defer func() {
		// Redials still going give up at the deadline, within one dial
		// timeout; from now on a drop is a lost connection.
		cr.mu.Lock()
		cr.stormOver = true
		cr.mu.Unlock()
		cr.redials.Wait()
	}()
	for (cr.backCount.Load()+cr.gaveUp.Load() < int64(len(devices)) || cr.redialing.Load() > 0) &&
		time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	var lastBack int64
	for _, dev := range devices {
		lastBack = max(lastBack, cr.back[dev.u.idx].Load())
	}
	// What each device must have received: every message of its pair
	// (its peer's and its own echoes) acknowledged by lastBack. Messages
	// arrive in seq order, so a device has them all, at the latest, once
	// it has received as many messages with ascending seqs.
	// Refused sends (an error event after the PUBACK) are never delivered:
	// the counts are taken again until every device has its share.
	for pending := len(devices); pending > 0 && time.Now().Before(deadline) && ctx.Err() == nil; {
		acked := make([]int64, len(r.users))
		for _, u := range r.users {
			u.mu.Lock()
			for _, m := range u.sent {
				if m.ack != 0 && m.ack <= lastBack && !m.refused {
					acked[u.idx]++
				}
			}
			u.mu.Unlock()
		}
		pending = 0
		for _, dev := range devices {
			if dev.distinct.Load() < acked[dev.u.idx]+acked[r.tp.peer(dev.u.idx)] {
				pending++
			}
		}
		if pending > 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	cr.sampleFDs() // a short storm may end between two samples
	return out, nil
}

// sampleFDs counts parleyd's open descriptors.
func (cr *connsRun) sampleFDs() {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", cr.d.pid()))
	if err != nil {
		return
	}
	n := int64(len(ents))
	cr.fds.Store(n)
	for {
		m := cr.maxFDs.Load()
		if n <= m || cr.maxFDs.CompareAndSwap(m, n) {
			return
		}
	}
}

// stormProgress prints a line a second during the storm, on --progress:
// devices back, dials, sends acknowledged and skipped. It returns the
// function that stops it.
func (cr *connsRun) stormProgress(devices int) func() {
	w := cr.progress
	if w == nil {
		return func() {}
	}
	r := cr.r
	lastAck := r.acked.Load()
	return every(time.Second, func() {
		ack := r.acked.Load()
		fmt.Fprintf(w, "storm %3.0fs: back %d/%d, redialing %d, dials %d (%d failed), parleyd fds %d, acked %d/s, sends skipped %d, refused %d\n",
			time.Since(time.Unix(0, cr.killAt)).Seconds(), cr.backCount.Load(), devices, cr.redialing.Load(), cr.dials.Load(), cr.failed.Load(),
			cr.fds.Load(), ack-lastAck, cr.skipped.Load(), r.refusedCount())
		lastAck = ack
	})
}

// stormFigures completes out once every connection is closed: the time
// until all devices had every message acknowledged until the last one was
// back, and the latency of live messages during the storm.
func (cr *connsRun) stormFigures(out *stormResult) {
	r := cr.r
	out.Reconnected, out.GaveUp = cr.backCount.Load(), cr.gaveUp.Load()
	out.Dials, out.FailedDials = cr.dials.Load(), cr.failed.Load()
	cr.mu.Lock()
	out.Failures = cr.failures
	cr.mu.Unlock()
	out.RedialP50Ms, out.RedialP99Ms = ms(cr.redialLat.quantile(0.5)), ms(cr.redialLat.quantile(0.99))
	out.SkippedSends = cr.skipped.Load()
	var lastBack, firstBack int64
	for i := range cr.back {
		b := cr.back[i].Load()
		lastBack = max(lastBack, b)
		if b > 0 && (firstBack == 0 || b < firstBack) {
			firstBack = b
		}
	}
	if firstBack > 0 {
		out.FirstBackSeconds = float64(firstBack-cr.killAt) / 1e9
	}
	out.NotBack = int64(out.Devices) - out.Reconnected
	out.MaxOpenFDs = cr.maxFDs.Load()
	if lastBack > 0 && out.NotBack == 0 {
		out.AllConnectedSeconds = float64(lastBack-cr.killAt) / 1e9
	}
	caughtUp := lastBack
	for _, u := range r.users {
		dev := u.devices[0]
		if cr.back[u.idx].Load() == 0 {
			continue // not connected at the kill, or never back (gave up)
		}
		first := map[[2]int32]int64{}
		for i, m := range dev.recs {
			k := [2]int32{m.sender, m.n}
			if _, ok := first[k]; !ok {
				first[k] = dev.times[i]
			}
		}
		complete := true
		for _, s := range []int{u.idx, r.tp.peer(u.idx)} {
			for n, m := range r.users[s].sent {
				if m.ack == 0 || m.refused || m.ack > lastBack {
					continue
				}
				at, ok := first[[2]int32{int32(s), int32(n)}]
				if !ok {
					if complete && out.Incomplete < 5 {
						r.problem("%s: never received %s/d0's message %d, acknowledged %.3fs after the kill; the device was back %.3fs after the kill",
							dev.id, r.users[s].name, n, float64(m.ack-cr.killAt)/1e9, float64(cr.back[u.idx].Load()-cr.killAt)/1e9)
					}
					complete = false
					continue
				}
				caughtUp = max(caughtUp, at)
			}
		}
		if !complete {
			out.Incomplete++
		}
	}
	if out.Incomplete == 0 && out.NotBack == 0 && caughtUp > 0 {
		out.CaughtUpSeconds = float64(caughtUp-cr.killAt) / 1e9
	}
	end := caughtUp
	lat := new(histogram)
	for _, u := range r.users {
		dev := u.devices[0]
		back := cr.back[u.idx].Load()
		if back == 0 {
			continue
		}
		for i, m := range dev.recs {
			if int(m.sender) == u.idx {
				continue // echoes
			}
			sent := r.users[m.sender].sent
			if int(m.n) >= len(sent) || m.n < 0 {
				continue // a mismatch, counted by verify
			}
			t := sent[m.n].t
			if t >= back && t <= end {
				lat.record(dev.times[i] - t)
			}
		}
	}
	out.Latency = latenciesOf(lat)
}

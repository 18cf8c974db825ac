package main

import (
	"sort"
	"time"
)

// verdict is the end-of-run check of every delivery.
type verdict struct {
	// Expected counts (acknowledged message, device that should get it)
	// pairs; Delivered how many of them arrived at least once.
	Expected  int64 `json:"expected"`
	Delivered int64 `json:"delivered"`
	// Losses are expected pairs that never arrived, on devices whose
	// connections never dropped unexpectedly.
	Losses int64 `json:"losses"`
	// Missing are expected pairs that never arrived on devices that lost a
	// connection (the load generator does not reconnect them): a symptom
	// of the lost connection, which fails the run by itself.
	Missing int64 `json:"missing_on_lost_connections"`
	// Duplicates are arrivals of a message a device already had (QoS 1
	// redelivery, a catch-up after a reconnect resending what was not yet
	// acknowledged): normal in MQTT, reported but not an error.
	Duplicates int64 `json:"duplicates"`
	// Reorders are first arrivals of a message older than one the device
	// already had: by seq within the conversation (Parley), by counter per
	// sender (raw MQTT).
	Reorders int64 `json:"reorders"`
	// Mismatches are impossible arrivals: a message with a seq other than
	// the one another device saw for it, two messages with one seq, a
	// message of a conversation the device is not in, or a counter never
	// sent.
	Mismatches int64 `json:"mismatches"`
	// Unacked counts arrivals of messages whose send was never acknowledged
	// (in flight at a disconnect or at the end): not an error.
	Unacked int64 `json:"unacked_delivered"`
	// Refused counts acknowledged sends answered with an error event.
	Refused int64 `json:"refused"`
}

// verify checks, for every conversation and every device of its members,
// that each acknowledged message arrived exactly once and in order.
func (r *runner) verify() verdict {
	var v verdict
	tp := r.tp
	acked := make([][]bool, len(r.users))
	for i, u := range r.users {
		acked[i] = make([]bool, len(u.sent))
		for n, m := range u.sent {
			switch {
			case m.ack != 0 && m.refused:
				v.Refused++
			case m.ack != 0:
				acked[i][n] = true
			}
		}
	}
	for ci, c := range tp.convs {
		// Parley: the seq of each message, as first seen, and the message
		// of each seq.
		seqOf := map[[2]int32]int64{}
		msgOf := map[int64][2]int32{}
		for _, m := range c.members {
			for _, dev := range r.users[m].devices {
				if !dev.ever {
					continue
				}
				r.verifyDevice(&v, dev, ci, acked, seqOf, msgOf)
			}
		}
	}
	return v
}

func (r *runner) verifyDevice(v *verdict, dev *device, ci int, acked [][]bool, seqOf map[[2]int32]int64, msgOf map[int64][2]int32) {
	tp := r.tp
	c := tp.convs[ci]
	got := map[int32][]uint8{}
	for _, s := range c.members {
		got[int32(s)] = make([]uint8, len(r.users[s].sent))
	}
	var lastSeq int64
	lastN := map[int32]int32{}
	for _, m := range dev.recs {
		counts, ok := got[m.sender]
		if !ok || int(m.n) >= len(counts) || m.n < 0 {
			v.Mismatches++
			continue
		}
		if counts[m.n] < 255 {
			counts[m.n]++
		}
		if counts[m.n] > 1 {
			v.Duplicates++
			continue
		}
		key := [2]int32{m.sender, m.n}
		if r.mode == modeParley {
			if s, ok := seqOf[key]; !ok {
				if other, taken := msgOf[m.seq]; taken && other != key {
					v.Mismatches++
				}
				seqOf[key], msgOf[m.seq] = m.seq, key
			} else if s != m.seq {
				v.Mismatches++
			}
			if m.seq < lastSeq {
				v.Reorders++
			}
			lastSeq = max(lastSeq, m.seq)
		} else {
			if last, ok := lastN[m.sender]; ok && m.n < last {
				v.Reorders++
			}
			lastN[m.sender] = max(lastN[m.sender], m.n)
		}
	}
	for _, s := range c.members {
		counts := got[int32(s)]
		if !tp.receives(r.mode, dev.u.idx, s) {
			for _, k := range counts {
				if k > 0 {
					v.Mismatches++
				}
			}
			continue
		}
		for n, k := range counts {
			switch {
			case acked[s][n] && k == 0 && dev.lost.Load():
				v.Expected++
				v.Missing++
			case acked[s][n] && k == 0:
				v.Expected++
				v.Losses++
			case acked[s][n]:
				v.Expected++
				v.Delivered++
			case k > 0:
				v.Unacked++
			}
		}
	}
}

// catchup describes how long devices that were offline took to receive
// what they missed.
type catchup struct {
	Devices int `json:"devices"`
	// Messages missed in total, and per device on average.
	Messages  int64   `json:"messages"`
	PerDevice float64 `json:"per_device"`
	// From the start of the reconnect to the arrival of the last missed
	// message, over the devices: median and maximum, in milliseconds.
	P50Ms float64 `json:"p50_ms"`
	MaxMs float64 `json:"max_ms"`
	// Incomplete counts devices that never received all they missed.
	Incomplete int `json:"incomplete"`
}

// catchup measures, for each device that went offline, the time from its
// reconnect to the arrival of the last message it missed: every message of
// its conversation meant for it, acknowledged before the reconnect began, and
// not received before it went down.
func (r *runner) catchup() *catchup {
	var (
		out   catchup
		times []time.Duration
	)
	for _, u := range r.users {
		if !u.offline {
			continue
		}
		for _, dev := range u.devices {
			if dev.reconnect == 0 || dev.c == nil {
				continue
			}
			out.Devices++
			before := map[[2]int32]bool{}
			for _, m := range dev.recs[:dev.wentDown] {
				before[[2]int32{m.sender, m.n}] = true
			}
			missed := map[[2]int32]bool{}
			for _, s := range r.tp.convs[r.tp.convOf[u.idx]].members {
				if !r.tp.receives(r.mode, u.idx, s) {
					continue
				}
				for n, m := range r.users[s].sent {
					key := [2]int32{int32(s), int32(n)}
					if m.ack != 0 && !m.refused && m.ack < dev.reconnect && !before[key] {
						missed[key] = true
					}
				}
			}
			out.Messages += int64(len(missed))
			var last int64
			left := len(missed)
			for i, m := range dev.recs[dev.wentDown:] {
				key := [2]int32{m.sender, m.n}
				if missed[key] {
					delete(missed, key)
					left--
					last = dev.times[dev.wentDown+i]
				}
			}
			if left > 0 {
				out.Incomplete++
				continue
			}
			if last > 0 {
				times = append(times, time.Duration(last-dev.reconnect))
			} else {
				times = append(times, 0)
			}
		}
	}
	if out.Devices == 0 {
		return nil
	}
	out.PerDevice = float64(out.Messages) / float64(out.Devices)
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	if len(times) > 0 {
		out.P50Ms = ms(times[(len(times)-1)/2].Nanoseconds())
		out.MaxMs = ms(times[len(times)-1].Nanoseconds())
	}
	return &out
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

package main

import (
	"math"
	"math/bits"
	"sync/atomic"
)

// subBits sets the histogram's precision: 2^subBits buckets per power of two,
// so a recorded value is known to within 1/128 (0.8%).
const subBits = 7

// histogram is a log-linear (HDR-style) histogram of non-negative int64
// values, safe for concurrent use. Values below 128 are exact; above, each
// power of two is split into 128 buckets. Max is exact.
type histogram struct {
	counts [(64 - subBits) << subBits]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
}

func bucketOf(v int64) int {
	if v < 1<<subBits {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBits - 1
	return (shift+1)<<subBits + int(v>>shift) - 1<<subBits
}

// bucketHigh is the largest value that falls in bucket i.
func bucketHigh(i int) int64 {
	block, off := i>>subBits, int64(i&(1<<subBits-1))
	if block == 0 {
		return off
	}
	shift := block - 1
	return (1<<subBits+off+1)<<shift - 1
}

// record adds v (negative values count as 0).
func (h *histogram) record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// count returns the number of recorded values.
func (h *histogram) count() uint64 { return h.n.Load() }

// quantile returns the value below or at which a share q (0..1) of the
// recorded values fall: the top of its bucket, capped at the maximum. It is
// 0 for an empty histogram.
func (h *histogram) quantile(q float64) int64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return min(bucketHigh(i), h.max.Load())
		}
	}
	return h.max.Load()
}

package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// hist is a latency histogram in microseconds with log-linear buckets:
// exact below 128 µs, then 64 buckets per power of two, so a percentile is
// off by at most 1/128 of its value (reported at the bucket's middle). Any
// number of goroutines may record into one hist at once.
type hist struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Uint64 // µs
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits // exact values below this
	histHalf    = histSub / 2
	// histBuckets covers up to 2^40 µs (12 days).
	histBuckets = histSub + (40-histSubBits)*histHalf
)

// bucketOf is the bucket of v µs.
func bucketOf(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits // v>>e is in [64, 128)
	i := histSub + (e-1)*histHalf + int(v>>e) - histHalf
	return min(i, histBuckets-1)
}

// bucketRange is the smallest and largest value of bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < histSub {
		return uint64(i), uint64(i)
	}
	e := (i-histSub)/histHalf + 1
	m := uint64((i-histSub)%histHalf + histHalf)
	return m << e, (m+1)<<e - 1
}

// record adds one latency.
func (h *hist) record(d time.Duration) {
	v := uint64(max(d.Microseconds(), 0))
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// count is how many latencies were recorded.
func (h *hist) count() uint64 { return h.n.Load() }

// percentile returns the latency below or at which a fraction q (0..1) of
// the recorded ones lie: the middle of the bucket holding the
// ceil(q·n)-th smallest, never above the maximum. It is 0 when empty.
func (h *hist) percentile(q float64) time.Duration {
	var total uint64
	var counts [histBuckets]uint64
	for i := range counts {
		counts[i] = h.counts[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.999999)
	rank = min(max(rank, 1), total)
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			return time.Duration(min(lo+(hi-lo)/2, h.max.Load())) * time.Microsecond
		}
	}
	return time.Duration(h.max.Load()) * time.Microsecond
}

// maxLatency is the largest latency recorded.
func (h *hist) maxLatency() time.Duration { return time.Duration(h.max.Load()) * time.Microsecond }

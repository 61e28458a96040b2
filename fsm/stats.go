package fsm

import (
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// HistogramBoundsMs are the upper bounds of the wait, handle and response
// time histograms in MerchantStats; one more bucket counts the rest.
var HistogramBoundsMs = []int64{1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000}

// Surge window: consults are counted in surgeBuckets buckets of
// surgeBucketMs of log time; their sum is the inflow of the last minute.
const (
	surgeBucketMs = 5_000
	surgeBuckets  = 12
)

func newStats() *pb.MerchantStats {
	n := len(HistogramBoundsMs) + 1
	return &pb.MerchantStats{
		EndedByReason:     make([]uint64, len(pb.EndReason_name)),
		WaitMsBuckets:     make([]uint64, n),
		HandleMsBuckets:   make([]uint64, n),
		ResponseMsBuckets: make([]uint64, n),
		Surge:             pb.SurgeLevel_SURGE_LEVEL_NORMAL,
		SurgeBucket:       make([]int64, surgeBuckets),
		SurgeCount:        make([]uint32, surgeBuckets),
	}
}

func observe(buckets []uint64, sum *uint64, ms int64) {
	if ms < 0 {
		ms = 0
	}
	*sum += uint64(ms)
	for i, b := range HistogramBoundsMs {
		if ms <= b {
			buckets[i]++
			return
		}
	}
	buckets[len(buckets)-1]++
}

// countConsult records a consult in the merchant's counters and surge window.
func (f *FSM) countConsult(m *merchant) {
	m.stats.Consults++
	b := f.cur.now / surgeBucketMs
	i := int(b % surgeBuckets)
	if m.stats.SurgeBucket[i] != b {
		m.stats.SurgeBucket[i] = b
		m.stats.SurgeCount[i] = 0
	}
	m.stats.SurgeCount[i]++
	f.updateSurge(m)
}

// inflow is the number of consults in the last minute of log time.
func (m *merchant) inflow(now int64) uint64 {
	b := now / surgeBucketMs
	var n uint64
	for i, at := range m.stats.SurgeBucket {
		if at > b-surgeBuckets && at <= b {
			n += uint64(m.stats.SurgeCount[i])
		}
	}
	return n
}

// surgeLevel compares a minute's inflow with the baseline per minute:
// warning at 3x, scale at 5x, breaker at 8x.
func surgeLevel(inflow uint64, baseline uint32) pb.SurgeLevel {
	b := uint64(baseline)
	switch {
	case b == 0:
		return pb.SurgeLevel_SURGE_LEVEL_NORMAL
	case inflow >= 8*b:
		return pb.SurgeLevel_SURGE_LEVEL_BREAKER
	case inflow >= 5*b:
		return pb.SurgeLevel_SURGE_LEVEL_SCALE
	case inflow >= 3*b:
		return pb.SurgeLevel_SURGE_LEVEL_WARNING
	}
	return pb.SurgeLevel_SURGE_LEVEL_NORMAL
}

func (f *FSM) updateSurge(m *merchant) {
	level := surgeLevel(m.inflow(f.cur.now), m.settings.SurgeBaselinePerMinute)
	if level != pb.SurgeLevel_SURGE_LEVEL_NORMAL {
		f.elevated[m.id] = true
	} else {
		delete(f.elevated, m.id)
	}
	if level != m.stats.Surge {
		m.stats.Surge = level
		f.emit(event{eventFacts: eventFacts{kind: pb.EventKind_EVENT_KIND_SURGE_CHANGED, surge: level}, merchant: m.id})
	}
}

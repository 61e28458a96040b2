// Package gctune gives the Go garbage collector a fixed amount of heap
// headroom instead of a fixed ratio: after every collection it sets the
// collector's target (runtime/debug.SetGCPercent) so that the next one
// starts when the heap has grown by about the headroom beyond what the
// last one found live, but never sooner than the runtime's default
// (GOGC=100, the heap doubling).
//
// Why: a frontdeskd node under load keeps a modest live heap (90–190 MB
// under W1 at 256–512 clients) and allocates 70+ MB a second, so at
// GOGC=100 it collects about once a second. Each collection's concurrent
// mark takes tens of milliseconds of CPU, on cores the node's Raft
// pipeline needs, and slows every Raft entry in flight on that node.
// Measured under W1: most bursts of slow calls overlapped a collection on
// some node, and with the nodes' collector off they were gone; W1's p99
// was 2.5–3× its median (BENCHMARKS.md, "The collector's bursts"). With a
// headroom of 512 MiB the same node collects every few seconds. Once the
// live heap is large (a node holding a million sessions) the ratio wins
// again and nothing changes: 100% of a large heap is more than the
// headroom.
//
// It adds nothing to an idle process: it runs only when a collection has
// run (a finalizer on a sentinel object, armed again after each), and
// wakes nothing in between. It does not override an operator's choice: a
// process whose environment sets GOGC keeps it. GOMEMLIMIT, if set, still
// bounds the heap, whatever the target: the runtime collects sooner when
// the limit is near.
package gctune

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

const (
	// MinPercent is the lowest target set: the runtime's own default.
	MinPercent = 100
	// MaxPercent bounds the target for a tiny live heap (a node just
	// started): a few MB live and a GiB of headroom would ask for 30,000%.
	MaxPercent = 10_000
)

// ErrGOGCSet is returned by Start when the environment sets GOGC: the
// operator's target stands and no tuner runs.
var ErrGOGCSet = errors.New("gctune: GOGC is set in the environment; its target is kept")

// Tuner adjusts the collector's target after every collection until Stop.
type Tuner struct {
	headroom uint64
	stopped  atomic.Bool
	before   int // the target when Start ran, restored by Stop

	mu      sync.Mutex
	samples []metrics.Sample
	percent int // the target last set
	sets    atomic.Int64
}

// Start begins tuning for headroom bytes (must be positive). getenv
// (os.Getenv in a process; nil for none) is asked for GOGC: if it is set,
// Start returns ErrGOGCSet and tunes nothing. Only one Tuner should run in
// a process: the collector's target is process-wide.
func Start(headroom uint64, getenv func(string) string) (*Tuner, error) {
	if headroom == 0 {
		return nil, errors.New("gctune: headroom must be positive")
	}
	if getenv != nil && getenv("GOGC") != "" {
		return nil, ErrGOGCSet
	}
	t := &Tuner{
		headroom: headroom,
		samples:  []metrics.Sample{{Name: "/gc/heap/live:bytes"}},
	}
	t.before = debug.SetGCPercent(MinPercent)
	t.percent = MinPercent
	t.adjust() // from whatever the last collection (if any) found live
	t.arm()
	return t, nil
}

// Stop ends tuning and restores the target the process had before Start.
// It is safe to call more than once and on a nil Tuner.
func (t *Tuner) Stop() {
	if t == nil || t.stopped.Swap(true) {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	debug.SetGCPercent(t.before)
}

// Percent is the target the Tuner last set.
func (t *Tuner) Percent() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.percent
}

// Adjustments counts the targets set since Start (unchanged ones are not set).
func (t *Tuner) Adjustments() int64 { return t.sets.Load() }

// sentinel is what the finalizer hangs on. It holds a pointer, so it is
// never packed with other small objects by the tiny allocator (whose
// objects' finalizers may not run).
type sentinel struct {
	_ *int
	_ [8]byte
}

// arm registers a finalizer that runs once the next collection finds a new
// sentinel unreachable: it adjusts the target and arms again.
func (t *Tuner) arm() {
	s := &sentinel{}
	runtime.SetFinalizer(s, func(*sentinel) {
		if t.stopped.Load() {
			return
		}
		t.adjust()
		t.arm()
	})
}

// adjust sets the target for the live heap the last collection found.
func (t *Tuner) adjust() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped.Load() {
		return
	}
	metrics.Read(t.samples)
	if t.samples[0].Value.Kind() != metrics.KindUint64 {
		return // not offered by this runtime: leave the target as is
	}
	p := PercentFor(t.samples[0].Value.Uint64(), t.headroom)
	// Leave a target within 5% alone: each set is cheap, but not free, and
	// the live heap moves a little with every cycle.
	if diff := p - t.percent; max(diff, -diff)*20 > t.percent {
		debug.SetGCPercent(p)
		t.percent = p
		t.sets.Add(1)
	}
}

// PercentFor is the target that lets a heap with live bytes grow by
// headroom before the next collection, within [MinPercent, MaxPercent]. A
// live heap of 0 (no collection yet) gets MaxPercent.
func PercentFor(live, headroom uint64) int {
	if live == 0 {
		return MaxPercent
	}
	p := math.Ceil(100 * float64(headroom) / float64(live))
	return int(min(max(p, MinPercent), MaxPercent))
}

// ParseSize reads a byte count: a whole number with an optional unit B,
// KiB, MiB, GiB or TiB (also K, KB, M, MB, G, GB, T, TB, read as the binary
// units), case-insensitive, as "1GiB" or "512MiB". "0" is 0.
func ParseSize(s string) (uint64, error) {
	str := strings.TrimSpace(s)
	i := 0
	for i < len(str) && str[i] >= '0' && str[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q: want a whole number with an optional unit (B, KiB, MiB, GiB, TiB)", s)
	}
	n, err := strconv.ParseUint(str[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	var shift uint
	switch strings.ToLower(strings.TrimSpace(str[i:])) {
	case "", "b":
	case "k", "kb", "kib":
		shift = 10
	case "m", "mb", "mib":
		shift = 20
	case "g", "gb", "gib":
		shift = 30
	case "t", "tb", "tib":
		shift = 40
	default:
		return 0, fmt.Errorf("size %q: unknown unit %q (B, KiB, MiB, GiB, TiB)", s, str[i:])
	}
	if n > math.MaxUint64>>shift {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n << shift, nil
}

// FormatSize writes n the way ParseSize reads it, in the largest unit that
// divides it.
func FormatSize(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	u := 0
	for u < len(units)-1 && n != 0 && n%1024 == 0 {
		n /= 1024
		u++
	}
	return strconv.FormatUint(n, 10) + units[u]
}

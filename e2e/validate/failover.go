package validate

import (
	"fmt"
	"slices"
	"time"

	"github.com/frontdeskhq/frontdesk/e2e/model"
)

// Fault is when a fault hit a shard, in History time (ns since its start).
type Fault struct {
	Kind  string `json:"kind"`
	Shard uint32 `json:"shard"`
	At    int64  `json:"at_ns"`
}

// Window is how long a fault kept its shard from taking writes: from the
// fault to the answer of the first write on the shard called after it.
type Window struct {
	Fault
	Took time.Duration `json:"took_ns"`
	// Seen is false when no write was called on the shard after the fault
	// and answered.
	Seen bool `json:"seen"`
}

// Failover measures the window of each fault. A write "answered" is one
// with a definite answer from the shard (a result, BUSY, or a rejection
// by the state machine), which only a leader gives.
func Failover(faults []Fault, h *model.History) []Window {
	ops := h.Ops()
	out := make([]Window, 0, len(faults))
	for _, f := range faults {
		w := Window{Fault: f}
		for _, op := range ops {
			if op.Shard != f.Shard || op.Input.Kind.Read() || !op.Definite() || op.Call < f.At || op.Client == finalClient {
				continue
			}
			if d := time.Duration(op.Return - f.At); !w.Seen || d < w.Took {
				w.Took, w.Seen = d, true
			}
		}
		out = append(out, w)
	}
	return out
}

// Summary is the distribution of some windows.
type Summary struct {
	N             int           `json:"n"`
	Missing       int           `json:"missing,omitempty"` // windows with no write seen
	P50, P99, Max time.Duration `json:"-"`
}

func (s Summary) String() string {
	if s.N == 0 {
		return "none"
	}
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	str := fmt.Sprintf("n=%d p50=%v p99=%v max=%v", s.N, r(s.P50), r(s.P99), r(s.Max))
	if s.Missing > 0 {
		str += fmt.Sprintf(" (%d without a write after)", s.Missing)
	}
	return str
}

// Summarize gives p50/p99/max of the windows of the given kinds (all
// kinds when none is named).
func Summarize(ws []Window, kinds ...string) Summary {
	var ds []time.Duration
	var s Summary
	for _, w := range ws {
		if len(kinds) > 0 && !slices.Contains(kinds, w.Kind) {
			continue
		}
		if !w.Seen {
			s.Missing++
			continue
		}
		ds = append(ds, w.Took)
	}
	s.N = len(ds)
	if s.N == 0 {
		return s
	}
	slices.Sort(ds)
	s.P50 = ds[(len(ds)-1)/2]
	s.P99 = ds[(len(ds)*99-1)/100]
	s.Max = ds[len(ds)-1]
	return s
}

package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/frontdeskhq/frontdesk/internal/localnode"
)

// procUsage is what fdbench reports per process.
type procUsage struct {
	Name     string  `json:"name"`
	PID      int     `json:"pid"`
	CPUCores float64 `json:"cpu_cores"` // CPU seconds per second of the window
	RSSMiB   float64 `json:"rss_mib"`   // at the end of the window
	Err      string  `json:"error,omitempty"`
}

// procWatch measures processes' CPU over a window.
type procWatch struct {
	names []string
	pids  []int
	t0    []uint64
	ok    []bool
	at    time.Time
}

// watchProcs starts a window for the named processes.
func watchProcs(names []string, pids []int) *procWatch {
	w := &procWatch{names: names, pids: pids, t0: make([]uint64, len(pids)), ok: make([]bool, len(pids)), at: time.Now()}
	for i, pid := range pids {
		t, err := localnode.CPUTicks(pid)
		w.t0[i], w.ok[i] = t, err == nil
	}
	return w
}

// stop ends the window and reports each process.
func (w *procWatch) stop() []procUsage {
	secs := time.Since(w.at).Seconds()
	out := make([]procUsage, len(w.pids))
	for i, pid := range w.pids {
		u := procUsage{Name: w.names[i], PID: pid}
		t, err := localnode.CPUTicks(pid)
		if err == nil && w.ok[i] && secs > 0 {
			u.CPUCores = float64(t-w.t0[i]) / localnode.ClockTicks / secs
		}
		rss, err2 := localnode.RSSBytes(pid)
		u.RSSMiB = float64(rss) / (1 << 20)
		if err := firstErr(err, err2); err != nil || !w.ok[i] {
			u.Err = fmt.Sprint("reading /proc: ", err)
		}
		out[i] = u
	}
	return out
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// loadAvg is /proc/loadavg without its newline ("" if unreadable).
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}

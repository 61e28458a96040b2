package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// cpuTicks is a process's user plus system CPU time, in clock ticks.
func cpuTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// fields are counted after its closing one. utime and stime are fields
	// 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name, want at least 13", pid, len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	return utime + stime, nil
}

// rssMiB is a process's resident set size (VmRSS) in MiB.
func rssMiB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: VmRSS %q", pid, rest)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

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
		t, err := cpuTicks(pid)
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
		t, err := cpuTicks(pid)
		if err == nil && w.ok[i] && secs > 0 {
			u.CPUCores = float64(t-w.t0[i]) / clockTicks / secs
		}
		rss, err2 := rssMiB(pid)
		u.RSSMiB = rss
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

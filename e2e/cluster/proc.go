package cluster

import "github.com/frontdeskhq/frontdesk/internal/localnode"

// PID is node i's process id, or 0 when it is not running.
func (c *Local) PID(i int) int {
	return c.Nodes[i].proc.Pid()
}

// RSSBytes is the resident set size of process pid, from /proc (Linux).
func RSSBytes(pid int) (uint64, error) { return localnode.RSSBytes(pid) }

// CPUSeconds is the user plus system CPU time process pid has used, from
// /proc/<pid>/stat (Linux).
func CPUSeconds(pid int) (float64, error) {
	t, err := localnode.CPUTicks(pid)
	return float64(t) / localnode.ClockTicks, err
}

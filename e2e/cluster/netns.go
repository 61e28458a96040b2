package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Network namespaces give each node of a local cluster its own network
// stack and IP address, so that a test can cut nodes off from each other
// while the test itself still reaches every node: the way to partition
// processes on one machine without touching the code under test.
//
//	test (host namespace) ── veth ──┐
//	                                 hub namespace: bridge br0
//	node1 namespace: eth0 10.213.N.1 ─┤
//	node2 namespace: eth0 10.213.N.2 ─┤
//	...                               ┘ host side 10.213.N.254
//
// The bridge lives in its own namespace so that the host's firewall
// (Docker sets FORWARD to DROP) never sees the nodes' traffic. A partition
// is a pair of blackhole routes per cut link, added inside the two nodes'
// namespaces: packets between them vanish, as on a real network, while
// both still answer the test. It needs root and iproute2 (`ip`).
//
// Each cluster takes a free subnet number N (1..250). A lock file under
// os.TempDir() records the pid owning N; namespaces left by a test process
// that died are removed by the next one that wants N.

// ErrUnsupported: the driver cannot inject this fault here.
var ErrUnsupported = errors.New("cluster: fault not supported by this driver")

// NetnsAvailable reports whether network namespaces can be used: nil, or
// why not.
func NetnsAvailable() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("network namespaces need iproute2 (`ip`)")
	}
	name := fmt.Sprintf("fdprobe%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add: %v: %s", err, strings.TrimSpace(string(out)))
	}
	_ = exec.Command("ip", "netns", "del", name).Run()
	return nil
}

// netns is the namespaces and links of one cluster.
type netns struct {
	n     int // subnet number
	nodes int
	lock  string

	mu  sync.Mutex
	cut map[[2]int]bool // blackholed links, i < j
}

var netnsLockDir = filepath.Join(os.TempDir(), "frontdesk-e2e-netns")

// newNetns sets up namespaces for nodes nodes and returns them.
func newNetns(nodes int) (*netns, error) {
	if nodes < 1 || nodes > 200 {
		return nil, fmt.Errorf("cluster: %d nodes do not fit a netns subnet", nodes)
	}
	if err := os.MkdirAll(netnsLockDir, 0o755); err != nil {
		return nil, err
	}
	for n := 1; n <= 250; n++ {
		lock := filepath.Join(netnsLockDir, strconv.Itoa(n))
		if !claim(lock) {
			continue
		}
		ns := &netns{n: n, nodes: nodes, lock: lock, cut: map[[2]int]bool{}}
		ns.remove() // leftovers of a dead owner, if any
		if err := ns.setup(); err != nil {
			ns.close()
			return nil, err
		}
		return ns, nil
	}
	return nil, errors.New("cluster: no free netns subnet")
}

// claim takes the lock file for a subnet if it is free or its owner is
// dead.
func claim(lock string) bool {
	for range 2 {
		f, err := os.OpenFile(lock, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprint(f, os.Getpid())
			f.Close()
			return true
		}
		b, rerr := os.ReadFile(lock)
		if rerr != nil {
			return false
		}
		pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
		if perr == nil && pid > 0 && syscall.Kill(pid, 0) != nil {
			_ = os.Remove(lock) // owner is dead: take it over
			continue
		}
		return false
	}
	return false
}

func (ns *netns) hub() string         { return fmt.Sprintf("fdnet%d-hub", ns.n) }
func (ns *netns) node(i int) string   { return fmt.Sprintf("fdnet%d-n%d", ns.n, i+1) }
func (ns *netns) hostLink() string    { return fmt.Sprintf("fdnet%dh", ns.n) }
func (ns *netns) ip(i int) string     { return fmt.Sprintf("10.213.%d.%d", ns.n, i+1) }
func (ns *netns) wrap(i int) []string { return []string{"ip", "netns", "exec", ns.node(i)} }
func (ns *netns) hostIP() string      { return fmt.Sprintf("10.213.%d.254", ns.n) }

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (ns *netns) setup() error {
	hub := ns.hub()
	steps := [][]string{
		{"netns", "add", hub},
		{"-n", hub, "link", "set", "lo", "up"},
		{"-n", hub, "link", "add", "br0", "type", "bridge"},
		{"-n", hub, "link", "set", "br0", "up"},
		{"link", "add", ns.hostLink(), "type", "veth", "peer", "name", "host", "netns", hub},
		{"-n", hub, "link", "set", "host", "master", "br0", "up"},
		{"addr", "add", ns.hostIP() + "/24", "dev", ns.hostLink()},
		{"link", "set", ns.hostLink(), "up"},
	}
	for i := 0; i < ns.nodes; i++ {
		nd, peer := ns.node(i), fmt.Sprintf("n%d", i+1)
		steps = append(steps,
			[]string{"netns", "add", nd},
			[]string{"-n", nd, "link", "set", "lo", "up"},
			[]string{"link", "add", "eth0", "netns", nd, "type", "veth", "peer", "name", peer, "netns", hub},
			[]string{"-n", hub, "link", "set", peer, "master", "br0", "up"},
			[]string{"-n", nd, "addr", "add", ns.ip(i) + "/24", "dev", "eth0"},
			[]string{"-n", nd, "link", "set", "eth0", "up"},
		)
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			return fmt.Errorf("cluster: netns setup: %w", err)
		}
	}
	return nil
}

// isolate cuts node i off from every other node.
func (ns *netns) isolate(i int) error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	for j := 0; j < ns.nodes; j++ {
		if j == i {
			continue
		}
		k := [2]int{min(i, j), max(i, j)}
		if ns.cut[k] {
			continue
		}
		if err := ipCmd("-n", ns.node(i), "route", "add", "blackhole", ns.ip(j)+"/32"); err != nil {
			return err
		}
		if err := ipCmd("-n", ns.node(j), "route", "add", "blackhole", ns.ip(i)+"/32"); err != nil {
			_ = ipCmd("-n", ns.node(i), "route", "del", "blackhole", ns.ip(j)+"/32")
			return err
		}
		ns.cut[k] = true
	}
	return nil
}

// heal restores every cut link.
func (ns *netns) heal() error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	var errs []error
	for k := range ns.cut {
		i, j := k[0], k[1]
		errs = append(errs,
			ipCmd("-n", ns.node(i), "route", "del", "blackhole", ns.ip(j)+"/32"),
			ipCmd("-n", ns.node(j), "route", "del", "blackhole", ns.ip(i)+"/32"))
		delete(ns.cut, k)
	}
	return errors.Join(errs...)
}

// remove deletes the namespaces and the host's link (quietly: some may not
// exist), killing any process left inside a node's namespace (the nodes of
// a test process that died without cleaning up).
func (ns *netns) remove() {
	_ = exec.Command("ip", "link", "del", ns.hostLink()).Run()
	for i := 0; i < 200; i++ {
		if out, err := exec.Command("ip", "netns", "pids", ns.node(i)).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if exec.Command("ip", "netns", "del", ns.node(i)).Run() != nil && i >= ns.nodes {
			break
		}
	}
	_ = exec.Command("ip", "netns", "del", ns.hub()).Run()
}

// close removes everything and gives the subnet back.
func (ns *netns) close() {
	ns.remove()
	_ = os.Remove(ns.lock)
}

// Package cluster runs real frontdeskd clusters for tests: local processes
// on 127.0.0.1 (always available). Each node is a separate OS process with
// its own data dir and ports, so kills, pauses and restarts are real.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/internal/localnode"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

// Binary builds frontdeskd once per test process and returns its path.
// Call Cleanup from TestMain to remove it.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "frontdesk-e2e-bin-")
		if buildErr != nil {
			return
		}
		buildBin, buildErr = localnode.Build(buildDir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// Cleanup removes the built binary.
func Cleanup() {
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
}

// Options shape a local cluster.
type Options struct {
	Shards int           // --shards (default 16)
	Tick   time.Duration // --tick (default 1s)
	Args   []string      // extra flags for every node
	// Host, when set, is node i's IP address (default 127.0.0.1): all of
	// the node's listeners bind to it and it advertises it.
	Host func(i int) string
	// Wrap, when set, is a command prefix that runs node i's process, e.g.
	// "ip netns exec <ns>" (it must exec the node, keeping the pid).
	Wrap func(i int) []string
}

// Node is one frontdeskd process.
type Node struct {
	ID                            string
	DataDir                       string
	APIAddr, RaftAddr, GossipAddr string
	LogPath                       string
	args                          []string // flags
	proc                          localnode.Proc
}

// Local is a cluster of frontdeskd processes on 127.0.0.1.
type Local struct {
	t     testing.TB
	bin   string
	opts  Options
	Nodes []*Node
}

// freePort reserves a free TCP port on 127.0.0.1, also free for UDP
// (gossip), never one handed out before in this process.
func freePort(t testing.TB) int {
	t.Helper()
	ports, err := localnode.FreePorts("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	return ports[0]
}

// StartLocal starts n nodes that form a cluster with --bootstrap-expect=n.
// The processes are killed when the test ends; their logs stay in the
// test's temp dir and are printed on failure.
func StartLocal(t testing.TB, n int, opts Options) *Local {
	t.Helper()
	if opts.Shards == 0 {
		opts.Shards = 16
	}
	if opts.Tick == 0 {
		opts.Tick = time.Second
	}
	c := &Local{t: t, bin: Binary(t), opts: opts}
	root := t.TempDir()
	var gossip []string
	for i := 0; i < n; i++ {
		host := "127.0.0.1"
		if opts.Host != nil {
			host = opts.Host(i)
		}
		nd := &Node{
			ID:         fmt.Sprintf("node%d", i+1),
			DataDir:    filepath.Join(root, fmt.Sprintf("node%d", i+1)),
			APIAddr:    net.JoinHostPort(host, strconv.Itoa(freePort(t))),
			RaftAddr:   net.JoinHostPort(host, strconv.Itoa(freePort(t))),
			GossipAddr: net.JoinHostPort(host, strconv.Itoa(freePort(t))),
			LogPath:    filepath.Join(root, fmt.Sprintf("node%d.log", i+1)),
		}
		gossip = append(gossip, nd.GossipAddr)
		c.Nodes = append(c.Nodes, nd)
	}
	for _, nd := range c.Nodes {
		nd.args = append([]string{
			"--id", nd.ID, "--data-dir", nd.DataDir, "--api-addr", nd.APIAddr, "--raft-addr", nd.RaftAddr,
			"--insecure", // test clusters on loopback or the test's own network namespaces
			"--gossip-addr", nd.GossipAddr, "--join", strings.Join(gossip, ","),
			"--bootstrap-expect", strconv.Itoa(n), "--shards", strconv.Itoa(opts.Shards),
			"--tick", opts.Tick.String(), "--log-level", "info",
		}, opts.Args...)
	}
	for i := range c.Nodes {
		c.Start(i)
	}
	t.Cleanup(func() {
		for i := range c.Nodes {
			c.Kill(i)
		}
		if t.Failed() {
			for _, nd := range c.Nodes {
				t.Logf("---- %s log (%s), last lines:\n%s", nd.ID, nd.LogPath, localnode.Tail(nd.LogPath, 60))
			}
		}
	})
	return c
}

// Start starts (or restarts) node i with its data dir and ports.
func (c *Local) Start(i int) {
	c.t.Helper()
	nd := c.Nodes[i]
	argv := append([]string{c.bin}, nd.args...)
	if c.opts.Wrap != nil {
		argv = append(c.opts.Wrap(i), argv...)
	}
	nd.proc.Argv, nd.proc.LogPath = argv, nd.LogPath
	if err := nd.proc.Start(); err != nil {
		c.t.Fatalf("start %s: %v", nd.ID, err)
	}
}

// Running reports whether node i's process is alive.
func (c *Local) Running(i int) bool { return c.Nodes[i].proc.Running() }

// Kill sends SIGKILL to node i and waits for it to exit.
func (c *Local) Kill(i int) { c.signal(i, syscall.SIGKILL, 10*time.Second) }

// Stop sends SIGTERM to node i and waits up to 40 s for a clean exit.
func (c *Local) Stop(i int) { c.signal(i, syscall.SIGTERM, 40*time.Second) }

// Pause stops node i with SIGSTOP; Resume continues it.
func (c *Local) Pause(i int) { _ = c.Nodes[i].proc.Send(syscall.SIGSTOP) }

// Resume continues a paused node.
func (c *Local) Resume(i int) { _ = c.Nodes[i].proc.Send(syscall.SIGCONT) }

func (c *Local) signal(i int, sig syscall.Signal, wait time.Duration) {
	if err := c.Nodes[i].proc.Signal(sig, wait); err != nil {
		c.t.Errorf("%s %v", c.Nodes[i].ID, err)
	}
}

// APIAddrs lists every node's API address (running or not).
func (c *Local) APIAddrs() []string {
	out := make([]string, len(c.Nodes))
	for i, nd := range c.Nodes {
		out[i] = nd.APIAddr
	}
	return out
}

// WaitReady waits until every running node answers /readyz with 200. A
// node that exits meanwhile fails the test at once, with its log.
func (c *Local) WaitReady(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for i, nd := range c.Nodes {
		if !c.Running(i) {
			continue
		}
		switch err := localnode.WaitReady(context.Background(), &nd.proc, nd.APIAddr, deadline); {
		case errors.Is(err, localnode.ErrExited):
			c.t.Fatalf("%s exited while waiting for it to be ready; its log, last lines:\n%s", nd.ID, localnode.Tail(nd.LogPath, 30))
		case err != nil:
			c.t.Fatalf("%s not ready after %v (last: %v); its log, last lines:\n%s", nd.ID, timeout, err, localnode.Tail(nd.LogPath, 30))
		}
	}
}

// ShardMap asks node i for the shard map.
func (c *Local) ShardMap(ctx context.Context, i int) (*pb.GetShardMapResponse, error) {
	return localnode.ShardMap(ctx, c.Nodes[i].APIAddr)
}

// LeaderOf returns the index of the node leading a shard, as the running
// nodes' own replicas report it: of several that claim it (a deposed
// leader that has not heard of its successor yet), the one with the
// highest term; -1 if none claims it.
func (c *Local) LeaderOf(ctx context.Context, shard uint32) int {
	apis := make([]string, len(c.Nodes))
	for i, nd := range c.Nodes {
		if c.Running(i) {
			apis[i] = nd.APIAddr
		}
	}
	return localnode.LeaderOf(ctx, apis, shard)
}

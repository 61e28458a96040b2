// Package shardtest runs real shard clusters inside a test: every node is a
// shard.Host with its own loopback Raft port (a transport.Mux on
// 127.0.0.1:0) and its own t.TempDir(), holding a replica of every shard.
// Raft timings are fast (shard.FastTiming) and logs go to t.Log.
//
// Nodes can be killed and restarted on the same address and data, so tests
// of failover, recovery and catch-up read like the scenario they check.
// Every wait polls with a deadline; nothing sleeps a fixed time.
package shardtest

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/frontdeskhq/frontdesk/internal/testutil"
	"github.com/frontdeskhq/frontdesk/shard"
	"github.com/frontdeskhq/frontdesk/shard/transport"
)

// Cluster is a set of nodes, each with a replica of every shard.
type Cluster struct {
	shards uint32
	opts   options
	logger *slog.Logger
	nodes  []*Node
}

// Node is one member of a Cluster. Its id, Raft address and data directory
// stay the same across Kill and Restart.
type Node struct {
	ID      string
	Addr    string // Raft address (the mux's), as in every shard's configuration
	DataDir string
	Index   int // position in Cluster.Nodes

	mu   sync.Mutex
	host *shard.Host // nil while killed
	mux  *transport.Mux
}

// Host is the node's shard.Host, or nil while the node is killed.
func (n *Node) Host() *shard.Host {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.host
}

// Group is the node's replica of shard, or nil while the node is killed.
func (n *Node) Group(s uint32) *shard.Group {
	h := n.Host()
	if h == nil {
		return nil
	}
	g, _ := h.Group(s)
	return g
}

// Alive reports whether the node is running.
func (n *Node) Alive() bool { return n.Host() != nil }

// Server is the node as a voter of a shard configuration.
func (n *Node) Server() raft.Server {
	return raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(n.ID), Address: raft.ServerAddress(n.Addr)}
}

// NewCluster starts nodes nodes with a replica of each of shards shards and
// bootstraps every shard on every node with all nodes as voters (as a
// forming cluster does), then waits until every shard has a leader. Everything is
// shut down at the end of the test.
func NewCluster(t testing.TB, nodes, shards int, opts ...Option) *Cluster {
	t.Helper()
	o := options{timing: shard.FastTiming(), logLevel: slog.LevelWarn, bootstrap: true}
	for _, opt := range opts {
		opt(&o)
	}
	c := &Cluster{shards: uint32(shards), opts: o, logger: testutil.Logger(t, o.logLevel)}
	// The data dirs come first: cleanups run last-registered-first, so the
	// cluster is closed before the testing package removes its temp dirs (a
	// snapshot still being written would otherwise make that removal fail).
	for i := range nodes {
		c.nodes = append(c.nodes, &Node{ID: fmt.Sprintf("node%d", i), DataDir: t.TempDir(), Index: i})
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("stopping the cluster: %v", err)
		}
	})
	for _, n := range c.nodes {
		if err := c.start(n, "127.0.0.1:0"); err != nil {
			t.Fatalf("starting %s: %v", n.ID, err)
		}
	}
	if !o.bootstrap {
		return c
	}
	for s := range c.shards {
		c.Bootstrap(t, s, c.nodes)
	}
	for s := range c.shards {
		c.WaitForLeader(t, s)
	}
	return c
}

// Bootstrap bootstraps shard s on every one of nodes with all of them as
// its voters. Every voter bootstraps with the same configuration, as a
// forming cluster does: a replica that starts without state and does not
// bootstrap refuses votes until a leader has caught it up.
func (c *Cluster) Bootstrap(t testing.TB, s uint32, nodes []*Node) {
	t.Helper()
	voters := make([]raft.Server, len(nodes))
	for i, n := range nodes {
		voters[i] = n.Server()
	}
	for _, n := range nodes {
		if err := n.Group(s).Bootstrap(voters); err != nil {
			t.Fatalf("bootstrapping shard %d on %s: %v", s, n.ID, err)
		}
	}
}

// start listens on addr and opens a Host with every shard's replica.
func (c *Cluster) start(n *Node, addr string) error {
	ln, err := listen(addr)
	if err != nil {
		return err
	}
	logger := c.logger.With("node", n.ID)
	mux, err := transport.NewMux(ln, nil, transport.WithLogger(logger))
	if err != nil {
		ln.Close()
		return err
	}
	cfg := shard.HostConfig{
		NodeID:       n.ID,
		DataDir:      n.DataDir,
		Mux:          mux,
		Logger:       logger,
		Raft:         c.opts.timing,
		TickInterval: c.opts.tick,
	}
	if c.opts.configure != nil {
		c.opts.configure(&cfg)
	}
	h, err := shard.NewHost(cfg)
	if err != nil {
		mux.Close()
		return err
	}
	shards := make([]uint32, c.shards)
	for s := range shards {
		shards[s] = uint32(s)
	}
	if _, err := h.OpenAll(shards); err != nil {
		h.Close()
		mux.Close()
		return err
	}
	n.mu.Lock()
	n.host, n.mux, n.Addr = h, mux, mux.Addr().String()
	n.mu.Unlock()
	return nil
}

// listen listens on addr, retrying for a while if a restarted node's port
// is still held by its previous incarnation's sockets.
func listen(addr string) (net.Listener, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			return ln, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Shards is the number of shards.
func (c *Cluster) Shards() uint32 { return c.shards }

// Nodes returns every node, alive or killed, in index order.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Node returns node i.
func (c *Cluster) Node(i int) *Node { return c.nodes[i] }

// Live returns the running nodes.
func (c *Cluster) Live() []*Node {
	var out []*Node
	for _, n := range c.nodes {
		if n.Alive() {
			out = append(out, n)
		}
	}
	return out
}

// Kill stops node i abruptly as far as its peers can tell: its replicas shut
// down without transferring leadership and its port closes. Its data stays.
func (c *Cluster) Kill(t testing.TB, i int) {
	t.Helper()
	if err := c.stop(c.nodes[i]); err != nil {
		t.Errorf("killing %s: %v", c.nodes[i].ID, err)
	}
}

// Restart starts a killed node i again on its address and data directory;
// its replicas rejoin their shards without bootstrap.
func (c *Cluster) Restart(t testing.TB, i int) {
	t.Helper()
	n := c.nodes[i]
	if n.Alive() {
		t.Fatalf("restarting %s: it is running", n.ID)
	}
	if err := c.start(n, n.Addr); err != nil {
		t.Fatalf("restarting %s on %s: %v", n.ID, n.Addr, err)
	}
}

func (c *Cluster) stop(n *Node) error {
	n.mu.Lock()
	h, mux := n.host, n.mux
	n.host, n.mux = nil, nil
	n.mu.Unlock()
	if h == nil {
		return nil
	}
	return errors.Join(h.Close(), mux.Close())
}

// Close stops every running node, all at once; it runs at the end of the
// test and may be called before.
func (c *Cluster) Close() error {
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.stop(n); err != nil {
				errs[i] = fmt.Errorf("%s: %w", n.ID, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

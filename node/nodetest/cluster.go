// Package nodetest runs frontdesk nodes inside a test process: each a
// node.Node with its own loopback ports and t.TempDir(), with fast Raft and
// gossip timings and logs to t.Log. Nodes form a cluster with
// --bootstrap-expect, more join by gossip, and any can be killed and
// restarted on the same addresses and data. Waits poll with a deadline.
//
// LayoutOf and Layout.Placed check a cluster (in process or not) against
// the placement from the nodes' statuses.
package nodetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
	"github.com/frontdeskhq/frontdesk/internal/localnode"
	"github.com/frontdeskhq/frontdesk/internal/testutil"
	"github.com/frontdeskhq/frontdesk/node"
)

// Options shape a Cluster. Zero values take the defaults stated.
type Options struct {
	Shards      uint32        // default 8
	Replication int           // default 3
	DeadAfter   time.Duration // default 2s
	Tick        time.Duration // default 200ms
	Verbose     bool          // log at info level (default: warnings)
}

// Cluster is a set of in-process nodes.
type Cluster struct {
	t    testing.TB
	opts Options
	log  *slog.Logger
	root string // holds every member's data dir

	mu      sync.Mutex
	members []*Member
}

// Member is one node of a Cluster; its id, data dir and addresses stay the
// same across Kill and Restart.
type Member struct {
	ID      string
	DataDir string
	cfg     node.Config
	node    *node.Node // nil while killed
	started bool
}

// Node is the running node (nil while killed).
func (m *Member) Node() *node.Node { return m.node }

// APIAddr is the member's API address.
func (m *Member) APIAddr() string { return m.cfg.APIAddr }

// Start starts n nodes that form a cluster with BootstrapExpect n, and
// waits until every node is ready. Everything stops when the test ends.
func Start(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	if opts.Shards == 0 {
		opts.Shards = 8
	}
	if opts.Replication == 0 {
		opts.Replication = 3
	}
	if opts.DeadAfter == 0 {
		opts.DeadAfter = 2 * time.Second
	}
	if opts.Tick == 0 {
		opts.Tick = 200 * time.Millisecond
	}
	level := slog.LevelWarn
	if opts.Verbose {
		level = slog.LevelInfo
	}
	// The temp dir comes before stopAll: cleanups run last-registered-first,
	// so the nodes stop before the testing package removes their data (a
	// snapshot still being written would otherwise make that removal fail).
	c := &Cluster{t: t, opts: opts, log: testutil.Logger(t, level), root: t.TempDir()}
	t.Cleanup(c.stopAll)
	var gossip []string
	for i := range n {
		m := c.newMember(i + 1)
		m.cfg.BootstrapExpect = n
		gossip = append(gossip, m.cfg.GossipAddr)
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		m.cfg.Join = gossip
		c.start(m)
	}
	for i := range c.members {
		c.WaitReady(i, 30*time.Second)
	}
	return c
}

// newMember picks free loopback ports for a new node.
func (c *Cluster) newMember(i int) *Member {
	dir, err := os.MkdirTemp(c.root, fmt.Sprintf("node%d-", i))
	if err != nil {
		c.t.Fatalf("data dir for node%d: %v", i, err)
	}
	m := &Member{ID: fmt.Sprintf("node%d", i), DataDir: dir}
	m.cfg = node.Config{
		ID: m.ID, DataDir: m.DataDir,
		APIAddr: freeAddr(c.t), RaftAddr: freeAddr(c.t), GossipAddr: freeAddr(c.t),
		Shards: c.opts.Shards, Replication: c.opts.Replication, DeadAfter: c.opts.DeadAfter,
		TickInterval: c.opts.Tick, FastRaft: true, LogLevel: "warn",
		ReconcileInterval: 100 * time.Millisecond, LeaderSettle: time.Second,
	}
	return m
}

// start starts m. A new member whose ports were taken meanwhile (by
// another process's outgoing connection) gets new ones; a restarted member
// keeps its addresses, as a real node does.
func (c *Cluster) start(m *Member) {
	c.t.Helper()
	fresh := m.node == nil && !m.started
	for attempt := 0; ; attempt++ {
		cfg := m.cfg // Validate fills defaults in place; keep ours intact
		if err := cfg.Validate(); err != nil {
			c.t.Fatal(err)
		}
		n, err := node.Start(&cfg, c.log)
		if err != nil {
			if fresh && attempt < 5 && (errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")) {
				m.cfg.APIAddr, m.cfg.RaftAddr, m.cfg.GossipAddr = freeAddr(c.t), freeAddr(c.t), freeAddr(c.t)
				continue
			}
			c.t.Fatalf("start %s: %v", m.ID, err)
		}
		c.mu.Lock()
		m.node, m.started = n, true
		c.mu.Unlock()
		return
	}
}

// Members returns every member, running or not, in the order added.
func (c *Cluster) Members() []*Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Member(nil), c.members...)
}

// Member returns member i.
func (c *Cluster) Member(i int) *Member { return c.Members()[i] }

// Running returns the ids of the running members.
func (c *Cluster) Running() []string {
	var out []string
	for _, m := range c.Members() {
		if m.node != nil {
			out = append(out, m.ID)
		}
	}
	return out
}

// APIAddrs returns the API addresses of the running members.
func (c *Cluster) APIAddrs() []string {
	var out []string
	for _, m := range c.Members() {
		if m.node != nil {
			out = append(out, m.cfg.APIAddr)
		}
	}
	return out
}

// Add starts a new node that joins the cluster by gossip (no
// BootstrapExpect), waits until it is ready, and returns its index.
func (c *Cluster) Add() int {
	c.t.Helper()
	m := c.newMember(len(c.Members()) + 1)
	for _, o := range c.Members() {
		m.cfg.Join = append(m.cfg.Join, o.cfg.GossipAddr)
	}
	c.mu.Lock()
	c.members = append(c.members, m)
	i := len(c.members) - 1
	c.mu.Unlock()
	c.start(m)
	c.WaitReady(i, 30*time.Second)
	return i
}

// Kill stops member i abruptly: no leadership transfer, no gossip leave.
func (c *Cluster) Kill(i int) {
	m := c.Member(i)
	if m.node != nil {
		m.node.Kill()
		c.mu.Lock()
		m.node = nil
		c.mu.Unlock()
	}
}

// Restart starts a killed member again on its addresses and data.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	m := c.Member(i)
	if m.node != nil {
		c.t.Fatalf("%s is running", m.ID)
	}
	m.cfg.BootstrapExpect = 0
	var join []string
	for _, o := range c.Members() {
		if o != m {
			join = append(join, o.cfg.GossipAddr)
		}
	}
	m.cfg.Join = join
	c.start(m)
}

func (c *Cluster) stopAll() {
	for i := range c.Members() {
		c.Kill(i)
	}
}

var httpClient = &http.Client{Timeout: 3 * time.Second}

// WaitReady waits until member i answers /readyz with 200.
func (c *Cluster) WaitReady(i int, timeout time.Duration) {
	c.t.Helper()
	m := c.Member(i)
	Eventually(c.t, timeout, func() error {
		resp, err := httpClient.Get("http://" + m.cfg.APIAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: /readyz answers %s", m.ID, resp.Status)
		}
		return nil
	})
}

// Statuses asks every running member for its status.
func (c *Cluster) Statuses(ctx context.Context) (map[string]*pb.GetStatusResponse, error) {
	out := map[string]*pb.GetStatusResponse{}
	for _, m := range c.Members() {
		if m.node == nil {
			continue
		}
		st, err := Status(ctx, m.cfg.APIAddr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.ID, err)
		}
		out[m.ID] = st
	}
	return out, nil
}

// Status asks the node at an API address for its status.
func Status(ctx context.Context, apiAddr string) (*pb.GetStatusResponse, error) {
	cl := frontdeskv1connect.NewClusterServiceClient(httpClient, "http://"+apiAddr)
	res, err := cl.GetStatus(ctx, connect.NewRequest(&pb.GetStatusRequest{}))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

// WaitPlaced waits until the running members' layout matches the placement
// over nodes (see Layout.Placed) and returns it.
func (c *Cluster) WaitPlaced(nodes []string, timeout time.Duration) *Layout {
	c.t.Helper()
	var l *Layout
	Eventually(c.t, timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		st, err := c.Statuses(ctx)
		if err != nil {
			return err
		}
		if l, err = LayoutOf(st); err != nil {
			return err
		}
		return l.Placed(nodes, c.opts.Replication)
	})
	return l
}

// Eventually calls f every 50ms until it returns nil, failing the test
// with f's last error if that has not happened within timeout.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	testutil.Eventually(t, timeout, 50*time.Millisecond, f)
}

// freeAddr reserves a loopback port free for TCP and UDP (gossip uses
// both), never one handed out before in this process (localnode.FreePorts,
// which e2e's process clusters draw from too).
func freeAddr(t testing.TB) string {
	t.Helper()
	ports, err := localnode.FreePorts("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
}

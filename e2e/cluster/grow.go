package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/frontdeskhq/frontdesk/client"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/internal/localnode"
	"github.com/frontdeskhq/frontdesk/node/nodetest"
)

// Operations on a Local cluster's membership: nodes that join by gossip,
// drains, and checks that placement has settled.

// AddNode starts a new node that joins the running cluster by gossip (no
// --bootstrap-expect; --join lists every node's gossip address) with the
// cluster's options, waits until it answers /readyz, and returns its
// index. It is not available with network namespaces (Options.Host).
func (c *Local) AddNode(timeout time.Duration) int {
	c.t.Helper()
	if c.opts.Host != nil {
		c.t.Fatal("AddNode: clusters in network namespaces have a fixed size")
	}
	var gossip []string
	for _, nd := range c.Nodes {
		gossip = append(gossip, nd.GossipAddr)
	}
	i := len(c.Nodes)
	root := filepath.Dir(c.Nodes[0].DataDir)
	id := fmt.Sprintf("node%d", i+1)
	nd := &Node{ID: id, DataDir: filepath.Join(root, id), LogPath: filepath.Join(root, id+".log")}
	c.Nodes = append(c.Nodes, nd)
	deadline := time.Now().Add(timeout)
	for attempt := 0; ; attempt++ {
		port := func() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(c.t))) }
		nd.APIAddr, nd.RaftAddr, nd.GossipAddr = port(), port(), port()
		nd.args = append([]string{
			"--id", nd.ID, "--data-dir", nd.DataDir, "--api-addr", nd.APIAddr, "--raft-addr", nd.RaftAddr,
			"--insecure", // test clusters on loopback or the test's own network namespaces
			"--gossip-addr", nd.GossipAddr, "--join", strings.Join(gossip, ","),
			"--shards", strconv.Itoa(c.opts.Shards), "--tick", c.opts.Tick.String(), "--log-level", "info",
		}, c.opts.Args...)
		c.Start(i)
		err := c.waitNodeReady(i, deadline)
		if err == nil {
			return i
		}
		log, _ := os.ReadFile(nd.LogPath)
		if attempt < 3 && !c.Running(i) && strings.Contains(string(log), "address already in use") {
			continue // a port was taken between choosing and binding it
		}
		c.t.Fatalf("%s did not become ready: %v", id, err)
	}
}

// waitNodeReady polls node i's /readyz until it answers 200, the process
// exits, or the deadline passes.
func (c *Local) waitNodeReady(i int, deadline time.Time) error {
	nd := c.Nodes[i]
	if err := localnode.WaitReady(context.Background(), &nd.proc, nd.APIAddr, deadline); err != nil {
		return fmt.Errorf("%s: %w", nd.ID, err)
	}
	return nil
}

// IDs returns the ids of the nodes at the given indexes, or of every
// running node when none is given.
func (c *Local) IDs(indexes ...int) []string {
	var out []string
	if len(indexes) == 0 {
		for i, nd := range c.Nodes {
			if c.Running(i) {
				out = append(out, nd.ID)
			}
		}
		return out
	}
	for _, i := range indexes {
		out = append(out, c.Nodes[i].ID)
	}
	return out
}

// Statuses asks every running node for its status, by node id.
func (c *Local) Statuses(ctx context.Context) (map[string]*pb.GetStatusResponse, error) {
	out := map[string]*pb.GetStatusResponse{}
	for i, nd := range c.Nodes {
		if !c.Running(i) {
			continue
		}
		st, err := nodetest.Status(ctx, nd.APIAddr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", nd.ID, err)
		}
		out[nd.ID] = st
	}
	return out, nil
}

// WaitPlaced waits until the running nodes' layout matches the placement
// of the cluster's shards over nodes (ids) with replication repl: every
// shard led, its voters exactly the placed ones, no replica elsewhere,
// leaders spread within one of even (see nodetest.Layout.Placed). It
// returns the layout, or fails the test with the last difference.
func (c *Local) WaitPlaced(nodes []string, repl int, timeout time.Duration) *nodetest.Layout {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		l, err := c.layout()
		if err == nil {
			if err = l.Placed(nodes, repl); err == nil {
				return l
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("placement over %v not reached within %v: %v", nodes, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *Local) layout() (*nodetest.Layout, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := c.Statuses(ctx)
	if err != nil {
		return nil, err
	}
	return nodetest.LayoutOf(st)
}

// Drain drains node i through cl (any node forwards the request) and waits
// until the node leads and holds nothing.
func (c *Local) Drain(ctx context.Context, cl *client.Client, i int, timeout time.Duration) {
	c.t.Helper()
	id := c.Nodes[i].ID
	deadline := time.Now().Add(timeout)
	for {
		res, err := cl.DrainNode(ctx, id, false)
		if err == nil && res.Drained {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s not drained within %v: %v %v", id, timeout, res, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// StoredShards lists the shards node i has a directory for in its data dir.
func (c *Local) StoredShards(i int) []uint32 {
	c.t.Helper()
	entries, err := os.ReadDir(filepath.Join(c.Nodes[i].DataDir, "shards"))
	if err != nil && !os.IsNotExist(err) {
		c.t.Fatal(err)
	}
	var out []uint32
	for _, e := range entries {
		if s, err := strconv.ParseUint(e.Name(), 10, 32); err == nil {
			out = append(out, uint32(s))
		}
	}
	slices.Sort(out)
	return out
}

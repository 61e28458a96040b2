package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/frontdeskhq/frontdesk/internal/localnode"
)

// localCluster is frontdeskd processes on 127.0.0.1 that fdbench started,
// each with free ports and a data dir under one temporary directory.
type localCluster struct {
	dir   string // removed by close unless keep
	keep  bool
	nodes []*localNode
}

type localNode struct {
	id, dataDir       string
	api, raft, gossip string
	proc              localnode.Proc
}

// frontdeskdBinary returns path if set, or builds frontdeskd from this
// module into dir (fdbench must then run inside the module's tree).
func frontdeskdBinary(path, dir string) (string, error) {
	if path != "" {
		return path, nil
	}
	bin, err := localnode.Build(dir)
	if err != nil {
		return "", fmt.Errorf("building frontdeskd (run inside the frontdesk module, or pass --frontdeskd): %w", err)
	}
	return bin, nil
}

// startLocal starts n nodes forming one cluster (--bootstrap-expect n) and
// waits until every node is ready (/readyz: each local shard has a
// leader).
func startLocal(ctx context.Context, n, shards int, binPath string, keep bool, extra []string) (_ *localCluster, err error) {
	dir, err := os.MkdirTemp("", "fdbench-")
	if err != nil {
		return nil, err
	}
	c := &localCluster{dir: dir, keep: keep}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	bin, err := frontdeskdBinary(binPath, dir)
	if err != nil {
		return nil, err
	}
	ports, err := localnode.FreePorts("127.0.0.1", 3*n)
	if err != nil {
		return nil, err
	}
	addr := func(i int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i])) }
	var gossip []string
	for i := range n {
		nd := &localNode{
			id:      fmt.Sprintf("node%d", i+1),
			dataDir: filepath.Join(dir, fmt.Sprintf("node%d", i+1)),
			api:     addr(3 * i),
			raft:    addr(3*i + 1),
			gossip:  addr(3*i + 2),
		}
		nd.proc.LogPath = filepath.Join(dir, nd.id+".log")
		nd.proc.Attr = childAttr()
		gossip = append(gossip, nd.gossip)
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		nd.proc.Argv = append([]string{bin,
			"--id", nd.id, "--data-dir", nd.dataDir, "--api-addr", nd.api, "--raft-addr", nd.raft,
			"--gossip-addr", nd.gossip, "--join", strings.Join(gossip, ","),
			"--bootstrap-expect", strconv.Itoa(n), "--shards", strconv.Itoa(shards), "--log-level", "warn",
		}, extra...)
	}
	for i := range c.nodes {
		if err := c.start(i); err != nil {
			return nil, err
		}
	}
	if err := c.waitReady(ctx, 90*time.Second); err != nil {
		return nil, err
	}
	return c, nil
}

// start starts (or restarts) node i with its data dir and ports.
func (c *localCluster) start(i int) error {
	nd := c.nodes[i]
	if err := nd.proc.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", nd.id, err)
	}
	return nil
}

func (c *localCluster) running(i int) bool { return c.nodes[i].proc.Running() }

// kill SIGKILLs node i and waits for it to exit.
func (c *localCluster) kill(i int) {
	if err := c.nodes[i].proc.Signal(syscall.SIGKILL, time.Minute); err != nil {
		fmt.Fprintf(os.Stderr, "fdbench: %s: %v\n", c.nodes[i].id, err)
	}
}

// close kills every node and removes the data unless keep.
func (c *localCluster) close() {
	for i := range c.nodes {
		c.kill(i)
	}
	if c.keep {
		fmt.Fprintf(os.Stderr, "fdbench: kept the nodes' data and logs in %s\n", c.dir)
		return
	}
	_ = os.RemoveAll(c.dir)
}

func (c *localCluster) apiAddrs() []string {
	out := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		out[i] = nd.api
	}
	return out
}

func (c *localCluster) pids() (names []string, pids []int) {
	for _, nd := range c.nodes {
		if pid := nd.proc.Pid(); pid != 0 {
			names, pids = append(names, nd.id), append(pids, pid)
		}
	}
	return names, pids
}

// waitReady waits until every node answers /readyz with 200; a node that
// is not running fails it, with its log.
func (c *localCluster) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, nd := range c.nodes {
		switch err := localnode.WaitReady(ctx, &nd.proc, nd.api, deadline); {
		case errors.Is(err, localnode.ErrExited):
			return fmt.Errorf("%s exited; its log:\n%s", nd.id, localnode.Tail(nd.proc.LogPath, 30))
		case err != nil:
			return fmt.Errorf("%s not ready after %v (%v); its log:\n%s", nd.id, timeout, err, localnode.Tail(nd.proc.LogPath, 30))
		}
	}
	return nil
}

// leaderOf is the index of the running node whose replica of shard leads
// it, with the highest term if several think so; -1 if none.
func (c *localCluster) leaderOf(ctx context.Context, shard uint32) int {
	apis := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		if c.running(i) {
			apis[i] = nd.api
		}
	}
	return localnode.LeaderOf(ctx, apis, shard)
}

// shardsLedBy lists the shards, other than except, whose replica on node i
// leads them (none if its shard map cannot be read).
func (c *localCluster) shardsLedBy(ctx context.Context, i int, except uint32) []uint32 {
	m, err := localnode.ShardMap(ctx, c.nodes[i].api)
	if err != nil {
		return nil
	}
	var led []uint32
	for s, si := range m.ShardInfos {
		if si.LocalState == "Leader" && uint32(s) != except {
			led = append(led, uint32(s))
		}
	}
	return led
}

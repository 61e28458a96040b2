package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// localCluster is frontdeskd processes on 127.0.0.1 that fdbench started,
// each with free ports and a data dir under one temporary directory.
type localCluster struct {
	dir   string // removed by close unless keep
	keep  bool
	nodes []*localNode
}

type localNode struct {
	id, dataDir, logPath string
	api, raft, gossip    string
	bin                  string
	args                 []string
	cmd                  *exec.Cmd
	exited               chan struct{}
}

// frontdeskdBinary returns path if set, or builds frontdeskd from this
// module into dir (fdbench must then run inside the module's tree).
func frontdeskdBinary(path, dir string) (string, error) {
	if path != "" {
		return path, nil
	}
	bin := filepath.Join(dir, "frontdeskd")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/frontdeskhq/frontdesk/cmd/frontdeskd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building frontdeskd (run inside the frontdesk module, or pass --frontdeskd): %v\n%s", err, out)
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
	var gossip []string
	for i := range n {
		nd := &localNode{
			id:      fmt.Sprintf("node%d", i+1),
			dataDir: filepath.Join(dir, fmt.Sprintf("node%d", i+1)),
			logPath: filepath.Join(dir, fmt.Sprintf("node%d.log", i+1)),
			bin:     bin,
		}
		ports, err := freePorts(3)
		if err != nil {
			return nil, err
		}
		nd.api, nd.raft, nd.gossip = ports[0], ports[1], ports[2]
		gossip = append(gossip, nd.gossip)
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		nd.args = append([]string{
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

// freePorts reserves n distinct free ports on 127.0.0.1, free for TCP and
// UDP (gossip uses both), as "127.0.0.1:port".
func freePorts(n int) ([]string, error) {
	var out []string
	var held []io.Closer
	defer func() {
		for _, h := range held {
			h.Close()
		}
	}()
	for tries := 0; len(out) < n && tries < 100; tries++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		held = append(held, l)
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue
		}
		held = append(held, u)
		out = append(out, addr)
	}
	if len(out) < n {
		return nil, errors.New("no free ports on 127.0.0.1")
	}
	return out, nil
}

// start starts (or restarts) node i with its data dir and ports.
func (c *localCluster) start(i int) error {
	nd := c.nodes[i]
	if c.running(i) {
		return fmt.Errorf("%s is already running", nd.id)
	}
	logf, err := os.OpenFile(nd.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(nd.bin, nd.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", nd.id, err)
	}
	nd.cmd, nd.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}(nd.exited)
	return nil
}

func (c *localCluster) running(i int) bool {
	nd := c.nodes[i]
	if nd.cmd == nil {
		return false
	}
	select {
	case <-nd.exited:
		return false
	default:
		return true
	}
}

// kill SIGKILLs node i and waits for it to exit.
func (c *localCluster) kill(i int) {
	if !c.running(i) {
		return
	}
	_ = c.nodes[i].cmd.Process.Signal(syscall.SIGKILL)
	<-c.nodes[i].exited
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
	for i, nd := range c.nodes {
		if c.running(i) {
			names, pids = append(names, nd.id), append(pids, nd.cmd.Process.Pid)
		}
	}
	return names, pids
}

// waitReady waits until every running node answers /readyz with 200.
func (c *localCluster) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for i, nd := range c.nodes {
		for c.running(i) {
			resp, err := plainHTTP.Get("http://" + nd.api + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				err = fmt.Errorf("/readyz: %s", resp.Status)
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%s not ready after %v (%v); its log:\n%s", nd.id, timeout, err, tailFile(nd.logPath, 30))
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !c.running(i) && nd.cmd != nil {
			return fmt.Errorf("%s exited; its log:\n%s", nd.id, tailFile(nd.logPath, 30))
		}
	}
	return nil
}

// leaderOf is the index of the running node whose replica of shard leads
// it, with the highest term if several think so; -1 if none.
func (c *localCluster) leaderOf(ctx context.Context, shard uint32) int {
	leader, term := -1, uint64(0)
	for i, nd := range c.nodes {
		if !c.running(i) {
			continue
		}
		m, err := shardMapOf(ctx, nd.api)
		if err != nil || int(shard) >= len(m.ShardInfos) {
			continue
		}
		if si := m.ShardInfos[shard]; si.LocalState == "Leader" && (leader < 0 || si.Term > term) {
			leader, term = i, si.Term
		}
	}
	return leader
}

// shardsLedBy lists the shards, other than except, whose replica on node i
// leads them (none if its shard map cannot be read).
func (c *localCluster) shardsLedBy(ctx context.Context, i int, except uint32) []uint32 {
	m, err := shardMapOf(ctx, c.nodes[i].api)
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

func tailFile(path string, lines int) string {
	b, _ := os.ReadFile(path)
	parts := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

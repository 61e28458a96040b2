// Package cluster runs real frontdeskd clusters for tests: local processes
// on 127.0.0.1 (always available). Each node is a separate OS process with
// its own data dir and ports, so kills, pauses and restarts are real.
package cluster

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
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
		buildBin = filepath.Join(buildDir, "frontdeskd")
		cmd := exec.Command("go", "build", "-o", buildBin, "github.com/frontdeskhq/frontdesk/cmd/frontdeskd")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build frontdeskd: %v\n%s", err, out)
		}
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
	cmd                           *exec.Cmd
	exited                        chan struct{}
	args                          []string
}

// Local is a cluster of frontdeskd processes on 127.0.0.1.
type Local struct {
	t     testing.TB
	bin   string
	opts  Options
	Nodes []*Node
}

// handedOut holds the ports freePort returned: the kernel may offer a
// closed port again at once, and two nodes must not be given the same one.
var handedOut sync.Map

// freePort reserves a free TCP port on 127.0.0.1 (and checks UDP for gossip).
func freePort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if _, dup := handedOut.LoadOrStore(port, true); dup {
			continue
		}
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		u.Close()
		return port
	}
	t.Fatal("no free port")
	return 0
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
				t.Logf("---- %s log (%s), last lines:\n%s", nd.ID, nd.LogPath, logTail(nd.LogPath, 60))
			}
		}
	})
	return c
}

// logTail is the last lines of the file at path ("" if it cannot be read).
func logTail(path string, lines int) string {
	b, _ := os.ReadFile(path)
	return tail(strings.TrimRight(string(b), "\n"), lines)
}

// tail is the last lines of s.
func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// Start starts (or restarts) node i with its data dir and ports.
func (c *Local) Start(i int) {
	c.t.Helper()
	nd := c.Nodes[i]
	if nd.cmd != nil {
		select {
		case <-nd.exited:
		default:
			c.t.Fatalf("%s is already running", nd.ID)
		}
	}
	logf, err := os.OpenFile(nd.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	argv := append([]string{c.bin}, nd.args...)
	if c.opts.Wrap != nil {
		argv = append(c.opts.Wrap(i), argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("start %s: %v", nd.ID, err)
	}
	nd.cmd = cmd
	nd.exited = make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}(nd.exited)
}

// Running reports whether node i's process is alive.
func (c *Local) Running(i int) bool {
	nd := c.Nodes[i]
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

// Kill sends SIGKILL to node i and waits for it to exit.
func (c *Local) Kill(i int) { c.signal(i, syscall.SIGKILL, 10*time.Second) }

// Stop sends SIGTERM to node i and waits up to 40 s for a clean exit.
func (c *Local) Stop(i int) { c.signal(i, syscall.SIGTERM, 40*time.Second) }

// Pause stops node i with SIGSTOP; Resume continues it.
func (c *Local) Pause(i int) { _ = c.Nodes[i].cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused node.
func (c *Local) Resume(i int) { _ = c.Nodes[i].cmd.Process.Signal(syscall.SIGCONT) }

func (c *Local) signal(i int, sig syscall.Signal, wait time.Duration) {
	nd := c.Nodes[i]
	if !c.Running(i) {
		return
	}
	_ = nd.cmd.Process.Signal(syscall.SIGCONT) // a paused process must run to die cleanly
	_ = nd.cmd.Process.Signal(sig)
	select {
	case <-nd.exited:
	case <-time.After(wait):
		_ = nd.cmd.Process.Kill()
		<-nd.exited
		c.t.Errorf("%s did not exit within %v of %v", nd.ID, wait, sig)
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

var httpClient = &http.Client{Timeout: 3 * time.Second}

// WaitReady waits until every running node answers /readyz with 200.
func (c *Local) WaitReady(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for i, nd := range c.Nodes {
		if !c.Running(i) {
			continue
		}
		for {
			resp, err := httpClient.Get("http://" + nd.APIAddr + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				err = fmt.Errorf("/readyz: %s", resp.Status)
			}
			if !c.Running(i) {
				c.t.Fatalf("%s exited while waiting for it to be ready; its log, last lines:\n%s", nd.ID, logTail(nd.LogPath, 30))
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("%s not ready after %v (last: %v); its log, last lines:\n%s", nd.ID, timeout, err, logTail(nd.LogPath, 30))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// ShardMap asks node i for the shard map.
func (c *Local) ShardMap(ctx context.Context, i int) (*pb.GetShardMapResponse, error) {
	cl := frontdeskv1connect.NewClusterServiceClient(httpClient, "http://"+c.Nodes[i].APIAddr)
	res, err := cl.GetShardMap(ctx, connect.NewRequest(&pb.GetShardMapRequest{}))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

// LeaderOf returns the index of the node leading a shard, as the running
// nodes' own replicas report it: of several that claim it (a deposed
// leader that has not heard of its successor yet), the one with the
// highest term; -1 if none claims it.
func (c *Local) LeaderOf(ctx context.Context, shard uint32) int {
	leader, term := -1, uint64(0)
	for i := range c.Nodes {
		if !c.Running(i) {
			continue
		}
		m, err := c.ShardMap(ctx, i)
		if err != nil || int(shard) >= len(m.ShardInfos) {
			continue
		}
		if si := m.ShardInfos[shard]; si.LocalState == "Leader" && (leader < 0 || si.Term > term) {
			leader, term = i, si.Term
		}
	}
	return leader
}

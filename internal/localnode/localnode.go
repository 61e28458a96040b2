// Package localnode runs frontdeskd as real processes on this machine: the
// binary built from this module, free ports, one process per node with its
// output in a log file, signals, readiness, who leads a shard, and what a
// process costs (/proc). fdbench's --local clusters and the end-to-end
// tests' (e2e/cluster) are both built on it; it returns errors and never
// fails a test itself, so each wraps it its own way.
package localnode

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
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
)

// Build builds frontdeskd from this module into dir, statically
// (CGO_ENABLED=0), and returns its path. The caller must run inside the
// module's tree.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "frontdeskd")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/frontdeskhq/frontdesk/cmd/frontdeskd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build frontdeskd: %v\n%s", err, out)
	}
	return bin, nil
}

// handedOut holds the ports FreePorts returned: the kernel may offer a
// closed port again at once, and two nodes must not be given the same one.
var handedOut sync.Map

// FreePorts returns n distinct ports on host, each free for TCP and UDP
// when chosen (gossip uses both) and none returned before by this process.
// A port can still be taken by someone else before the node binds it; the
// node then fails to start, which callers may retry.
func FreePorts(host string, n int) ([]int, error) {
	var out []int
	var held []io.Closer // kept open until all are chosen, so none repeats
	defer func() {
		for _, h := range held {
			h.Close()
		}
	}()
	for tries := 0; len(out) < n && tries < 50+n; tries++ {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, err
		}
		held = append(held, l)
		port := l.Addr().(*net.TCPAddr).Port
		if _, dup := handedOut.LoadOrStore(port, true); dup {
			continue
		}
		u, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		held = append(held, u)
		out = append(out, port)
	}
	if len(out) < n {
		return nil, fmt.Errorf("no %d free ports on %s", n, host)
	}
	return out, nil
}

// Proc is one node's process. Set Argv and LogPath, then Start it; it may
// be started again once it has exited. Its methods are not safe for
// concurrent use with Start.
type Proc struct {
	// Argv is the command line: the binary (or a wrapper that execs it,
	// keeping the pid) and its flags.
	Argv []string
	// LogPath receives the process's stdout and stderr, appended.
	LogPath string
	// Attr, if set, is the process's SysProcAttr (e.g. a parent-death
	// signal).
	Attr *syscall.SysProcAttr

	cmd    *exec.Cmd
	exited chan struct{}
}

// ErrExited is returned by WaitReady when the process is not running.
var ErrExited = errors.New("process exited")

// Start starts the process; it fails if it is already running.
func (p *Proc) Start() error {
	if p.Running() {
		return errors.New("already running")
	}
	if len(p.Argv) == 0 {
		return errors.New("no command line")
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.Argv[0], p.Argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = p.Attr
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}(p.exited)
	return nil
}

// Running reports whether the process was started and has not exited.
func (p *Proc) Running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Pid is the process id while it runs, 0 otherwise.
func (p *Proc) Pid() int {
	if !p.Running() {
		return 0
	}
	return p.cmd.Process.Pid
}

// Send sends sig to the running process without waiting (SIGSTOP,
// SIGCONT). It does nothing if the process is not running.
func (p *Proc) Send(sig syscall.Signal) error {
	if !p.Running() {
		return nil
	}
	return p.cmd.Process.Signal(sig)
}

// Signal sends sig — after SIGCONT (on Unix), since a stopped process
// must run to act on it — and waits up to wait for the process to exit. If
// it has not by then, it is killed and Signal says so. It does nothing if
// the process is not running.
func (p *Proc) Signal(sig syscall.Signal, wait time.Duration) error {
	if !p.Running() {
		return nil
	}
	resume(p.cmd.Process)
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return nil
	case <-time.After(wait):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("did not exit within %v of %v; killed", wait, sig)
	}
}

var httpClient = &http.Client{Timeout: 3 * time.Second}

// WaitReady polls the node's /readyz at api ("host:port") until it answers
// 200; it fails with ErrExited as soon as p is not running, and with the
// last answer or error once deadline has passed or ctx ended.
func WaitReady(ctx context.Context, p *Proc, api string, deadline time.Time) error {
	for {
		if !p.Running() {
			return ErrExited
		}
		resp, err := httpClient.Get("http://" + api + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/readyz: %s", resp.Status)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ShardMap asks the node at addr ("host:port" or a URL) for its view of
// every shard.
func ShardMap(ctx context.Context, addr string) (*pb.GetShardMapResponse, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	cl := frontdeskv1connect.NewClusterServiceClient(httpClient, addr)
	res, err := cl.GetShardMap(ctx, connect.NewRequest(&pb.GetShardMapRequest{}))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

// LeaderOf is the index in apis of the node whose own replica says it
// leads shard — of several (a deposed leader that has not heard of its
// successor yet), the one with the highest term — or -1 if none does.
// An empty address (a node not running) is skipped.
func LeaderOf(ctx context.Context, apis []string, shard uint32) int {
	leader, term := -1, uint64(0)
	for i, api := range apis {
		if api == "" {
			continue
		}
		m, err := ShardMap(ctx, api)
		if err != nil || int(shard) >= len(m.ShardInfos) {
			continue
		}
		if si := m.ShardInfos[shard]; si.LocalState == "Leader" && (leader < 0 || si.Term > term) {
			leader, term = i, si.Term
		}
	}
	return leader
}

// Tail is the last lines of the file at path ("" if it cannot be read).
func Tail(path string, lines int) string {
	b, _ := os.ReadFile(path)
	return TailString(string(b), lines)
}

// TailString is the last lines of s.
func TailString(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"
)

// Driver is a running cluster that the chaos suite breaks and heals. Nodes
// are numbered 0..Size()-1 and keep their number, id, data and addresses
// across restarts. Methods are called from the test's goroutine, one at a
// time; APIAddrs and Running may be called from any goroutine.
//
// LocalDriver (processes on this machine) and ComposeDriver (the
// containers of the repository's docker-compose.yml) implement it; the
// chaos suite runs the same plan on both.
type Driver interface {
	// Name says which driver this is, for reports.
	Name() string
	// Size is the number of nodes.
	Size() int
	// NodeID is node i's id (its Raft server id).
	NodeID(i int) string
	// APIAddrs lists every node's API address ("host:port"), running or
	// not, reachable from the test.
	APIAddrs() []string
	// Running reports whether node i's process is up (paused counts).
	Running(i int) bool
	// Kill stops node i abruptly (SIGKILL) and waits for it to exit.
	Kill(i int) error
	// Start starts a stopped node i with whatever its data dir holds.
	Start(i int) error
	// Pause freezes node i (SIGSTOP); Resume lets it run again.
	Pause(i int) error
	Resume(i int) error
	// Partition cuts node i off from every other node; clients still reach
	// it. ErrUnsupported if the driver cannot. Heal undoes every partition.
	Partition(i int) error
	Heal() error
	// Wipe deletes stopped node i's data, as if its disk were replaced.
	Wipe(i int) error
	// WaitReady waits until every running node answers /readyz (every
	// shard it holds has a leader).
	WaitReady(ctx context.Context) error
	// Log returns node i's log so far.
	Log(i int) ([]byte, error)
}

// LocalDriver is a Local cluster as a Driver. With network namespaces
// (root and iproute2, see netns.go) each node has its own IP address and
// Partition works; without, nodes share 127.0.0.1 and Partition returns
// ErrUnsupported.
type LocalDriver struct {
	L   *Local
	net *netns
}

// StartLocalDriver starts n nodes like StartLocal. With useNetns, each node
// runs in its own network namespace (t fails if they cannot be made; check
// NetnsAvailable first). Everything is torn down when the test ends.
func StartLocalDriver(t testing.TB, n int, opts Options, useNetns bool) *LocalDriver {
	t.Helper()
	d := &LocalDriver{}
	if useNetns {
		ns, err := newNetns(n)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ns.close) // after the nodes are killed (cleanups run last first)
		d.net = ns
		opts.Host, opts.Wrap = ns.ip, ns.wrap
	}
	d.L = StartLocal(t, n, opts)
	return d
}

var _ Driver = (*LocalDriver)(nil)

func (d *LocalDriver) Name() string {
	if d.net != nil {
		return "local+netns"
	}
	return "local"
}

func (d *LocalDriver) Size() int           { return len(d.L.Nodes) }
func (d *LocalDriver) NodeID(i int) string { return d.L.Nodes[i].ID }
func (d *LocalDriver) APIAddrs() []string  { return d.L.APIAddrs() }
func (d *LocalDriver) Running(i int) bool  { return d.L.Running(i) }

func (d *LocalDriver) Kill(i int) error {
	d.L.Kill(i)
	return nil
}

func (d *LocalDriver) Start(i int) error {
	if d.L.Running(i) {
		return fmt.Errorf("%s is already running", d.L.Nodes[i].ID)
	}
	d.L.Start(i)
	return nil
}

func (d *LocalDriver) Pause(i int) error  { return d.signal(i, "pause", d.L.Pause) }
func (d *LocalDriver) Resume(i int) error { return d.signal(i, "resume", d.L.Resume) }

func (d *LocalDriver) signal(i int, what string, f func(int)) error {
	if !d.L.Running(i) {
		return fmt.Errorf("%s %s: not running", what, d.L.Nodes[i].ID)
	}
	f(i)
	return nil
}

func (d *LocalDriver) Partition(i int) error {
	if d.net == nil {
		return fmt.Errorf("%w: partitions need network namespaces", ErrUnsupported)
	}
	return d.net.isolate(i)
}

func (d *LocalDriver) Heal() error {
	if d.net == nil {
		return nil
	}
	return d.net.heal()
}

func (d *LocalDriver) Wipe(i int) error {
	if d.L.Running(i) {
		return fmt.Errorf("wipe %s: stop it first", d.L.Nodes[i].ID)
	}
	return os.RemoveAll(d.L.Nodes[i].DataDir)
}

func (d *LocalDriver) Log(i int) ([]byte, error) { return os.ReadFile(d.L.Nodes[i].LogPath) }

// WaitReady polls /readyz of every running node until each answers 200.
func (d *LocalDriver) WaitReady(ctx context.Context) error { return waitReady(ctx, d) }

// waitReady polls /readyz of every running node of d until each answers
// 200.
func waitReady(ctx context.Context, d Driver) error {
	hc := &http.Client{Timeout: time.Second}
	addrs := d.APIAddrs()
	for i, a := range addrs {
		for d.Running(i) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a+"/readyz", nil)
			resp, err := hc.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				err = errors.New(resp.Status)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s not ready: %w (last: %v)", d.NodeID(i), ctx.Err(), err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

package transport

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/frontdeskhq/frontdesk/internal/hclogslog"
)

// countFSM records the commands it applies, in order. A command applied
// twice (a client retry after an indeterminate error) is recorded once, the
// way the real FSM de-duplicates by request id.
type countFSM struct {
	mu      sync.Mutex
	seen    map[string]bool
	applied []string
}

func newCountFSM() *countFSM { return &countFSM{seen: make(map[string]bool)} }

func (f *countFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cmd := string(l.Data); !f.seen[cmd] {
		f.seen[cmd] = true
		f.applied = append(f.applied, cmd)
	}
	return nil
}

func (f *countFSM) Applied() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.applied)
}

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return countSnapshot(f.Applied()), nil }

func (f *countFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var applied []string
	seen := make(map[string]bool)
	sc := bufio.NewScanner(rc)
	for sc.Scan() {
		applied = append(applied, sc.Text())
		seen[sc.Text()] = true
	}
	if err := sc.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied, f.seen = applied, seen
	return nil
}

type countSnapshot []string

func (s countSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := io.WriteString(sink, strings.Join(s, "\n")); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (countSnapshot) Release() {}

const (
	clusterNodes  = 3
	clusterShards = 3
)

// testNode is one process: one Mux hosting a replica of every shard.
type testNode struct {
	id     raft.ServerID
	mux    *Mux
	rafts  [clusterShards]*raft.Raft
	fsms   [clusterShards]*countFSM
	trans  [clusterShards]*raft.NetworkTransport
	closed bool // mux closed by the test
}

type testCluster struct {
	t     testing.TB
	nodes []*testNode
	once  sync.Once
}

// newTestCluster starts clusterNodes nodes on loopback, each with one Mux,
// and bootstraps every shard with all nodes as voters.
func newTestCluster(t testing.TB) *testCluster {
	t.Helper()
	logger := testLogger(t, slog.LevelInfo)
	c := &testCluster{t: t}
	var servers []raft.Server
	for i := range clusterNodes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listening: %v", err)
		}
		id := raft.ServerID(fmt.Sprintf("node%d", i))
		m, err := NewMux(ln, nil, WithLogger(logger.With("node", id)))
		if err != nil {
			t.Fatalf("NewMux: %v", err)
		}
		c.nodes = append(c.nodes, &testNode{id: id, mux: m})
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: id, Address: raft.ServerAddress(m.Addr().String())})
	}
	t.Cleanup(c.shutdown)
	for _, n := range c.nodes {
		for s := range clusterShards {
			hlog := hclogslog.New(logger.With("node", n.id, "shard", s))
			layer, err := n.mux.Layer(uint32(s))
			if err != nil {
				t.Fatalf("%s: Layer(%d): %v", n.id, s, err)
			}
			n.trans[s] = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
				Stream:  layer,
				MaxPool: 2,
				Timeout: time.Second,
				Logger:  hlog.Named("transport"),
			})
			conf := raft.DefaultConfig()
			conf.LocalID = n.id
			conf.HeartbeatTimeout = 50 * time.Millisecond
			conf.ElectionTimeout = 50 * time.Millisecond
			conf.LeaderLeaseTimeout = 50 * time.Millisecond
			conf.CommitTimeout = 5 * time.Millisecond
			conf.Logger = hlog.Named("raft")
			logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
			if err := raft.BootstrapCluster(conf, logs, logs, snaps, n.trans[s], raft.Configuration{Servers: servers}); err != nil {
				t.Fatalf("%s: bootstrapping shard %d: %v", n.id, s, err)
			}
			n.fsms[s] = newCountFSM()
			if n.rafts[s], err = raft.NewRaft(conf, n.fsms[s], logs, logs, snaps, n.trans[s]); err != nil {
				t.Fatalf("%s: starting raft for shard %d: %v", n.id, s, err)
			}
		}
	}
	return c
}

// shutdown stops every raft, transport and mux; it may be called more than once.
func (c *testCluster) shutdown() {
	c.once.Do(func() {
		for _, n := range c.nodes {
			for s := range clusterShards {
				if n.rafts[s] != nil {
					if err := n.rafts[s].Shutdown().Error(); err != nil {
						c.t.Errorf("%s: shutting down shard %d: %v", n.id, s, err)
					}
				}
				if n.trans[s] != nil {
					n.trans[s].Close()
				}
			}
			n.mux.Close()
		}
	})
}

// live returns the nodes whose mux the test has not closed.
func (c *testCluster) live() []*testNode {
	var out []*testNode
	for _, n := range c.nodes {
		if !n.closed {
			out = append(out, n)
		}
	}
	return out
}

// leader returns the only live node that leads shard, waiting up to 5s.
func (c *testCluster) leader(t testing.TB, shard int) *testNode {
	t.Helper()
	var leader *testNode
	eventually(t, 5*time.Second, func() error {
		var leaders []raft.ServerID
		leader = nil
		for _, n := range c.live() {
			if n.rafts[shard].State() == raft.Leader {
				leader = n
				leaders = append(leaders, n.id)
			}
		}
		if len(leaders) != 1 {
			return fmt.Errorf("shard %d: want 1 leader among live nodes, got %v", shard, leaders)
		}
		return nil
	})
	return leader
}

// apply commits cmd to shard through its current leader, retrying through
// elections for up to 5s.
func (c *testCluster) apply(t testing.TB, shard int, cmd string) {
	t.Helper()
	eventually(t, 5*time.Second, func() error {
		for _, n := range c.live() {
			if n.rafts[shard].State() == raft.Leader {
				if err := n.rafts[shard].Apply([]byte(cmd), time.Second).Error(); err != nil {
					return fmt.Errorf("shard %d: applying %q on %s: %w", shard, cmd, n.id, err)
				}
				return nil
			}
		}
		return fmt.Errorf("shard %d: no live leader to apply %q", shard, cmd)
	})
}

// expectApplied waits until every live replica of shard has applied exactly
// want, in order.
func (c *testCluster) expectApplied(t testing.TB, shard int, want []string) {
	t.Helper()
	eventually(t, 5*time.Second, func() error {
		for _, n := range c.live() {
			got := n.fsms[shard].Applied()
			if !slices.Equal(got, want) {
				return fmt.Errorf("shard %d on %s: want %d commands %q..%q, got %d: %q",
					shard, n.id, len(want), want[0], want[len(want)-1], len(got), got)
			}
		}
		return nil
	})
}

func commands(shard, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("shard%d/cmd%03d", shard, i))
	}
	return out
}

// TestRaftShardsShareOnePort runs three Raft groups over three nodes, each
// node serving all of them on one port, then loses a node.
func TestRaftShardsShareOnePort(t *testing.T) {
	checkLeaks := checkNoLeaks(t)
	c := newTestCluster(t)

	t.Run("replicate", func(t *testing.T) {
		for s := range clusterShards {
			t.Run(fmt.Sprintf("shard%d", s), func(t *testing.T) {
				t.Parallel()
				c.leader(t, s)
				for _, cmd := range commands(s, 0, 100) {
					c.apply(t, s, cmd)
				}
				c.expectApplied(t, s, commands(s, 0, 100))
			})
		}
	})
	if t.Failed() {
		return
	}

	// Close the node leading shard 0, so at least that shard must re-elect.
	victim := c.leader(t, 0)
	if err := victim.mux.Close(); err != nil {
		t.Fatalf("closing %s's mux: %v", victim.id, err)
	}
	victim.closed = true
	t.Logf("closed the mux of %s", victim.id)

	t.Run("survive", func(t *testing.T) {
		for s := range clusterShards {
			t.Run(fmt.Sprintf("shard%d", s), func(t *testing.T) {
				t.Parallel()
				c.leader(t, s)
				for _, cmd := range commands(s, 100, 110) {
					c.apply(t, s, cmd)
				}
				c.expectApplied(t, s, commands(s, 0, 110))
			})
		}
	})

	c.shutdown()
	checkLeaks()
}

// Package node is one frontdeskd process: configuration, listeners, gossip
// membership, forming the cluster, hosting this node's shard replicas, and
// the HTTP server that mounts the dispatch API with health, metrics and
// pprof. It holds no domain logic.
package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/frontdeskhq/frontdesk/dispatch"
	"github.com/frontdeskhq/frontdesk/shard"
	"github.com/frontdeskhq/frontdesk/shard/transport"
)

// Node is a running frontdeskd.
type Node struct {
	cfg     *Config
	log     *slog.Logger
	sec     *security
	dataDir string
	tempDir bool
	started time.Time

	apiLn   net.Listener
	raftLn  net.Listener
	mux     *transport.Mux
	host    *shard.Host
	members *membership
	server  *http.Server
	api     *dispatch.Service // served by server
	metrics *metrics

	shards   atomic.Uint32 // 0 until this node belongs to a formed cluster
	repl     atomic.Int32  // the cluster's replication factor, once formed
	draining atomic.Bool
	formed   chan struct{}
	stateMu  sync.Mutex // serializes writes of the cluster file

	peers       *peers
	placeCache  placeCache
	placeCancel context.CancelFunc // stops the placement loop
	placeDone   chan struct{}      // closed when it has stopped

	stop     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// clusterFile records, in the data dir, that this node belongs to a formed
// cluster and its shard count; a restart reads it and does not bootstrap.
const clusterFile = "cluster.json"

type clusterState struct {
	Shards      uint32 `json:"shards"`
	Replication int    `json:"replication,omitempty"`
	// Draining survives a restart: a drained node stays drained.
	Draining bool `json:"draining,omitempty"`
}

// Start opens the listeners, joins gossip, and forms or rejoins the
// cluster in the background. It returns once the node is listening.
func Start(cfg *Config, log *slog.Logger) (*Node, error) {
	if log == nil {
		log = slog.Default()
	}
	n := &Node{cfg: cfg, log: log.With("node", cfg.ID), formed: make(chan struct{}), stop: make(chan struct{})}
	if err := n.start(); err != nil {
		n.closeAll()
		return nil, err
	}
	return n, nil
}

func (n *Node) start() error {
	sec, err := n.cfg.loadSecurity()
	if err != nil {
		return err
	}
	if err := n.cfg.checkExposure(sec); err != nil {
		return err
	}
	if sec.authSecret == nil && !loopbackOnly(n.cfg.APIAddr) {
		n.log.Warn("INSECURE: the API is open to anyone who can reach " + n.cfg.APIAddr + " (--insecure, no --auth-secret-file)")
	}
	n.sec = sec
	n.dataDir = n.cfg.DataDir
	if n.dataDir == "" {
		dir, err := os.MkdirTemp("", "frontdesk-dev-")
		if err != nil {
			return err
		}
		n.dataDir, n.tempDir = dir, true
	}
	if err := os.MkdirAll(n.dataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if n.raftLn, err = net.Listen("tcp", n.cfg.RaftAddr); err != nil {
		return fmt.Errorf("--raft-addr: %w", err)
	}
	if n.apiLn, err = net.Listen("tcp", n.cfg.APIAddr); err != nil {
		return fmt.Errorf("--api-addr: %w", err)
	}
	raftAdv, err := n.cfg.advertiseFor(n.raftLn.Addr())
	if err != nil {
		return err
	}
	apiAdv, err := n.cfg.advertiseFor(n.apiLn.Addr())
	if err != nil {
		return err
	}
	advAddr, err := net.ResolveTCPAddr("tcp", raftAdv)
	if err != nil {
		return fmt.Errorf("advertised raft address %q: %w", raftAdv, err)
	}
	muxOpts := []transport.Option{transport.WithLogger(n.log.With("component", "raft-mux"))}
	if n.sec.peerTLS != nil {
		muxOpts = append(muxOpts, transport.WithTLS(n.sec.peerTLS))
	}
	if !n.cfg.RaftNoQuiet && n.cfg.RaftCoalesceWindow >= 0 {
		// A quiet beat every fifth of the heartbeat timeout (100 ms at the
		// default): it is what feeds a quiet follower's raft timer.
		muxOpts = append(muxOpts, transport.WithQuiet(n.cfg.heartbeatTimeout()/5))
	}
	if n.mux, err = transport.NewMux(n.raftLn, advAddr, muxOpts...); err != nil {
		return err
	}
	sharedLog, err := n.cfg.sharedLog(n.dataDir)
	if err != nil {
		return err
	}
	hc := shard.HostConfig{NodeID: n.cfg.ID, DataDir: n.dataDir, Mux: n.mux, Logger: n.log, TickInterval: n.cfg.TickInterval,
		SnapshotThreshold: n.cfg.SnapshotThreshold, SnapshotInterval: n.cfg.SnapshotInterval, TrailingLogs: n.cfg.TrailingLogs,
		MaxAppendEntries: n.cfg.MaxAppendEntries,
		SharedLog:        sharedLog}
	if n.cfg.FastRaft {
		hc.Raft = shard.FastTiming()
	}
	if d := n.cfg.RaftHeartbeatTimeout; d > 0 {
		hc.Raft.HeartbeatTimeout, hc.Raft.ElectionTimeout, hc.Raft.LeaderLeaseTimeout = d, d, d*4/5
	}
	if d := n.cfg.RaftCommitTimeout; d > 0 {
		hc.Raft.CommitTimeout = d
	}
	hc.Raft.CoalesceWindow = n.cfg.RaftCoalesceWindow
	if n.host, err = shard.NewHost(hc); err != nil {
		return err
	}
	n.metrics = newMetrics(n)
	n.server = n.newHTTPServer()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		serve := func() error { return n.server.Serve(n.apiLn) }
		if n.sec.apiTLS != nil {
			serve = func() error { return n.server.ServeTLS(n.apiLn, "", "") }
		}
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("api server", "err", err)
		}
	}()
	self := meta{ID: n.cfg.ID, RaftAddr: raftAdv, APIAddr: apiAdv}
	// A restarted member says from its first gossip message that it
	// belongs to the cluster: otherwise, for a moment, placement would see a
	// live node that holds nothing and move its replicas away.
	st, formed, err := n.readClusterFile()
	if err != nil {
		return fmt.Errorf("%s: %w", clusterFile, err)
	}
	if formed {
		self.Shards, self.Replication, self.Draining = st.Shards, st.Replication, st.Draining
	}
	if n.members, err = newMembership(n.cfg, self, n.log, n.sec.gossipKey); err != nil {
		return err
	}
	joinTimeout := n.cfg.JoinTimeout
	if joinTimeout <= 0 {
		joinTimeout = 30 * time.Second
	}
	if err := n.members.join(n.cfg.Join, joinTimeout); err != nil {
		return err
	}
	n.peers = newPeers(n)
	ctx, cancel := context.WithCancel(context.Background())
	n.placeCancel, n.placeDone = cancel, make(chan struct{})
	n.wg.Add(3)
	go func() { defer n.wg.Done(); n.form() }()
	go func() { defer n.wg.Done(); n.watchLeadership() }()
	go func() { defer n.wg.Done(); defer close(n.placeDone); n.placementLoop(ctx) }()
	logStore := LogStorePerShard
	if sharedLog {
		logStore = LogStoreShared
	}
	n.log.Info("node started", "api", apiAdv, "raft", raftAdv, "gossip", n.cfg.GossipAddr, "data_dir", n.dataDir, "log_store", logStore)
	return nil
}

// APIAddr is the address the API listens on (useful with port 0).
func (n *Node) APIAddr() string { return n.apiLn.Addr().String() }

// GossipAddr is the address gossip listens on.
func (n *Node) GossipAddr() string {
	a := n.members.list.LocalNode()
	return net.JoinHostPort(a.Addr.String(), fmt.Sprint(a.Port))
}

// ID is the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// Formed is closed once the node belongs to a formed cluster with its shards open.
func (n *Node) Formed() <-chan struct{} { return n.formed }

// form waits for the cluster to form (or reads that it already has), opens
// this node's replicas, and bootstraps the shards this node is chosen for.
func (n *Node) form() {
	if st, ok, err := n.readClusterFile(); err != nil {
		n.log.Error("cannot read cluster state; not serving", "err", err)
		return
	} else if ok {
		n.joinCluster(st, nil)
		return
	}
	for {
		members, changed := n.members.snapshot()
		var alive []member
		var formedBy *member
		for i, mb := range members {
			if mb.State != "alive" {
				continue
			}
			alive = append(alive, mb)
			if mb.Shards > 0 && formedBy == nil {
				formedBy = &members[i]
			}
		}
		switch {
		case formedBy != nil:
			repl := formedBy.Replication
			if repl == 0 {
				repl = n.cfg.Replication
			}
			n.log.Info("joining a formed cluster", "shards", formedBy.Shards, "replication", repl, "seen_via", formedBy.ID)
			n.joinCluster(clusterState{Shards: formedBy.Shards, Replication: repl}, nil)
			return
		case n.cfg.BootstrapExpect > 0 && len(alive) >= n.cfg.BootstrapExpect:
			voters := alive[:n.cfg.BootstrapExpect]
			for _, v := range voters {
				if v.ID == n.cfg.ID {
					n.joinCluster(clusterState{Shards: n.cfg.Shards, Replication: n.cfg.Replication}, voters)
					return
				}
			}
			n.log.Warn("more nodes than --bootstrap-expect met; this one is not among the first voters and waits", "voters", len(voters))
		}
		select {
		case <-changed:
		case <-n.stop:
			return
		case <-time.After(time.Second):
		}
	}
}

// joinCluster makes this node a member of the cluster st describes. It
// opens every replica found on disk (after a restart this node may still be
// a voter of those shards). When voters is set the cluster is new: this
// node opens the shards the placement over voters gives it and bootstraps
// each of them with the same configuration as its other voters do. Replicas are then opened and dropped by the
// placement loop (hosting.go).
func (n *Node) joinCluster(st clusterState, voters []member) {
	if st.Replication <= 0 {
		st.Replication = n.cfg.Replication
	}
	stored, err := n.host.Stored()
	if err != nil {
		n.log.Error("list stored replicas", "err", err)
		return
	}
	// Replicas with state restore their snapshots as they open: several
	// at a time.
	open := slices.DeleteFunc(stored, func(s uint32) bool { return s >= st.Shards })
	if _, err := n.host.OpenAll(open); err != nil {
		n.log.Error("open shards", "shards", len(open), "err", err)
		return
	}
	if len(voters) > 0 {
		ids := make([]string, len(voters))
		byID := map[string]member{}
		for i, v := range voters {
			ids[i] = v.ID
			byID[v.ID] = v
		}
		p := Place(st.Shards, ids, st.Replication)
		bootstrapped := 0
		for s := range st.Shards {
			if !p.Has(s, n.cfg.ID) {
				continue
			}
			g, err := n.host.Open(s)
			if err != nil {
				n.log.Error("open shard", "shard", s, "err", err)
				return
			}
			// Every voter of a new shard bootstraps it with the same
			// configuration (raft's advice): a replica that starts empty
			// without bootstrapping refuses votes until a leader has
			// caught it up (shard/voteguard.go), so one bootstrapper alone
			// could never be elected.
			has, err := n.host.HasState(s)
			if err != nil {
				n.log.Error("shard state", "shard", s, "err", err)
				return
			}
			if has {
				continue
			}
			servers := make([]member, len(p[s]))
			for i, id := range p[s] {
				servers[i] = byID[id]
			}
			if err := g.Bootstrap(raftServers(servers)); err != nil {
				n.log.Error("bootstrap shard", "shard", s, "err", err)
				return
			}
			bootstrapped++
		}
		n.log.Info("formed the cluster", "shards", st.Shards, "replication", st.Replication,
			"voters", len(voters), "bootstrapped_here", bootstrapped)
	}
	if err := n.writeClusterFile(st); err != nil {
		n.log.Error("write cluster state", "err", err)
		return
	}
	n.repl.Store(int32(st.Replication))
	n.draining.Store(st.Draining)
	n.shards.Store(st.Shards)
	n.members.update(func(m *meta) {
		m.Shards, m.Replication, m.Draining = st.Shards, st.Replication, st.Draining
	})
	close(n.formed)
}

func (n *Node) readClusterFile() (clusterState, bool, error) {
	var st clusterState
	b, err := os.ReadFile(filepath.Join(n.dataDir, clusterFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	if err := json.Unmarshal(b, &st); err != nil || st.Shards == 0 {
		return st, false, fmt.Errorf("%s is corrupt: %v", clusterFile, err)
	}
	return st, true, nil
}

func (n *Node) writeClusterFile(st clusterState) error {
	n.stateMu.Lock()
	defer n.stateMu.Unlock()
	b, _ := json.Marshal(st)
	tmp := filepath.Join(n.dataDir, clusterFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(n.dataDir, clusterFile))
}

// watchLeadership keeps the shards this node leads in its gossip metadata,
// so that any node can tell a client where a shard's leader is.
func (n *Node) watchLeadership() {
	var last []uint32
	// A slow timer as well, in case a replica opened after the last wake-up
	// became leader without a change the host reports.
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		changed := n.host.LeaderChanged() // take it before reading, to miss nothing
		var leads []uint32
		for _, g := range n.host.Groups() {
			if g.IsLeader() {
				leads = append(leads, g.Shard())
			}
		}
		if !slices.Equal(leads, last) {
			last = leads
			n.members.update(func(m *meta) { m.Leads = leads })
		}
		select {
		case <-n.stop:
			return
		case <-changed:
		case <-t.C:
		}
	}
}

// Shutdown stops the node gracefully: leaderships move to other voters,
// in-flight requests finish, event streams end (UNAVAILABLE, so that their
// clients resume on another node), gossip is left, replicas close. It is
// what SIGTERM does.
func (n *Node) Shutdown(ctx context.Context) error {
	var err error
	n.stopOnce.Do(func() {
		n.stopPlacement()
		if n.host != nil {
			if terr := n.host.TransferLeadershipAway(ctx); terr != nil {
				n.log.Warn("leadership transfer on shutdown", "err", terr)
			}
		}
		close(n.stop)
		if n.server != nil {
			// Event streams end now (their clients resume elsewhere):
			// Shutdown would wait for them until ctx ends.
			n.api.CloseStreams()
			err = n.server.Shutdown(ctx)
		}
		if n.members != nil {
			n.members.leave(2 * time.Second)
		}
		n.closeAll()
		n.wg.Wait()
		n.log.Info("node stopped")
	})
	return err
}

// Kill stops the node abruptly (tests): no leadership transfer, no gossip leave.
func (n *Node) Kill() {
	n.stopOnce.Do(func() {
		n.stopPlacement()
		close(n.stop)
		if n.server != nil {
			_ = n.server.Close()
		}
		if n.members != nil {
			_ = n.members.list.Shutdown()
		}
		n.closeAll()
		n.wg.Wait()
	})
}

// stopPlacement stops the placement loop and waits for it, so that it
// moves no leadership back while the node shuts down.
func (n *Node) stopPlacement() {
	if n.placeCancel != nil {
		n.placeCancel()
		<-n.placeDone
	}
	if n.peers != nil {
		n.peers.close()
	}
}

func (n *Node) closeAll() {
	if n.host != nil {
		_ = n.host.Close()
	}
	if n.mux != nil {
		_ = n.mux.Close()
	} else if n.raftLn != nil {
		_ = n.raftLn.Close()
	}
	if n.apiLn != nil {
		_ = n.apiLn.Close()
	}
	if n.tempDir {
		_ = os.RemoveAll(n.dataDir)
	}
}

var _ dispatch.Cluster = (*Node)(nil)

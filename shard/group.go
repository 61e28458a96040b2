package shard

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/frontdeskhq/frontdesk/fsm"
	"github.com/frontdeskhq/frontdesk/internal/hclogslog"
	"github.com/frontdeskhq/frontdesk/shard/transport"
)

// Group is this node's replica of one shard: a Raft group member and the
// shard's state machine. Obtain one from Host.Open; Host.Close closes it.
type Group struct {
	shard  uint32
	nodeID string
	cfg    *HostConfig
	log    *slog.Logger

	app   *applier
	raft  *raft.Raft
	store Store
	logs  raft.LogStore // raft's log cache in front of store
	snaps raft.SnapshotStore
	trans *transport.Transport
	guard *voteGuard // refuses votes until the replica has state
	prop  proposer

	// fastElections counts elections started by leaderGone: the Host's
	// counter, shared by its replicas.
	fastElections *atomic.Uint64
	// lastVoteRequest is the latest vote request raft received (see
	// stillLeaderless).
	lastVoteRequest atomic.Pointer[voteRequest]
	// refusedVote hears of vote requests this replica cannot grant, their
	// candidate's log being behind its own: a voter waiting for its turn
	// to stand after a leader's node is gone stands at once (leaderGone).
	refusedVote chan *voteRequest
	// fastElectionsEarly counts the fast elections of refusedVote: the
	// Host's counter.
	fastElectionsEarly *atomic.Uint64
	// standTerm is the term in which this replica last sent itself a
	// TimeoutNow (startElection; see filterRPC), and standAt when (Unix ns).
	standTerm atomic.Uint64
	standAt   atomic.Int64
	// voteArrived is the latest vote request to arrive, seen by filterRPC
	// before raft takes it.
	voteArrived atomic.Pointer[voteRequest]

	// readyTerm is the term in which this replica, as leader, committed an
	// entry of its own (see lead); linearizable reads need that.
	readyTerm atomic.Uint64

	changed     notifier  // leader or raft state changed
	hostChanged *notifier // the Host's, notified with changed
	observer    *raft.Observer
	closing     chan struct{} // closed first by close
	closeOnce   sync.Once
	closeErr    error
	wg          sync.WaitGroup // leadership and observation goroutines
}

// shardDir is where a shard's replica lives.
func shardDir(dataDir string, shard uint32) string {
	return filepath.Join(dataDir, "shards", strconv.FormatUint(uint64(shard), 10))
}

// openGroup starts a replica from what is on disk, bootstrapping nothing.
func openGroup(cfg *HostConfig, shard uint32, hostChanged *notifier) (g *Group, err error) {
	dir := shardDir(cfg.DataDir, shard)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("shard %d: %w", shard, err)
	}
	logger := cfg.Logger.With("shard", shard)
	hlog := hclogslog.New(logger)
	g = &Group{
		shard: shard, nodeID: cfg.NodeID, cfg: cfg, log: logger,
		app:         &applier{FSM: fsm.New(fsm.Config{Shard: shard})},
		hostChanged: hostChanged,
		closing:     make(chan struct{}),
		refusedVote: make(chan *voteRequest, 1),
	}

	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
			err = fmt.Errorf("shard %d: opening replica in %s: %w", shard, dir, err)
		}
	}()
	if g.store, err = cfg.OpenStore(dir, shard); err != nil {
		return nil, err
	}
	closers = append(closers, g.store.Close)
	cache, err := raft.NewLogCache(logCacheSize, g.store)
	if err != nil {
		return nil, err
	}
	g.logs = cache
	if g.snaps, err = raft.NewFileSnapshotStoreWithLogger(dir, 2, hlog.Named("snapshot")); err != nil {
		return nil, err
	}
	has, err := raft.HasExistingState(g.logs, g.store, g.snaps)
	if err != nil {
		return nil, err
	}
	g.guard = newVoteGuard(raft.ServerID(cfg.NodeID), raft.ServerAddress(cfg.Mux.Addr().String()), !has, logger)
	g.trans, err = cfg.Mux.Transport(shard, transport.TransportConfig{
		Net: raft.NetworkTransportConfig{
			MaxPool: cfg.TransportPool,
			Timeout: cfg.TransportTimeout,
			Logger:  hlog.Named("raft-net"),
			// No pipelining: in raft v1.7.3 a leader whose pipeline decoder
			// stops (a response from a newer term, as after a leadership
			// transfer) can block for ever sending the next entry, and then
			// raft.Shutdown never returns. hashicorp measured pipelining to help
			// only on high-latency links (see MaxRPCsInFlight's doc).
			MaxRPCsInFlight: 1,
		},
		CoalesceWindow: cfg.Raft.CoalesceWindow,
		Filter:         g.filterRPC,
	})
	if err != nil {
		return nil, err
	}
	closers = append(closers, g.trans.Close)

	rc := cfg.raftConfig()
	rc.Logger = hlog.Named("raft")
	if g.raft, err = raft.NewRaft(rc, g.app, g.logs, g.store, g.snaps, g.trans); err != nil {
		return nil, err
	}
	g.guard.setRaft(g.raft)
	g.trans.SetCommitIndex(g.raft.CommitIndex) // idle followers learn it from a heartbeat
	g.prop = newBatcher(g, MaxBatchCommands, MaxInflightEntries, g.raft.Apply)

	obs := make(chan raft.Observation, 16)
	g.observer = raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState, raft.RequestVoteRequest:
			return true
		}
		return false
	})
	g.raft.RegisterObserver(g.observer)
	g.wg.Add(2)
	go g.observe(obs)
	go g.watchLeadership()
	return g, nil
}

// Shard is the shard's number.
func (g *Group) Shard() uint32 { return g.shard }

// FSM is the replica's state machine. Its queries may be called at any
// time and see the state between entries; call LinearizableRead first for a
// read that reflects every write acknowledged before it.
func (g *Group) FSM() *fsm.FSM { return g.app.FSM }

// IsLeader reports whether this replica leads its shard right now.
func (g *Group) IsLeader() bool { return g.raft.State() == raft.Leader }

// Bootstrap makes voters the shard's first configuration. Call it on a
// replica with no state, on one node of the cluster only (the others learn
// the configuration from the leader); it fails with ErrHasState otherwise.
// voters should include this node.
func (g *Group) Bootstrap(voters []raft.Server) error {
	if len(voters) == 0 {
		return fmt.Errorf("shard %d: bootstrap: no voters", g.shard)
	}
	err := g.raft.BootstrapCluster(raft.Configuration{Servers: voters}).Error()
	switch {
	case err == nil:
		g.guard.release() // a new shard: this replica has promised nothing yet
		return nil
	case errors.Is(err, raft.ErrCantBootstrap):
		return fmt.Errorf("shard %d: bootstrap: %w", g.shard, ErrHasState)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("shard %d: bootstrap: %w", g.shard, ErrShutdown)
	}
	return fmt.Errorf("shard %d: bootstrap: %w", g.shard, err)
}

// Info describes a replica as it sees itself.
type Info struct {
	Shard uint32
	// State is raft's name for the replica's role: "Leader", "Follower",
	// "Candidate" or "Shutdown".
	State string
	Term  uint64
	// CommitIndex is the highest index known committed; AppliedIndex the
	// highest handed to the state machine; LastIndex the last in the log.
	CommitIndex, AppliedIndex, LastIndex uint64
	// LeaderID and LeaderAddr (a Raft address) name the leader as this
	// replica knows it; "" if unknown.
	LeaderID, LeaderAddr string
	// Voters of the latest configuration, committed or not.
	Voters []raft.Server
}

// Info returns the replica's view of its shard. It never blocks on Raft.
func (g *Group) Info() Info {
	addr, id := g.raft.LeaderWithID()
	in := Info{
		Shard:        g.shard,
		State:        g.raft.State().String(),
		Term:         g.raft.CurrentTerm(),
		CommitIndex:  g.raft.CommitIndex(),
		AppliedIndex: g.raft.AppliedIndex(),
		LastIndex:    g.raft.LastIndex(),
		LeaderID:     string(id),
		LeaderAddr:   string(addr),
	}
	if f := g.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				in.Voters = append(in.Voters, s)
			}
		}
	}
	return in
}

// LeaderChanged returns a channel closed at the next change of this
// replica's Raft state or of the leader it knows, and when the replica
// closes. Call Info after it fires; take a new channel before doing so to
// miss nothing.
func (g *Group) LeaderChanged() <-chan struct{} {
	select {
	case <-g.closing:
		return g.closing
	default:
		return g.changed.wait()
	}
}

// observe turns raft's leader and state observations into notifications.
func (g *Group) observe(obs <-chan raft.Observation) {
	defer g.wg.Done()
	for {
		select {
		case o := <-obs:
			if req, ok := o.Data.(raft.RequestVoteRequest); ok {
				g.voteRequested(req)
				continue
			}
			g.changed.notify()
			g.hostChanged.notify()
		case <-g.closing:
			return
		}
	}
}

// close shuts the replica down: background work stops, waiting proposals
// return, raft shuts down, and the transport and the store close. It is
// idempotent and returns the first call's error.
func (g *Group) close() error {
	g.closeOnce.Do(func() {
		close(g.closing)
		g.wg.Wait()
		g.raft.DeregisterObserver(g.observer)
		errs := []error{g.raft.Shutdown().Error(), g.trans.Close(), g.store.Close()}
		g.prop.wait()
		if err := errors.Join(errs...); err != nil {
			g.closeErr = fmt.Errorf("shard %d: closing: %w", g.shard, err)
		}
		g.changed.notify()
		g.hostChanged.notify()
	})
	return g.closeErr
}

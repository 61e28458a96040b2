package shard

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// Test-only views of a replica's Raft internals.

// FirstLogIndex is the first index still in the replica's log (0 if empty):
// everything before it was compacted into a snapshot.
func (g *Group) FirstLogIndex() (uint64, error) { return g.logs.FirstIndex() }

// SnapshotIndex is the index of the replica's latest snapshot (0 if none).
func (g *Group) SnapshotIndex() uint64 {
	i, _ := strconv.ParseUint(g.raft.Stats()["last_snapshot_index"], 10, 64)
	return i
}

// ReadyTerm is the term in which the replica, as leader, has committed an
// entry of its own; LinearizableRead uses the read index only then.
func (g *Group) ReadyTerm() uint64 { return g.readyTerm.Load() }

// StandAsIn makes the replica send itself a TimeoutNow, as a fast election
// does, as if it had decided to stand in term standTerm, and returns the
// transport's answer.
func (g *Group) StandAsIn(standTerm uint64) error {
	g.DecideToStand(standTerm)
	return g.SendStand()
}

// DecideToStand records, as startElection does, that the replica decided
// now to stand in term standTerm.
func (g *Group) DecideToStand(standTerm uint64) {
	g.standAt.Store(time.Now().UnixNano())
	g.standTerm.Store(standTerm)
}

// SendStand sends the replica the TimeoutNow of its decision to stand.
func (g *Group) SendStand() error {
	var resp raft.TimeoutNowResponse
	return g.trans.TimeoutNow(raft.ServerID(g.nodeID), raft.ServerAddress(g.trans.LocalAddr()),
		&raft.TimeoutNowRequest{RPCHeader: g.guard.header}, &resp)
}

// HandingOver reports whether raft refuses writes to the replica because
// it is handing its leadership over. It probes with a barrier entry, which
// commits when raft takes it.
func (g *Group) HandingOver() bool {
	return errors.Is(g.raft.Barrier(0).Error(), raft.ErrLeadershipTransferInProgress)
}

// Barrier is what a linearizable read does on a leader that has not yet
// committed an entry of its term, and what a new leader does first: it
// commits a barrier entry, then marks the term ready.
func (g *Group) Barrier(ctx context.Context) error { return g.barrier(ctx) }

// CurrentTerm is the replica's Raft term.
func (g *Group) CurrentTerm() uint64 { return g.raft.CurrentTerm() }

// DelayPeerReports makes the Host hear d late that a peer is gone, as a
// node whose watch connection noticed later than the others would.
func (h *Host) DelayPeerReports(d time.Duration) {
	h.cfg.Mux.OnPeerDown(func(addr raft.ServerAddress) {
		time.Sleep(d)
		h.peerDown(addr)
	})
}

// VoteRequestArrives passes a vote request through the replica's RPC
// filter, as its arrival would, without handing it to raft.
func (g *Group) VoteRequestArrives(term, lastLogIndex, lastLogTerm uint64) {
	g.filterRPC(raft.RPC{Command: &raft.RequestVoteRequest{Term: term, LastLogIndex: lastLogIndex, LastLogTerm: lastLogTerm},
		RespChan: make(chan raft.RPCResponse, 1)})
}

// LastLog is the index and term of the replica's last log entry.
func (g *Group) LastLog() (uint64, uint64) {
	idx := g.raft.LastIndex()
	var l raft.Log
	if err := g.logs.GetLog(idx, &l); err != nil {
		return idx, 0
	}
	return idx, l.Term
}

// TakeSnapshot makes raft snapshot the replica now.
func (g *Group) TakeSnapshot() error { return g.raft.Snapshot().Error() }

// RaftConfigOf is the raft configuration a Host built from c gives its
// replicas.
func RaftConfigOf(c HostConfig) (*raft.Config, error) {
	c, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	return c.raftConfig(), nil
}

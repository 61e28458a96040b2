package shard

import (
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
	g.standTerm.Store(standTerm)
	var resp raft.TimeoutNowResponse
	return g.trans.TimeoutNow(raft.ServerID(g.nodeID), raft.ServerAddress(g.trans.LocalAddr()),
		&raft.TimeoutNowRequest{RPCHeader: g.guard.header}, &resp)
}

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

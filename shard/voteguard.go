package shard

import (
	"log/slog"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// voteGuard keeps a replica that starts without any Raft state from
// voting until it has caught up with a leader.
//
// Raft's safety rests on voters remembering what they accepted: an entry
// is committed once a majority stored it, and a candidate wins only with
// votes from replicas whose logs are no newer than its own. A replica
// that comes back empty under its old identity — its disk replaced, its
// data dir wiped — has forgotten entries it helped commit, so its vote can
// elect a follower that never had them, and they are lost although clients
// were told they were written (TestWipedVoterDoesNotElectStaleLeader). On
// its own disk such a replica looks exactly like a brand-new one, so every
// replica opened without state is guarded: it refuses RequestVote and
// RequestPreVote until it has applied the commit index the first leader
// to reach it reported (then it holds everything committed before it was
// wiped), or until it bootstraps the shard itself (a new cluster, where
// nobody has promised anything yet). Refusing a vote is always safe; the
// cost is that a shard whose only other live voter is a stale one waits
// for a third replica instead of losing data.
//
// It is a filter on the replica's transport (transport.TransportConfig's
// Filter): see filter.
type voteGuard struct {
	guarding atomic.Bool // false once caught up or bootstrapped
	target   atomic.Uint64
	raft     atomic.Pointer[raft.Raft]
	refused  atomic.Uint64
	header   raft.RPCHeader
	log      *slog.Logger
}

// newVoteGuard returns the guard of the replica id at addr; guard says
// whether the replica opened without state. Call setRaft once raft exists.
func newVoteGuard(id raft.ServerID, addr raft.ServerAddress, guard bool, log *slog.Logger) *voteGuard {
	v := &voteGuard{
		log: log,
		header: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(id),
			Addr: []byte(addr)},
	}
	v.guarding.Store(guard)
	return v
}

func (v *voteGuard) setRaft(r *raft.Raft) { v.raft.Store(r) }

// release stops guarding: the replica bootstrapped the shard.
func (v *voteGuard) release() { v.guarding.Store(false) }

// filter answers rpc itself, and reports true, if it is a vote request the
// replica must refuse; once the replica caught up it costs one atomic load.
func (v *voteGuard) filter(rpc raft.RPC) bool {
	return v.guarding.Load() && v.refuse(rpc)
}

// refuse answers rpc itself if it asks for a vote while the replica has not
// caught up, and notes the first commit index a leader reports.
func (v *voteGuard) refuse(rpc raft.RPC) bool {
	if v.caughtUp() {
		v.guarding.Store(false)
		if n := v.refused.Load(); n > 0 {
			v.log.Info("caught up after starting without state: voting again", "votes_refused", n, "caught_up_to", v.target.Load())
		}
		return false
	}
	var term uint64
	if r := v.raft.Load(); r != nil {
		term = r.CurrentTerm()
	}
	switch req := rpc.Command.(type) {
	case *raft.AppendEntriesRequest:
		// Not from a heartbeat that carries the commit index
		// (transport/commit.go, no PrevLogEntry): it tells at most what
		// this replica acknowledged before losing its state, not the
		// leader's commit index.
		if req.LeaderCommitIndex > 0 && (req.PrevLogEntry > 0 || len(req.Entries) > 0) {
			v.target.CompareAndSwap(0, req.LeaderCommitIndex)
		}
	case *raft.RequestVoteRequest:
		v.noteRefusal()
		rpc.Respond(&raft.RequestVoteResponse{RPCHeader: v.header, Term: term, Granted: false}, nil)
		return true
	case *raft.RequestPreVoteRequest:
		v.noteRefusal()
		rpc.Respond(&raft.RequestPreVoteResponse{RPCHeader: v.header, Term: term, Granted: false}, nil)
		return true
	}
	return false
}

func (v *voteGuard) caughtUp() bool {
	r := v.raft.Load()
	t := v.target.Load()
	return r != nil && t > 0 && r.AppliedIndex() >= t
}

func (v *voteGuard) noteRefusal() {
	if v.refused.Add(1) == 1 {
		v.log.Warn("started without state: refusing votes until a leader has caught this replica up")
	}
}

package shard

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// Fast elections after a leader's process dies.
//
// A follower of hashicorp/raft starts an election only after a heartbeat
// timeout without contact (1–2 s with LANTiming), because silence is all
// it can see. But a process that dies on a live host — killed, crashed,
// OOM-killed, its container killed — has its sockets closed by the kernel
// at once, and the node's transport.Mux, which watches every peer of every
// shard (Host.watchPeers), reports that peer's Raft port gone within
// milliseconds. The Host then calls leaderGone on every replica.
//
// A replica whose leader was at that address asks its own raft to start an
// election now, the way a leadership transfer does: it sends itself a
// TimeoutNow RPC over its transport. raft then skips the pre-vote, and the
// other voters, who still believe in the old leader, grant the vote anyway
// (RequestVote with LeadershipTransfer set) if the candidate's log is as
// up to date as theirs. To avoid a split vote only one voter goes first: the
// remaining voters in ServerID order, the first at once and each next one
// half a heartbeat timeout later, each only if since the report it has
// heard from no leader, granted no vote and seen no vote request it could
// grant (stillLeaderless). If the first's log is behind, the others refuse
// it and the next one wins — without waiting for its turn: a voter that
// refuses a vote request because the candidate's log is behind its own
// stands at once, once raft has taken the request's term (a follower that
// lagged under load made the others wait their turn in fdbench failover
// runs). So the turns can be far apart: they matter only when an earlier
// voter does not stand at all, and too short a gap splits the vote when the
// machine is loaded (a quarter heartbeat timeout, 125 ms, did once in a
// failover run: the first voter's vote request took 125 ms from its report
// to reach the next, which had stood a moment before; both then waited an
// election timeout).
//
// Safety does not depend on the hint being right: an election is always
// safe in Raft, and the report needs the peer's connection closed and a
// redial refused within transport.WatchRedialTimeout. A wrong hint costs
// what a spurious election costs. A replica guarded by voteGuard (opened
// without state, not caught up) never starts one. Leaders that are paused,
// partitioned or on a host that lost power close nothing: the heartbeat
// timeout still covers them.

// fastElectStagger is the pause between the remaining voters' turns.
func (g *Group) fastElectStagger() time.Duration { return g.cfg.Raft.HeartbeatTimeout / 2 }

// peerGone is called when the node at addr is gone. Besides leaderGone,
// it empties the replica's pool of idle connections (raft's
// NetworkTransport.CloseStreams), where those to the dead process would
// stay: raft takes a pooled connection without checking it, so once that
// node is back the first RPC to it would fail — a vote request among
// them, costing an election round (1–2 s). It also ends the connections
// peers opened to this replica; they redial.
func (g *Group) peerGone(addr raft.ServerAddress) {
	f := g.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	servers := f.Configuration().Servers
	if slices.ContainsFunc(servers, func(s raft.Server) bool { return s.Address == addr }) {
		g.trans.CloseStreams()
	}
	g.leaderGone(addr, servers)
}

// leaderGone starts an election if the replica's leader was at addr;
// servers is the replica's latest configuration. See above.
func (g *Group) leaderGone(addr raft.ServerAddress, servers []raft.Server) {
	leaderID, ok := g.leaderAt(addr)
	if !ok {
		// The first voter in turn may have been quicker than this
		// node's report, and behind: its vote request, refused, made
		// raft forget the leader. Then this replica stands at once.
		if v := g.refusedSinceContact(addr, servers); v != nil {
			g.stand(addr, v.at, 0, v)
		}
		return
	}
	var voters []raft.ServerID
	for _, s := range servers {
		if s.Suffrage == raft.Voter && s.ID != leaderID {
			voters = append(voters, s.ID)
		}
	}
	slices.Sort(voters)
	turn := slices.Index(voters, raft.ServerID(g.nodeID))
	if turn < 0 {
		return // not a voter
	}
	g.stand(addr, time.Now(), time.Duration(turn)*g.fastElectStagger(), nil)
}

// stand starts an election in the background, told at since that the
// leader's node at addr is gone: at once if delay is 0 and refused is nil;
// otherwise after delay, or as soon as this replica refuses a behind
// candidate's vote request (refused, if it already has), once raft has
// taken that request's term — and then only if it is still leaderless.
func (g *Group) stand(addr raft.ServerAddress, since time.Time, delay time.Duration, refused *voteRequest) {
	if g.isClosing() {
		return
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		check := delay > 0 || refused != nil
		if refused == nil && delay > 0 {
			var closing bool
			if refused, closing = g.awaitTurn(delay, since); closing {
				return
			}
		}
		// If raft has not taken the refused request's term by now, stand
		// anyway, as at the turn (not counted as early).
		early := refused != nil && g.awaitTerm(refused.term, g.fastElectStagger())
		if check && !g.stillLeaderless(addr, since) {
			return // someone else won, or raft already moved on
		}
		if g.startElection(addr) && early {
			g.fastElectionsEarly.Add(1)
		}
	}()
}

// refusedSinceContact returns the vote request this replica refused
// because the candidate's log was behind its own, if that is why it knows
// no leader: a follower without a leader whose last vote request, refused,
// came after its last contact with a leader and less than a heartbeat
// timeout ago, when addr is a voter's. Otherwise nil.
func (g *Group) refusedSinceContact(addr raft.ServerAddress, servers []raft.Server) *voteRequest {
	if !g.mayStand() || !slices.ContainsFunc(servers, func(s raft.Server) bool {
		return s.Address == addr && s.Suffrage == raft.Voter && string(s.ID) != g.nodeID
	}) {
		return nil
	}
	if la, _ := g.raft.LeaderWithID(); la != "" {
		return nil
	}
	v := g.lastVoteRequest.Load()
	if v == nil || time.Since(v.at) > g.cfg.Raft.HeartbeatTimeout || !v.at.After(g.raft.LastContact()) || g.couldGrant(v) {
		return nil
	}
	return v
}

// awaitTurn waits until delay has passed, or until this replica refuses a
// vote request received after since (the candidate's log behind its own),
// which it returns. closing: the replica closed first.
func (g *Group) awaitTurn(delay time.Duration, since time.Time) (refused *voteRequest, closing bool) {
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-g.closing:
			return nil, true
		case <-t.C:
			return nil, false
		case v := <-g.refusedVote:
			if v.at.After(since) {
				return v, false
			}
		}
	}
}

// awaitTerm waits, at most max, until raft's current term is at least
// term: raft tells observers of a vote request before it takes the
// request's term, and a TimeoutNow sent itself in the old term would be
// dropped as stale (filterRPC).
func (g *Group) awaitTerm(term uint64, max time.Duration) bool {
	deadline := time.Now().Add(max)
	for g.raft.CurrentTerm() < term {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-g.closing:
			return false
		case <-time.After(time.Millisecond):
		}
	}
	return true
}

// leaderAt reports whether this replica is a follower that still takes the
// node at addr for its leader, and may start an election.
func (g *Group) leaderAt(addr raft.ServerAddress) (raft.ServerID, bool) {
	if !g.mayStand() {
		return "", false
	}
	la, lid := g.raft.LeaderWithID()
	if la != addr || lid == "" {
		return "", false
	}
	return lid, true
}

// mayStand reports whether this replica may start a fast election: a
// follower not held back by the vote guard.
func (g *Group) mayStand() bool {
	return g.raft.State() == raft.Follower && !g.guard.guarding.Load()
}

// stillLeaderless reports whether this replica, told at reported that its
// leader's node at addr is gone, has since heard from no leader, granted no
// vote and received no vote request it could grant: it is a follower that
// knows no leader or still the one at addr. (A vote request of a higher
// term clears a follower's leader even when it refuses the vote, as when
// the first voter's log is behind.)
func (g *Group) stillLeaderless(addr raft.ServerAddress, reported time.Time) bool {
	if !g.mayStand() {
		return false
	}
	if la, _ := g.raft.LeaderWithID(); la != "" && la != addr {
		return false
	}
	// raft sets the last contact on every accepted append and on every
	// vote it grants.
	if !g.raft.LastContact().Before(reported) {
		return false
	}
	// A vote it is about to grant (persisting the vote takes an fsync,
	// slow on a busy disk) must not be answered by a rival election.
	if v := g.lastVoteRequest.Load(); v != nil && v.at.After(reported) && g.couldGrant(v) {
		return false
	}
	// Nor one that has arrived and waits for raft (filterRPC).
	if v := g.voteArrived.Load(); v != nil && v.at.After(reported) && g.couldGrant(v) {
		return false
	}
	return true
}

// voteRequest is a vote request this replica received.
type voteRequest struct {
	at                    time.Time
	term                  uint64 // the candidate's term
	lastLogIndex, lastLog uint64 // the candidate's last entry: index, term
}

// voteRequested records req (raft's observation of a RequestVote) and, if
// this replica cannot grant it, tells a voter waiting for its turn
// (refusedVote).
func (g *Group) voteRequested(req raft.RequestVoteRequest) {
	v := &voteRequest{at: time.Now(), term: req.Term, lastLogIndex: req.LastLogIndex, lastLog: req.LastLogTerm}
	g.lastVoteRequest.Store(v)
	if g.couldGrant(v) {
		return
	}
	select {
	case g.refusedVote <- v:
	default: // one is waiting already; the newer matters no more than it
	}
}

// couldGrant reports whether the candidate of v has a log at least as up
// to date as this replica's, as raft requires to grant a vote; true when
// unsure.
func (g *Group) couldGrant(v *voteRequest) bool {
	idx := g.raft.LastIndex()
	var l raft.Log
	if err := g.logs.GetLog(idx, &l); err != nil {
		return true
	}
	return v.lastLog > l.Term || (v.lastLog == l.Term && v.lastLogIndex >= idx)
}

// startElection makes raft start an election now, by sending this replica
// a TimeoutNow RPC; it reports whether raft took it.
func (g *Group) startElection(goneAddr raft.ServerAddress) bool {
	g.standAt.Store(time.Now().UnixNano())
	g.standTerm.Store(g.raft.CurrentTerm())
	self := raft.ServerAddress(g.trans.LocalAddr())
	req := &raft.TimeoutNowRequest{RPCHeader: g.guard.header}
	var resp raft.TimeoutNowResponse
	if err := g.trans.TimeoutNow(raft.ServerID(g.nodeID), self, req, &resp); err != nil {
		if strings.Contains(err.Error(), errElectionMovedOn.Error()) {
			g.log.Info("leader's node is gone, but an election started elsewhere first; not standing", "leader_addr", goneAddr)
			return false
		}
		g.log.Warn("leader's node is gone, but starting an election failed; the heartbeat timeout will", "leader_addr", goneAddr, "err", err)
		return false
	}
	g.fastElections.Add(1)
	g.log.Info("leader's node is gone: started an election", "leader_addr", goneAddr)
	return true
}

// errElectionMovedOn answers a TimeoutNow this replica sent itself that
// arrived after its term had moved on.
var errElectionMovedOn = errors.New("shard: election moved on before this replica stood")

// filterRPC sees every RPC before raft does (transport.TransportConfig's
// Filter). Besides the vote guard, it drops a TimeoutNow this replica sent
// itself (startElection) once its term has moved since: raft may be busy
// when the RPC arrives, and in the meantime it may have granted another
// voter's vote request or followed a new leader. Starting an election then
// would depose that leader and cost a round of elections.
//
// The filter runs when an RPC arrives, raft when it gets to it: a vote
// request that arrived just before this replica's TimeoutNow may still wait
// in raft's queue, its term not yet taken. So the filter also notes when
// vote requests arrive, and drops the TimeoutNow if one arrived since this
// replica decided to stand that it could grant (a failover run under load
// saw a replica stand in the term after the one whose vote it had just
// granted, deposing the winner: 1.4 s without a leader).
func (g *Group) filterRPC(rpc raft.RPC) bool {
	if g.guard.filter(rpc) {
		return true
	}
	if vr, ok := rpc.Command.(*raft.RequestVoteRequest); ok {
		g.voteArrived.Store(&voteRequest{at: time.Now(), term: vr.Term, lastLogIndex: vr.LastLogIndex, lastLog: vr.LastLogTerm})
		return false
	}
	req, ok := rpc.Command.(*raft.TimeoutNowRequest)
	if !ok || string(req.ID) != g.nodeID {
		return false
	}
	if term := g.raft.CurrentTerm(); term == g.standTerm.Load() && g.mayStand() && !g.grantableVoteSince(g.standAt.Load()) {
		return false
	}
	rpc.Respond(nil, errElectionMovedOn)
	return true
}

// grantableVoteSince reports whether a vote request this replica could
// grant arrived after since (Unix ns) in a term above the one it stands in.
func (g *Group) grantableVoteSince(since int64) bool {
	v := g.voteArrived.Load()
	return v != nil && v.at.UnixNano() > since && v.term > g.standTerm.Load() && g.couldGrant(v)
}

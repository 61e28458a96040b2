package transport

import (
	"errors"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// A raft.NetworkTransport keeps up to MaxPool idle connections per peer and
// finds out that one is dead only by using it. When a peer's process
// restarts, the connections this node pooled to it while they were in use
// stay in the pool, closed by the peer, until the next RPC picks them up:
// typically a leader's first append to that follower after it wins an
// election for a shard it led before the restart. The append fails (EOF or
// connection reset), and raft retries only when a new entry is proposed or
// after the commit timeout, so the new leader's first commit, and every
// client waiting for it, waits that long.
//
// So the Transport retries an RPC whose connection turned out closed by the
// peer, on the next pooled connection or a freshly dialed one, up to
// MaxPool times: with a pool of n, n stale connections and one dial. Only
// idempotent RPCs are retried: AppendEntries (the follower checks the
// previous entry and overwrites identical entries), RequestVote and
// RequestPreVote (a voter grants the same candidate again in the same
// term). A dead peer fails the dial, which is not retried; a silent one
// fails by timeout, not retried either. (closedByPeer is in beats.go.)

// retryStale calls rpc, and again while it fails on a connection the peer
// had closed, at most t.pool more times; each retry counts in
// Stats.StaleConns.
func (t *Transport) retryStale(rpc func() error) error {
	err := rpc()
	for i := 0; i < t.pool && err != nil && closedByPeer(err); i++ {
		select {
		case <-t.done:
			return err
		default:
		}
		t.mux.stats.staleConns.Add(1)
		err = rpc()
	}
	return err
}

// appendDirect sends req over the NetworkTransport, retrying on stale
// connections. resp is cleared before a retry.
func (t *Transport) appendDirect(id raft.ServerID, target raft.ServerAddress, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	return t.retryStale(func() error {
		*resp = raft.AppendEntriesResponse{}
		return t.NetworkTransport.AppendEntries(id, target, req, resp)
	})
}

// RequestVote sends a vote request over the NetworkTransport, retrying on
// stale connections.
func (t *Transport) RequestVote(id raft.ServerID, target raft.ServerAddress, req *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	t.leaveTerm(req.Term, false) // a candidate leaves what it promised first (quiet.go)
	return t.retryStale(func() error {
		*resp = raft.RequestVoteResponse{}
		return t.NetworkTransport.RequestVote(id, target, req, resp)
	})
}

// RequestPreVote sends a pre-vote request over the NetworkTransport,
// retrying on stale connections.
func (t *Transport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, req *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return t.retryStale(func() error {
		*resp = raft.RequestPreVoteResponse{}
		return t.NetworkTransport.RequestPreVote(id, target, req, resp)
	})
}

// A follower whose process is down refuses connections. raft's replication
// to it fails at once, and raft backs off exponentially between attempts —
// 10 ms doubling up to 10 s — resetting only on a success. A follower down
// for the few seconds of a restart comes back to a leader that sleeps
// seconds more before sending it anything: under W1 the restarted follower
// was still 600–1,000 entries behind at the next leader's death, and the
// new leader had to send those before it could commit (BENCHMARKS.md,
// "Failover: where the windows went").
//
// So an append (not a heartbeat, nor a vote request) whose connection is
// refused is held, redialing every refusedRedial, for up to refusedHold
// before it fails back to raft: raft then counts about one failure a
// second of downtime instead of one per doubling, and the held append goes
// through within refusedRedial of the follower's port opening again.
// Holding it blocks only raft's replication goroutine for that follower.
//
// The same goes for an append the peer closed unanswered on every pooled
// connection and a fresh one (retryStale gave up): a node that is up but
// has not opened that shard yet — a restart opens them one after another —
// closes connections for it at once (see the package contract), and raft
// backed off from those the same way.
const (
	refusedHold   = time.Second
	refusedRedial = 50 * time.Millisecond
)

// appendHeld is appendDirect, holding an append whose connection is
// refused or closed unanswered (see above). Each redial counts in
// Stats.RefusedRedials.
func (t *Transport) appendHeld(id raft.ServerID, target raft.ServerAddress, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := t.appendDirect(id, target, req, resp)
	if !peerNotServing(err) {
		return err
	}
	deadline := time.Now().Add(refusedHold)
	timer := time.NewTimer(refusedRedial)
	defer timer.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-t.done:
			return err
		case <-timer.C:
		}
		// One dial per redial: the pool to this peer is empty by now,
		// so retryStale's retries would only dial again at once.
		t.mux.stats.refusedRedials.Add(1)
		*resp = raft.AppendEntriesResponse{}
		if err = t.NetworkTransport.AppendEntries(id, target, req, resp); !peerNotServing(err) {
			return err
		}
		timer.Reset(refusedRedial)
	}
	return err
}

// peerNotServing reports whether an append failed because the peer's port
// refused the connection or the peer closed it unanswered.
func peerNotServing(err error) bool {
	return err != nil && (errors.Is(err, syscall.ECONNREFUSED) || closedByPeer(err))
}

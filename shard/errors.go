package shard

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// Sentinel errors. See the package documentation for what a caller may do
// after each.
var (
	// ErrNotLeader: this replica does not lead its shard and submitted
	// nothing. Returned as a *NotLeaderError naming the leader, if known.
	ErrNotLeader = errors.New("shard: not leader")
	// ErrNoLeader: no leader is known right now (an election is running or
	// the shard has lost its quorum); nothing was submitted.
	ErrNoLeader = errors.New("shard: no leader")
	// ErrIndeterminate: the entry was submitted and may or may not commit
	// (leadership lost, the context ended or the replica closed while
	// waiting). Retry with the same request ids.
	ErrIndeterminate = errors.New("shard: outcome unknown")
	// ErrShutdown: the replica (or the whole Host) is closed.
	ErrShutdown = errors.New("shard: shut down")
	// ErrHasState: Bootstrap on a replica that already has Raft state.
	ErrHasState = errors.New("shard: replica already has state")
	// ErrUnknownServer: a server id that is not in the shard's configuration.
	ErrUnknownServer = errors.New("shard: server not in the configuration")
)

// NotLeaderError says that a replica does not lead its shard and where the
// leader is, as far as the replica knows. It matches ErrNotLeader with
// errors.Is, and also ErrNoLeader when LeaderID is empty.
type NotLeaderError struct {
	Shard uint32
	// LeaderID and LeaderAddr name the leader ("" if unknown). LeaderAddr
	// is its Raft address (the node's mux address), not its API address.
	LeaderID   string
	LeaderAddr string

	// handingOver: raft refused the write (or a read's barrier) because
	// this replica is handing its leadership over (nothing was appended);
	// Propose and LinearizableRead wait for the hand-over to end before
	// they answer.
	handingOver bool
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return fmt.Sprintf("shard %d: not leader; no leader known", e.Shard)
	}
	return fmt.Sprintf("shard %d: not leader; leader is %s at %s", e.Shard, e.LeaderID, e.LeaderAddr)
}

// Is matches ErrNotLeader, and ErrNoLeader when no leader is known.
func (e *NotLeaderError) Is(target error) bool {
	return target == ErrNotLeader || (target == ErrNoLeader && e.LeaderID == "")
}

// notLeader describes where this shard's leader is, as this replica knows.
func (g *Group) notLeader() error {
	addr, id := g.raft.LeaderWithID()
	e := &NotLeaderError{Shard: g.shard, LeaderID: string(id), LeaderAddr: string(addr)}
	if e.LeaderID == g.nodeID { // stale: we just stepped down
		e.LeaderID, e.LeaderAddr = "", ""
	}
	return e
}

// notSubmitted is the error for a context that ended before submission.
func (g *Group) notSubmitted(ctx context.Context) error {
	err := ctx.Err()
	if err == nil { // raft's enqueue timeout, derived from ctx's deadline
		err = context.DeadlineExceeded
	}
	return fmt.Errorf("shard %d: not submitted: %w", g.shard, err)
}

// writeErr translates the error of a submitted write (an entry or a
// configuration change) into this package's errors.
func (g *Group) writeErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return g.notLeader() // refused by a follower: never appended
	case errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return &NotLeaderError{Shard: g.shard, handingOver: true} // refused: never appended
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("shard %d: not submitted: %w (%w)", g.shard, context.DeadlineExceeded, err)
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w (shard %d): %w", ErrIndeterminate, g.shard, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		// Raft answers committed entries it cannot apply any more this way.
		return fmt.Errorf("%w (shard %d): %w", ErrIndeterminate, g.shard, ErrShutdown)
	}
	return fmt.Errorf("shard %d: %w", g.shard, err)
}

// readErr translates the error of a leadership check or barrier made for a
// read: nothing was written that matters, so losing leadership is simply
// "not leader".
func (g *Group) readErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost):
		return g.notLeader()
	case errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return &NotLeaderError{Shard: g.shard, handingOver: true} // a barrier, refused
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("shard %d: %w (%w)", g.shard, context.DeadlineExceeded, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("shard %d: %w", g.shard, ErrShutdown)
	}
	return fmt.Errorf("shard %d: %w", g.shard, err)
}

package shard

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// LinearizableRead returns once reads of g.FSM() reflect every write
// acknowledged anywhere before LinearizableRead was called: the read-index
// protocol of the Raft thesis (§6.4). The leader notes its commit index,
// confirms with a quorum that it still leads (raft's VerifyLeader, one
// heartbeat round), then waits until its state machine has applied up to
// that index. It writes nothing to the log, except once per leadership term
// when called before the leader has committed an entry of its own term (a
// barrier, which the leader also issues by itself on election).
//
// Like Propose, it first waits up to leaderWait while no leader is known,
// and a read whose barrier raft refuses during a leadership hand-over
// waits for the hand-over, then fails naming the new leader or, if the
// transfer failed, goes on.
// It fails with a *NotLeaderError (ErrNotLeader, or ErrNoLeader) on a
// replica that does not lead or loses leadership meanwhile, with ctx's error
// if ctx ends first, and with ErrShutdown once the replica is closed.
// Reads that may be stale need no call at all.
func (g *Group) LinearizableRead(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("shard %d: %w", g.shard, err)
	}
	if g.isClosing() {
		return fmt.Errorf("shard %d: %w", g.shard, ErrShutdown)
	}
	if !g.awaitLeader(ctx) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("shard %d: %w", g.shard, err)
		}
		return g.notLeader()
	}
	term := g.raft.CurrentTerm()
	if g.readyTerm.Load() != term {
		// Until the leader commits an entry of its term, its commit index
		// may lag what the previous leader acknowledged. A barrier commits
		// one and waits for the state machine to apply everything before
		// it: the read is linearizable as soon as it returns.
		return g.barrier(ctx)
	}
	readIndex := g.raft.CommitIndex()
	hurried := g.trans.Hurry() // the confirming heartbeats skip the coalescing window
	err := g.awaitRead(ctx, g.raft.VerifyLeader())
	hurried()
	if err != nil {
		return err
	}
	if g.raft.CurrentTerm() != term {
		return g.notLeader()
	}
	return g.waitApplied(ctx, readIndex)
}

// barrier commits a barrier entry and waits until the state machine has
// applied every entry before it. If the term is still the one read just
// before the barrier went in, this replica led that term throughout and
// has committed an entry of it: its commit index is current from then on.
//
// Raft refuses a barrier while the leader hands its leadership over; like a
// write, the read then waits for the hand-over and fails naming the new
// leader, or, if the transfer failed, tries again (throughHandOver).
func (g *Group) barrier(ctx context.Context) error {
	var term uint64
	err := g.throughHandOver(ctx, func() error {
		timeout, ok := enqueueTimeout(ctx)
		if !ok {
			return fmt.Errorf("shard %d: %w", g.shard, ctx.Err())
		}
		term = g.raft.CurrentTerm()
		return g.awaitRead(ctx, g.raft.Barrier(timeout))
	})
	if err != nil {
		return err
	}
	if g.raft.CurrentTerm() == term {
		g.readyTerm.Store(term)
	}
	return nil
}

// waitApplied waits until the state machine reflects every entry up to
// index. The FSM records the index of the last command it applied, but
// raft never hands it no-op or barrier entries (and configuration entries
// do not change it), so the wait is for the last command at or below index.
func (g *Group) waitApplied(ctx context.Context, index uint64) error {
	target, scanned := index, false
	for {
		wake := g.app.applied.wait() // before the check: no lost wakeup
		applied := g.app.LastIndex()
		if applied >= target {
			return nil
		}
		if !scanned {
			t, err := g.lastCommand(target, applied)
			if err != nil {
				return err
			}
			target, scanned = t, true
			continue
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("shard %d: %w", g.shard, ctx.Err())
		case <-g.closing:
			return fmt.Errorf("shard %d: %w", g.shard, ErrShutdown)
		}
	}
}

// lastCommand returns the index of the last command entry in (floor, index],
// or floor if there is none. Entries no longer in the log were compacted
// into a snapshot of this state machine, so they count as applied.
func (g *Group) lastCommand(index, floor uint64) (uint64, error) {
	var l raft.Log
	for i := index; i > floor; i-- {
		err := g.logs.GetLog(i, &l)
		if errors.Is(err, raft.ErrLogNotFound) {
			return floor, nil
		}
		if err != nil {
			return 0, fmt.Errorf("shard %d: reading log entry %d: %w", g.shard, i, err)
		}
		if l.Type == raft.LogCommand {
			return i, nil
		}
	}
	return floor, nil
}

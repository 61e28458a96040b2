package shard

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// Propose commits cmds to the shard in one log entry and returns the state
// machine's results, one per command, in order. The entry may also carry
// the commands of other calls made at the same time (see batch.go); cmds
// are never split across entries and are applied together, in order. A
// business failure (an unknown agent, a limit) is a result carrying an
// error (see fsm.ResultError), not an error of Propose.
//
// Propose must run on the leader. An empty cmds proposes nothing and
// returns nil results; a nil command is an error. Each command whose TimeUnixMs is 0 is
// stamped, in place, with the leader's clock (time.Now().UnixMilli()); a
// retry of the same commands keeps that time.
//
// While no leader is known (an election is running) it first waits, up to
// leaderWait, for the election to end, so that the caller learns where the
// new leader is rather than retrying blind. Likewise, a call raft refuses
// because this replica is handing its leadership over waits for the
// hand-over to end: it then fails naming the new leader, or, if the
// transfer failed, is submitted again.
//
// Errors (see the package documentation): ErrNotLeader or ErrNoLeader
// (as *NotLeaderError) if this replica does not lead, ctx's error if ctx
// ended first — in both cases nothing was submitted; ErrIndeterminate once
// the entry was submitted and its fate is unknown (leadership lost, ctx
// ended, the replica closed), when callers must retry with the same request
// ids; ErrShutdown once the replica is closed. A Raft error of the entry
// fails every call whose commands it carries, alike; one caller's context
// ending never affects the other calls in its entry.
func (g *Group) Propose(ctx context.Context, cmds ...*pb.Command) ([]*pb.Result, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	for i, c := range cmds {
		if c == nil {
			return nil, fmt.Errorf("shard %d: command %d is nil", g.shard, i)
		}
	}
	if ctx.Err() != nil {
		return nil, g.notSubmitted(ctx)
	}
	if g.isClosing() {
		return nil, fmt.Errorf("shard %d: %w", g.shard, ErrShutdown)
	}
	if !g.awaitLeader(ctx) {
		return nil, g.notLeader()
	}
	if ctx.Err() != nil {
		return nil, g.notSubmitted(ctx)
	}
	now := time.Now().UnixMilli()
	for _, c := range cmds {
		if c.TimeUnixMs == 0 {
			c.TimeUnixMs = now
		}
	}
	var res []*pb.Result
	err := g.throughHandOver(ctx, func() (err error) {
		res, err = g.prop.propose(ctx, cmds)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// throughHandOver makes submit (a write, or a read's barrier) until raft
// does not refuse it for a leadership hand-over. Refused, nothing
// appended, while this replica hands its leadership over (leader
// spreading, a node draining before it stops), the request is answered
// once the next leader is known — where it is, so the caller goes straight
// there instead of backing off; ctx's error; or ErrShutdown. If the
// transfer failed and this replica still leads, submit is made again (at
// most maxHandOverWaits times). Any other outcome is submit's.
func (g *Group) throughHandOver(ctx context.Context, submit func() error) error {
	for waits := 0; ; waits++ {
		err := submit()
		nl := (*NotLeaderError)(nil)
		if err == nil || !errors.As(err, &nl) || !nl.handingOver || waits == maxHandOverWaits {
			return err
		}
		if !g.awaitHandOver(ctx) {
			switch {
			case ctx.Err() != nil:
				return g.notSubmitted(ctx)
			case g.isClosing():
				return fmt.Errorf("shard %d: %w", g.shard, ErrShutdown)
			}
			return g.notLeader()
		}
	}
}

// maxHandOverWaits bounds how often throughHandOver waits for a hand-over
// and submits again while its replica keeps the lead: raft gives a
// transfer an election timeout, shorter than one wait (leaderWait), so one
// wait is enough unless the machine is slow to notice the end.
const maxHandOverWaits = 3

// awaitHandOver waits, up to leaderWait (longer than raft gives a
// transfer), until another replica is known to lead, ctx ends or the
// replica closes. It reports whether this replica still leads then.
func (g *Group) awaitHandOver(ctx context.Context) bool {
	g.waitLeadership(ctx, g.leaderWait(), g.otherLeads)
	return g.raft.State() == raft.Leader
}

// otherLeads reports whether this replica knows another replica as its
// shard's leader (and no longer leads itself).
func (g *Group) otherLeads() bool {
	_, id := g.raft.LeaderWithID()
	return g.raft.State() != raft.Leader && id != "" && string(id) != g.nodeID
}

// leaderWait is how long a call made while no leader is known waits for
// one: a heartbeat timeout and an election timeout, time for the election
// under way (or the one about to start) to end.
func (g *Group) leaderWait() time.Duration {
	return g.cfg.Raft.HeartbeatTimeout + g.cfg.Raft.ElectionTimeout
}

// awaitLeader reports whether this replica leads. While it knows no
// leader at all, it waits for one until leaderWait has passed, ctx ends or
// the replica closes, and then reports whether that leader is itself.
func (g *Group) awaitLeader(ctx context.Context) bool {
	if g.raft.State() == raft.Leader {
		return true // the common case: no notifier lock, no timer
	}
	g.waitLeadership(ctx, g.leaderWait(), func() bool {
		addr, _ := g.raft.LeaderWithID()
		return g.raft.State() == raft.Leader || addr != ""
	})
	return g.raft.State() == raft.Leader
}

// waitLeadership waits until settled holds, checking it at once and at
// every change of this replica's Raft state or known leader, for at most
// limit (0: no limit), until ctx ends or the replica closes. It reports
// whether settled held.
func (g *Group) waitLeadership(ctx context.Context, limit time.Duration, settled func() bool) bool {
	var expired <-chan time.Time
	if limit > 0 {
		timer := time.NewTimer(limit)
		defer timer.Stop()
		expired = timer.C
	}
	for {
		changed := g.LeaderChanged() // before the check: no change is missed
		if settled() {
			return true
		}
		select {
		case <-changed:
		case <-expired:
			return false
		case <-ctx.Done():
			return false
		case <-g.closing:
			return false
		}
	}
}

// proposer turns commands into committed log entries, with the error
// contract of Propose. It is the seam for group commit across callers:
// every Group uses the batcher (batch.go), which packs the commands of
// concurrent Propose calls into one entry and hands each caller its share
// of the results.
type proposer interface {
	propose(ctx context.Context, cmds []*pb.Command) ([]*pb.Result, error)
	// wait returns once the proposer's goroutines have stopped; the
	// group calls it when closing, after raft has shut down.
	wait()
}

// enqueueTimeout is how long raft may take to accept a submission: until
// ctx's deadline, or without limit. It reports false if the deadline has
// passed.
func enqueueTimeout(ctx context.Context) (time.Duration, bool) {
	d, ok := ctx.Deadline()
	if !ok {
		return 0, true
	}
	left := time.Until(d)
	return left, left > 0
}

// await waits for a submitted write (an entry or a configuration change)
// and returns its error in this package's terms: ErrIndeterminate if ctx
// ends or the replica closes first.
func (g *Group) await(ctx context.Context, fut raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- fut.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return g.writeErr(err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w (shard %d): %w", ErrIndeterminate, g.shard, ctx.Err())
	case <-g.closing:
		return fmt.Errorf("%w (shard %d): %w", ErrIndeterminate, g.shard, ErrShutdown)
	}
}

// awaitRead waits for a leadership check or barrier made for a read.
func (g *Group) awaitRead(ctx context.Context, fut raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- fut.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return g.readErr(err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shard %d: %w", g.shard, ctx.Err())
	case <-g.closing:
		return fmt.Errorf("shard %d: %w", g.shard, ErrShutdown)
	}
}

func (g *Group) isClosing() bool {
	select {
	case <-g.closing:
		return true
	default:
		return false
	}
}

package shard

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// TransferLeadership makes another voter the shard's leader: toID, or the
// most up-to-date other voter if toID is "". It returns once this replica
// has stepped down and learned the new leader (or ctx ends after the step
// down, which still counts as success). Transferring to this node itself,
// when it leads, does nothing.
//
// It fails with a *NotLeaderError on a replica that does not lead,
// ErrUnknownServer if toID is not a voter, ctx's error if ctx ends first
// (leadership may still move), and raft's error if the target could not
// take over within an election timeout (this replica then leads again).
func (g *Group) TransferLeadership(ctx context.Context, toID string) error {
	if g.isClosing() {
		return fmt.Errorf("shard %d: %w", g.shard, ErrShutdown)
	}
	if g.raft.State() != raft.Leader {
		return g.notLeader()
	}
	if toID == g.nodeID {
		return nil
	}
	var fut raft.Future
	if toID == "" {
		fut = g.raft.LeadershipTransfer()
	} else {
		addr, ok := g.voterAddr(toID)
		if !ok {
			return fmt.Errorf("shard %d: transfer to %q: %w", g.shard, toID, ErrUnknownServer)
		}
		fut = g.raft.LeadershipTransferToServer(raft.ServerID(toID), addr)
	}
	if err := g.awaitRead(ctx, fut); err != nil {
		return fmt.Errorf("shard %d: leadership transfer: %w", g.shard, err)
	}
	g.waitLeadership(ctx, 0, g.otherLeads) // until this replica knows the new leader
	return nil
}

// voterAddr returns the address of voter id in the latest configuration.
func (g *Group) voterAddr(id string) (raft.ServerAddress, bool) {
	f := g.raft.GetConfiguration()
	if f.Error() != nil {
		return "", false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id && s.Suffrage == raft.Voter {
			return s.Address, true
		}
	}
	return "", false
}

// AddVoter adds a voter with Raft address addr to the shard (or updates its
// address), returning once the configuration change has committed. The new
// replica catches up from the leader by log or snapshot. Run on the leader.
// Errors are those of Propose: ErrIndeterminate means the change may still
// happen.
func (g *Group) AddVoter(ctx context.Context, id, addr string) error {
	return g.changeConfiguration(ctx, func(timeout time.Duration) raft.Future {
		return g.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout)
	})
}

// RemoveServer removes a server from the shard, returning once the change
// has committed. A leader that removes itself steps down afterwards; the
// removed replica keeps running, leaderless, until its node closes it.
// Errors are those of AddVoter.
func (g *Group) RemoveServer(ctx context.Context, id string) error {
	return g.changeConfiguration(ctx, func(timeout time.Duration) raft.Future {
		return g.raft.RemoveServer(raft.ServerID(id), 0, timeout)
	})
}

func (g *Group) changeConfiguration(ctx context.Context, submit func(time.Duration) raft.Future) error {
	if ctx.Err() != nil {
		return g.notSubmitted(ctx)
	}
	if g.isClosing() {
		return fmt.Errorf("shard %d: %w", g.shard, ErrShutdown)
	}
	if g.raft.State() != raft.Leader {
		return g.notLeader()
	}
	timeout, ok := enqueueTimeout(ctx)
	if !ok {
		return g.notSubmitted(ctx)
	}
	return g.await(ctx, submit(timeout))
}

package shard_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/shard"
	"github.com/frontdeskhq/frontdesk/shard/shardtest"
)

func TestLinearizableRead(t *testing.T) {
	t.Parallel()
	// No ticks: after an election the log ends with entries raft never
	// hands to the state machine (no-op, barrier), which the read must
	// see past instead of waiting for forever.
	c := shardtest.NewCluster(t, 3, 1, shardtest.WithTickInterval(-1))
	setupMerchant(t, c, 0, "m", 0, 1, 5)
	leader := c.WaitForLeader(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	t.Run("leader sees its last write", func(t *testing.T) {
		if _, err := leader.Group(0).Propose(ctx, consult("m", "b1")); err != nil {
			t.Fatalf("Propose: %v", err)
		}
		if err := leader.Group(0).LinearizableRead(ctx); err != nil {
			t.Fatalf("LinearizableRead on the leader: %v", err)
		}
		if _, err := leader.Group(0).FSM().BuyerSession("m", "b1"); err != nil {
			t.Fatalf("after LinearizableRead the leader does not see b1's session: %v", err)
		}
	})

	t.Run("follower is refused", func(t *testing.T) {
		f := follower(t, c, 0, leader)
		shardtest.Eventually(t, shardtest.WaitTimeout, func() error {
			err := f.Group(0).LinearizableRead(ctx)
			var nl *shard.NotLeaderError
			if !errors.As(err, &nl) || nl.LeaderID != leader.ID {
				return errors.New("want a *NotLeaderError naming " + leader.ID + ", got " + errString(err))
			}
			return nil
		})
	})

	t.Run("new leader before and after its first command", func(t *testing.T) {
		to := follower(t, c, 0, leader)
		if err := leader.Group(0).TransferLeadership(ctx, to.ID); err != nil {
			t.Fatalf("TransferLeadership to %s: %v", to.ID, err)
		}
		g := c.WaitForNewLeader(t, 0, leader).Group(0)
		// Whether or not the leader has committed its barrier yet, the read
		// works (by barrier, then by read index).
		if err := g.LinearizableRead(ctx); err != nil {
			t.Fatalf("LinearizableRead on the new leader: %v", err)
		}
		// Now the read-index path, with only non-command entries (no-op,
		// barrier) after the last command the state machine applied.
		shardtest.Eventually(t, shardtest.WaitTimeout, func() error {
			if in := g.Info(); g.ReadyTerm() != in.Term {
				return fmt.Errorf("leader not ready for read-index reads in term %d", in.Term)
			}
			return nil
		})
		if in, applied := g.Info(), g.FSM().LastIndex(); in.CommitIndex <= applied {
			t.Fatalf("commit index %d, last command applied %d: want non-command entries after it", in.CommitIndex, applied)
		}
		start := time.Now()
		if err := g.LinearizableRead(ctx); err != nil {
			t.Fatalf("LinearizableRead by read index: %v", err)
		}
		t.Logf("LinearizableRead by read index took %v", time.Since(start))
		if _, err := g.FSM().BuyerSession("m", "b1"); err != nil {
			t.Fatalf("the new leader does not see b1's session after LinearizableRead: %v", err)
		}
		if _, err := g.Propose(ctx, consult("m", "b2")); err != nil {
			t.Fatalf("Propose: %v", err)
		}
		if err := g.LinearizableRead(ctx); err != nil {
			t.Fatalf("LinearizableRead after a write: %v", err)
		}
		if _, err := g.FSM().BuyerSession("m", "b2"); err != nil {
			t.Fatalf("the new leader does not see b2's session after LinearizableRead: %v", err)
		}
	})

	t.Run("ended context", func(t *testing.T) {
		done, cancel := context.WithCancel(ctx)
		cancel()
		if err := c.WaitForLeader(t, 0).Group(0).LinearizableRead(done); !errors.Is(err, context.Canceled) {
			t.Fatalf("LinearizableRead with a cancelled context: got %v, want context.Canceled", err)
		}
	})
}

// TestLinearizableReadSeesOtherWriters reads on the leader right after
// another client's write was acknowledged, many times, while ticks keep the
// log moving.
func TestLinearizableReadSeesOtherWriters(t *testing.T) {
	t.Parallel()
	c := shardtest.NewCluster(t, 3, 1, shardtest.WithTickInterval(10*time.Millisecond))
	setupMerchant(t, c, 0, "m", 0, 1, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 20 {
		buyer := "b" + string(rune('a'+i))
		c.Propose(t, 0, consult("m", buyer))
		g := c.WaitForLeader(t, 0).Group(0)
		if err := g.LinearizableRead(ctx); err != nil {
			t.Fatalf("LinearizableRead: %v", err)
		}
		if r, err := g.FSM().BuyerSession("m", buyer); err != nil || r.State != pb.SessionState_SESSION_STATE_ASSIGNED {
			t.Fatalf("after an acknowledged consult and a linearizable read, %s's session is %v (err %v)", buyer, r, err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

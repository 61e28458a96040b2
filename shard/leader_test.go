package shard_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/shard"
	"github.com/frontdeskhq/frontdesk/shard/shardtest"
)

func TestTransferLeadership(t *testing.T) {
	t.Parallel()
	c := shardtest.NewCluster(t, 3, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	leader := c.WaitForLeader(t, 0)
	to := follower(t, c, 0, leader)
	if err := leader.Group(0).TransferLeadership(ctx, to.ID); err != nil {
		t.Fatalf("TransferLeadership(%s) on %s: %v", to.ID, leader.ID, err)
	}
	if got := c.WaitForLeader(t, 0); got != to {
		t.Fatalf("after transferring to %s, %s leads", to.ID, got.ID)
	}
	if id := leader.Group(0).Info().LeaderID; id != to.ID {
		t.Fatalf("old leader %s knows leader %q after the transfer, want %s", leader.ID, id, to.ID)
	}

	// To any voter.
	if err := to.Group(0).TransferLeadership(ctx, ""); err != nil {
		t.Fatalf("TransferLeadership(\"\") on %s: %v", to.ID, err)
	}
	c.WaitForNewLeader(t, 0, to)

	now := c.WaitForLeader(t, 0)
	if err := now.Group(0).TransferLeadership(ctx, "nobody"); !errors.Is(err, shard.ErrUnknownServer) {
		t.Fatalf("TransferLeadership to an unknown server: got %v, want ErrUnknownServer", err)
	}
	if err := now.Group(0).TransferLeadership(ctx, now.ID); err != nil || !now.Group(0).IsLeader() {
		t.Fatalf("TransferLeadership to itself: %v (leader: %v), want a no-op", err, now.Group(0).IsLeader())
	}
	other := follower(t, c, 0, now)
	if err := other.Group(0).TransferLeadership(ctx, ""); !errors.Is(err, shard.ErrNotLeader) {
		t.Fatalf("TransferLeadership on follower %s: got %v, want ErrNotLeader", other.ID, err)
	}
}

func TestTransferLeadershipAway(t *testing.T) {
	t.Parallel()
	const shards = 4
	c := shardtest.NewCluster(t, 3, shards)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Make node0 lead every shard first, so there is something to move.
	for s := range c.Shards() {
		if l := c.WaitForLeader(t, s); l != c.Node(0) {
			if err := l.Group(s).TransferLeadership(ctx, c.Node(0).ID); err != nil {
				t.Fatalf("shard %d: moving leadership to node0: %v", s, err)
			}
		}
	}
	for s := range c.Shards() {
		if l := c.WaitForLeader(t, s); l != c.Node(0) {
			t.Fatalf("shard %d: led by %s, want node0 before the test", s, l.ID)
		}
	}

	start := time.Now()
	if err := c.Node(0).Host().TransferLeadershipAway(ctx); err != nil {
		t.Fatalf("TransferLeadershipAway: %v", err)
	}
	t.Logf("moved %d leaderships away in %v", shards, time.Since(start))
	for _, g := range c.Node(0).Host().Groups() {
		if g.IsLeader() {
			t.Errorf("shard %d: node0 still leads after TransferLeadershipAway", g.Shard())
		}
	}
	for s := range c.Shards() {
		if l := c.WaitForLeader(t, s); l == c.Node(0) {
			t.Errorf("shard %d: node0 leads again", s)
		}
		c.Propose(t, s, consult("m", "b"))
	}
}

// TestTickEndsIdleSessions: the leader's ticks advance log time, so an
// assigned session without activity ends by IDLE_TIMEOUT with no client
// command at all.
func TestTickEndsIdleSessions(t *testing.T) {
	t.Parallel()
	c := shardtest.NewCluster(t, 3, 1, shardtest.WithTickInterval(20*time.Millisecond))
	const idleMs = 300
	setupMerchant(t, c, 0, "m", idleMs, 1, 5)
	r := c.Propose(t, 0, consult("m", "b1"))[0]
	if err := fsm.ResultError(r); err != nil || r.Outcome != pb.Outcome_OUTCOME_ASSIGNED {
		t.Fatalf("consult: %v (err %v), want ASSIGNED", r, err)
	}
	start := time.Now()
	shardtest.Eventually(t, shardtest.WaitTimeout, func() error {
		for _, n := range c.Nodes() {
			s, err := n.Group(0).FSM().Session("m", r.SessionId)
			if err != nil {
				return fmt.Errorf("%s: %v", n.ID, err)
			}
			if s.State != pb.SessionState_SESSION_STATE_ENDED {
				return fmt.Errorf("%s: session %s is %v, want ENDED", n.ID, s.SessionId, s.State)
			}
			if s.EndReason != pb.EndReason_END_REASON_IDLE_TIMEOUT {
				t.Fatalf("%s: session ended by %v, want IDLE_TIMEOUT", n.ID, s.EndReason)
			}
		}
		return nil
	})
	if took := time.Since(start); took < idleMs*time.Millisecond/2 {
		t.Fatalf("session ended %v after the consult, before its %d ms idle timeout", took, idleMs)
	}
	t.Logf("idle session ended by tick %v after the consult (idle timeout %d ms)", time.Since(start), idleMs)
}

// TestTicksFollowLeadership: the leader ticks with no client traffic, and
// so does the next leader after a transfer.
func TestTicksFollowLeadership(t *testing.T) {
	t.Parallel()
	c := shardtest.NewCluster(t, 3, 1, shardtest.WithTickInterval(10*time.Millisecond))
	leader := c.WaitForLeader(t, 0)
	// A consult makes ticks due for a minute: its merchant's inflow window
	// ages with log time.
	setupMerchant(t, c, 0, "m", 0, 1, 5)
	c.Propose(t, 0, consult("m", "b1"))
	// Ticks alone move the log.
	first := leader.Group(0).Info().CommitIndex
	shardtest.Eventually(t, shardtest.WaitTimeout, func() error {
		if got := leader.Group(0).Info().CommitIndex; got < first+5 {
			return fmt.Errorf("commit index %d, want ≥ %d from ticks", got, first+5)
		}
		return nil
	})
	// Leadership moves; the new leader takes over the ticks.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := leader.Group(0).TransferLeadership(ctx, ""); err != nil {
		t.Fatalf("TransferLeadership: %v", err)
	}
	next := c.WaitForNewLeader(t, 0, leader)
	from := next.Group(0).Info().CommitIndex
	shardtest.Eventually(t, shardtest.WaitTimeout, func() error {
		if got := next.Group(0).Info().CommitIndex; got < from+5 {
			return fmt.Errorf("commit index %d on the new leader, want ≥ %d from its ticks", got, from+5)
		}
		return nil
	})
}

// A shard with nothing timed (here: no merchants at all) writes nothing:
// its leader skips the ticks.
func TestIdleShardSkipsTicks(t *testing.T) {
	t.Parallel()
	c := shardtest.NewCluster(t, 3, 1, shardtest.WithTickInterval(10*time.Millisecond))
	leader := c.WaitForLeader(t, 0)
	g := leader.Group(0)
	// The new leader's own entries (no-op, barrier) are done once it is ready.
	shardtest.Eventually(t, shardtest.WaitTimeout, func() error {
		if !g.IsLeader() || g.ReadyTerm() != g.CurrentTerm() {
			return fmt.Errorf("leader not ready yet")
		}
		return nil
	})
	term, before := g.CurrentTerm(), g.Info().CommitIndex
	time.Sleep(50 * 10 * time.Millisecond) // 50 tick intervals
	if g.CurrentTerm() != term || !g.IsLeader() {
		t.Skipf("leadership moved during the test (term %d -> %d); nothing to conclude", term, g.CurrentTerm())
	}
	if after := g.Info().CommitIndex; after != before {
		t.Fatalf("idle shard: commit index %d -> %d over 50 tick intervals, want no entries", before, after)
	}
}

func TestLeaderChanged(t *testing.T) {
	t.Parallel()
	c := shardtest.NewCluster(t, 3, 1)
	leader := c.WaitForLeader(t, 0)
	f := follower(t, c, 0, leader)
	groupCh := f.Group(0).LeaderChanged()
	hostCh := f.Host().LeaderChanged()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := leader.Group(0).TransferLeadership(ctx, ""); err != nil {
		t.Fatalf("TransferLeadership: %v", err)
	}
	for name, ch := range map[string]<-chan struct{}{"Group": groupCh, "Host": hostCh} {
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("%s.LeaderChanged did not fire on %s when leadership moved", name, f.ID)
		}
	}
	// Closing fires it too, and later calls return a closed channel.
	ch := f.Group(0).LeaderChanged()
	g := f.Group(0)
	c.Kill(t, f.Index)
	select {
	case <-ch:
	case <-ctx.Done():
		t.Fatalf("LeaderChanged did not fire when the replica closed")
	}
	select {
	case <-g.LeaderChanged():
	default:
		t.Fatalf("LeaderChanged of a closed replica must be closed")
	}
}

// TestProposeDuringTransfer: calls made on a leader while it hands its
// leadership over commit, or return once the new leader is known — refused
// with a *NotLeaderError naming it, or indeterminate with the replica
// knowing it — never "no leader known", which would send a client into its
// backoff and a shard map refresh for a planned move (leader spreading, a
// node draining before it stops).
func TestProposeDuringTransfer(t *testing.T) {
	t.Parallel()
	c := shardtest.NewCluster(t, 3, 1, shardtest.WithTickInterval(-1))
	setupMerchant(t, c, 0, "m", 0, 20, 1000)
	leader := c.WaitForLeader(t, 0)
	to := follower(t, c, 0, leader)
	g := leader.Group(0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	const workers = 8
	var (
		wg                          sync.WaitGroup
		mu                          sync.Mutex
		committed, refused, unknown int
		bad                         []string
		running                     = make(chan struct{}, workers)
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var signal sync.Once
			defer signal.Do(func() { running <- struct{}{} })
			for i := 0; ; i++ {
				_, err := g.Propose(ctx, consult("m", fmt.Sprintf("w%d-%d", w, i)))
				if i == 10 {
					signal.Do(func() { running <- struct{}{} })
				}
				if err == nil {
					mu.Lock()
					committed++
					mu.Unlock()
					continue
				}
				// A client stops sending here once it gets an error: it
				// goes where the error points.
				knows := g.Info().LeaderID
				var nl *shard.NotLeaderError
				mu.Lock()
				switch {
				case errors.As(err, &nl) && !errors.Is(err, shard.ErrIndeterminate):
					refused++
					if nl.LeaderID != to.ID {
						bad = append(bad, fmt.Sprintf("refused naming %q: %v", nl.LeaderID, err))
					}
				case errors.Is(err, shard.ErrIndeterminate) && ctx.Err() == nil:
					unknown++
					if knows != to.ID {
						bad = append(bad, fmt.Sprintf("indeterminate while the old leader knows %q: %v", knows, err))
					}
				default:
					bad = append(bad, fmt.Sprintf("unexpected: %v", err))
				}
				mu.Unlock()
				return
			}
		}()
	}
	for range workers {
		<-running
	}
	if err := g.TransferLeadership(ctx, to.ID); err != nil {
		t.Fatalf("TransferLeadership(%s): %v", to.ID, err)
	}
	wg.Wait()
	t.Logf("%d committed, %d refused, %d indeterminate", committed, refused, unknown)
	for _, b := range bad {
		t.Error(b)
	}
	if refused+unknown != workers {
		t.Fatalf("%d of %d callers got an error after the transfer", refused+unknown, workers)
	}
}

// failingTransfer starts, on a three-node cluster of one shard holding
// merchant "m", a transfer of the leadership to a follower that was killed
// first: until raft gives the transfer up, it refuses writes and barriers.
// It returns the leader's replica, the target and the transfer's result.
func failingTransfer(t *testing.T, ctx context.Context) (*shard.Group, *shardtest.Node, <-chan error) {
	t.Helper()
	c := shardtest.NewCluster(t, 3, 1, shardtest.WithTickInterval(-1))
	setupMerchant(t, c, 0, "m", 0, 20, 1000)
	leader := c.WaitForLeader(t, 0)
	to := follower(t, c, 0, leader)
	c.Kill(t, to.Index)
	g := leader.Group(0)
	transfer := make(chan error, 1)
	go func() { transfer <- g.TransferLeadership(ctx, to.ID) }()
	return g, to, transfer
}

// TestProposeDuringFailedTransfer: a transfer that cannot finish (its
// target is down) leaves the leader leading once raft gives up; the calls
// raft refused meanwhile are submitted again and commit.
func TestProposeDuringFailedTransfer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g, to, transfer := failingTransfer(t, ctx)
	var committed int
	var transferErr error
	for i := 0; ; i++ {
		select {
		case transferErr = <-transfer:
		default:
			if _, err := g.Propose(ctx, consult("m", fmt.Sprintf("b%d", i))); err != nil {
				t.Fatalf("call %d during the transfer to %s (down): %v; want it committed once the transfer fails", i, to.ID, err)
			}
			committed++
			continue
		}
		break
	}
	if transferErr == nil {
		t.Fatalf("the transfer to %s, which is down, succeeded", to.ID)
	}
	if !g.IsLeader() {
		t.Fatal("the leader does not lead after the failed transfer")
	}
	t.Logf("%d calls committed during the failed transfer (%v)", committed, transferErr)
}

// TestBarrierDuringFailedTransfer: the barrier of a linearizable read on a
// leader not yet ready in its term (and of a new leader's first steps),
// made while that leader hands over to a follower that is down, commits
// once raft gives the transfer up, instead of failing at once with "no
// leader known" (raft refuses barriers during a transfer, as it refuses
// writes).
func TestBarrierDuringFailedTransfer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g, to, transfer := failingTransfer(t, ctx)
	for !g.HandingOver() {
		select {
		case err := <-transfer:
			t.Fatalf("the transfer to %s (down) ended before it was seen under way: %v", to.ID, err)
		case <-ctx.Done():
			t.Fatal("the transfer was never seen under way")
		default:
			time.Sleep(time.Millisecond)
		}
	}
	if err := g.Barrier(ctx); err != nil {
		t.Fatalf("barrier during the transfer to %s (down): %v; want it committed once the transfer fails", to.ID, err)
	}
	if err := <-transfer; err == nil {
		t.Fatalf("the transfer to %s, which is down, succeeded", to.ID)
	}
	if !g.IsLeader() || g.ReadyTerm() != g.CurrentTerm() {
		t.Fatalf("after the failed transfer: leads %v, ready term %d of %d", g.IsLeader(), g.ReadyTerm(), g.CurrentTerm())
	}
	if err := g.LinearizableRead(ctx); err != nil {
		t.Fatalf("read after the failed transfer: %v", err)
	}
}

package shardtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/internal/testutil"
	"github.com/frontdeskhq/frontdesk/shard"
)

// WaitTimeout bounds every wait of this package.
const WaitTimeout = 10 * time.Second

// pollEvery is how often waits check their condition.
const pollEvery = 5 * time.Millisecond

// Eventually calls f every pollEvery until it returns nil, failing the
// test with f's last error if that has not happened within timeout.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	testutil.Eventually(t, timeout, pollEvery, f)
}

// Leader returns the running node that leads shard s, or nil if none does.
// If two nodes believe they lead (an old leader not yet aware of a new
// term), the one with the higher term is returned.
func (c *Cluster) Leader(s uint32) *Node {
	var leader *Node
	var term uint64
	for _, n := range c.Live() {
		g := n.Group(s)
		if g == nil || !g.IsLeader() {
			continue
		}
		if in := g.Info(); leader == nil || in.Term > term {
			leader, term = n, in.Term
		}
	}
	return leader
}

// WaitForLeader waits until exactly one running node leads shard s and
// returns it.
func (c *Cluster) WaitForLeader(t testing.TB, s uint32) *Node {
	t.Helper()
	return c.WaitForNewLeader(t, s, nil)
}

// WaitForNewLeader waits until exactly one running node other than old
// leads shard s and returns it. old may be nil.
func (c *Cluster) WaitForNewLeader(t testing.TB, s uint32, old *Node) *Node {
	t.Helper()
	var leader *Node
	Eventually(t, WaitTimeout, func() error {
		var ids []string
		leader = nil
		for _, n := range c.Live() {
			if g := n.Group(s); g != nil && g.IsLeader() {
				leader = n
				ids = append(ids, n.ID)
			}
		}
		switch {
		case len(ids) != 1:
			return fmt.Errorf("shard %d: want one leader among running nodes, got %v", s, ids)
		case leader == old:
			return fmt.Errorf("shard %d: want a leader other than %s", s, old.ID)
		}
		return nil
	})
	return leader
}

// Propose commits cmds to shard s through its current leader and returns
// the results, retrying for up to WaitTimeout while there is no leader, the
// node asked is not the leader, or the outcome is indeterminate. Give
// commands request ids when a retry must not apply them twice.
func (c *Cluster) Propose(t testing.TB, s uint32, cmds ...*pb.Command) []*pb.Result {
	t.Helper()
	var res []*pb.Result
	Eventually(t, WaitTimeout, func() error {
		n := c.Leader(s)
		if n == nil {
			return fmt.Errorf("shard %d: no leader", s)
		}
		g := n.Group(s)
		if g == nil {
			return fmt.Errorf("shard %d: leader %s just stopped", s, n.ID)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var err error
		res, err = g.Propose(ctx, cmds...)
		if err != nil && !retryable(err) {
			t.Fatalf("shard %d: proposing on %s: %v", s, n.ID, err)
		}
		return err
	})
	return res
}

// retryable reports whether Propose may succeed on another try.
func retryable(err error) bool {
	return errors.Is(err, shard.ErrNotLeader) || errors.Is(err, shard.ErrNoLeader) ||
		errors.Is(err, shard.ErrIndeterminate) || errors.Is(err, shard.ErrShutdown) ||
		errors.Is(err, context.DeadlineExceeded)
}

// WaitApplied waits until every running replica of shard s has applied the
// log up to at least index (as fsm.FSM.LastIndex reports).
func (c *Cluster) WaitApplied(t testing.TB, s uint32, index uint64) {
	t.Helper()
	Eventually(t, WaitTimeout, func() error {
		for _, n := range c.Live() {
			if got := n.Group(s).FSM().LastIndex(); got < index {
				return fmt.Errorf("shard %d on %s: applied up to %d, want %d", s, n.ID, got, index)
			}
		}
		return nil
	})
}

// WaitConverged waits until every running replica of shard s holds the
// same state as its leader after everything committed so far: the leader
// does a linearizable read (so it has applied all that was committed before
// the call, even right after a restart), then every replica must reach the
// leader's last applied index. It fails the test at once if two replicas at
// the same index hold different states (compared as fsm snapshots, byte for
// byte), and returns the common snapshot and index. It needs a leader.
func (c *Cluster) WaitConverged(t testing.TB, s uint32) ([]byte, uint64) {
	t.Helper()
	var target uint64
	Eventually(t, WaitTimeout, func() error {
		n := c.Leader(s)
		if n == nil {
			return fmt.Errorf("shard %d: no leader", s)
		}
		g := n.Group(s)
		if g == nil {
			return fmt.Errorf("shard %d: leader %s just stopped", s, n.ID)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := g.LinearizableRead(ctx); err != nil {
			return fmt.Errorf("shard %d: LinearizableRead on %s: %w", s, n.ID, err)
		}
		target = g.FSM().LastIndex()
		return nil
	})
	var snap []byte
	var index uint64
	Eventually(t, WaitTimeout, func() error {
		snap, index = nil, 0
		live := c.Live()
		// All at once, so that replicas answer between the same two ticks.
		snaps := make([][]byte, len(live))
		indexes := make([]uint64, len(live))
		errs := make([]error, len(live))
		var wg sync.WaitGroup
		for i, n := range live {
			wg.Add(1)
			go func() {
				defer wg.Done()
				snaps[i], indexes[i], errs[i] = snapshotAt(n, s)
			}()
		}
		wg.Wait()
		var first *Node
		for i, n := range live {
			b, at := snaps[i], indexes[i]
			switch {
			case errs[i] != nil:
				return fmt.Errorf("shard %d on %s: %w", s, n.ID, errs[i])
			case at < target:
				return fmt.Errorf("shard %d on %s: applied up to %d, want %d", s, n.ID, at, target)
			case first == nil:
				first, snap, index = n, b, at
			case at != index:
				return fmt.Errorf("shard %d: %s applied up to %d, %s up to %d", s, first.ID, index, n.ID, at)
			case !bytes.Equal(b, snap):
				t.Fatalf("shard %d: %s and %s diverged: different states at index %d:\n%s", s, first.ID, n.ID, at,
					strings.Join(fsm.DiffSnapshots(snap, b, 10), "\n"))
			}
		}
		return nil
	})
	return snap, index
}

// snapshotAt serializes a replica's state machine and returns it with the
// last applied index it holds (read from its header, written under the
// same lock as the state).
func snapshotAt(n *Node, s uint32) ([]byte, uint64, error) {
	g := n.Group(s)
	if g == nil {
		return nil, 0, errors.New("stopped")
	}
	var buf bytes.Buffer
	if err := g.FSM().WriteSnapshot(&buf); err != nil {
		return nil, 0, err
	}
	recs := fsm.SnapshotRecords(buf.Bytes()[:min(buf.Len(), 4096)])
	if len(recs) == 0 || recs[0].GetHeader() == nil {
		return nil, 0, errors.New("snapshot without a header")
	}
	return buf.Bytes(), recs[0].GetHeader().GetLastIndex(), nil
}

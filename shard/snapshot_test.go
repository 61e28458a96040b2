package shard_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/shard"
	"github.com/frontdeskhq/frontdesk/shard/shardtest"
)

// TestSnapshotCatchUp stops a follower, writes until the others have taken
// snapshots and compacted their logs past everything the follower has, then
// restarts it: it can only catch up by InstallSnapshot, and must converge.
func TestSnapshotCatchUp(t *testing.T) {
	t.Parallel()
	const threshold, trailing = 32, 8
	c := shardtest.NewCluster(t, 3, 1, shardtest.WithTickInterval(-1), shardtest.WithConfig(func(cfg *shard.HostConfig) {
		cfg.SnapshotThreshold = threshold
		cfg.SnapshotInterval = 20 * time.Millisecond
		cfg.TrailingLogs = trailing
	}))
	setupMerchant(t, c, 0, "m", 0, 2, 1000)
	leader := c.WaitForLeader(t, 0)
	lagger := follower(t, c, 0, leader)
	c.WaitApplied(t, 0, leader.Group(0).FSM().LastIndex())
	if got := lagger.Group(0).SnapshotIndex(); got != 0 {
		t.Fatalf("%s has a snapshot at %d before the test; want none", lagger.ID, got)
	}
	lagged := lagger.Group(0).Info().LastIndex
	c.Kill(t, lagger.Index)
	// The lagger may have taken a few more entries between that read and
	// its death (a full -race run under load once saw it catch up from the
	// log): the others compact well past it.
	const margin = threshold

	for i := 0; ; i++ {
		c.Propose(t, 0, consult("m", fmt.Sprintf("b%d", i)))
		if i < 2*threshold {
			continue
		}
		compacted := true
		for _, n := range c.Live() {
			first, err := n.Group(0).FirstLogIndex()
			if err != nil {
				t.Fatalf("%s: FirstIndex: %v", n.ID, err)
			}
			compacted = compacted && first > lagged+1+margin
		}
		if compacted {
			break
		}
		if i > 20*threshold {
			t.Fatalf("logs not compacted past index %d after %d entries", lagged, i)
		}
	}

	c.Restart(t, lagger.Index)
	snap, index := c.WaitConverged(t, 0)
	got := c.Node(lagger.Index).Group(0).SnapshotIndex()
	if got <= lagged {
		t.Fatalf("%s caught up without a snapshot past its last index %d (snapshot index %d)", lagger.ID, lagged, got)
	}
	t.Logf("%s was at %d, caught up by InstallSnapshot of index %d; all replicas equal at %d (%d-byte state)",
		lagger.ID, lagged, got, index, len(snap))
	c.Propose(t, 0, consult("m", "after"))
	c.WaitConverged(t, 0)
}

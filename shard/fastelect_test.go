package shard_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/shard"
	"github.com/frontdeskhq/frontdesk/shard/shardtest"
)

// When a leader's node goes away (its port closes, as when its process is
// killed), the followers start an election at once instead of waiting out
// the heartbeat timeout: one election per shard it led, by one voter, and
// the shard keeps everything it acknowledged.
func TestLeaderGoneStartsElectionAtOnce(t *testing.T) {
	// A heartbeat timeout long enough that raft's own election could not
	// come first: a follower waits 3–6 s of silence before it stands.
	timing := shard.RaftTiming{
		HeartbeatTimeout:   3 * time.Second,
		ElectionTimeout:    3 * time.Second,
		LeaderLeaseTimeout: time.Second,
		CommitTimeout:      5 * time.Millisecond,
	}
	const shards = 4
	c := shardtest.NewCluster(t, 3, shards, shardtest.WithTiming(timing), shardtest.WithTickInterval(-1))
	for s := range uint32(shards) {
		setupMerchant(t, c, s, fmt.Sprintf("m%d", s), 0, 2, 5)
	}

	// Kill the node that leads shard 0 and count the shards it led.
	victim := c.Leader(0)
	led := 0
	for s := range uint32(shards) {
		if c.Leader(s) == victim {
			led++
		}
	}
	killed := time.Now()
	c.Kill(t, victim.Index)
	for s := range uint32(shards) {
		c.WaitForNewLeader(t, s, victim)
	}
	t.Logf("%s led %d of %d shards; every shard had a new leader %v after the kill (heartbeat timeout %v)",
		victim.ID, led, shards, time.Since(killed), timing.HeartbeatTimeout)

	var started uint64
	for _, n := range c.Live() {
		started += n.Host().FastElections()
	}
	if started != uint64(led) {
		t.Fatalf("survivors started %d elections on the leader's node going away, want %d (one per shard it led)", started, led)
	}
	for s := range uint32(shards) {
		c.Propose(t, s, consult(fmt.Sprintf("m%d", s), "b1"))
		c.WaitConverged(t, s)
	}
}

package shard_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/shard/shardtest"
)

// TestWipedVoterDoesNotElectStaleLeader: a voter whose disk was replaced
// comes back empty under its old identity. Raft's safety rests on voters
// remembering what they accepted, so such a replica must not vote before it
// has caught up: otherwise a follower that missed committed entries wins an
// election with its vote, and the entries — acknowledged to clients — are
// gone (and replicas that applied them diverge from the rest).
//
// Leader L and follower C commit entries while follower B is down; C is
// wiped; L dies; B (stale) and C (empty) come back. B must not become
// leader. When L returns, every acknowledged entry is still there.
func TestWipedVoterDoesNotElectStaleLeader(t *testing.T) {
	const s = 0
	c := shardtest.NewCluster(t, 3, 1, shardtest.WithTickInterval(-1))
	l := c.WaitForLeader(t, s)
	b, w := c.Node((l.Index+1)%3), c.Node((l.Index+2)%3)

	c.Kill(t, b.Index)
	const n = 20
	for i := range n {
		c.Propose(t, s, shardtest.Command(fmt.Sprintf("m%d", i), &pb.UpsertMerchant{MerchantId: fmt.Sprintf("m%d", i)}))
	}
	c.Kill(t, w.Index)
	if err := os.RemoveAll(filepath.Join(w.DataDir, "shards")); err != nil {
		t.Fatal(err)
	}
	c.Kill(t, l.Index)
	c.Restart(t, w.Index) // empty, in no configuration of its own
	c.Restart(t, b.Index) // stale: it missed all n entries

	// B campaigns again and again; a vote from the wiped node would elect it.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if ld := c.Leader(s); ld != nil {
			t.Fatalf("%s was elected leader while %s (which has the committed entries) was down: the wiped %s voted",
				ld.ID, l.ID, w.ID)
		}
		time.Sleep(20 * time.Millisecond)
	}

	c.Restart(t, l.Index)
	c.WaitForLeader(t, s)
	c.WaitConverged(t, s)
	for _, nd := range c.Nodes() {
		for i := range n {
			if _, err := nd.Group(s).FSM().Merchant(fmt.Sprintf("m%d", i)); err != nil {
				t.Fatalf("%s: merchant m%d, acknowledged before the wipe, is gone: %v", nd.ID, i, err)
			}
		}
	}
}

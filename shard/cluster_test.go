package shard_test

import (
	"fmt"
	"testing"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/shard/shardtest"
)

// TestClusterReplicates bootstraps 3 nodes × 4 shards, sets up a merchant
// and consults on every shard, and checks the results and that every
// replica of every shard holds the same state.
func TestClusterReplicates(t *testing.T) {
	t.Parallel()
	c := shardtest.NewCluster(t, 3, 4)
	for s := range c.Shards() {
		m := fmt.Sprintf("m%d", s)
		setup := shardtest.MerchantSetup(m, 0, 2, 1)
		for i, r := range c.Propose(t, s, setup...) {
			if err := fsm.ResultError(r); err != nil {
				t.Fatalf("shard %d: setup command %d (%v): %v", s, i, setup[i].Body, err)
			}
		}
		// Two agents of limit 1: two buyers are assigned, the third queues.
		var consults []*pb.Command
		for b := range 3 {
			consults = append(consults, shardtest.Command(fmt.Sprintf("%s/consult/%d", m, b),
				&pb.Consult{MerchantId: m, BuyerId: fmt.Sprintf("b%d", b)}))
		}
		res := c.Propose(t, s, consults...)
		want := []pb.Outcome{pb.Outcome_OUTCOME_ASSIGNED, pb.Outcome_OUTCOME_ASSIGNED, pb.Outcome_OUTCOME_QUEUED}
		for i, r := range res {
			if err := fsm.ResultError(r); err != nil || r.Outcome != want[i] {
				t.Fatalf("shard %d: consult %d: outcome %v (err %v), want %v", s, i, r.Outcome, err, want[i])
			}
			if r.SessionId == "" || r.BuyerId != fmt.Sprintf("b%d", i) {
				t.Fatalf("shard %d: consult %d: result %v names no session or the wrong buyer", s, i, r)
			}
		}
		if res[2].Position != 1 {
			t.Fatalf("shard %d: queued buyer at position %d, want 1", s, res[2].Position)
		}
	}
	for s := range c.Shards() {
		snap, index := c.WaitConverged(t, s)
		t.Logf("shard %d: 3 replicas identical at index %d (%d-byte snapshot)", s, index, len(snap))
		for _, n := range c.Nodes() {
			sess, err := n.Group(s).FSM().BuyerSession(fmt.Sprintf("m%d", s), "b0")
			if err != nil || sess.State != pb.SessionState_SESSION_STATE_ASSIGNED {
				t.Fatalf("shard %d on %s: buyer b0's session %v (err %v), want ASSIGNED", s, n.ID, sess, err)
			}
		}
	}
}

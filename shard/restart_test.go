package shard_test

import (
	"bytes"
	"fmt"
	"testing"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/shard/shardtest"
)

// TestRestartAll stops every node and starts them again from the same data
// directories: no shard is bootstrapped again, every shard elects a leader,
// and every replica comes back with the same state (sessions, queues, agent
// loads and limits), byte for byte.
func TestRestartAll(t *testing.T) {
	t.Parallel()
	const shards = 4
	// No ticks: the state after the restart must equal the state before.
	c := shardtest.NewCluster(t, 3, shards, shardtest.WithTickInterval(-1))
	before := map[uint32][]byte{}
	sessions := map[uint32][]string{}
	for s := range c.Shards() {
		m := fmt.Sprintf("m%d", s)
		setupMerchant(t, c, s, m, 0, 2, 2)
		for b := range 5 { // 4 assigned (2 agents × limit 2), 1 queued
			r := c.Propose(t, s, consult(m, fmt.Sprintf("b%d", b)))[0]
			sessions[s] = append(sessions[s], r.SessionId)
		}
		before[s], _ = c.WaitConverged(t, s)
	}

	for _, n := range c.Nodes() {
		c.Kill(t, n.Index)
	}
	for _, n := range c.Nodes() {
		c.Restart(t, n.Index) // Restart never bootstraps
	}
	for _, n := range c.Nodes() {
		for s := range c.Shards() {
			if has, err := n.Host().HasState(s); err != nil || !has {
				t.Fatalf("%s: HasState(%d) = %v, %v after restart; want true", n.ID, s, has, err)
			}
		}
	}
	for s := range c.Shards() {
		c.WaitForLeader(t, s)
		after, index := c.WaitConverged(t, s)
		if !bytes.Equal(before[s], after) {
			t.Fatalf("shard %d: state at index %d differs after the restart", s, index)
		}
		m := fmt.Sprintf("m%d", s)
		f := c.Node(0).Group(s).FSM()
		agents, err := f.Agents(m)
		if err != nil {
			t.Fatalf("shard %d: Agents: %v", s, err)
		}
		for _, a := range agents {
			if a.Limit != 2 || a.Load != 2 || a.Status != pb.AgentStatus_AGENT_STATUS_ONLINE {
				t.Fatalf("shard %d: agent %s after restart: limit %d, load %d, %v; want limit 2, load 2, ONLINE",
					s, a.Config.AgentId, a.Limit, a.Load, a.Status)
			}
		}
		queued, err := f.Session(m, sessions[s][4])
		if err != nil || queued.State != pb.SessionState_SESSION_STATE_QUEUED {
			t.Fatalf("shard %d: fifth buyer's session after restart: %v (err %v), want QUEUED", s, queued, err)
		}
		// And the shard takes writes again.
		if r := c.Propose(t, s, consult(m, "after-restart"))[0]; r.Outcome != pb.Outcome_OUTCOME_QUEUED || r.Position != 2 {
			t.Fatalf("shard %d: consult after restart: %v, want QUEUED at position 2", s, r)
		}
	}
}

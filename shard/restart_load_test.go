package shard_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/shard"
	"github.com/frontdeskhq/frontdesk/shard/shardtest"
)

// TestRestartsUnderLoadKeepReplicasIdentical drives batched proposals from
// many callers (consults, ends, agents going offline and online, limit
// changes, leader ticks) while replicas snapshot often and nodes are
// killed and restarted — one at a time and all at once, so replicas come
// back from their own snapshots plus the log after them. Afterwards every
// replica of every shard must hold byte-identical state at the same index.
// FRONTDESK_STRESS=<duration> runs it longer.
func TestRestartsUnderLoadKeepReplicasIdentical(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts nodes under load")
	}
	run := 8 * time.Second
	if d, err := time.ParseDuration(os.Getenv("FRONTDESK_STRESS")); err == nil {
		run = d
	}
	const shards, merchants = 2, 4
	c := shardtest.NewCluster(t, 3, shards,
		shardtest.WithTickInterval(300*time.Millisecond),
		shardtest.WithConfig(func(hc *shard.HostConfig) {
			hc.SnapshotThreshold, hc.SnapshotInterval, hc.TrailingLogs = 64, 200*time.Millisecond, 16
		}))
	ms := make([]string, merchants)
	for i := range ms {
		ms[i] = fmt.Sprintf("m%d", i)
		setupMerchant(t, c, shardOf(i), ms[i], 5_000, 4, 2)
	}

	var ops, fails atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				mi := (w + i) % merchants
				m, s := ms[mi], shardOf(mi)
				var cmd *pb.Command
				id := fmt.Sprintf("w%d-%d", w, i)
				switch {
				case w == 0 && i%3 == 0:
					cmd = shardtest.Command(id, &pb.UpsertAgent{MerchantId: m, AgentId: fmt.Sprintf("a%d", i%4),
						Limit: uint32(1 + i%3), Groups: []*pb.AgentGroup{{GroupId: "g1", Skill: uint32(10 * (i % 5))}}})
				case w == 1:
					st := pb.AgentStatus_AGENT_STATUS_ONLINE
					if i%2 == 0 {
						st = pb.AgentStatus_AGENT_STATUS_OFFLINE
					}
					cmd = shardtest.Command(id, &pb.SetAgentStatus{MerchantId: m, AgentId: fmt.Sprintf("a%d", i%4), Status: st})
				default:
					cmd = shardtest.Command(id, &pb.Consult{MerchantId: m, BuyerId: fmt.Sprintf("b%d-%d", w, i%7)})
				}
				r, ok := proposeOnce(c, s, cmd)
				if !ok {
					fails.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				ops.Add(1)
				if r.SessionId != "" && i%2 == 0 {
					if _, ok := proposeOnce(c, s, shardtest.Command(id+"/end",
						&pb.End{MerchantId: m, SessionId: r.SessionId, Reason: pb.EndReason_END_REASON_BUYER_LEFT})); ok {
						ops.Add(1)
					}
				}
			}
		}()
	}

	deadline := time.Now().Add(run)
	faults := 0
	for time.Now().Before(deadline) {
		time.Sleep(700 * time.Millisecond)
		if faults%3 == 2 {
			for _, n := range c.Nodes() {
				c.Kill(t, n.Index)
			}
			for _, n := range c.Nodes() {
				c.Restart(t, n.Index)
			}
		} else {
			i := faults % 3
			c.Kill(t, i)
			time.Sleep(300 * time.Millisecond)
			c.Restart(t, i)
		}
		faults++
	}
	close(stop)
	wg.Wait()
	t.Logf("%d faults, %d commands acknowledged, %d attempts failed", faults, ops.Load(), fails.Load())
	if ops.Load() == 0 {
		t.Fatal("no command was acknowledged")
	}
	for s := range c.Shards() {
		c.WaitForLeader(t, s)
		_, index := c.WaitConverged(t, s)
		t.Logf("shard %d: replicas identical at index %d", s, index)
	}
}

func shardOf(merchant int) uint32 { return uint32(merchant % 2) }

// proposeOnce proposes through shard s's current leader, once.
func proposeOnce(c *shardtest.Cluster, s uint32, cmd *pb.Command) (*pb.Result, bool) {
	n := c.Leader(s)
	if n == nil {
		return nil, false
	}
	g := n.Group(s)
	if g == nil {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	rs, err := g.Propose(ctx, cmd)
	if err != nil || len(rs) != 1 || rs[0].Error != pb.ErrorCode_ERROR_CODE_UNSPECIFIED {
		return nil, false
	}
	return rs[0], true
}

// Package failpoint injects the chaos suite's faults into a cluster through
// its cluster.Driver — SIGKILL a shard's leader or a follower, freeze the
// leader (SIGSTOP) until another node leads, cut the leader off from the
// other nodes, restart every node, wipe a node's data — and heals them.
// Run checks the cluster is healthy before each fault and after its heal.
package failpoint

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/frontdeskhq/frontdesk/e2e/cluster"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
)

// Env is the cluster faults act on.
type Env struct {
	D cluster.Driver
	// Shards is the cluster's shard count.
	Shards uint32
	// Logf, if set, is told what is going on.
	Logf func(format string, args ...any)

	once    sync.Once
	clients []frontdeskv1connect.ClusterServiceClient
}

func (e *Env) logf(format string, args ...any) {
	if e.Logf != nil {
		e.Logf(format, args...)
	}
}

func (e *Env) cluster(i int) frontdeskv1connect.ClusterServiceClient {
	e.once.Do(func() {
		hc := &http.Client{Timeout: time.Second}
		for _, a := range e.D.APIAddrs() {
			e.clients = append(e.clients, frontdeskv1connect.NewClusterServiceClient(hc, "http://"+a))
		}
	})
	return e.clients[i]
}

// views asks every running node for its shard map, at once; a node that
// does not answer within a second (killed, paused) has a nil view.
func (e *Env) views(ctx context.Context) []*pb.GetShardMapResponse {
	out := make([]*pb.GetShardMapResponse, e.D.Size())
	var wg sync.WaitGroup
	for i := range out {
		if !e.D.Running(i) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r, err := e.cluster(i).GetShardMap(ctx, connect.NewRequest(&pb.GetShardMapRequest{})); err == nil {
				out[i] = r.Msg
			}
		}()
	}
	wg.Wait()
	return out
}

// Leader is the node whose replica of shard leads, in the highest term any
// node reports (a cut-off old leader may still think it leads), or -1.
func (e *Env) Leader(ctx context.Context, shard uint32) int {
	leader, term := -1, uint64(0)
	for i, v := range e.views(ctx) {
		if v == nil || int(shard) >= len(v.ShardInfos) {
			continue
		}
		si := v.ShardInfos[shard]
		if si.LocalState == "Leader" && si.Term >= term {
			leader, term = i, si.Term
		}
	}
	return leader
}

// awaitLeader waits until a node other than old leads shard and returns
// it, with how long that took.
func (e *Env) awaitLeader(ctx context.Context, shard uint32, old int, timeout time.Duration) (int, time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if l := e.Leader(ctx, shard); l >= 0 && l != old {
			return l, time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return -1, 0, fmt.Errorf("no node but %d leads shard %d after %v", old, shard, timeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Healthy checks the cluster once: every node running and ready, and for
// every shard one leader that every node names, with every replica (on the
// nodes that hold one) applied up to the commit index the leader reported
// first.
func (e *Env) Healthy(ctx context.Context) error {
	for i := 0; i < e.D.Size(); i++ {
		if !e.D.Running(i) {
			return fmt.Errorf("%s is not running", e.D.NodeID(i))
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := e.D.WaitReady(rctx); err != nil {
		return err
	}
	first := e.views(ctx)
	for i, v := range first {
		if v == nil {
			return fmt.Errorf("%s does not answer", e.D.NodeID(i))
		}
		if v.Shards != e.Shards || len(v.ShardInfos) != int(e.Shards) {
			return fmt.Errorf("%s reports %d shards, want %d", e.D.NodeID(i), v.Shards, e.Shards)
		}
	}
	target := make([]uint64, e.Shards)
	for s := range e.Shards {
		leader := first[0].ShardInfos[s].LeaderId
		for i, v := range first {
			si := v.ShardInfos[s]
			if si.LeaderId == "" || si.LeaderId != leader {
				return fmt.Errorf("shard %d: %s says its leader is %q, %s says %q", s, e.D.NodeID(0), leader, e.D.NodeID(i), si.LeaderId)
			}
			if si.LocalState == "Leader" {
				target[s] = si.CommitIndex
			}
		}
	}
	// Followers learn that an entry is committed from the leader's next
	// append, so under traffic they trail its commit index by an entry or
	// two at any instant: give them a moment to reach the target.
	caughtUp := func() error {
		for i, v := range e.views(ctx) {
			if v == nil {
				return fmt.Errorf("%s does not answer", e.D.NodeID(i))
			}
			for s, si := range v.ShardInfos {
				if si.LocalState != "" && si.AppliedIndex < target[s] { // a node may hold no replica of s
					return fmt.Errorf("shard %d: %s has applied %d of %d", s, e.D.NodeID(i), si.AppliedIndex, target[s])
				}
			}
		}
		return nil
	}
	for deadline := time.Now().Add(time.Second); ; {
		if err := caughtUp(); err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// AwaitHealthy polls Healthy until it passes or timeout ends; the error is
// the last reason it did not.
func (e *Env) AwaitHealthy(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start, said := time.Now(), time.Now()
	for {
		err := e.Healthy(ctx)
		if err == nil {
			return nil
		}
		if time.Since(said) > 10*time.Second {
			e.logf("not healthy after %v: %v", time.Since(start).Round(time.Second), err)
			said = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy after %v: %w", timeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// errNoLeader: the shard has no leader to act on.
var errNoLeader = errors.New("failpoint: the shard has no leader")

package node

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"

	"github.com/hashicorp/raft"

	"github.com/frontdeskhq/frontdesk/dispatch"
	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// The node is dispatch's view of the cluster.

func raftServers(ms []member) []raft.Server {
	out := make([]raft.Server, len(ms))
	for i, m := range ms {
		out[i] = raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.RaftAddr)}
	}
	return out
}

// Shards is the cluster's shard count (0 until formed).
func (n *Node) Shards() uint32 { return n.shards.Load() }

// Replica returns this node's replica of a shard, timed for metrics.
func (n *Node) Replica(s uint32) (dispatch.Replica, bool) {
	g, ok := n.host.Group(s)
	if !ok {
		return nil, false
	}
	return timedReplica{g: g, m: n.metrics, shard: s}, true
}

// Leader is the shard's leader as this node knows it: from its own replica,
// else from gossip (the shards each member says it leads).
func (n *Node) Leader(s uint32) (string, string) {
	if g, ok := n.host.Group(s); ok {
		if id := g.Info().LeaderID; id != "" {
			if mb, ok := n.members.get(id); ok {
				return id, mb.APIAddr
			}
			return id, ""
		}
	}
	members, _ := n.members.snapshot()
	for _, mb := range members {
		if mb.State != "alive" {
			continue
		}
		for _, l := range mb.Leads {
			if l == s {
				return mb.ID, mb.APIAddr
			}
		}
	}
	return "", ""
}

func (n *Node) nodes() []*pb.Node {
	members, _ := n.members.snapshot()
	now := time.Now()
	out := make([]*pb.Node, len(members))
	for i, m := range members {
		if m.ID == n.cfg.ID {
			m.Draining = n.draining.Load()
		}
		out[i] = &pb.Node{
			Id: m.ID, ApiAddr: m.APIAddr, RaftAddr: m.RaftAddr, State: m.State,
			Draining: m.Draining, StateAgeMs: now.Sub(m.Since).Milliseconds(),
		}
	}
	return out
}

func (n *Node) shardInfos() []*pb.ShardInfo {
	count := n.Shards()
	v := n.view(time.Now())
	out := make([]*pb.ShardInfo, 0, count)
	for s := uint32(0); s < count; s++ {
		si := &pb.ShardInfo{Shard: s}
		si.LeaderId, si.LeaderApiAddr = n.Leader(s)
		if int(s) < len(v.placement) {
			si.PlacementIds = v.placement[s]
		}
		if g, ok := n.host.Group(s); ok {
			// Configuration first: if the log is all committed when Info
			// reads it, the configuration read before is committed too.
			cfg, cerr := g.Configuration()
			info := g.Info()
			si.Term, si.CommitIndex, si.AppliedIndex, si.LocalState = info.Term, info.CommitIndex, info.AppliedIndex, info.State
			if cerr == nil {
				si.VoterIds, si.NonvoterIds = cfg.Voters(), cfg.Nonvoters()
				si.ConfigurationCommitted = info.CommitIndex >= info.LastIndex
			}
		}
		out = append(out, si)
	}
	return out
}

// ShardMap describes every shard's leader and voters.
func (n *Node) ShardMap() *pb.GetShardMapResponse {
	return &pb.GetShardMapResponse{Shards: n.Shards(), ShardInfos: n.shardInfos(), Nodes: n.nodes()}
}

// Status describes the nodes and shards as this node sees them.
func (n *Node) Status() *pb.GetStatusResponse {
	return &pb.GetStatusResponse{NodeId: n.cfg.ID, Nodes: n.nodes(), ShardInfos: n.shardInfos()}
}

// TransferLeadership moves a shard's leadership from this node's replica.
func (n *Node) TransferLeadership(ctx context.Context, s uint32, to string) (string, error) {
	g, ok := n.host.Group(s)
	if !ok {
		return "", errNoReplica
	}
	if g.IsLeader() && len(g.Info().Voters) < 2 {
		return "", connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("shard %d has no other voter to lead it", s))
	}
	if err := g.TransferLeadership(ctx, to); err != nil {
		return "", err
	}
	return g.Info().LeaderID, nil
}

// timedReplica records how long proposals take to apply.
type timedReplica struct {
	g interface {
		dispatch.Replica
	}
	m     *metrics
	shard uint32
}

func (t timedReplica) Propose(ctx context.Context, cmds ...*pb.Command) ([]*pb.Result, error) {
	start := time.Now()
	res, err := t.g.Propose(ctx, cmds...)
	if err == nil {
		t.m.applyLatency.WithLabelValues(shardLabel(t.shard)).Observe(time.Since(start).Seconds())
	}
	return res, err
}

func (t timedReplica) LinearizableRead(ctx context.Context) error { return t.g.LinearizableRead(ctx) }
func (t timedReplica) FSM() *fsm.FSM                              { return t.g.FSM() }

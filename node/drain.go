package node

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// DrainNode starts the drain of node id (or ends it, with cancel). On this
// node it takes effect here; for another member it is forwarded to that
// node's API. Draining is gossiped and kept in the data dir, so it survives
// a restart; placement then gives the node nothing, its shards' leaders hand
// their lead to placed voters, replace its replicas, and the node drops them.
// The answer says how far the drain has come; asking again is how to follow
// it. Errors: NOT_FOUND for an unknown node, FAILED_PRECONDITION for one
// that is not alive or before this node has joined a cluster, and the
// forwarded call's errors.
func (n *Node) DrainNode(ctx context.Context, id string, cancel bool) (*pb.DrainNodeResponse, error) {
	if id == n.cfg.ID {
		return n.drainSelf(cancel)
	}
	mb, ok := n.members.get(id)
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("node %q is not a member", id))
	}
	if mb.State != "alive" && mb.State != "suspect" {
		return nil, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("node %q is %s: only a running node can be drained (a gone node is replaced after --dead-after)", id, mb.State))
	}
	c, err := n.peers.client(id)
	if err != nil {
		return nil, connect.NewError(connect.CodeUnavailable, err)
	}
	ctx, done := context.WithTimeout(ctx, peerTimeout)
	defer done()
	res, err := c.DrainNode(ctx, connect.NewRequest(&pb.DrainNodeRequest{NodeId: id, Cancel: cancel}))
	if err != nil {
		var ce *connect.Error
		if errors.As(err, &ce) {
			return nil, ce
		}
		return nil, connect.NewError(connect.CodeUnavailable, err)
	}
	return res.Msg, nil
}

// drainSelf marks this node draining (or not) and reports its progress.
func (n *Node) drainSelf(cancel bool) (*pb.DrainNodeResponse, error) {
	select {
	case <-n.formed:
	default:
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("this node has not joined a cluster yet"))
	}
	want := !cancel
	if n.draining.Load() != want {
		st := clusterState{Shards: n.Shards(), Replication: int(n.repl.Load()), Draining: want}
		if err := n.writeClusterFile(st); err != nil {
			return nil, fmt.Errorf("recording the drain: %w", err)
		}
		n.draining.Store(want)
		n.members.update(func(m *meta) { m.Draining = want })
		n.log.Info("drain", "draining", want)
	}
	res := &pb.DrainNodeResponse{NodeId: n.cfg.ID, Draining: want}
	for _, g := range n.host.Groups() {
		res.Replicas++
		if g.IsLeader() {
			res.Leaders++
		}
	}
	res.Drained = want && res.Replicas == 0
	return res, nil
}

package client

import (
	"context"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
)

// ShardMap asks any node for the shard map (its view of each shard's leader
// and voters), updates the client's leader cache with it and returns it.
func (c *Client) ShardMap(ctx context.Context) (*pb.GetShardMapResponse, error) {
	m, err := unary(ctx, c, spec{procedure: frontdeskv1connect.ClusterServiceGetShardMapProcedure, shard: -1},
		func(ctx context.Context, ep *endpoint) (*connect.Response[pb.GetShardMapResponse], error) {
			return ep.cluster.GetShardMap(ctx, connect.NewRequest(&pb.GetShardMapRequest{}))
		})
	if err != nil {
		return nil, err
	}
	if err := c.routes.apply(m); err != nil {
		return m, err
	}
	return m, nil
}

// Status asks any node for the cluster's nodes (gossip) and shards (Raft
// state) as that node sees them.
func (c *Client) Status(ctx context.Context) (*pb.GetStatusResponse, error) {
	return unary(ctx, c, spec{procedure: frontdeskv1connect.ClusterServiceGetStatusProcedure, shard: -1},
		func(ctx context.Context, ep *endpoint) (*connect.Response[pb.GetStatusResponse], error) {
			return ep.cluster.GetStatus(ctx, connect.NewRequest(&pb.GetStatusRequest{}))
		})
}

// TransferLeadership moves a shard's leadership to the node toNodeID, or to
// any up-to-date voter when toNodeID is empty, and returns the new leader's
// id. It goes to the shard's leader and is retried like a write (it has no
// request id: a retry after an unknown outcome may move leadership again).
func (c *Client) TransferLeadership(ctx context.Context, shard uint32, toNodeID string) (string, error) {
	req := &pb.TransferLeadershipRequest{Shard: shard, ToNodeId: toNodeID}
	sp := spec{procedure: frontdeskv1connect.ClusterServiceTransferLeadershipProcedure, shard: int(shard), write: true}
	resp, err := unary(ctx, c, sp,
		func(ctx context.Context, ep *endpoint) (*connect.Response[pb.TransferLeadershipResponse], error) {
			return ep.cluster.TransferLeadership(ctx, connect.NewRequest(req))
		})
	if err != nil {
		return "", err
	}
	// The leader moved: learn where.
	c.routes.forget(int(shard), c.routes.leader(shard))
	return resp.GetLeaderId(), nil
}

// DrainNode starts draining node nodeID, or with cancel ends its drain,
// and returns how far the drain has come. Any node forwards the request to
// nodeID. Draining moves the node's leaderships and replicas to other nodes;
// once the answer says Drained the node can be stopped without failing a
// client call. The call is idempotent: call it again to follow the drain.
func (c *Client) DrainNode(ctx context.Context, nodeID string, cancel bool) (*pb.DrainNodeResponse, error) {
	req := &pb.DrainNodeRequest{NodeId: nodeID, Cancel: cancel}
	return unary(ctx, c, spec{procedure: frontdeskv1connect.ClusterServiceDrainNodeProcedure, shard: -1},
		func(ctx context.Context, ep *endpoint) (*connect.Response[pb.DrainNodeResponse], error) {
			return ep.cluster.DrainNode(ctx, connect.NewRequest(req))
		})
}

// NodeStatus asks the node at apiAddr ("host:port" or a URL), and only it,
// for its status: the nodes as its gossip sees them and the shards as its
// own replicas see them (follower progress included, which the leader's
// answer does not have). It is not retried elsewhere; the call timeout
// bounds it.
func (c *Client) NodeStatus(ctx context.Context, apiAddr string) (*pb.GetStatusResponse, error) {
	const procedure = frontdeskv1connect.ClusterServiceGetStatusProcedure
	u, err := baseURL(c.routes.scheme, apiAddr)
	if err != nil {
		return nil, err
	}
	if c.cfg.callTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.callTimeout)
		defer cancel()
	}
	resp, err := c.endpoint(u).cluster.GetStatus(ctx, connect.NewRequest(&pb.GetStatusRequest{}))
	if err != nil {
		return nil, newError(procedure, err)
	}
	return resp.Msg, nil
}

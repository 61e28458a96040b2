package dispatch

import (
	"context"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

type clusterHandler struct{ s *Service }

func (h *clusterHandler) GetShardMap(ctx context.Context, req *connect.Request[pb.GetShardMapRequest]) (*connect.Response[pb.GetShardMapResponse], error) {
	return connect.NewResponse(h.s.cluster.ShardMap()), nil
}

func (h *clusterHandler) GetStatus(ctx context.Context, req *connect.Request[pb.GetStatusRequest]) (*connect.Response[pb.GetStatusResponse], error) {
	return connect.NewResponse(h.s.cluster.Status()), nil
}

func (h *clusterHandler) TransferLeadership(ctx context.Context, req *connect.Request[pb.TransferLeadershipRequest]) (*connect.Response[pb.TransferLeadershipResponse], error) {
	m := req.Msg
	if m.Shard >= h.s.cluster.Shards() {
		return nil, invalidArg("shard", "no such shard")
	}
	leader, err := h.s.cluster.TransferLeadership(ctx, m.Shard, m.ToNodeId)
	if err != nil {
		return nil, h.s.toConnect(m.Shard, err)
	}
	return connect.NewResponse(&pb.TransferLeadershipResponse{LeaderId: leader}), nil
}

func (h *clusterHandler) DrainNode(ctx context.Context, req *connect.Request[pb.DrainNodeRequest]) (*connect.Response[pb.DrainNodeResponse], error) {
	m := req.Msg
	if m.NodeId == "" {
		return nil, invalidArg("node_id", "must not be empty")
	}
	res, err := h.s.cluster.DrainNode(ctx, m.NodeId, m.Cancel)
	if err != nil {
		return nil, h.s.toConnect(0, err)
	}
	return connect.NewResponse(res), nil
}

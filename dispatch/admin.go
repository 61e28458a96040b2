package dispatch

import (
	"context"
	"sort"

	"connectrpc.com/connect"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

type adminHandler struct{ s *Service }

func (h *adminHandler) UpsertMerchant(ctx context.Context, req *connect.Request[pb.UpsertMerchantRequest]) (*connect.Response[pb.UpsertMerchantResponse], error) {
	m := req.Msg.GetMerchant()
	if m == nil {
		return nil, invalidArg("merchant", "must be set")
	}
	res, err := h.s.write(ctx, m.MerchantId, &pb.Command{RequestId: req.Msg.RequestId, Body: &pb.Command_UpsertMerchant{UpsertMerchant: m}})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.UpsertMerchantResponse{Result: res}), nil
}

func (h *adminHandler) DeleteMerchant(ctx context.Context, req *connect.Request[pb.DeleteMerchantRequest]) (*connect.Response[pb.DeleteMerchantResponse], error) {
	m := req.Msg
	res, err := h.s.write(ctx, m.MerchantId, &pb.Command{RequestId: m.RequestId, Body: &pb.Command_DeleteMerchant{
		DeleteMerchant: &pb.DeleteMerchant{MerchantId: m.MerchantId}}})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.DeleteMerchantResponse{Result: res}), nil
}

func agentViews(states []fsm.AgentState) []*pb.AgentView {
	out := make([]*pb.AgentView, len(states))
	for i, a := range states {
		out[i] = &pb.AgentView{Config: a.Config, Status: a.Status, Limit: a.Limit, Load: a.Load}
	}
	return out
}

func (h *adminHandler) GetMerchant(ctx context.Context, req *connect.Request[pb.GetMerchantRequest]) (*connect.Response[pb.GetMerchantResponse], error) {
	m := req.Msg
	id, f, err := h.s.read(ctx, m.MerchantId, m.Stale)
	if err != nil {
		return nil, err
	}
	cfg, err := f.Merchant(m.MerchantId)
	if err != nil {
		return nil, h.s.toConnect(id, err)
	}
	return connect.NewResponse(&pb.GetMerchantResponse{Settings: cfg.Settings, Groups: cfg.Groups,
		Agents: agentViews(cfg.Agents), Shard: id}), nil
}

// ListMerchants lists the merchants of every shard this node has a replica
// of, from local state (stale by nature).
func (h *adminHandler) ListMerchants(ctx context.Context, req *connect.Request[pb.ListMerchantsRequest]) (*connect.Response[pb.ListMerchantsResponse], error) {
	n := h.s.cluster.Shards()
	var ids []string
	for sh := uint32(0); sh < n; sh++ {
		if req.Msg.ShardPlusOne != 0 && req.Msg.ShardPlusOne-1 != sh {
			continue
		}
		r, ok := h.s.cluster.Replica(sh)
		if !ok {
			continue
		}
		ids = append(ids, r.FSM().Merchants()...)
	}
	sort.Strings(ids)
	return connect.NewResponse(&pb.ListMerchantsResponse{MerchantIds: ids}), nil
}

func (h *adminHandler) UpsertGroup(ctx context.Context, req *connect.Request[pb.UpsertGroupRequest]) (*connect.Response[pb.UpsertGroupResponse], error) {
	g := req.Msg.GetGroup()
	if g == nil {
		return nil, invalidArg("group", "must be set")
	}
	res, err := h.s.write(ctx, g.MerchantId, &pb.Command{RequestId: req.Msg.RequestId, Body: &pb.Command_UpsertGroup{UpsertGroup: g}})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.UpsertGroupResponse{Result: res}), nil
}

func (h *adminHandler) DeleteGroup(ctx context.Context, req *connect.Request[pb.DeleteGroupRequest]) (*connect.Response[pb.DeleteGroupResponse], error) {
	m := req.Msg
	res, err := h.s.write(ctx, m.MerchantId, &pb.Command{RequestId: m.RequestId, Body: &pb.Command_DeleteGroup{
		DeleteGroup: &pb.DeleteGroup{MerchantId: m.MerchantId, GroupId: m.GroupId}}})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.DeleteGroupResponse{Result: res}), nil
}

func (h *adminHandler) UpsertAgent(ctx context.Context, req *connect.Request[pb.UpsertAgentRequest]) (*connect.Response[pb.UpsertAgentResponse], error) {
	a := req.Msg.GetAgent()
	if a == nil {
		return nil, invalidArg("agent", "must be set")
	}
	res, err := h.s.write(ctx, a.MerchantId, &pb.Command{RequestId: req.Msg.RequestId, Body: &pb.Command_UpsertAgent{UpsertAgent: a}})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.UpsertAgentResponse{Result: res}), nil
}

func (h *adminHandler) DeleteAgent(ctx context.Context, req *connect.Request[pb.DeleteAgentRequest]) (*connect.Response[pb.DeleteAgentResponse], error) {
	m := req.Msg
	res, err := h.s.write(ctx, m.MerchantId, &pb.Command{RequestId: m.RequestId, Body: &pb.Command_DeleteAgent{
		DeleteAgent: &pb.DeleteAgent{MerchantId: m.MerchantId, AgentId: m.AgentId}}})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.DeleteAgentResponse{Result: res}), nil
}

func (h *adminHandler) ListAgents(ctx context.Context, req *connect.Request[pb.ListAgentsRequest]) (*connect.Response[pb.ListAgentsResponse], error) {
	m := req.Msg
	id, f, err := h.s.read(ctx, m.MerchantId, m.Stale)
	if err != nil {
		return nil, err
	}
	agents, err := f.Agents(m.MerchantId)
	if err != nil {
		return nil, h.s.toConnect(id, err)
	}
	return connect.NewResponse(&pb.ListAgentsResponse{Agents: agentViews(agents)}), nil
}

func (h *adminHandler) GetQueue(ctx context.Context, req *connect.Request[pb.GetQueueRequest]) (*connect.Response[pb.GetQueueResponse], error) {
	m := req.Msg
	if m.GroupId == "" {
		return nil, invalidArg("group_id", "must not be empty")
	}
	limit := int(m.Limit)
	switch {
	case limit == 0:
		limit = 100
	case limit > 1000:
		return nil, invalidArg("limit", "must be at most 1000")
	}
	id, f, err := h.s.read(ctx, m.MerchantId, m.Stale)
	if err != nil {
		return nil, err
	}
	sessions, n, err := f.Queue(m.MerchantId, m.GroupId, limit)
	if err != nil {
		return nil, h.s.toConnect(id, err)
	}
	return connect.NewResponse(&pb.GetQueueResponse{Sessions: sessions, Length: uint32(n)}), nil
}

func (h *adminHandler) GetStats(ctx context.Context, req *connect.Request[pb.GetStatsRequest]) (*connect.Response[pb.GetStatsResponse], error) {
	m := req.Msg
	id, f, err := h.s.read(ctx, m.MerchantId, m.Stale)
	if err != nil {
		return nil, err
	}
	st, err := f.Stats(m.MerchantId)
	if err != nil {
		return nil, h.s.toConnect(id, err)
	}
	return connect.NewResponse(&pb.GetStatsResponse{Stats: st.MerchantStats, BotResolutionRate: st.BotResolutionRate,
		Load: st.Load, Capacity: st.Capacity, Utilisation: st.Utilisation, InflowPerMinute: st.InflowPerMinute}), nil
}

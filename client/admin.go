package client

import (
	"context"
	"slices"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
)

// UpsertMerchant creates a merchant or replaces its settings.
func (c *Client) UpsertMerchant(ctx context.Context, m *pb.UpsertMerchant) (*pb.Result, error) {
	id := requestID(ctx)
	req := &pb.UpsertMerchantRequest{RequestId: id, Merchant: m}
	p := frontdeskv1connect.AdminServiceUpsertMerchantProcedure
	resp, err := unary(ctx, c, c.merchantSpec(p, m.GetMerchantId(), true, id),
		func(ctx context.Context, ep *endpoint) (*connect.Response[pb.UpsertMerchantResponse], error) {
			return ep.admin.UpsertMerchant(ctx, connect.NewRequest(req))
		})
	return outcome(p, resp.GetResult(), err)
}

// DeleteMerchant deletes a merchant, ending its sessions.
func (c *Client) DeleteMerchant(ctx context.Context, merchant string) (*pb.Result, error) {
	id := requestID(ctx)
	req := &pb.DeleteMerchantRequest{RequestId: id, MerchantId: merchant}
	p := frontdeskv1connect.AdminServiceDeleteMerchantProcedure
	resp, err := unary(ctx, c, c.merchantSpec(p, merchant, true, id),
		func(ctx context.Context, ep *endpoint) (*connect.Response[pb.DeleteMerchantResponse], error) {
			return ep.admin.DeleteMerchant(ctx, connect.NewRequest(req))
		})
	return outcome(p, resp.GetResult(), err)
}

// GetMerchant returns a merchant's settings, groups and agents.
func (c *Client) GetMerchant(ctx context.Context, merchant string, opts ...ReadOption) (*pb.GetMerchantResponse, error) {
	o := readOpts(opts)
	req := &pb.GetMerchantRequest{MerchantId: merchant, Stale: o.stale}
	return unary(ctx, c, c.readSpec(frontdeskv1connect.AdminServiceGetMerchantProcedure, merchant, o),
		func(ctx context.Context, ep *endpoint) (*connect.Response[pb.GetMerchantResponse], error) {
			return ep.admin.GetMerchant(ctx, connect.NewRequest(req))
		})
}

// ListMerchants lists every merchant of the cluster, sorted: it asks each
// shard's leader for that shard's merchants. Replicas answer from local
// state, so the list may lag by a moment.
func (c *Client) ListMerchants(ctx context.Context) ([]string, error) {
	var ids []string
	for s := range c.Shards() {
		req := &pb.ListMerchantsRequest{ShardPlusOne: s + 1}
		sp := spec{procedure: frontdeskv1connect.AdminServiceListMerchantsProcedure, shard: int(s)}
		resp, err := unary(ctx, c, sp,
			func(ctx context.Context, ep *endpoint) (*connect.Response[pb.ListMerchantsResponse], error) {
				return ep.admin.ListMerchants(ctx, connect.NewRequest(req))
			})
		if err != nil {
			return nil, err
		}
		ids = append(ids, resp.GetMerchantIds()...)
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// UpsertGroup creates a group or replaces it.
func (c *Client) UpsertGroup(ctx context.Context, g *pb.UpsertGroup) (*pb.Result, error) {
	id := requestID(ctx)
	req := &pb.UpsertGroupRequest{RequestId: id, Group: g}
	p := frontdeskv1connect.AdminServiceUpsertGroupProcedure
	resp, err := unary(ctx, c, c.merchantSpec(p, g.GetMerchantId(), true, id),
		func(ctx context.Context, ep *endpoint) (*connect.Response[pb.UpsertGroupResponse], error) {
			return ep.admin.UpsertGroup(ctx, connect.NewRequest(req))
		})
	return outcome(p, resp.GetResult(), err)
}

// DeleteGroup deletes a group.
func (c *Client) DeleteGroup(ctx context.Context, merchant, group string) (*pb.Result, error) {
	id := requestID(ctx)
	req := &pb.DeleteGroupRequest{RequestId: id, MerchantId: merchant, GroupId: group}
	p := frontdeskv1connect.AdminServiceDeleteGroupProcedure
	resp, err := unary(ctx, c, c.merchantSpec(p, merchant, true, id),
		func(ctx context.Context, ep *endpoint) (*connect.Response[pb.DeleteGroupResponse], error) {
			return ep.admin.DeleteGroup(ctx, connect.NewRequest(req))
		})
	return outcome(p, resp.GetResult(), err)
}

// UpsertAgent creates an agent or replaces its configuration (groups,
// skills, limit, weight, rating).
func (c *Client) UpsertAgent(ctx context.Context, a *pb.UpsertAgent) (*pb.Result, error) {
	id := requestID(ctx)
	req := &pb.UpsertAgentRequest{RequestId: id, Agent: a}
	p := frontdeskv1connect.AdminServiceUpsertAgentProcedure
	resp, err := unary(ctx, c, c.merchantSpec(p, a.GetMerchantId(), true, id),
		func(ctx context.Context, ep *endpoint) (*connect.Response[pb.UpsertAgentResponse], error) {
			return ep.admin.UpsertAgent(ctx, connect.NewRequest(req))
		})
	return outcome(p, resp.GetResult(), err)
}

// DeleteAgent deletes an agent.
func (c *Client) DeleteAgent(ctx context.Context, merchant, agent string) (*pb.Result, error) {
	id := requestID(ctx)
	req := &pb.DeleteAgentRequest{RequestId: id, MerchantId: merchant, AgentId: agent}
	p := frontdeskv1connect.AdminServiceDeleteAgentProcedure
	resp, err := unary(ctx, c, c.merchantSpec(p, merchant, true, id),
		func(ctx context.Context, ep *endpoint) (*connect.Response[pb.DeleteAgentResponse], error) {
			return ep.admin.DeleteAgent(ctx, connect.NewRequest(req))
		})
	return outcome(p, resp.GetResult(), err)
}

// ListAgents returns a merchant's agents with status, limit and load.
func (c *Client) ListAgents(ctx context.Context, merchant string, opts ...ReadOption) ([]*pb.AgentView, error) {
	o := readOpts(opts)
	req := &pb.ListAgentsRequest{MerchantId: merchant, Stale: o.stale}
	resp, err := unary(ctx, c, c.readSpec(frontdeskv1connect.AdminServiceListAgentsProcedure, merchant, o),
		func(ctx context.Context, ep *endpoint) (*connect.Response[pb.ListAgentsResponse], error) {
			return ep.admin.ListAgents(ctx, connect.NewRequest(req))
		})
	return resp.GetAgents(), err
}

// GetQueue returns the first limit sessions waiting in a group's queue
// (0: the server's default of 100) and the queue's length.
func (c *Client) GetQueue(ctx context.Context, merchant, group string, limit uint32, opts ...ReadOption) (*pb.GetQueueResponse, error) {
	o := readOpts(opts)
	req := &pb.GetQueueRequest{MerchantId: merchant, GroupId: group, Limit: limit, Stale: o.stale}
	return unary(ctx, c, c.readSpec(frontdeskv1connect.AdminServiceGetQueueProcedure, merchant, o),
		func(ctx context.Context, ep *endpoint) (*connect.Response[pb.GetQueueResponse], error) {
			return ep.admin.GetQueue(ctx, connect.NewRequest(req))
		})
}

// GetStats returns a merchant's statistics.
func (c *Client) GetStats(ctx context.Context, merchant string, opts ...ReadOption) (*pb.GetStatsResponse, error) {
	o := readOpts(opts)
	req := &pb.GetStatsRequest{MerchantId: merchant, Stale: o.stale}
	return unary(ctx, c, c.readSpec(frontdeskv1connect.AdminServiceGetStatsProcedure, merchant, o),
		func(ctx context.Context, ep *endpoint) (*connect.Response[pb.GetStatsResponse], error) {
			return ep.admin.GetStats(ctx, connect.NewRequest(req))
		})
}

package client

import (
	"context"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
)

// ReadOption changes how a read is served.
type ReadOption func(*readOptions)

type readOptions struct{ stale bool }

// Stale lets any replica of the shard answer from its local state, which may
// lag the leader by a moment; without it reads are linearizable and served
// by the leader. Stale reads keep working while the shard has no leader.
func Stale() ReadOption { return func(o *readOptions) { o.stale = true } }

func readOpts(opts []ReadOption) readOptions {
	var o readOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

func (c *Client) readSpec(procedure, merchant string, o readOptions) spec {
	s := c.merchantSpec(procedure, merchant, false, "")
	s.anyReplica = o.stale
	return s
}

// outcome applies the result conventions of every write: BUSY comes back
// with ErrBusy, an error inside the result as an *Error.
func outcome(procedure string, r *pb.Result, err error) (*pb.Result, error) {
	if err != nil {
		return nil, err
	}
	if err := resultError(procedure, r); err != nil {
		return r, err
	}
	if r.GetOutcome() == pb.Outcome_OUTCOME_BUSY {
		return r, ErrBusy
	}
	return r, nil
}

// Consult asks for a reception when a buyer opens a chat. The Result's
// Outcome is BOT, ASSIGNED, QUEUED, EXISTING (the buyer's active session) or
// BUSY, which comes with ErrBusy.
func (c *Client) Consult(ctx context.Context, consult *pb.Consult) (*pb.Result, error) {
	id := requestID(ctx)
	req := &pb.ConsultRequest{RequestId: id, Consult: consult}
	p := frontdeskv1connect.DispatchServiceConsultProcedure
	resp, err := c.write(ctx, c.merchantSpec(p, consult.GetMerchantId(), true, id), &pb.BatchCall{Call: &pb.BatchCall_Consult{Consult: req}})
	return outcome(p, resp.GetConsult().GetResult(), err)
}

// Escalate moves a BOT session to a human (ASSIGNED, QUEUED, or BUSY with
// ErrBusy).
func (c *Client) Escalate(ctx context.Context, merchant, session string) (*pb.Result, error) {
	id := requestID(ctx)
	req := &pb.EscalateRequest{RequestId: id, MerchantId: merchant, SessionId: session}
	p := frontdeskv1connect.DispatchServiceEscalateProcedure
	resp, err := c.write(ctx, c.merchantSpec(p, merchant, true, id), &pb.BatchCall{Call: &pb.BatchCall_Escalate{Escalate: req}})
	return outcome(p, resp.GetEscalate().GetResult(), err)
}

// Transfer moves an ASSIGNED or QUEUED session to another agent or group
// (BUSY with ErrBusy when the target has no room and cannot queue).
func (c *Client) Transfer(ctx context.Context, t *pb.Transfer) (*pb.Result, error) {
	id := requestID(ctx)
	req := &pb.TransferRequest{RequestId: id, Transfer: t}
	p := frontdeskv1connect.DispatchServiceTransferProcedure
	resp, err := c.write(ctx, c.merchantSpec(p, t.GetMerchantId(), true, id), &pb.BatchCall{Call: &pb.BatchCall_Transfer{Transfer: req}})
	return outcome(p, resp.GetTransfer().GetResult(), err)
}

// End ends a session; reason is END_REASON_BOT_RESOLVED, AGENT_ENDED or
// BUYER_LEFT.
func (c *Client) End(ctx context.Context, merchant, session string, reason pb.EndReason) (*pb.Result, error) {
	id := requestID(ctx)
	req := &pb.EndRequest{RequestId: id, MerchantId: merchant, SessionId: session, Reason: reason}
	p := frontdeskv1connect.DispatchServiceEndProcedure
	resp, err := c.write(ctx, c.merchantSpec(p, merchant, true, id), &pb.BatchCall{Call: &pb.BatchCall_End{End: req}})
	return outcome(p, resp.GetEnd().GetResult(), err)
}

// FirstReply records the agent's first answer in a session.
func (c *Client) FirstReply(ctx context.Context, merchant, session string) (*pb.Result, error) {
	id := requestID(ctx)
	req := &pb.FirstReplyRequest{RequestId: id, MerchantId: merchant, SessionId: session}
	p := frontdeskv1connect.DispatchServiceFirstReplyProcedure
	resp, err := c.write(ctx, c.merchantSpec(p, merchant, true, id), &pb.BatchCall{Call: &pb.BatchCall_FirstReply{FirstReply: req}})
	return outcome(p, resp.GetFirstReply().GetResult(), err)
}

// GetSession reads a session (ErrNotFound if there is none).
func (c *Client) GetSession(ctx context.Context, merchant, session string, opts ...ReadOption) (*pb.Session, error) {
	o := readOpts(opts)
	req := &pb.GetSessionRequest{MerchantId: merchant, SessionId: session, Stale: o.stale}
	resp, err := unary(ctx, c, c.readSpec(frontdeskv1connect.DispatchServiceGetSessionProcedure, merchant, o),
		func(ctx context.Context, ep *endpoint) (*connect.Response[pb.GetSessionResponse], error) {
			return ep.dispatch.GetSession(ctx, connect.NewRequest(req))
		})
	return resp.GetSession(), err
}

// GetPosition reads a buyer's active session with its queue position and
// estimated wait.
func (c *Client) GetPosition(ctx context.Context, merchant, buyer string, opts ...ReadOption) (*pb.Result, error) {
	o := readOpts(opts)
	req := &pb.GetPositionRequest{MerchantId: merchant, BuyerId: buyer, Stale: o.stale}
	resp, err := unary(ctx, c, c.readSpec(frontdeskv1connect.DispatchServiceGetPositionProcedure, merchant, o),
		func(ctx context.Context, ep *endpoint) (*connect.Response[pb.GetPositionResponse], error) {
			return ep.dispatch.GetPosition(ctx, connect.NewRequest(req))
		})
	return resp.GetResult(), err
}

// SetStatus sets an agent online, away or offline.
func (c *Client) SetStatus(ctx context.Context, merchant, agent string, status pb.AgentStatus) (*pb.Result, error) {
	id := requestID(ctx)
	req := &pb.SetStatusRequest{RequestId: id, MerchantId: merchant, AgentId: agent, Status: status}
	p := frontdeskv1connect.AgentServiceSetStatusProcedure
	resp, err := c.write(ctx, c.merchantSpec(p, merchant, true, id), &pb.BatchCall{Call: &pb.BatchCall_SetStatus{SetStatus: req}})
	return outcome(p, resp.GetSetStatus().GetResult(), err)
}

// PullNext gives the agent the best waiting buyer of its groups (Outcome
// NONE when nobody waits).
func (c *Client) PullNext(ctx context.Context, merchant, agent string) (*pb.Result, error) {
	id := requestID(ctx)
	req := &pb.PullNextRequest{RequestId: id, MerchantId: merchant, AgentId: agent}
	p := frontdeskv1connect.AgentServicePullNextProcedure
	resp, err := c.write(ctx, c.merchantSpec(p, merchant, true, id), &pb.BatchCall{Call: &pb.BatchCall_PullNext{PullNext: req}})
	return outcome(p, resp.GetPullNext().GetResult(), err)
}

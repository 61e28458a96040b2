package dispatch

import (
	"context"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

type dispatchHandler struct{ s *Service }

func (h *dispatchHandler) Consult(ctx context.Context, req *connect.Request[pb.ConsultRequest]) (*connect.Response[pb.ConsultResponse], error) {
	res, err := writeCall(ctx, h.s, consultCommand, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.ConsultResponse{Result: res}), nil
}

func (h *dispatchHandler) Escalate(ctx context.Context, req *connect.Request[pb.EscalateRequest]) (*connect.Response[pb.EscalateResponse], error) {
	res, err := writeCall(ctx, h.s, escalateCommand, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.EscalateResponse{Result: res}), nil
}

func (h *dispatchHandler) Transfer(ctx context.Context, req *connect.Request[pb.TransferRequest]) (*connect.Response[pb.TransferResponse], error) {
	res, err := writeCall(ctx, h.s, transferCommand, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.TransferResponse{Result: res}), nil
}

func (h *dispatchHandler) End(ctx context.Context, req *connect.Request[pb.EndRequest]) (*connect.Response[pb.EndResponse], error) {
	res, err := writeCall(ctx, h.s, endCommand, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.EndResponse{Result: res}), nil
}

func (h *dispatchHandler) FirstReply(ctx context.Context, req *connect.Request[pb.FirstReplyRequest]) (*connect.Response[pb.FirstReplyResponse], error) {
	res, err := writeCall(ctx, h.s, firstReplyCommand, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.FirstReplyResponse{Result: res}), nil
}

func (h *dispatchHandler) GetSession(ctx context.Context, req *connect.Request[pb.GetSessionRequest]) (*connect.Response[pb.GetSessionResponse], error) {
	m := req.Msg
	if m.SessionId == "" {
		return nil, invalidArg("session_id", "must not be empty")
	}
	id, f, err := h.s.read(ctx, m.MerchantId, m.Stale)
	if err != nil {
		return nil, err
	}
	sess, err := f.Session(m.MerchantId, m.SessionId)
	if err != nil {
		return nil, h.s.toConnect(id, err)
	}
	return connect.NewResponse(&pb.GetSessionResponse{Session: sess}), nil
}

func (h *dispatchHandler) GetPosition(ctx context.Context, req *connect.Request[pb.GetPositionRequest]) (*connect.Response[pb.GetPositionResponse], error) {
	m := req.Msg
	if m.BuyerId == "" {
		return nil, invalidArg("buyer_id", "must not be empty")
	}
	id, f, err := h.s.read(ctx, m.MerchantId, m.Stale)
	if err != nil {
		return nil, err
	}
	res, err := f.BuyerSession(m.MerchantId, m.BuyerId)
	if err != nil {
		return nil, h.s.toConnect(id, err)
	}
	return connect.NewResponse(&pb.GetPositionResponse{Result: res}), nil
}

type agentHandler struct{ s *Service }

func (h *agentHandler) SetStatus(ctx context.Context, req *connect.Request[pb.SetStatusRequest]) (*connect.Response[pb.SetStatusResponse], error) {
	res, err := writeCall(ctx, h.s, setStatusCommand, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.SetStatusResponse{Result: res}), nil
}

func (h *agentHandler) PullNext(ctx context.Context, req *connect.Request[pb.PullNextRequest]) (*connect.Response[pb.PullNextResponse], error) {
	res, err := writeCall(ctx, h.s, pullNextCommand, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.PullNextResponse{Result: res}), nil
}

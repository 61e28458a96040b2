package dispatch

import (
	"context"

	"github.com/frontdeskhq/frontdesk/auth"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// The command builders turn a write request into its merchant and command,
// with the request-level checks of its procedure. The unary handlers and
// Batch both build commands with them, so a call is checked the same way
// wherever it comes from. Agent tokens act on their own sessions only: the
// acting agent goes into the command (auth.ActingAgent), and the state
// machine checks it atomically with the change.

// writeCall builds req's command with build and writes it.
func writeCall[Req any](ctx context.Context, s *Service, build func(context.Context, *Req) (string, *pb.Command, error), req *Req) (*pb.Result, error) {
	merchant, cmd, err := build(ctx, req)
	if err != nil {
		return nil, err
	}
	return s.write(ctx, merchant, cmd)
}

func consultCommand(_ context.Context, m *pb.ConsultRequest) (string, *pb.Command, error) {
	c := m.GetConsult()
	if c == nil {
		return "", nil, invalidArg("consult", "must be set")
	}
	return c.MerchantId, &pb.Command{RequestId: m.RequestId, Body: &pb.Command_Consult{Consult: c}}, nil
}

func escalateCommand(_ context.Context, m *pb.EscalateRequest) (string, *pb.Command, error) {
	return m.MerchantId, &pb.Command{RequestId: m.RequestId, Body: &pb.Command_Escalate{
		Escalate: &pb.Escalate{MerchantId: m.MerchantId, SessionId: m.SessionId}}}, nil
}

func transferCommand(ctx context.Context, m *pb.TransferRequest) (string, *pb.Command, error) {
	t := m.GetTransfer()
	if t == nil {
		return "", nil, invalidArg("transfer", "must be set")
	}
	t.ActorAgentId = auth.ActingAgent(ctx)
	return t.MerchantId, &pb.Command{RequestId: m.RequestId, Body: &pb.Command_Transfer{Transfer: t}}, nil
}

func endCommand(ctx context.Context, m *pb.EndRequest) (string, *pb.Command, error) {
	return m.MerchantId, &pb.Command{RequestId: m.RequestId, Body: &pb.Command_End{
		End: &pb.End{MerchantId: m.MerchantId, SessionId: m.SessionId, Reason: m.Reason, ActorAgentId: auth.ActingAgent(ctx)}}}, nil
}

func firstReplyCommand(ctx context.Context, m *pb.FirstReplyRequest) (string, *pb.Command, error) {
	return m.MerchantId, &pb.Command{RequestId: m.RequestId, Body: &pb.Command_FirstReply{
		FirstReply: &pb.FirstReply{MerchantId: m.MerchantId, SessionId: m.SessionId, ActorAgentId: auth.ActingAgent(ctx)}}}, nil
}

func setStatusCommand(_ context.Context, m *pb.SetStatusRequest) (string, *pb.Command, error) {
	return m.MerchantId, &pb.Command{RequestId: m.RequestId, Body: &pb.Command_SetAgentStatus{
		SetAgentStatus: &pb.SetAgentStatus{MerchantId: m.MerchantId, AgentId: m.AgentId, Status: m.Status}}}, nil
}

func pullNextCommand(_ context.Context, m *pb.PullNextRequest) (string, *pb.Command, error) {
	return m.MerchantId, &pb.Command{RequestId: m.RequestId, Body: &pb.Command_PullNext{
		PullNext: &pb.PullNext{MerchantId: m.MerchantId, AgentId: m.AgentId}}}, nil
}

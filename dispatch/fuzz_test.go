package dispatch

import (
	"context"
	"testing"

	"connectrpc.com/connect"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// FuzzRequestValidation: any bytes decoded as the API's write requests and
// turned into commands are validated without panicking, and a command that
// passes validation names a merchant (so it can be routed and authorized).
func FuzzRequestValidation(f *testing.F) {
	seed := []interface{ MarshalVT() ([]byte, error) }{
		&pb.ConsultRequest{RequestId: "r", Consult: &pb.Consult{MerchantId: "m", BuyerId: "b", Attributes: []*pb.Attribute{{Key: "k", Value: "v"}}}},
		&pb.TransferRequest{RequestId: "r", Transfer: &pb.Transfer{MerchantId: "m", SessionId: "s", ToGroupId: "g"}},
		&pb.UpsertMerchantRequest{RequestId: "r", Merchant: &pb.UpsertMerchant{MerchantId: "m", Settings: &pb.MerchantSettings{Rules: []*pb.RoutingRule{{GroupId: "g"}}}}},
		&pb.UpsertAgentRequest{RequestId: "r", Agent: &pb.UpsertAgent{MerchantId: "m", AgentId: "a", Groups: []*pb.AgentGroup{{GroupId: "g", QuestionSkills: []*pb.QuestionSkill{{QuestionType: "q"}}}}}},
	}
	for i, m := range seed {
		b, err := m.MarshalVT()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), b)
	}
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		var cmd *pb.Command
		switch kind % 4 {
		case 0:
			var r pb.ConsultRequest
			if r.UnmarshalVT(data) != nil || r.Consult == nil {
				return
			}
			cmd = &pb.Command{RequestId: r.RequestId, Body: &pb.Command_Consult{Consult: r.Consult}}
		case 1:
			var r pb.TransferRequest
			if r.UnmarshalVT(data) != nil || r.Transfer == nil {
				return
			}
			cmd = &pb.Command{RequestId: r.RequestId, Body: &pb.Command_Transfer{Transfer: r.Transfer}}
		case 2:
			var r pb.UpsertMerchantRequest
			if r.UnmarshalVT(data) != nil || r.Merchant == nil {
				return
			}
			cmd = &pb.Command{RequestId: r.RequestId, Body: &pb.Command_UpsertMerchant{UpsertMerchant: r.Merchant}}
		case 3:
			var r pb.UpsertAgentRequest
			if r.UnmarshalVT(data) != nil || r.Agent == nil {
				return
			}
			cmd = &pb.Command{RequestId: r.RequestId, Body: &pb.Command_UpsertAgent{UpsertAgent: r.Agent}}
		}
		if err := fsm.Validate(cmd); err == nil && fsm.CommandMerchant(cmd) == "" {
			t.Fatalf("a valid command names no merchant: %v", cmd)
		}
	})
}

// FuzzBatchValidation: any bytes decoded as a BatchRequest get a whole
// INVALID_ARGUMENT (no calls, too many) or one answer per call, none of
// them INTERNAL (which is what a panic in a call becomes).
func FuzzBatchValidation(f *testing.F) {
	seeds := []*pb.BatchRequest{
		{Calls: []*pb.BatchCall{consultCall("r", "m", "b"), endCall("r2", "m", "s"), {}}},
		{Calls: []*pb.BatchCall{
			{Call: &pb.BatchCall_Transfer{Transfer: &pb.TransferRequest{RequestId: "r", Transfer: &pb.Transfer{MerchantId: "m", SessionId: "s", ToAgentId: "a"}}}},
			{Call: &pb.BatchCall_PullNext{PullNext: &pb.PullNextRequest{RequestId: "r", MerchantId: "m", AgentId: "a"}}},
			{Call: &pb.BatchCall_SetStatus{SetStatus: &pb.SetStatusRequest{RequestId: "r", MerchantId: "other", AgentId: "a"}}},
			{Call: &pb.BatchCall_Escalate{Escalate: &pb.EscalateRequest{RequestId: "r", MerchantId: "m", SessionId: "s"}}},
			{Call: &pb.BatchCall_FirstReply{FirstReply: &pb.FirstReplyRequest{}}},
		}},
	}
	for _, s := range seeds {
		b, err := s.MarshalVT()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	n := newFakeNode(4)
	n.replicaFor("m", false)
	h := &dispatchHandler{New(n, quiet())}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req pb.BatchRequest
		if req.UnmarshalVT(data) != nil {
			return
		}
		resp, err := h.Batch(context.Background(), connect.NewRequest(&req))
		if k := len(req.Calls); k == 0 || k > MaxBatchCalls {
			if connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Fatalf("%d calls: want INVALID_ARGUMENT, got %v", k, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("batch of %d calls failed whole: %v", len(req.Calls), err)
		}
		if len(resp.Msg.Results) != len(req.Calls) {
			t.Fatalf("%d results for %d calls", len(resp.Msg.Results), len(req.Calls))
		}
		for i, r := range resp.Msg.Results {
			if r.GetResult() == nil || connect.Code(r.GetError().GetCode()) == connect.CodeInternal {
				t.Fatalf("call %d: %v", i, r)
			}
		}
	})
}

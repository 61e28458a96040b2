package dispatch

import (
	"testing"

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

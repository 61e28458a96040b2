package fsm

import (
	"fmt"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// NewCommand wraps a command body (*pb.Consult, *pb.UpsertMerchant, ...,
// *pb.Tick) into a pb.Command with a request id; TimeUnixMs is left 0 for
// the shard leader to stamp. It returns an error for anything that is not
// a command body.
func NewCommand(requestID string, body any) (*pb.Command, error) {
	c := &pb.Command{RequestId: requestID}
	switch b := body.(type) {
	case *pb.UpsertMerchant:
		c.Body = &pb.Command_UpsertMerchant{UpsertMerchant: b}
	case *pb.DeleteMerchant:
		c.Body = &pb.Command_DeleteMerchant{DeleteMerchant: b}
	case *pb.UpsertGroup:
		c.Body = &pb.Command_UpsertGroup{UpsertGroup: b}
	case *pb.DeleteGroup:
		c.Body = &pb.Command_DeleteGroup{DeleteGroup: b}
	case *pb.UpsertAgent:
		c.Body = &pb.Command_UpsertAgent{UpsertAgent: b}
	case *pb.DeleteAgent:
		c.Body = &pb.Command_DeleteAgent{DeleteAgent: b}
	case *pb.SetAgentStatus:
		c.Body = &pb.Command_SetAgentStatus{SetAgentStatus: b}
	case *pb.Consult:
		c.Body = &pb.Command_Consult{Consult: b}
	case *pb.Escalate:
		c.Body = &pb.Command_Escalate{Escalate: b}
	case *pb.Transfer:
		c.Body = &pb.Command_Transfer{Transfer: b}
	case *pb.End:
		c.Body = &pb.Command_End{End: b}
	case *pb.FirstReply:
		c.Body = &pb.Command_FirstReply{FirstReply: b}
	case *pb.PullNext:
		c.Body = &pb.Command_PullNext{PullNext: b}
	case *pb.Tick:
		c.Body = &pb.Command_Tick{Tick: b}
	default:
		return nil, fmt.Errorf("fsm: %T is not a command body", body)
	}
	return c, nil
}

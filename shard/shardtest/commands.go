package shardtest

import (
	"fmt"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// Command wraps a command body (*pb.Consult, *pb.UpsertMerchant, ...) into
// a pb.Command with requestID; TimeUnixMs is left 0 for the leader to stamp.
// It panics on a type that is not a command body.
func Command(requestID string, body any) *pb.Command {
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
		panic(fmt.Sprintf("shardtest.Command: %T is not a command body", body))
	}
	return c
}

// MerchantSetup returns the commands that create merchant m with queueing
// on, idle timeout idleMs (0: none), one push group "g1" as its default
// group and agents online agents "a0".."a<n-1>" of limit limit in it.
// Request ids are prefixed with m, so a retry of the setup is harmless.
func MerchantSetup(m string, idleMs int64, agents int, limit uint32) []*pb.Command {
	settings := &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1", IdleTimeoutMs: idleMs}
	cmds := []*pb.Command{
		Command(m+"/merchant", &pb.UpsertMerchant{MerchantId: m}),
		Command(m+"/group", &pb.UpsertGroup{MerchantId: m, GroupId: "g1", Mode: pb.GroupMode_GROUP_MODE_PUSH}),
		Command(m+"/settings", &pb.UpsertMerchant{MerchantId: m, Settings: settings}),
	}
	for i := range agents {
		a := fmt.Sprintf("a%d", i)
		cmds = append(cmds,
			Command(m+"/agent/"+a, &pb.UpsertAgent{MerchantId: m, AgentId: a, Limit: limit,
				Groups: []*pb.AgentGroup{{GroupId: "g1", Skill: 50}}}),
			Command(m+"/online/"+a, &pb.SetAgentStatus{MerchantId: m, AgentId: a, Status: pb.AgentStatus_AGENT_STATUS_ONLINE}))
	}
	return cmds
}

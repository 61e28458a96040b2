package shardtest

import (
	"fmt"

	"github.com/frontdeskhq/frontdesk/fsm"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// Command wraps a command body (*pb.Consult, *pb.UpsertMerchant, ...) into
// a pb.Command with requestID; TimeUnixMs is left 0 for the leader to stamp.
// It panics on a type that is not a command body.
func Command(requestID string, body any) *pb.Command {
	c, err := fsm.NewCommand(requestID, body)
	if err != nil {
		panic("shardtest.Command: " + err.Error())
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

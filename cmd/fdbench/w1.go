package main

import (
	"fmt"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// Workload W1 (issue 6; BENCHMARKS.md defines it the same way): 1,000
// merchants with Zipf popularity (s=1.1, v=1); each with one group of 20
// agents, limit 5, all online, queue on (max 1,000); each client loops:
// pick a merchant by Zipf, consult a new buyer; if assigned, end that
// session. Each consult and each end is one op. The surge variant ramps the
// top 10 merchants to 20× their share over 60 s.
const (
	w1Merchants = 1000
	w1ZipfS     = 1.1
	w1ZipfV     = 1.0
	w1Agents    = 20
	w1Limit     = 5
	w1MaxQueue  = 1000
	w1Group     = "g"
	surgeTop    = 10
)

// merchantID names W1's merchant of popularity rank k (0 is the most
// popular).
func merchantID(k int) string { return fmt.Sprintf("w1-m%04d", k) }

// setupCommands creates W1 merchant m: its group, its settings (queue on,
// max 1,000, the group as default) and 20 online agents of limit 5, in the
// order they must be applied.
func setupCommands(m string) []*pb.Command {
	cmds := []*pb.Command{
		{Body: &pb.Command_UpsertMerchant{UpsertMerchant: &pb.UpsertMerchant{MerchantId: m}}},
		{Body: &pb.Command_UpsertGroup{UpsertGroup: &pb.UpsertGroup{MerchantId: m, GroupId: w1Group, Mode: pb.GroupMode_GROUP_MODE_PUSH}}},
		{Body: &pb.Command_UpsertMerchant{UpsertMerchant: &pb.UpsertMerchant{MerchantId: m, Settings: &pb.MerchantSettings{
			QueueEnabled: true, MaxQueueLength: w1MaxQueue, DefaultGroupId: w1Group}}}},
	}
	for i := range w1Agents {
		a := fmt.Sprintf("a%02d", i)
		cmds = append(cmds,
			&pb.Command{Body: &pb.Command_UpsertAgent{UpsertAgent: &pb.UpsertAgent{MerchantId: m, AgentId: a, Limit: w1Limit,
				Groups: []*pb.AgentGroup{{GroupId: w1Group, Skill: 50}}}}},
			&pb.Command{Body: &pb.Command_SetAgentStatus{SetAgentStatus: &pb.SetAgentStatus{MerchantId: m, AgentId: a,
				Status: pb.AgentStatus_AGENT_STATUS_ONLINE}}})
	}
	for i, c := range cmds {
		c.RequestId = fmt.Sprintf("w1-setup/%s/%d", m, i)
	}
	return cmds
}

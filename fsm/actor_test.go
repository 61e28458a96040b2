package fsm

import (
	"testing"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// TestActingAgent: with actor_agent_id set, an agent may end, transfer and
// first-reply only its own sessions; anyone else gets ErrForbidden naming
// session_id and nothing changes.
func TestActingAgent(t *testing.T) {
	h := newHarness(t)
	h.basic(2, 1)
	mine := h.consult("m1", "b0")   // to a0 (tie-break by id)
	theirs := h.consult("m1", "b1") // to a1
	if mine.AgentId != "a0" || theirs.AgentId != "a1" {
		t.Fatalf("setup: agents %q %q", mine.AgentId, theirs.AgentId)
	}
	queued := h.consult("m1", "b2")
	for _, body := range []any{
		&pb.End{MerchantId: "m1", SessionId: theirs.SessionId, Reason: pb.EndReason_END_REASON_AGENT_ENDED, ActorAgentId: "a0"},
		&pb.Transfer{MerchantId: "m1", SessionId: theirs.SessionId, ToGroupId: "g1", ActorAgentId: "a0"},
		&pb.FirstReply{MerchantId: "m1", SessionId: theirs.SessionId, ActorAgentId: "a0"},
		&pb.Transfer{MerchantId: "m1", SessionId: queued.SessionId, ToAgentId: "a1", ActorAgentId: "a0"},
	} {
		h.fails(body, ErrForbidden, "session_id")
	}
	h.ok(&pb.FirstReply{MerchantId: "m1", SessionId: mine.SessionId, ActorAgentId: "a0"})
	h.ok(&pb.End{MerchantId: "m1", SessionId: mine.SessionId, Reason: pb.EndReason_END_REASON_AGENT_ENDED, ActorAgentId: "a0"})
	h.fails(&pb.End{MerchantId: "m1", SessionId: theirs.SessionId, ActorAgentId: string(make([]byte, MaxIDLen+1)),
		Reason: pb.EndReason_END_REASON_AGENT_ENDED}, ErrInvalid, "actor_agent_id")
}

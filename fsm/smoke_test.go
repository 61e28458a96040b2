package fsm

import (
	"testing"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

func TestSmoke(t *testing.T) {
	h := newHarness(t)
	h.basic(2, 1)
	r1 := h.consult("m1", "b1")
	r2 := h.consult("m1", "b2")
	r3 := h.consult("m1", "b3")
	if r1.Outcome != pb.Outcome_OUTCOME_ASSIGNED || r2.Outcome != pb.Outcome_OUTCOME_ASSIGNED || r3.Outcome != pb.Outcome_OUTCOME_QUEUED {
		t.Fatalf("outcomes %v %v %v", r1.Outcome, r2.Outcome, r3.Outcome)
	}
	if r3.Position != 1 {
		t.Fatalf("position %d", r3.Position)
	}
	h.ok(&pb.End{MerchantId: "m1", SessionId: r1.SessionId, Reason: pb.EndReason_END_REASON_AGENT_ENDED})
	s, err := h.f.Session("m1", r3.SessionId)
	if err != nil || s.State != pb.SessionState_SESSION_STATE_ASSIGNED || s.AgentId != r1.AgentId {
		t.Fatalf("queued buyer not pushed: %v %v", s, err)
	}
}

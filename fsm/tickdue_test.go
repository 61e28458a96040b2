package fsm

import (
	"testing"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// TickDue is what lets a leader skip ticks: it must say true whenever a
// tick would change the state, and false for an idle shard.
func TestTickDue(t *testing.T) {
	h := newHarness(t)
	if h.f.TickDue(h.now + 3_600_000) {
		t.Fatal("empty state machine: TickDue true, want false")
	}
	settings := &pb.MerchantSettings{QueueEnabled: true, MaxWaitMs: 120_000}
	h.merchant("m1", settings)
	h.group("m1", "g1", pb.GroupMode_GROUP_MODE_PUSH)
	settings.DefaultGroupId = "g1"
	h.merchant("m1", settings)
	h.agent("m1", "a0", 1, "g1")
	if h.f.TickDue(h.now + 3_600_000) {
		t.Fatal("merchant without consults: TickDue true, want false")
	}

	t0 := h.now
	h.consult("m1", "b0") // assigned to a0
	q := h.consult("m1", "b1")
	if q.Outcome != pb.Outcome_OUTCOME_QUEUED {
		t.Fatalf("b1: outcome %v, want queued", q.Outcome)
	}
	if !h.f.TickDue(t0) {
		t.Fatal("consults in the last minute: TickDue false, want true (the inflow window ages)")
	}
	// Once log time is 70 s on, the inflow window is empty and only the
	// queued buyer's deadline (t0+120 s) is left.
	h.advance(70_000)
	h.tick()
	if h.f.TickDue(t0 + 119_999) {
		t.Fatal("before b1's deadline, no recent consults: TickDue true, want false")
	}
	if !h.f.TickDue(t0 + 120_000) {
		t.Fatal("at b1's deadline: TickDue false, want true")
	}
	h.advance(50_000)
	h.tick()
	if s, err := h.f.Session("m1", q.SessionId); err != nil || s.State != pb.SessionState_SESSION_STATE_ENDED {
		t.Fatalf("b1 after its max wait: (%v, %v), want ended", s, err)
	}
	if h.f.TickDue(h.now + 3_600_000) {
		t.Fatal("nothing queued, no recent consults: TickDue true, want false")
	}
}

package fsm

import (
	"bytes"
	"errors"
	"strconv"
	"testing"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// harness drives an FSM without Raft: each do() is one log entry with one
// command, stamped with the harness clock.
type harness struct {
	t     testing.TB
	f     *FSM
	index uint64
	now   int64
	reqs  int
}

func newHarness(t testing.TB) *harness {
	return &harness{t: t, f: New(Config{Shard: 1}), now: 1_000_000}
}

// cmd wraps a body into a command with a fresh request id.
func (h *harness) cmd(body any) *pb.Command {
	h.reqs++
	c, err := NewCommand("r"+strconv.Itoa(h.reqs), body)
	if err != nil {
		h.t.Fatalf("harness: %v", err)
	}
	c.TimeUnixMs = h.now
	return c
}

// apply applies commands as one log entry.
func (h *harness) apply(cmds ...*pb.Command) []*pb.Result {
	h.t.Helper()
	h.index++
	return h.f.ApplyEntry(h.index, &pb.Entry{Version: EntryVersion, Commands: cmds})
}

// do applies one body and returns its result.
func (h *harness) do(body any) *pb.Result {
	h.t.Helper()
	return h.apply(h.cmd(body))[0]
}

// ok applies one body and fails the test if it returned an error.
func (h *harness) ok(body any) *pb.Result {
	h.t.Helper()
	r := h.do(body)
	if err := ResultError(r); err != nil {
		h.t.Fatalf("%T: unexpected error: %v", body, err)
	}
	return r
}

// fails applies one body, expects the sentinel and field, and checks that
// the state did not change.
func (h *harness) fails(body any, want error, field string) {
	h.t.Helper()
	before := stateBytes(h.t, h.f)
	r := h.do(body)
	err := ResultError(r)
	if !errors.Is(err, want) {
		h.t.Fatalf("%T: got error %v, want %v", body, err, want)
	}
	var fe *Error
	if errors.As(err, &fe) && fe.Field != field {
		h.t.Fatalf("%T: error names field %q, want %q (%v)", body, fe.Field, field, err)
	}
	if after := stateBytes(h.t, h.f); !bytes.Equal(before, after) {
		h.t.Fatalf("%T: failed command changed the state", body)
	}
}

func (h *harness) snapshot() []byte {
	h.t.Helper()
	var buf bytes.Buffer
	if err := h.f.WriteSnapshot(&buf); err != nil {
		h.t.Fatalf("snapshot: %v", err)
	}
	return buf.Bytes()
}

func (h *harness) advance(ms int64) { h.now += ms }

func (h *harness) tick() *pb.Result { return h.ok(&pb.Tick{}) }

// setup creates merchant m with settings, groups and online agents.
func (h *harness) merchant(id string, s *pb.MerchantSettings) {
	h.t.Helper()
	h.ok(&pb.UpsertMerchant{MerchantId: id, Settings: s})
}

func (h *harness) group(m, g string, mode pb.GroupMode) {
	h.t.Helper()
	h.ok(&pb.UpsertGroup{MerchantId: m, GroupId: g, Mode: mode})
}

func (h *harness) agent(m, a string, limit uint32, groups ...string) {
	h.t.Helper()
	var gs []*pb.AgentGroup
	for _, g := range groups {
		gs = append(gs, &pb.AgentGroup{GroupId: g, Skill: 50})
	}
	h.ok(&pb.UpsertAgent{MerchantId: m, AgentId: a, Limit: limit, Groups: gs})
	h.ok(&pb.SetAgentStatus{MerchantId: m, AgentId: a, Status: pb.AgentStatus_AGENT_STATUS_ONLINE})
}

func (h *harness) consult(m, buyer string) *pb.Result {
	h.t.Helper()
	return h.ok(&pb.Consult{MerchantId: m, BuyerId: buyer})
}

// basic: merchant m1, push group g1 as default, queue on.
func (h *harness) basic(agents int, limit uint32) {
	h.t.Helper()
	h.merchant("m1", nil)
	h.group("m1", "g1", pb.GroupMode_GROUP_MODE_PUSH)
	h.merchant("m1", &pb.MerchantSettings{QueueEnabled: true, DefaultGroupId: "g1"})
	for i := 0; i < agents; i++ {
		h.agent("m1", "a"+strconv.Itoa(i), limit, "g1")
	}
}

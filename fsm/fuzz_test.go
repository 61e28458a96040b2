package fsm

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// fuzzBase is the state every fuzz input is applied to: two merchants, push
// and pull groups with an overflow chain, agents at and below their limits,
// online, away and offline, buyers assigned, queued and with the bot. It
// returns the harness and the ids of the sessions it created.
func fuzzBase(tb testing.TB) (*harness, []string) {
	tb.Helper()
	h := newHarness(tb)
	h.merchant("m1", nil)
	h.group("m1", "g1", pb.GroupMode_GROUP_MODE_PUSH)
	h.group("m1", "g2", pb.GroupMode_GROUP_MODE_PULL)
	h.ok(&pb.UpsertGroup{MerchantId: "m1", GroupId: "g3", OverflowGroupId: "g1"})
	h.merchant("m1", &pb.MerchantSettings{
		QueueEnabled: true, MaxQueueLength: 3, MaxWaitMs: 10_000, IdleTimeoutMs: 60_000,
		DefaultGroupId: "g1", RequeueOnOffline: true, SurgeBaselinePerMinute: 1,
		Rules: []*pb.RoutingRule{{GroupId: "g2", QuestionType: "refund"}, {GroupId: "g3", Category: "shoes"}},
	})
	h.ok(&pb.UpsertAgent{MerchantId: "m1", AgentId: "a0", Limit: 1, Rating: 480, Groups: []*pb.AgentGroup{
		{GroupId: "g1", Skill: 60, QuestionSkills: []*pb.QuestionSkill{{QuestionType: "size", Skill: 90}}}, {GroupId: "g2", Skill: 50}}})
	h.ok(&pb.UpsertAgent{MerchantId: "m1", AgentId: "a1", Limit: 2, Weight: 30, Groups: []*pb.AgentGroup{{GroupId: "g1", Skill: 40}, {GroupId: "g3", Skill: 70}}})
	h.ok(&pb.UpsertAgent{MerchantId: "m1", AgentId: "a2", Limit: 1, Groups: []*pb.AgentGroup{{GroupId: "g2", Skill: 80}}})
	h.ok(&pb.UpsertAgent{MerchantId: "m1", AgentId: "a3", Groups: []*pb.AgentGroup{{GroupId: "g1"}}})
	for _, a := range []string{"a0", "a1", "a2"} {
		h.ok(&pb.SetAgentStatus{MerchantId: "m1", AgentId: a, Status: pb.AgentStatus_AGENT_STATUS_ONLINE})
	}
	var ids []string
	for _, c := range []*pb.Consult{
		{MerchantId: "m1", BuyerId: "b1", QuestionType: "size"},
		{MerchantId: "m1", BuyerId: "b2", UserLevel: 3},
		{MerchantId: "m1", BuyerId: "b3"},
		{MerchantId: "m1", BuyerId: "b4", UserLevel: 7, PreferredAgentId: "a1"},
		{MerchantId: "m1", BuyerId: "b5", QuestionType: "refund"},
		{MerchantId: "m1", BuyerId: "b6", Category: "shoes"},
	} {
		h.advance(500)
		if r := h.ok(c); r.SessionId != "" {
			ids = append(ids, r.SessionId)
		}
	}
	h.merchant("m2", nil)
	h.group("m2", "g1", pb.GroupMode_GROUP_MODE_PUSH)
	h.merchant("m2", &pb.MerchantSettings{BotFirst: true, DefaultGroupId: "g1", IdleTimeoutMs: 30_000})
	h.agent("m2", "a1", 1, "g1")
	if r := h.consult("m2", "b1"); r.SessionId != "" {
		ids = append(ids, r.SessionId)
	}
	if err := checkInvariants(h.f); err != nil {
		tb.Fatalf("fuzz base: %v", err)
	}
	return h, ids
}

// fuzzSeeds are encoded entries of realistic commands over fuzzBase, valid
// and invalid, single and batched.
func fuzzSeeds(tb testing.TB) [][]byte {
	h, ids := fuzzBase(tb)
	sid := func(i int) string { return ids[i%len(ids)] }
	cmd := func(body any) *pb.Command {
		c := h.cmd(body)
		c.TimeUnixMs = h.now + 1000
		return c
	}
	tick := func(ms int64) *pb.Command {
		c := cmd(&pb.Tick{})
		c.RequestId, c.TimeUnixMs = "", h.now+ms
		return c
	}
	entries := [][]*pb.Command{
		{cmd(&pb.Consult{MerchantId: "m1", BuyerId: "b9", UserLevel: 10, QuestionType: "size", Attributes: []*pb.Attribute{{Key: "k", Value: "v"}}})},
		{cmd(&pb.Consult{MerchantId: "m1", BuyerId: "b1"})},
		{cmd(&pb.Consult{MerchantId: "m2", BuyerId: "b2"})},
		{cmd(&pb.Escalate{MerchantId: "m2", SessionId: sid(len(ids) - 1)})},
		{cmd(&pb.Transfer{MerchantId: "m1", SessionId: sid(0), ToAgentId: "a1"})},
		{cmd(&pb.Transfer{MerchantId: "m1", SessionId: sid(2), ToGroupId: "g3"})},
		{cmd(&pb.End{MerchantId: "m1", SessionId: sid(0), Reason: pb.EndReason_END_REASON_AGENT_ENDED})},
		{cmd(&pb.End{MerchantId: "m1", SessionId: sid(3), Reason: pb.EndReason_END_REASON_BUYER_LEFT})},
		{cmd(&pb.FirstReply{MerchantId: "m1", SessionId: sid(1)})},
		{cmd(&pb.PullNext{MerchantId: "m1", AgentId: "a2"})},
		{cmd(&pb.SetAgentStatus{MerchantId: "m1", AgentId: "a0", Status: pb.AgentStatus_AGENT_STATUS_OFFLINE})},
		{cmd(&pb.SetAgentStatus{MerchantId: "m1", AgentId: "a3", Status: pb.AgentStatus_AGENT_STATUS_ONLINE})},
		{cmd(&pb.UpsertAgent{MerchantId: "m1", AgentId: "a1", Limit: 4, Groups: []*pb.AgentGroup{{GroupId: "g1"}, {GroupId: "g2"}}})},
		{cmd(&pb.UpsertAgent{MerchantId: "m1", AgentId: "a1", Limit: 1, Groups: []*pb.AgentGroup{{GroupId: "g3"}}})},
		{cmd(&pb.DeleteAgent{MerchantId: "m1", AgentId: "a1"})},
		{cmd(&pb.UpsertGroup{MerchantId: "m1", GroupId: "g2", Mode: pb.GroupMode_GROUP_MODE_PUSH, OverflowGroupId: "g3"})},
		{cmd(&pb.DeleteGroup{MerchantId: "m1", GroupId: "g3"})},
		{cmd(&pb.UpsertMerchant{MerchantId: "m1", Settings: &pb.MerchantSettings{DefaultGroupId: "g2", DefaultLimit: 3, Weights: &pb.ScoringWeights{Skill: 1, AgingMs: 1}}})},
		{cmd(&pb.DeleteMerchant{MerchantId: "m1"})},
		{tick(11_000)},
		{tick(3_600_000)},
		{
			cmd(&pb.Consult{MerchantId: "m1", BuyerId: "b7"}),
			cmd(&pb.End{MerchantId: "m1", SessionId: sid(1), Reason: pb.EndReason_END_REASON_AGENT_ENDED}),
			tick(61_000),
			cmd(&pb.PullNext{MerchantId: "m1", AgentId: "a0"}),
		},
		// Invalid commands.
		{{RequestId: "x", TimeUnixMs: h.now}},
		{cmd(&pb.Consult{MerchantId: "m1", BuyerId: ""})},
		{cmd(&pb.Consult{MerchantId: "m1", BuyerId: strings.Repeat("b", MaxIDLen+1)})},
		{cmd(&pb.End{MerchantId: "m1", SessionId: sid(0), Reason: pb.EndReason_END_REASON_IDLE_TIMEOUT})},
		{cmd(&pb.Transfer{MerchantId: "m1", SessionId: sid(0)})},
		{cmd(&pb.SetAgentStatus{MerchantId: "m1", AgentId: "a0", Status: 9})},
		{cmd(&pb.UpsertAgent{MerchantId: "m1", AgentId: "a0", Groups: []*pb.AgentGroup{{GroupId: "g1"}, {GroupId: "g1"}}})},
		{cmd(&pb.UpsertMerchant{MerchantId: "m1", Settings: &pb.MerchantSettings{MaxWaitMs: -5}})},
		// Extreme times.
		{func() *pb.Command { c := tick(0); c.TimeUnixMs = math.MaxInt64; return c }()},
		{func() *pb.Command {
			c := cmd(&pb.Consult{MerchantId: "m1", BuyerId: "b8"})
			c.TimeUnixMs = math.MaxInt64 - 5
			return c
		}()},
		{func() *pb.Command { c := tick(0); c.TimeUnixMs = math.MinInt64; return c }()},
	}
	var out [][]byte
	for _, cmds := range entries {
		b, err := proto.Marshal(&pb.Entry{Version: EntryVersion, Commands: cmds})
		if err != nil {
			tb.Fatalf("marshal seed: %v", err)
		}
		out = append(out, b)
	}
	return out
}

// fuzzInputTimeout bounds one FuzzApply input (a few milliseconds normally).
const fuzzInputTimeout = 10 * time.Second

// FuzzApply decodes arbitrary bytes as a log entry and applies it to
// fuzzBase's state. (Bytes that do not decode, or another envelope
// version, panic by design: a replica must not skip an entry, so they are
// skipped here.) It must never panic, and afterwards:
//   - there is one result per command, and a command that fails validation
//     returns exactly validate's error (validation is folded in here);
//   - if every command failed, the state is unchanged;
//   - checkInvariants holds;
//   - a second replica applying the same entry reaches the same snapshot,
//     and a restore of that snapshot reproduces it byte for byte;
//   - applying the entry again (a retry) keeps the invariants.
func FuzzApply(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	base, _ := fuzzBase(f)
	baseState := stateBytes(f, base.f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var e pb.Entry
		if err := proto.Unmarshal(data, &e); err != nil || e.Version != EntryVersion {
			return
		}
		// The fuzzer has no time limit per input: a hang would just stall it.
		// Crash instead, so the input is saved.
		watchdog := time.AfterFunc(fuzzInputTimeout, func() {
			panic(fmt.Sprintf("FuzzApply: input still running after %v: %x", fuzzInputTimeout, data))
		})
		defer watchdog.Stop()
		h, _ := fuzzBase(t)
		index := h.index + 1
		results := h.f.ApplyEntry(index, &e)
		if len(results) != len(e.Commands) {
			t.Fatalf("%d results for %d commands", len(results), len(e.Commands))
		}
		failed := 0
		for i, c := range e.Commands {
			r := results[i]
			if r.Error != pb.ErrorCode_ERROR_CODE_UNSPECIFIED {
				failed++
			}
			if ve := validate(c); ve != nil {
				if r.Error != ve.Code || r.ErrorField != ve.Field || r.ErrorMessage != ve.Message {
					t.Fatalf("command %d fails validation with %v but its result is %v", i, ve, r)
				}
				if ve.Code != pb.ErrorCode_ERROR_CODE_INVALID && ve.Code != pb.ErrorCode_ERROR_CODE_UNKNOWN_COMMAND {
					t.Fatalf("validate returned code %v", ve.Code)
				}
				if ve.Field == "" {
					t.Fatalf("validation error %v names no field", ve)
				}
			}
		}
		if failed == len(e.Commands) {
			if got := stateBytes(t, h.f); !bytes.Equal(got, baseState) {
				t.Fatalf("an entry whose commands all failed changed the state: %s", diffSnapshots(baseState, got))
			}
		}
		if err := checkInvariants(h.f); err != nil {
			t.Fatalf("invariant after the entry: %v", err)
		}
		h2, _ := fuzzBase(t)
		h2.f.ApplyEntry(index, &e)
		snap := snapshotBytes(t, h.f)
		if snap2 := snapshotBytes(t, h2.f); !bytes.Equal(snap, snap2) {
			t.Fatalf("two replicas diverged: %s", diffSnapshots(snap, snap2))
		}
		restored := New(h.f.cfg)
		if err := restored.ReadSnapshot(bytes.NewReader(snap)); err != nil {
			t.Fatalf("restore: %v", err)
		}
		if got := snapshotBytes(t, restored); !bytes.Equal(got, snap) {
			t.Fatalf("restored snapshot differs: %s", diffSnapshots(snap, got))
		}
		h.f.ApplyEntry(index+1, &e)
		if err := checkInvariants(h.f); err != nil {
			t.Fatalf("invariant after applying the entry again: %v", err)
		}
	})
}

// TestFarFutureTimeIsInvalid: a command stamped beyond MaxTimeMs is
// invalid and changes nothing (log time plus a deadline used to overflow,
// leaving a wait timer that made the next tick loop forever); a command at
// MaxTimeMs itself works.
func TestFarFutureTimeIsInvalid(t *testing.T) {
	h, _ := fuzzBase(t)
	before := stateBytes(t, h.f)
	for _, ms := range []int64{MaxTimeMs + 1, math.MaxInt64} {
		c := h.cmd(&pb.Consult{MerchantId: "m1", BuyerId: "b9"})
		c.TimeUnixMs = ms
		tick := h.cmd(&pb.Tick{})
		tick.TimeUnixMs = ms
		for _, r := range h.apply(c, tick) {
			if r.Error != pb.ErrorCode_ERROR_CODE_INVALID || r.ErrorField != "time_unix_ms" {
				t.Fatalf("time %d: got %v, want an invalid time_unix_ms", ms, r)
			}
		}
	}
	if after := stateBytes(t, h.f); !bytes.Equal(before, after) {
		t.Fatalf("invalid times changed the state: %s", diffSnapshots(before, after))
	}
	c := h.cmd(&pb.Consult{MerchantId: "m1", BuyerId: "b9"})
	c.TimeUnixMs = MaxTimeMs
	tick := h.cmd(&pb.Tick{})
	tick.TimeUnixMs = MaxTimeMs
	for _, r := range h.apply(c, tick) {
		if err := ResultError(r); err != nil {
			t.Fatalf("at MaxTimeMs: %v", err)
		}
	}
	if err := checkInvariants(h.f); err != nil {
		t.Fatalf("at MaxTimeMs: %v", err)
	}
}

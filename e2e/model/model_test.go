package model

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// shop: a push group "pre" (default) with agents a1 and a2 (limit 1) and
// a pull group "after" (after-sales pages) with a2; queue of 2.
func shop() *Merchant {
	return &Merchant{
		ID: "m", QueueEnabled: true, MaxQueue: 2, DefaultGroup: "pre", AfterGroup: "after",
		Groups: []Group{{ID: "after", Pull: true}, {ID: "pre"}},
		Agents: []Agent{
			{ID: "a1", Groups: []string{"pre"}, Limit: 1, Status: "ONLINE"},
			{ID: "a2", Groups: []string{"pre", "after"}, Limit: 1, Status: "ONLINE"},
		},
	}
}

// seq makes ops that follow each other in time, one client each.
func seq(ops ...Op) []Op {
	for i := range ops {
		ops[i].ID, ops[i].Client = i, i
		ops[i].Input.Merchant = "m"
		ops[i].Input.RequestID = string(rune('A' + i))
		ops[i].Call = int64(10 * i)
		if ops[i].Output.Unknown {
			ops[i].Return = Never
		} else {
			ops[i].Return = int64(10*i + 5)
		}
	}
	return ops
}

func consult(buyer string, out Output) Op {
	return Op{Input: Input{Kind: Consult, Buyer: buyer}, Output: out}
}

func assigned(sid, buyer, agent, group string) Output {
	return Output{Outcome: "ASSIGNED", State: "ASSIGNED", Session: sid, Buyer: buyer, Agent: agent, Group: group}
}

func queued(sid, buyer, group string, pos uint32) Output {
	return Output{Outcome: "QUEUED", State: "QUEUED", Session: sid, Buyer: buyer, Group: group, Position: pos}
}

func position(buyer string, out Output) Op {
	return Op{Input: Input{Kind: GetPosition, Buyer: buyer}, Output: out}
}

func check(t *testing.T, ops []Op) porcupine.CheckResult {
	t.Helper()
	m := shop()
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return porcupine.CheckOperationsTimeout(Model([]*Merchant{m}), Operations(ops), 10*time.Second)
}

func TestModel(t *testing.T) {
	ended := func(sid, buyer, agent string) Output {
		return Output{Outcome: "ENDED", State: "ENDED", Session: sid, Buyer: buyer, Agent: agent, Group: "pre"}
	}
	asRead := func(o Output) Output { o.Outcome = o.State; return o }
	cases := []struct {
		name string
		ops  []Op
		want porcupine.CheckResult
	}{
		{"assign within limits", seq(
			consult("b1", assigned("s1", "b1", "a1", "pre")),
			consult("b2", assigned("s2", "b2", "a2", "pre")),
			consult("b3", queued("s3", "b3", "pre", 1)),
			consult("b1", Output{Outcome: "EXISTING", State: "ASSIGNED", Session: "s1", Buyer: "b1", Agent: "a1", Group: "pre"}),
		), porcupine.Ok},
		{"an agent over its limit", seq(
			consult("b1", assigned("s1", "b1", "a1", "pre")),
			consult("b2", assigned("s2", "b2", "a1", "pre")),
		), porcupine.Illegal},
		{"queued while an agent had room", seq(
			consult("b1", assigned("s1", "b1", "a1", "pre")),
			consult("b2", queued("s2", "b2", "pre", 1)),
		), porcupine.Illegal},
		{"a second session for a buyer", seq(
			consult("b1", assigned("s1", "b1", "a1", "pre")),
			consult("b1", assigned("s2", "b1", "a2", "pre")),
		), porcupine.Illegal},
		{"busy with room in the queue", seq(
			consult("b1", assigned("s1", "b1", "a1", "pre")),
			consult("b2", assigned("s2", "b2", "a2", "pre")),
			consult("b3", Output{Outcome: "BUSY"}),
		), porcupine.Illegal},
		{"an end drains the queue to the freed agent", seq(
			consult("b1", assigned("s1", "b1", "a1", "pre")),
			consult("b2", assigned("s2", "b2", "a2", "pre")),
			consult("b3", queued("s3", "b3", "pre", 1)),
			Op{Input: Input{Kind: End, Session: "s1", Reason: "AGENT_ENDED"}, Output: ended("s1", "b1", "a1")},
			position("b3", asRead(assigned("s3", "b3", "a1", "pre"))),
		), porcupine.Ok},
		{"a freed agent that did not take the queue's head", seq(
			consult("b1", assigned("s1", "b1", "a1", "pre")),
			consult("b2", assigned("s2", "b2", "a2", "pre")),
			consult("b3", queued("s3", "b3", "pre", 1)),
			Op{Input: Input{Kind: End, Session: "s1", Reason: "AGENT_ENDED"}, Output: ended("s1", "b1", "a1")},
			position("b3", asRead(queued("s3", "b3", "pre", 1))),
		), porcupine.Illegal},
		{"a lost acknowledged consult", seq(
			consult("b1", assigned("s1", "b1", "a1", "pre")),
			position("b1", Output{Err: "not_found"}),
		), porcupine.Illegal},
		{"pull-next takes the pull group's head", seq(
			Op{Input: Input{Kind: Consult, Buyer: "b1", AfterSales: true}, Output: queued("s1", "b1", "after", 1)},
			Op{Input: Input{Kind: PullNext, Agent: "a2"}, Output: assigned("s1", "b1", "a2", "after")},
			Op{Input: Input{Kind: PullNext, Agent: "a2"}, Output: Output{Err: "limit"}},
		), porcupine.Ok},
		{"an unknown consult that took effect", seq(
			consult("b1", Output{Unknown: true}),
			consult("b2", assigned("s2", "b2", "a2", "pre")),
			position("b1", asRead(assigned("s1", "b1", "a1", "pre"))),
			Op{Input: Input{Kind: End, Session: "s1", Reason: "BUYER_LEFT"}, Output: ended("s1", "b1", "a1")},
			consult("b3", assigned("s3", "b3", "a1", "pre")),
		), porcupine.Ok},
		{"an unknown consult that did not", seq(
			consult("b1", Output{Unknown: true}),
			position("b1", Output{Err: "not_found"}),
			consult("b2", assigned("s2", "b2", "a1", "pre")),
		), porcupine.Ok},
		{"a lowered limit keeps sessions but takes no more", seq(
			consult("b1", assigned("s1", "b1", "a1", "pre")),
			Op{Input: Input{Kind: SetLimit, Agent: "a1", Limit: 2}},
			consult("b2", assigned("s2", "b2", "a1", "pre")),
			Op{Input: Input{Kind: SetLimit, Agent: "a1", Limit: 1}},
			Op{Input: Input{Kind: ListAgents}, Output: Output{Agents: []AgentView{
				{ID: "a1", Status: "ONLINE", Limit: 1, Load: 2}, {ID: "a2", Status: "ONLINE", Limit: 1}}}},
			consult("b3", assigned("s3", "b3", "a2", "pre")),
			consult("b4", queued("s4", "b4", "pre", 1)),
		), porcupine.Ok},
		{"transfer to a group excludes the agent who let go", seq(
			consult("b1", assigned("s1", "b1", "a1", "pre")),
			Op{Input: Input{Kind: SetStatus, Agent: "a2", Status: "AWAY"}},
			Op{Input: Input{Kind: Transfer, Session: "s1", Group: "pre"}, Output: queued("s2", "b1", "pre", 1)},
			consult("b2", assigned("s3", "b2", "a1", "pre")),
		), porcupine.Ok},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := check(t, c.ops); got != c.want {
				t.Fatalf("porcupine says %v, want %v", got, c.want)
			}
		})
	}
}

// TestConcurrentConsults: two consults at once may go to either agent,
// but not both to one.
func TestConcurrentConsults(t *testing.T) {
	two := func(x, y string) []Op {
		ops := seq(consult("b1", assigned("s1", "b1", x, "pre")), consult("b2", assigned("s2", "b2", y, "pre")))
		ops[1].Call = ops[0].Call // overlapping
		return ops
	}
	if got := check(t, two("a2", "a1")); got != porcupine.Ok {
		t.Errorf("two agents: %v, want Ok", got)
	}
	if got := check(t, two("a1", "a1")); got != porcupine.Illegal {
		t.Errorf("one agent twice: %v, want Illegal", got)
	}
}

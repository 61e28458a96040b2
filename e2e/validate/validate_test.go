package validate

import (
	"strings"
	"testing"
	"time"

	"github.com/frontdeskhq/frontdesk/e2e/model"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// The checker must be able to fail: each case plants a fault in a
// recorded run (its history and the final state read back) and expects
// the checks to report it; the first case is a consistent run that must
// pass.

// shop: a push group "pre" with agents a1 and a2, limit 1 each.
func shop() *model.Merchant {
	return &model.Merchant{
		ID: "m", QueueEnabled: true, DefaultGroup: "pre", Groups: []model.Group{{ID: "pre"}},
		Agents: []model.Agent{
			{ID: "a1", Groups: []string{"pre"}, Limit: 1, Status: "ONLINE"},
			{ID: "a2", Groups: []string{"pre"}, Limit: 1, Status: "ONLINE"},
		},
	}
}

// run is a recorded run: ops one after another, then the final reads.
type run struct {
	ops   []model.Op
	final *Merchant
}

func (r *run) op(in model.Input, out model.Output) {
	in.Merchant = "m"
	i := int64(len(r.ops))
	r.ops = append(r.ops, model.Op{ID: int(i), Client: int(i % 2), Input: in, Output: out, Call: 10 * i, Return: 10*i + 5})
}

func (r *run) consult(buyer, sid, agent string) {
	r.op(model.Input{Kind: model.Consult, Buyer: buyer, RequestID: sid + buyer},
		model.Output{Outcome: "ASSIGNED", State: "ASSIGNED", Session: sid, Buyer: buyer, Agent: agent, Group: "pre"})
}

// assigned adds an ASSIGNED session to the final state, with the buyer's
// final read in the history.
func (r *run) assigned(buyer, sid, agent string) {
	res := &pb.Result{Outcome: pb.Outcome_OUTCOME_ASSIGNED, SessionId: sid, State: pb.SessionState_SESSION_STATE_ASSIGNED,
		AgentId: agent, GroupId: "pre", BuyerId: buyer}
	r.final.Buyers[buyer] = res
	r.final.Sessions[sid] = &pb.Session{SessionId: sid, BuyerId: buyer, State: pb.SessionState_SESSION_STATE_ASSIGNED, AgentId: agent, GroupId: "pre"}
	r.op(model.Input{Kind: model.GetPosition, Buyer: buyer},
		model.Output{Outcome: "ASSIGNED", State: "ASSIGNED", Session: sid, Buyer: buyer, Agent: agent, Group: "pre"})
}

func (r *run) agents(loads ...uint32) {
	out := model.Output{}
	for i, l := range loads {
		id := []string{"a1", "a2"}[i]
		r.final.Agents = append(r.final.Agents, &pb.AgentView{Config: &pb.UpsertAgent{AgentId: id}, Status: pb.AgentStatus_AGENT_STATUS_ONLINE, Limit: 1, Load: l})
		out.Agents = append(out.Agents, model.AgentView{ID: id, Status: "ONLINE", Limit: 1, Load: l})
	}
	r.op(model.Input{Kind: model.ListAgents}, out)
}

func newRun() *run {
	return &run{final: &Merchant{Queues: map[string]*pb.GetQueueResponse{"pre": {}},
		Buyers: map[string]*pb.Result{}, Sessions: map[string]*pb.Session{}, Stats: &pb.GetStatsResponse{Stats: &pb.MerchantStats{}}}}
}

// checkAll runs every check on r and returns what they report.
func checkAll(t *testing.T, r *run) []Violation {
	t.Helper()
	h := model.FromOps(r.ops)
	f := &Final{Merchants: map[string]*Merchant{"m": r.final}}
	v := append(Invariants(f, h), Acknowledged(f, h)...)
	lin, bad := Linearizable([]*model.Merchant{shop()}, h, 10*time.Second)
	if len(lin) != 1 {
		t.Fatalf("linearizability checked %d merchants, want 1", len(lin))
	}
	return append(v, bad...)
}

func TestCheckerPassesAConsistentRun(t *testing.T) {
	r := newRun()
	r.consult("b1", "s1", "a1")
	r.consult("b2", "s2", "a2")
	r.agents(1, 1)
	r.assigned("b1", "s1", "a1")
	r.assigned("b2", "s2", "a2")
	r.final.Stats.Stats.Consults, r.final.Stats.Stats.Assigned = 2, 2
	if v := checkAll(t, r); len(v) != 0 {
		t.Fatalf("a consistent run was reported: %v", v)
	}
}

func TestCheckerCatchesPlantedFaults(t *testing.T) {
	cases := []struct {
		name  string
		plant func(r *run)
		want  []string // each must appear in some violation
	}{
		{"an exceeded limit", func(r *run) {
			// a1 (limit 1) is given two buyers.
			r.consult("b1", "s1", "a1")
			r.consult("b2", "s2", "a1")
			r.agents(2, 0)
			r.assigned("b1", "s1", "a1")
			r.assigned("b2", "s2", "a1")
			r.final.Stats.Stats.Consults, r.final.Stats.Stats.Assigned = 2, 2
		}, []string{"invariant: m: agent a1 holds 2 buyers, over its limit 1", "linearizability: m"}},
		{"a double assignment of one buyer", func(r *run) {
			// b1 consults twice and gets a second session instead of the
			// existing one: two agents serve one buyer.
			r.consult("b1", "s1", "a1")
			r.consult("b1", "s2", "a2")
			r.agents(1, 1)
			r.assigned("b1", "s2", "a2")
			r.final.Sessions["s1"] = &pb.Session{SessionId: "s1", BuyerId: "b1", State: pb.SessionState_SESSION_STATE_ASSIGNED, AgentId: "a1", GroupId: "pre"}
			r.final.Stats.Stats.Consults, r.final.Stats.Stats.Assigned = 2, 2
		}, []string{"buyer b1 has active session s1", "agent a1 has load 1 but 0 ASSIGNED sessions", "linearizability: m"}},
		{"a lost acknowledged consult", func(r *run) {
			// b1's consult was acknowledged; the shard has no trace of it.
			r.consult("b1", "s1", "a1")
			r.agents(0, 0)
			r.op(model.Input{Kind: model.GetPosition, Buyer: "b1"}, model.Output{Err: "not_found"})
		}, []string{"answered with session s1, which the shard does not know", "the shard counts 0 consult, the clients were answered 1", "linearizability: m"}},
		{"a consult applied twice", func(r *run) {
			// One acknowledged consult, counted twice by the shard (a retry
			// applied again).
			r.consult("b1", "s1", "a1")
			r.agents(1, 0)
			r.assigned("b1", "s1", "a1")
			r.final.Stats.Stats.Consults, r.final.Stats.Stats.Assigned = 2, 1
		}, []string{"the shard counts 2 consult, the clients were answered 1"}},
		{"a stale read", func(r *run) {
			// After b1's consult was acknowledged, a read still says there
			// is no session: a deposed leader answered.
			r.consult("b1", "s1", "a1")
			r.op(model.Input{Kind: model.GetPosition, Buyer: "b1"}, model.Output{Err: "not_found"})
			r.agents(1, 0)
			r.assigned("b1", "s1", "a1")
			r.final.Stats.Stats.Consults, r.final.Stats.Stats.Assigned = 1, 1
		}, []string{"linearizability: m: the history of"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRun()
			c.plant(r)
			v := checkAll(t, r)
			var all []string
			for _, x := range v {
				all = append(all, x.String())
			}
			text := strings.Join(all, "\n")
			for _, w := range c.want {
				if !strings.Contains(text, w) {
					t.Errorf("want a violation containing %q; the checks reported:\n%s", w, text)
				}
			}
		})
	}
}

func TestCheckerCatchesDivergentReplicas(t *testing.T) {
	reply := func(addr string, index uint64, sum byte) digestReply {
		return digestReply{addr: addr, resp: &pb.GetDigestResponse{AppliedIndex: index, Sha256: []byte{sum}}}
	}
	same := compare(3, []digestReply{reply("n1", 7, 1), reply("n2", 7, 1), reply("n3", 6, 9)})
	if !same.Agree || same.Index != 7 || len(same.Nodes) != 2 || len(same.Lagging) != 1 {
		t.Errorf("two equal replicas at 7 and one lagging: %+v; want agreement at 7 between two, one lagging", same)
	}
	diff := compare(3, []digestReply{reply("n1", 7, 1), reply("n2", 7, 2), reply("n3", 7, 1)})
	if diff.Agree {
		t.Errorf("replicas with different digests at index 7 agree: %+v", diff)
	}
}

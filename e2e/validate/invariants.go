package validate

import (
	"fmt"
	"slices"

	"github.com/frontdeskhq/frontdesk/e2e/model"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// Violation is one thing a check found wrong.
type Violation struct {
	// Check: invariant, ack, linearizability, replicas.
	Check    string `json:"check"`
	Merchant string `json:"merchant,omitempty"`
	Detail   string `json:"detail"`
}

func (v Violation) String() string {
	if v.Merchant == "" {
		return fmt.Sprintf("%s: %s", v.Check, v.Detail)
	}
	return fmt.Sprintf("%s: %s: %s", v.Check, v.Merchant, v.Detail)
}

// Invariants checks each merchant's final state:
//
//   - no agent holds more buyers than its limit, unless the limit was
//     lowered below the agent's load after the agent's last assignment
//     (lowering a limit stops new assignments, it does not drop sessions);
//   - an agent's load is the number of its ASSIGNED sessions;
//   - one active session per buyer: every active session the shard knows
//     is its buyer's, and the counts of BOT, QUEUED and ASSIGNED sessions
//     kept by the shard equal those found buyer by buyer (a second session
//     of a buyer would be counted but not found);
//   - each queue holds exactly its group's QUEUED sessions, in queue order,
//     each at the position its buyer is told.
//
// h gives the times of the limit changes.
func Invariants(f *Final, h *model.History) []Violation {
	var out []Violation
	ops := h.Ops()
	for _, id := range sortedKeys(f.Merchants) {
		m := f.Merchants[id]
		bad := func(format string, args ...any) {
			out = append(out, Violation{Check: "invariant", Merchant: id, Detail: fmt.Sprintf(format, args...)})
		}
		inState := map[pb.SessionState]int{}
		assigned := map[string][]*pb.Result{} // by agent
		queued := map[string][]*pb.Result{}   // by group
		for _, b := range sortedKeys(m.Buyers) {
			r := m.Buyers[b]
			inState[r.GetState()]++
			switch r.GetState() {
			case pb.SessionState_SESSION_STATE_ASSIGNED:
				assigned[r.GetAgentId()] = append(assigned[r.GetAgentId()], r)
			case pb.SessionState_SESSION_STATE_QUEUED:
				queued[r.GetGroupId()] = append(queued[r.GetGroupId()], r)
			}
		}
		var load uint64
		for _, a := range m.Agents {
			aid := a.GetConfig().GetAgentId()
			load += uint64(a.GetLoad())
			if n := len(assigned[aid]); int(a.GetLoad()) != n {
				bad("agent %s has load %d but %d ASSIGNED sessions", aid, a.GetLoad(), n)
			}
			if a.GetLoad() > a.GetLimit() && !lowered(ops, h, id, aid, a.GetLimit(), assigned[aid], m.Sessions) {
				bad("agent %s holds %d buyers, over its limit %d", aid, a.GetLoad(), a.GetLimit())
			}
		}
		st := m.Stats.GetStats()
		if st.GetAssigned() != load || int(st.GetAssigned()) != inState[pb.SessionState_SESSION_STATE_ASSIGNED] {
			bad("%d ASSIGNED sessions counted by the shard, %d by agents' loads, %d found buyer by buyer",
				st.GetAssigned(), load, inState[pb.SessionState_SESSION_STATE_ASSIGNED])
		}
		if int(st.GetInBot()) != inState[pb.SessionState_SESSION_STATE_BOT] {
			bad("%d BOT sessions counted by the shard, %d found buyer by buyer", st.GetInBot(), inState[pb.SessionState_SESSION_STATE_BOT])
		}
		var waiting int
		for _, g := range sortedKeys(m.Queues) {
			q := m.Queues[g]
			waiting += int(q.GetLength())
			if int(q.GetLength()) != len(q.GetSessions()) {
				bad("queue %s: length %d but %d sessions listed", g, q.GetLength(), len(q.GetSessions()))
			}
			var ids []string
			for i, s := range q.GetSessions() {
				ids = append(ids, s.GetSessionId())
				if s.GetState() != pb.SessionState_SESSION_STATE_QUEUED || s.GetGroupId() != g {
					bad("queue %s holds session %s, which is %v in group %q", g, s.GetSessionId(), s.GetState(), s.GetGroupId())
				}
				if i > 0 {
					p := q.GetSessions()[i-1]
					if p.GetQueueKey() > s.GetQueueKey() || p.GetQueueKey() == s.GetQueueKey() && p.GetQueueSeq() >= s.GetQueueSeq() {
						bad("queue %s: session %s (key %d, seq %d) after %s (key %d, seq %d)", g,
							s.GetSessionId(), s.GetQueueKey(), s.GetQueueSeq(), p.GetSessionId(), p.GetQueueKey(), p.GetQueueSeq())
					}
				}
				if r := m.Buyers[s.GetBuyerId()]; r == nil || r.GetSessionId() != s.GetSessionId() || int(r.GetPosition()) != i+1 {
					bad("queue %s: session %s of %s at position %d, but the buyer is told %v", g, s.GetSessionId(), s.GetBuyerId(), i+1, r)
				}
			}
			var want []string
			for _, r := range queued[g] {
				want = append(want, r.GetSessionId())
			}
			slices.Sort(ids)
			slices.Sort(want)
			if !slices.Equal(ids, want) {
				bad("queue %s holds %v; the QUEUED sessions of the group are %v", g, ids, want)
			}
		}
		if int(st.GetQueued()) != waiting || waiting != inState[pb.SessionState_SESSION_STATE_QUEUED] {
			bad("%d QUEUED sessions counted by the shard, %d in queues, %d found buyer by buyer",
				st.GetQueued(), waiting, inState[pb.SessionState_SESSION_STATE_QUEUED])
		}
		for _, sid := range sortedKeys(m.Sessions) {
			s := m.Sessions[sid]
			if s.GetState() == pb.SessionState_SESSION_STATE_ENDED {
				continue
			}
			if r := m.Buyers[s.GetBuyerId()]; r == nil || r.GetSessionId() != sid {
				bad("buyer %s has active session %s (%v) besides %v", s.GetBuyerId(), sid, s.GetState(), r.GetSessionId())
			}
		}
	}
	return out
}

// lowered reports whether an agent above its limit got there by a limit
// change: a change to this limit answered after every assignment the
// agent still holds (or never answered).
func lowered(ops []model.Op, h *model.History, merchant, agent string, limit uint32, held []*pb.Result, sessions map[string]*pb.Session) bool {
	var last int64 = -1
	for _, op := range ops {
		in := op.Input
		if in.Kind == model.SetLimit && in.Merchant == merchant && in.Agent == agent && in.Limit == limit &&
			(op.OK() || op.Output.Unknown) && op.Return > last {
			last = op.Return
		}
	}
	if last < 0 {
		return false
	}
	if last == model.Never {
		return true
	}
	at := h.At(last).UnixMilli()
	for _, r := range held {
		s := sessions[r.GetSessionId()]
		if s == nil || s.GetAssignedMs() > at {
			return false
		}
	}
	return true
}

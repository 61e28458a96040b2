package fsm

import (
	"google.golang.org/protobuf/proto"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// Queries read the local replica's state under a read lock; they never
// block on Raft. Everything returned is a copy the caller owns.

// copySession returns a deep copy of a session (generated, so it copies
// every field, and without reflection).
func copySession(s *pb.Session) *pb.Session { return s.CloneVT() }

// LastIndex is the index of the last applied log entry.
func (f *FSM) LastIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.lastIndex
}

// NowMs is the state machine's log time.
func (f *FSM) NowMs() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.now
}

// Merchants lists the merchant ids held by this shard, sorted.
func (f *FSM) Merchants() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return sortedKeys(f.merchants)
}

// MerchantConfig is a merchant's configuration as last set.
type MerchantConfig struct {
	Settings *pb.MerchantSettings
	Groups   []*pb.UpsertGroup // sorted by id
	Agents   []AgentState      // sorted by id
}

// AgentState is an agent's configuration and live state.
type AgentState struct {
	Config *pb.UpsertAgent
	Status pb.AgentStatus
	Limit  uint32 // effective limit (the merchant default when Config.Limit is 0)
	Load   uint32 // ASSIGNED sessions
}

// Merchant returns a merchant's configuration, or ErrNotFound.
func (f *FSM) Merchant(id string) (*MerchantConfig, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, err := f.merchant(id)
	if err != nil {
		return nil, err
	}
	out := &MerchantConfig{Settings: proto.CloneOf(m.settings)}
	for _, gid := range sortedKeys(m.groups) {
		out.Groups = append(out.Groups, proto.CloneOf(m.groups[gid].cfg))
	}
	out.Agents = m.agentStates()
	return out, nil
}

func (m *merchant) agentStates() []AgentState {
	out := make([]AgentState, 0, len(m.agents))
	for _, id := range sortedKeys(m.agents) {
		a := m.agents[id]
		out = append(out, AgentState{Config: proto.CloneOf(a.cfg), Status: a.status, Limit: a.limit, Load: a.load})
	}
	return out
}

// Agents returns a merchant's agents with load, limit and status.
func (f *FSM) Agents(merchant string) ([]AgentState, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, err := f.merchant(merchant)
	if err != nil {
		return nil, err
	}
	return m.agentStates(), nil
}

// Session returns an active or recently ended session.
func (f *FSM) Session(merchant, sessionID string) (*pb.Session, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, err := f.merchant(merchant)
	if err != nil {
		return nil, err
	}
	if s := m.sessions[sessionID]; s != nil {
		return copySession(&s.Session), nil
	}
	if s := f.ended.get(m.id, sessionID); s != nil {
		return s, nil
	}
	return nil, notFound("session_id", sessionID)
}

// BuyerSession returns a buyer's active session with, when queued, the
// buyer's position and estimated wait; ErrNotFound when there is none.
func (f *FSM) BuyerSession(merchant, buyer string) (*pb.Result, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, err := f.merchant(merchant)
	if err != nil {
		return nil, err
	}
	s := m.byBuyer[buyer]
	if s == nil {
		return nil, notFound("buyer_id", buyer)
	}
	return f.sessionResult(m, s, outcomeOf(s)), nil
}

// Queue returns the first n sessions waiting in a group's queue, in order,
// and the queue's length.
func (f *FSM) Queue(merchant, groupID string, n int) ([]*pb.Session, int, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, err := f.merchant(merchant)
	if err != nil {
		return nil, 0, err
	}
	g := m.groups[groupID]
	if g == nil {
		return nil, 0, notFound("group_id", groupID)
	}
	var out []*pb.Session
	g.queue.Ascend(func(s *session) bool {
		if len(out) >= n {
			return false
		}
		out = append(out, copySession(&s.Session))
		return true
	})
	return out, g.queue.Len(), nil
}

// Stats are a merchant's statistics: the counters kept by the state machine
// and figures derived from them.
type Stats struct {
	*pb.MerchantStats
	// BotResolutionRate: sessions the bot resolved over all that left the bot.
	BotResolutionRate float64
	// Load and Capacity: ASSIGNED sessions and the sum of online agents' limits.
	Load, Capacity uint64
	// Utilisation is Load / Capacity (0 when no agent is online).
	Utilisation float64
	// InflowPerMinute is the consults of the last minute of log time.
	InflowPerMinute uint64
}

// Stats returns a merchant's statistics.
func (f *FSM) Stats(merchant string) (*Stats, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, err := f.merchant(merchant)
	if err != nil {
		return nil, err
	}
	st := &Stats{MerchantStats: proto.CloneOf(m.stats), InflowPerMinute: m.inflow(f.now)}
	resolved := m.stats.EndedByReason[pb.EndReason_END_REASON_BOT_RESOLVED]
	if left := resolved + m.stats.Escalated; left > 0 {
		st.BotResolutionRate = float64(resolved) / float64(left)
	}
	for _, a := range m.agents {
		st.Load += uint64(a.load)
		st.Capacity += uint64(a.capacity())
	}
	if st.Capacity > 0 {
		st.Utilisation = float64(st.Load) / float64(st.Capacity)
	}
	return st, nil
}

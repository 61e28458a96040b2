package fsm

import (
	"sort"

	"github.com/google/btree"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

const btreeDegree = 16

// merchant is one tenant's whole state. All maps are keyed by id; anything
// whose order can be observed iterates sorted keys.
type merchant struct {
	id       string
	settings *pb.MerchantSettings // as given, never nil
	w        weights              // effective scoring weights
	groups   map[string]*group
	agents   map[string]*agent
	sessions map[string]*session // active (BOT, QUEUED, ASSIGNED)
	byBuyer  map[string]*session // active session of each buyer
	stats    *pb.MerchantStats
}

// weights are the merchant's effective scoring weights (defaults applied).
type weights struct {
	skill, headroom, rating, weight, userLevel, agingMs int64
}

func effectiveWeights(w *pb.ScoringWeights) weights {
	d := weights{skill: 40, headroom: 20, rating: 10, weight: 10, userLevel: 30, agingMs: 1000}
	if w == nil {
		return d
	}
	pick := func(v uint32, def int64) int64 {
		if v == 0 {
			return def
		}
		return int64(v)
	}
	return weights{
		skill: pick(w.Skill, d.skill), headroom: pick(w.Headroom, d.headroom),
		rating: pick(w.Rating, d.rating), weight: pick(w.Weight, d.weight),
		userLevel: pick(w.UserLevel, d.userLevel), agingMs: pick(w.AgingMs, d.agingMs),
	}
}

func (m *merchant) queueLimit() int {
	if m.settings.MaxQueueLength == 0 {
		return DefaultQueueLength
	}
	return int(m.settings.MaxQueueLength)
}

func (m *merchant) defaultLimit() uint32 {
	if m.settings.DefaultLimit == 0 {
		return DefaultLimit
	}
	return m.settings.DefaultLimit
}

// queueKey orders a buyer in a queue: arrival time moved earlier by the
// buyer's user level, so a waiting buyer eventually passes a newer VIP
// (aging) and nobody starves.
func (m *merchant) queueKey(now int64, userLevel uint32) int64 {
	return now - int64(userLevel)*m.w.userLevel*m.w.agingMs/10
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// group is a skill group: its members, their selection indexes and its queue.
type group struct {
	id       string
	cfg      *pb.UpsertGroup
	members  map[string]*agent
	indexes  map[string]*agentIndex // by question type; "" is the default index
	queue    *btree.BTreeG[*session]
	capacity uint64 // sum of the limits of online members
	active   int    // active sessions whose group this is
}

func newGroup(cfg *pb.UpsertGroup) *group {
	g := &group{id: cfg.GroupId, cfg: cfg, members: map[string]*agent{}, queue: btree.NewG(btreeDegree, queueLess)}
	g.indexes = map[string]*agentIndex{"": newAgentIndex()}
	return g
}

func (g *group) pull() bool { return g.cfg.Mode == pb.GroupMode_GROUP_MODE_PULL }

// index returns the selection index for a question type.
func (g *group) index(questionType string) *agentIndex {
	if idx, ok := g.indexes[questionType]; ok {
		return idx
	}
	return g.indexes[""]
}

func queueLess(a, b *session) bool {
	if a.QueueKey != b.QueueKey {
		return a.QueueKey < b.QueueKey
	}
	return a.QueueSeq < b.QueueSeq
}

// position is the 1-based place of s in g's queue. It walks from whichever
// end of the queue is nearer, so new arrivals (usually at the tail) are cheap.
func (g *group) position(s *session) int {
	n := g.queue.Len()
	before, after := 0, 0
	g.queue.AscendLessThan(s, func(*session) bool { before++; return before < n/2+1 })
	if before <= n/2 {
		return before + 1
	}
	g.queue.DescendGreaterThan(s, func(*session) bool { after++; return true })
	return n - after
}

// agent is one agent: configuration, status, load and where it is indexed.
type agent struct {
	id       string
	cfg      *pb.UpsertAgent
	limit    uint32
	status   pb.AgentStatus
	load     uint32
	assigned sessionList // ASSIGNED to this agent; load == assigned.n
	groups   map[string]*pb.AgentGroup
	indexed  []indexEntry // current index memberships, for removal
	counted  uint32       // capacity currently counted in its groups
}

func (a *agent) eligible() bool {
	return a.status == pb.AgentStatus_AGENT_STATUS_ONLINE && a.load < a.limit
}

func (a *agent) capacity() uint32 {
	if a.status == pb.AgentStatus_AGENT_STATUS_ONLINE {
		return a.limit
	}
	return 0
}

// skill is the agent's skill in group g for a question type.
func (a *agent) skill(groupID, questionType string) uint32 {
	ag := a.groups[groupID]
	if ag == nil {
		return 0
	}
	if questionType != "" {
		for _, q := range ag.QuestionSkills {
			if q.QuestionType == questionType {
				return q.Skill
			}
		}
	}
	return ag.Skill
}

// session is a reception session; the protobuf form is the state itself.
type session struct {
	pb.Session
	idleAt     int64    // key in the shard's idle timer tree; 0 when not there
	prev, next *session // in its agent's assigned list
}

// sessionList is an intrusive doubly linked list of sessions: O(1) insert
// and remove without a map. Its order is not part of the state; code whose
// result depends on order uses sorted().
type sessionList struct {
	head *session
	n    int
}

func (l *sessionList) add(s *session) {
	s.prev, s.next = nil, l.head
	if l.head != nil {
		l.head.prev = s
	}
	l.head = s
	l.n++
}

func (l *sessionList) remove(s *session) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		l.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	}
	s.prev, s.next = nil, nil
	l.n--
}

// sorted returns the sessions ordered by session id.
func (l *sessionList) sorted() []*session {
	out := make([]*session, 0, l.n)
	for s := l.head; s != nil; s = s.next {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SessionId < out[j].SessionId })
	return out
}

func (s *session) active() bool {
	return s.State != pb.SessionState_SESSION_STATE_ENDED && s.State != pb.SessionState_SESSION_STATE_UNSPECIFIED
}

// timer orders sessions by a deadline for the shard's tick.
type timer struct {
	at int64
	s  *session
}

func timerLess(a, b timer) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	if a.s.MerchantId != b.s.MerchantId {
		return a.s.MerchantId < b.s.MerchantId
	}
	return a.s.SessionId < b.s.SessionId
}

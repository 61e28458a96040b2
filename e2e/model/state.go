package model

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
)

// Merchant is a merchant's configuration as the traffic set it up. The
// model knows nothing else about the merchant, so the traffic must keep to
// what the model can follow exactly (see Model).
type Merchant struct {
	ID           string  `json:"id"`
	BotFirst     bool    `json:"bot_first,omitempty"`
	QueueEnabled bool    `json:"queue_enabled,omitempty"`
	MaxQueue     int     `json:"max_queue,omitempty"` // 0: the server's default, 1000
	Groups       []Group `json:"groups"`
	// DefaultGroup takes consults no rule routes; AfterGroup takes those
	// from after-sales pages ("" : the default group).
	DefaultGroup string  `json:"default_group"`
	AfterGroup   string  `json:"after_group,omitempty"`
	Agents       []Agent `json:"agents"` // sorted by id
}

// Group is a skill group: push (assign on arrival, drain on free
// capacity) or pull (agents take buyers with pull-next).
type Group struct {
	ID   string `json:"id"`
	Pull bool   `json:"pull,omitempty"`
}

// Agent is an agent's configuration at the start of the run. Its groups
// never change; its status and limit do.
type Agent struct {
	ID     string   `json:"id"`
	Groups []string `json:"groups"`
	Limit  uint32   `json:"limit"`
	Status string   `json:"status"` // ONLINE, AWAY, OFFLINE
}

// Validate checks that m is something the model can follow.
func (m *Merchant) Validate() error {
	if !slices.IsSortedFunc(m.Agents, func(a, b Agent) int { return strings.Compare(a.ID, b.ID) }) {
		return fmt.Errorf("model: merchant %s: agents not sorted by id", m.ID)
	}
	if m.group(m.DefaultGroup) < 0 {
		return fmt.Errorf("model: merchant %s: no default group %q", m.ID, m.DefaultGroup)
	}
	if m.AfterGroup != "" && m.group(m.AfterGroup) < 0 {
		return fmt.Errorf("model: merchant %s: no group %q", m.ID, m.AfterGroup)
	}
	for _, a := range m.Agents {
		push := 0
		for _, g := range a.Groups {
			gi := m.group(g)
			if gi < 0 {
				return fmt.Errorf("model: merchant %s: agent %s in unknown group %q", m.ID, a.ID, g)
			}
			if !m.Groups[gi].Pull {
				push++
			}
		}
		// With two push groups, which queue a freed agent drains first
		// depends on queue keys the model does not know.
		if push > 1 {
			return fmt.Errorf("model: merchant %s: agent %s is in %d push groups; the model follows at most one", m.ID, a.ID, push)
		}
		if statusCode(a.Status) == 0 {
			return fmt.Errorf("model: merchant %s: agent %s: unknown status %q", m.ID, a.ID, a.Status)
		}
	}
	return nil
}

func (m *Merchant) group(id string) int {
	return slices.IndexFunc(m.Groups, func(g Group) bool { return g.ID == id })
}

func (m *Merchant) agent(id string) int {
	return slices.IndexFunc(m.Agents, func(a Agent) bool { return a.ID == id })
}

func (m *Merchant) maxQueue() int {
	if m.MaxQueue == 0 {
		return 1000
	}
	return m.MaxQueue
}

// Session states and agent statuses, as small numbers.
const (
	stBot      = 1
	stQueued   = 2
	stAssigned = 3

	online  = 1
	away    = 2
	offline = 3
)

var stateNames = []string{"", "BOT", "QUEUED", "ASSIGNED"}
var statusNames = []string{"", "ONLINE", "AWAY", "OFFLINE"}

func statusCode(s string) uint8 {
	if i := slices.Index(statusNames, s); i > 0 {
		return uint8(i)
	}
	return 0
}

// state is one merchant as the model sees it. States are values: a step
// clones before it changes anything.
type state struct {
	m        *Merchant
	agents   []agentState // parallel to m.Agents
	sessions []session    // active sessions, sorted by buyer then id
	queues   [][]string   // per group of m.Groups: session ids in queue order
}

type agentState struct {
	status uint8
	limit  uint32
	load   uint32
}

type session struct {
	id    string // "?<request id>": created by an Op whose answer is unknown
	buyer string
	after bool // consulted from an after-sales page
	state uint8
	agent int8 // index in m.Agents, or -1
	group int8 // index in m.Groups, or -1 (BOT)
	// excluded: the agent who transferred the buyer away to a group, who
	// is never given the buyer back (-1: none).
	excluded int8
}

func initial(m *Merchant) *state {
	s := &state{m: m, agents: make([]agentState, len(m.Agents)), queues: make([][]string, len(m.Groups))}
	for i, a := range m.Agents {
		s.agents[i] = agentState{status: statusCode(a.Status), limit: a.Limit}
	}
	return s
}

func (s *state) clone() *state {
	c := &state{m: s.m, agents: slices.Clone(s.agents), sessions: slices.Clone(s.sessions),
		queues: make([][]string, len(s.queues))}
	for i, q := range s.queues {
		c.queues[i] = slices.Clone(q)
	}
	return c
}

func (s *state) equal(o *state) bool {
	if s.m != o.m || !slices.Equal(s.agents, o.agents) || !slices.Equal(s.sessions, o.sessions) {
		return false
	}
	for i := range s.queues {
		if !slices.Equal(s.queues[i], o.queues[i]) {
			return false
		}
	}
	return true
}

func (s *state) hash() uint64 {
	var b []byte
	for _, a := range s.agents {
		b = append(b, a.status)
		b = binary.LittleEndian.AppendUint32(b, a.limit)
		b = binary.LittleEndian.AppendUint32(b, a.load)
	}
	for _, x := range s.sessions {
		b = append(b, x.id...)
		b = append(b, 0, x.state, byte(x.agent), byte(x.group), byte(x.excluded))
	}
	for _, q := range s.queues {
		for _, id := range q {
			b = append(b, id...)
			b = append(b, 0)
		}
		b = append(b, 1)
	}
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

func (s *state) String() string {
	var b strings.Builder
	for i, a := range s.agents {
		fmt.Fprintf(&b, "%s:%s %d/%d  ", s.m.Agents[i].ID, statusNames[a.status], a.load, a.limit)
	}
	for gi, q := range s.queues {
		fmt.Fprintf(&b, "| %s queue %v ", s.m.Groups[gi].ID, q)
	}
	b.WriteString("| ")
	for _, x := range s.sessions {
		fmt.Fprintf(&b, "%s:%s:%s", x.buyer, x.id, stateNames[x.state])
		if x.agent >= 0 {
			fmt.Fprintf(&b, "@%s", s.m.Agents[x.agent].ID)
		}
		b.WriteString(" ")
	}
	return b.String()
}

// byID returns the index of the active session with id, or -1.
func (s *state) byID(id string) int {
	return slices.IndexFunc(s.sessions, func(x session) bool { return x.id == id })
}

// byBuyer returns the index of the buyer's active session, or -1.
func (s *state) byBuyer(buyer string) int {
	return slices.IndexFunc(s.sessions, func(x session) bool { return x.buyer == buyer })
}

// lookup finds the active session an answer is about: by id, or else the
// buyer's session whose id the model does not know yet (made by an Op with
// no answer), which then learns the id. -1 if there is none.
func (s *state) lookup(id, buyer string) int {
	if i := s.byID(id); i >= 0 {
		return i
	}
	if buyer == "" || id == "" {
		return -1
	}
	i := s.byBuyer(buyer)
	if i < 0 || !strings.HasPrefix(s.sessions[i].id, "?") {
		return -1
	}
	old := s.sessions[i].id
	s.sessions[i].id = id
	for _, q := range s.queues {
		if k := slices.Index(q, old); k >= 0 {
			q[k] = id
		}
	}
	return i
}

// add inserts a session, keeping the order.
func (s *state) add(x session) int {
	i, _ := slices.BinarySearchFunc(s.sessions, x, func(a, b session) int {
		if c := strings.Compare(a.buyer, b.buyer); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	s.sessions = slices.Insert(s.sessions, i, x)
	return i
}

func (s *state) remove(i int) { s.sessions = slices.Delete(s.sessions, i, i+1) }

func (s *state) eligible(a int) bool {
	return s.agents[a].status == online && s.agents[a].load < s.agents[a].limit
}

func (s *state) member(a, g int) bool {
	return slices.Contains(s.m.Agents[a].Groups, s.m.Groups[g].ID)
}

// anyEligible: some member of push group g other than skip can take a buyer.
func (s *state) anyEligible(g, skip int) bool {
	if s.m.Groups[g].Pull {
		return false
	}
	for a := range s.agents {
		if a != skip && s.member(a, g) && s.eligible(a) {
			return true
		}
	}
	return false
}

// queueRoom: group g's queue takes another buyer.
func (s *state) queueRoom(g int) bool {
	return (s.m.QueueEnabled || s.m.Groups[g].Pull) && len(s.queues[g]) < s.m.maxQueue()
}

// headFor is the place in g's queue of the first buyer agent a may take,
// or -1.
func (s *state) headFor(g, a int) int {
	for k, id := range s.queues[g] {
		if s.sessions[s.byID(id)].excluded != int8(a) {
			return k
		}
	}
	return -1
}

func (s *state) position(i int) uint32 {
	x := s.sessions[i]
	if x.state != stQueued {
		return 0
	}
	return uint32(slices.Index(s.queues[x.group], x.id) + 1)
}

// assign gives session i to agent a.
func (s *state) assign(i, a int) {
	s.sessions[i].state, s.sessions[i].agent = stAssigned, int8(a)
	s.agents[a].load++
}

// enqueue puts session i at 1-based position pos of group g's queue.
func (s *state) enqueue(i, g int, pos uint32) {
	s.sessions[i].state, s.sessions[i].group, s.sessions[i].agent = stQueued, int8(g), -1
	s.queues[g] = slices.Insert(s.queues[g], int(pos)-1, s.sessions[i].id)
}

// dequeue takes session i out of its queue.
func (s *state) dequeue(i int) {
	x := s.sessions[i]
	q := s.queues[x.group]
	s.queues[x.group] = slices.Delete(q, slices.Index(q, x.id), slices.Index(q, x.id)+1)
}

// end removes active session i and returns the agent who gained a free
// slot, or -1.
func (s *state) end(i int) int {
	x := s.sessions[i]
	freed := -1
	switch x.state {
	case stQueued:
		s.dequeue(i)
	case stAssigned:
		freed = int(x.agent)
		s.agents[freed].load--
	}
	s.remove(i)
	return freed
}

// drain gives a freed agent the buyers at the head of its push group's
// queue while it has room (fsm's drainAgent).
func (s *state) drain(a int) {
	if a < 0 {
		return
	}
	g := -1
	for gi := range s.m.Groups {
		if !s.m.Groups[gi].Pull && s.member(a, gi) {
			g = gi
		}
	}
	if g < 0 {
		return
	}
	for s.eligible(a) {
		k := s.headFor(g, a)
		if k < 0 {
			return
		}
		i := s.byID(s.queues[g][k])
		s.dequeue(i)
		s.assign(i, a)
	}
}

// route is the group a session's consult goes to.
func (s *state) route(after bool) int {
	if after && s.m.AfterGroup != "" {
		return s.m.group(s.m.AfterGroup)
	}
	return s.m.group(s.m.DefaultGroup)
}

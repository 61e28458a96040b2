package fsm

import (
	"google.golang.org/protobuf/proto"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// Configuration commands: merchants, groups, agents and agent status. Each
// checks everything it depends on before it changes anything.

func okResult() *pb.Result { return &pb.Result{Outcome: pb.Outcome_OUTCOME_NONE} }

func (f *FSM) merchant(id string) (*merchant, *Error) {
	m := f.merchants[id]
	if m == nil {
		return nil, notFound("merchant_id", id)
	}
	return m, nil
}

func newMerchant(id string) *merchant {
	return &merchant{
		id: id, settings: &pb.MerchantSettings{}, w: effectiveWeights(nil),
		groups: map[string]*group{}, agents: map[string]*agent{},
		sessions: map[string]*session{}, byBuyer: map[string]*session{},
		stats: newStats(),
	}
}

func (f *FSM) applyUpsertMerchant(c *pb.UpsertMerchant) (*pb.Result, *Error) {
	m := f.merchants[c.MerchantId]
	settings := c.Settings
	if settings == nil {
		settings = &pb.MerchantSettings{}
	}
	settings = proto.CloneOf(settings)
	groupExists := func(id string) bool { return m != nil && m.groups[id] != nil }
	for _, r := range settings.Rules {
		if !groupExists(r.GroupId) {
			return nil, notFound("settings.rules.group_id", r.GroupId)
		}
	}
	if settings.DefaultGroupId != "" && !groupExists(settings.DefaultGroupId) {
		return nil, notFound("settings.default_group_id", settings.DefaultGroupId)
	}
	if m == nil {
		m = newMerchant(c.MerchantId)
		f.merchants[m.id] = m
	}
	old := m.settings
	m.settings = settings
	m.w = effectiveWeights(settings.Weights)
	if !proto.Equal(old.Weights, settings.Weights) {
		for _, gid := range sortedKeys(m.groups) {
			m.rebuildIndexes(m.groups[gid])
		}
	}
	if old.IdleTimeoutMs != settings.IdleTimeoutMs || old.MaxWaitMs != settings.MaxWaitMs {
		// Timers already running follow the new settings from when they
		// started (last activity, time queued); nothing else changes.
		for _, id := range sortedKeys(m.sessions) {
			s := m.sessions[id]
			f.armIdle(m, s)
			f.armWait(m, s)
		}
	}
	if old.DefaultLimit != settings.DefaultLimit {
		for _, id := range sortedKeys(m.agents) {
			a := m.agents[id]
			if a.cfg.Limit == 0 {
				f.setLimit(m, a, m.defaultLimit())
			}
		}
	}
	f.emit(event{eventFacts: eventFacts{kind: pb.EventKind_EVENT_KIND_MERCHANT_UPSERTED}, merchant: m.id})
	f.updateSurge(m) // a new baseline takes effect at once
	return okResult(), nil
}

func (f *FSM) applyDeleteMerchant(c *pb.DeleteMerchant) (*pb.Result, *Error) {
	m, err := f.merchant(c.MerchantId)
	if err != nil {
		return nil, err
	}
	for _, id := range sortedKeys(m.sessions) {
		s := m.sessions[id]
		f.unschedule(s)
	}
	f.ended.dropMerchant(m.id, f.cfg.MaxEnded)
	delete(f.elevated, m.id)
	delete(f.merchants, m.id)
	f.emit(event{eventFacts: eventFacts{kind: pb.EventKind_EVENT_KIND_MERCHANT_DELETED}, merchant: m.id})
	return okResult(), nil
}

func (f *FSM) applyUpsertGroup(c *pb.UpsertGroup) (*pb.Result, *Error) {
	m, err := f.merchant(c.MerchantId)
	if err != nil {
		return nil, err
	}
	if c.OverflowGroupId != "" {
		if c.OverflowGroupId == c.GroupId {
			return nil, invalid("overflow_group_id", "a group cannot overflow into itself")
		}
		if m.groups[c.OverflowGroupId] == nil {
			return nil, notFound("overflow_group_id", c.OverflowGroupId)
		}
	}
	cfg := proto.CloneOf(c)
	g := m.groups[c.GroupId]
	if g == nil {
		g = newGroup(cfg)
		m.groups[g.id] = g
	} else {
		wasPull := g.pull()
		g.cfg = cfg
		if wasPull && !g.pull() {
			f.drainGroup(m, g)
		}
	}
	f.emit(event{eventFacts: eventFacts{kind: pb.EventKind_EVENT_KIND_GROUP_UPSERTED}, merchant: m.id, group: g.id})
	return okResult(), nil
}

func (f *FSM) applyDeleteGroup(c *pb.DeleteGroup) (*pb.Result, *Error) {
	m, err := f.merchant(c.MerchantId)
	if err != nil {
		return nil, err
	}
	g := m.groups[c.GroupId]
	if g == nil {
		return nil, notFound("group_id", c.GroupId)
	}
	switch {
	case len(g.members) > 0:
		return nil, conflict("group_id", "group %q still has %d agents", g.id, len(g.members))
	case g.active > 0:
		return nil, conflict("group_id", "group %q still has %d active sessions", g.id, g.active)
	case m.settings.DefaultGroupId == g.id:
		return nil, conflict("group_id", "group %q is the merchant's default group", g.id)
	}
	for _, r := range m.settings.Rules {
		if r.GroupId == g.id {
			return nil, conflict("group_id", "group %q is used by a routing rule", g.id)
		}
	}
	for _, id := range sortedKeys(m.groups) {
		if m.groups[id].cfg.OverflowGroupId == g.id {
			return nil, conflict("group_id", "group %q is the overflow group of %q", g.id, id)
		}
	}
	delete(m.groups, g.id)
	f.emit(event{eventFacts: eventFacts{kind: pb.EventKind_EVENT_KIND_GROUP_DELETED}, merchant: m.id, group: g.id})
	return okResult(), nil
}

func (f *FSM) applyUpsertAgent(c *pb.UpsertAgent) (*pb.Result, *Error) {
	m, err := f.merchant(c.MerchantId)
	if err != nil {
		return nil, err
	}
	for _, ag := range c.Groups {
		if m.groups[ag.GroupId] == nil {
			return nil, notFound("groups.group_id", ag.GroupId)
		}
	}
	cfg := proto.CloneOf(c)
	a := m.agents[c.AgentId]
	touched := map[string]bool{}
	if a == nil {
		a = &agent{id: c.AgentId, status: pb.AgentStatus_AGENT_STATUS_OFFLINE}
		m.agents[a.id] = a
	} else {
		m.unindex(a)
		for _, ag := range a.cfg.Groups {
			gid := ag.GroupId
			if g := m.groups[gid]; g != nil {
				delete(g.members, a.id)
				touched[gid] = true
			}
		}
	}
	a.cfg = cfg
	a.limit = cfg.Limit
	if a.limit == 0 {
		a.limit = m.defaultLimit()
	}
	a.groups = make(map[string]*pb.AgentGroup, len(cfg.Groups))
	for _, ag := range cfg.Groups {
		a.groups[ag.GroupId] = ag
		m.groups[ag.GroupId].members[a.id] = a
		touched[ag.GroupId] = true
	}
	for _, gid := range sortedKeys(touched) {
		m.rebuildIndexes(m.groups[gid])
	}
	m.reindex(a)
	f.emit(event{eventFacts: eventFacts{kind: pb.EventKind_EVENT_KIND_AGENT_UPSERTED, agentStatus: a.status}, merchant: m.id, agent: a.id})
	f.drainAgent(m, a)
	return okResult(), nil
}

// setLimit changes an agent's limit. Lowering it stops new assignments and
// keeps the sessions the agent has; raising it lets the queues flow.
func (f *FSM) setLimit(m *merchant, a *agent, limit uint32) {
	a.limit = limit
	m.reindex(a)
	f.drainAgent(m, a)
}

func (f *FSM) applyDeleteAgent(c *pb.DeleteAgent) (*pb.Result, *Error) {
	m, err := f.merchant(c.MerchantId)
	if err != nil {
		return nil, err
	}
	a := m.agents[c.AgentId]
	if a == nil {
		return nil, notFound("agent_id", c.AgentId)
	}
	groups := f.requeueAgent(m, a)
	m.unindex(a)
	for _, ag := range a.cfg.Groups {
		gid := ag.GroupId
		if g := m.groups[gid]; g != nil {
			delete(g.members, a.id)
			groups[gid] = true
		}
	}
	delete(m.agents, a.id)
	for _, gid := range sortedKeys(groups) {
		if g := m.groups[gid]; g != nil {
			m.rebuildIndexes(g)
		}
	}
	f.emit(event{eventFacts: eventFacts{kind: pb.EventKind_EVENT_KIND_AGENT_DELETED}, merchant: m.id, agent: a.id})
	for _, gid := range sortedKeys(groups) {
		if g := m.groups[gid]; g != nil {
			f.drainGroup(m, g)
		}
	}
	return okResult(), nil
}

func (f *FSM) applySetAgentStatus(c *pb.SetAgentStatus) (*pb.Result, *Error) {
	m, err := f.merchant(c.MerchantId)
	if err != nil {
		return nil, err
	}
	a := m.agents[c.AgentId]
	if a == nil {
		return nil, notFound("agent_id", c.AgentId)
	}
	if a.status == c.Status {
		return okResult(), nil
	}
	a.status = c.Status
	m.reindex(a)
	f.emit(event{eventFacts: eventFacts{kind: pb.EventKind_EVENT_KIND_AGENT_STATUS, agentStatus: a.status}, merchant: m.id, agent: a.id})
	switch {
	case a.status == pb.AgentStatus_AGENT_STATUS_ONLINE:
		f.drainAgent(m, a)
	case a.status == pb.AgentStatus_AGENT_STATUS_OFFLINE && m.settings.RequeueOnOffline:
		groups := f.requeueAgent(m, a)
		for _, gid := range sortedKeys(groups) {
			f.drainGroup(m, m.groups[gid])
		}
	}
	return okResult(), nil
}

// requeueAgent puts every session assigned to a back in its group's queue,
// in the order of their queue keys, ahead of later arrivals. It returns the
// groups whose queues grew. Re-queued sessions bypass the queue length limit:
// they were admitted already.
func (f *FSM) requeueAgent(m *merchant, a *agent) map[string]bool {
	groups := map[string]bool{}
	for _, s := range a.assigned.sorted() {
		f.release(m, s)
		s.FirstReplyMs = 0 // the next agent's first reply is measured anew
		g := m.groups[s.GroupId]
		f.enqueue(m, g, s)
		groups[g.id] = true
		f.sessionEvent(pb.EventKind_EVENT_KIND_SESSION_REQUEUED, s)
	}
	return groups
}

package fsm

import (
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// Session commands: consult, escalate, transfer, end, first reply, pull next.
// Each decides everything that can fail before it changes anything.

const maxOverflowHops = 3

func (f *FSM) session(m *merchant, id string) (*session, *Error) {
	s := m.sessions[id]
	if s == nil {
		if f.ended.has(m.id, id) {
			return nil, conflict("session_id", "session %q has ended", id)
		}
		return nil, notFound("session_id", id)
	}
	return s, nil
}

// actedOn looks up what a command on an open session acts on: the
// merchant, the session (an ended one is a conflict, an unknown one not
// found) and, when actor is set, that the session is the actor's agent's
// (checkActor).
func (f *FSM) actedOn(merchantID, sessionID, actor string) (*merchant, *session, *Error) {
	m, err := f.merchant(merchantID)
	if err != nil {
		return nil, nil, err
	}
	s, err := f.session(m, sessionID)
	if err != nil {
		return nil, nil, err
	}
	if err := checkActor(actor, s); err != nil {
		return nil, nil, err
	}
	return m, s, nil
}

// route maps a consult's attributes to a group: the first matching rule,
// else the default group.
func (m *merchant) route(s *pb.Session) (*group, *Error) {
	for _, r := range m.settings.Rules {
		if ruleMatches(r, s) {
			if g := m.groups[r.GroupId]; g != nil {
				return g, nil
			}
		}
	}
	if g := m.groups[m.settings.DefaultGroupId]; g != nil {
		return g, nil
	}
	return nil, conflict("merchant_id", "merchant %q has no routing rule for this consult and no default group", m.id)
}

func ruleMatches(r *pb.RoutingRule, s *pb.Session) bool {
	if r.PageSource != pb.PageSource_PAGE_SOURCE_UNSPECIFIED && r.PageSource != s.PageSource {
		return false
	}
	if (r.Category != "" && r.Category != s.Category) || (r.Region != "" && r.Region != s.Region) ||
		(r.QuestionType != "" && r.QuestionType != s.QuestionType) || s.UserLevel < r.MinUserLevel {
		return false
	}
	if r.AttributeKey != "" {
		for _, a := range s.Attributes {
			if a.Key == r.AttributeKey && (r.AttributeValue == "" || a.Value == r.AttributeValue) {
				return true
			}
		}
		return false
	}
	return true
}

// placement is where a buyer would go in a group, decided before any change.
type placement struct {
	agent *agent // assign to this agent
	queue bool   // else wait in the group's queue
}

// place decides where a session would go in group g: a preferred agent that
// is online and below its limit (routing rule 1, also in pull groups), else
// the best agent of the group (never skip), else the queue if it has room;
// busy otherwise. Apart from a preferred agent, pull groups never assign on
// arrival: their agents take buyers with pull-next.
func (f *FSM) place(m *merchant, g *group, questionType, preferred string, skip *agent, bypassLength bool) (placement, bool) {
	if p := m.agents[preferred]; p != nil && p != skip && p.eligible() {
		return placement{agent: p}, true
	}
	if !g.pull() {
		if a := g.index(questionType).best(skip); a != nil {
			return placement{agent: a}, true
		}
	}
	if bypassLength {
		return placement{queue: true}, true
	}
	queueOn := m.settings.QueueEnabled || g.pull() || m.stats.Surge == pb.SurgeLevel_SURGE_LEVEL_BREAKER
	if queueOn && g.queue.Len() < m.queueLimit() {
		return placement{queue: true}, true
	}
	return placement{}, false
}

// moveGroup makes g the session's group, keeping groups' active counts.
func (m *merchant) moveGroup(s *session, g *group) {
	if s.GroupId == g.id {
		return
	}
	if old := m.groups[s.GroupId]; old != nil {
		old.active--
	}
	s.GroupId = g.id
	g.active++
}

// applyPlacement carries out a placement for a session that is not in any queue or
// with any agent.
func (f *FSM) applyPlacement(m *merchant, g *group, s *session, p placement) {
	m.moveGroup(s, g)
	if p.agent != nil {
		f.assign(m, s, p.agent)
		return
	}
	f.enqueue(m, g, s)
	f.sessionEvent(pb.EventKind_EVENT_KIND_SESSION_QUEUED, s)
}

func (f *FSM) newSession(m *merchant, buyer string) *session {
	s := &session{}
	s.SessionId = f.newSessionID()
	s.MerchantId = m.id
	s.BuyerId = buyer
	s.CreatedMs = f.cur.now
	s.LastActivityMs = f.cur.now
	return s
}

// open registers a new active session with its merchant.
func (f *FSM) open(m *merchant, s *session, state pb.SessionState) {
	s.State = state
	m.sessions[s.SessionId] = s
	m.byBuyer[s.BuyerId] = s
	if state == pb.SessionState_SESSION_STATE_BOT {
		m.stats.InBot++
	}
}

// assign gives s to agent a. The caller has checked a.eligible(): this is
// the only place load grows, so no agent ever exceeds its limit.
func (f *FSM) assign(m *merchant, s *session, a *agent) {
	if !a.eligible() {
		panic("fsm: assign to an agent that is not eligible") // a bug, never input
	}
	now := f.cur.now
	if s.State == pb.SessionState_SESSION_STATE_QUEUED {
		observe(m.stats.WaitMsBuckets, &m.stats.WaitMsSum, now-s.QueuedMs)
	}
	m.setState(s, pb.SessionState_SESSION_STATE_ASSIGNED)
	s.AgentId = a.id
	s.AssignedMs = now
	s.DeadlineMs = 0
	was := a.eligible()
	a.load++
	a.assigned.add(s)
	m.loadChanged(a, was)
	f.touch(m, s)
	f.sessionEvent(pb.EventKind_EVENT_KIND_SESSION_ASSIGNED, s)
}

// enqueue puts s in g's queue. Its queue key is kept if it had one (a
// re-queued or transferred buyer keeps their place in line).
func (f *FSM) enqueue(m *merchant, g *group, s *session) {
	now := f.cur.now
	if s.QueueKey == 0 {
		s.QueueKey = m.queueKey(now, s.UserLevel)
	}
	f.queueSeq++
	s.QueueSeq = f.queueSeq
	s.QueuedMs = now
	m.moveGroup(s, g)
	m.setState(s, pb.SessionState_SESSION_STATE_QUEUED)
	if m.stats.Surge == pb.SurgeLevel_SURGE_LEVEL_BREAKER {
		s.Compensation = true
	}
	g.queue.ReplaceOrInsert(s)
	f.untouch(s)
	f.armWait(m, s)
}

// dequeue takes a QUEUED session out of its queue and wait timer.
func (f *FSM) dequeue(m *merchant, s *session) {
	m.groups[s.GroupId].queue.Delete(s)
	if s.DeadlineMs > 0 {
		f.waits.Delete(timer{at: s.DeadlineMs, s: s})
		s.DeadlineMs = 0
	}
}

// release takes an ASSIGNED session from its agent (no drain).
func (f *FSM) release(m *merchant, s *session) *agent {
	a := m.agents[s.AgentId]
	was := a.eligible()
	a.assigned.remove(s)
	a.load--
	m.loadChanged(a, was)
	s.AgentId = ""
	return a
}

// touch records activity and (re)arms the idle timer of a BOT or ASSIGNED session.
func (f *FSM) touch(m *merchant, s *session) {
	s.LastActivityMs = f.cur.now
	f.armIdle(m, s)
}

// armIdle (re)arms the idle timer from the last activity and the merchant's
// idle timeout, for BOT and ASSIGNED sessions.
func (f *FSM) armIdle(m *merchant, s *session) {
	f.untouch(s)
	if m.settings.IdleTimeoutMs > 0 && (s.State == pb.SessionState_SESSION_STATE_BOT || s.State == pb.SessionState_SESSION_STATE_ASSIGNED) {
		s.idleAt = s.LastActivityMs + m.settings.IdleTimeoutMs
		f.idles.ReplaceOrInsert(timer{at: s.idleAt, s: s})
	}
}

// armWait (re)arms a QUEUED session's max-wait deadline from the time it
// was queued and the merchant's max wait.
func (f *FSM) armWait(m *merchant, s *session) {
	if s.DeadlineMs > 0 {
		f.waits.Delete(timer{at: s.DeadlineMs, s: s})
		s.DeadlineMs = 0
	}
	if m.settings.MaxWaitMs > 0 && s.State == pb.SessionState_SESSION_STATE_QUEUED {
		s.DeadlineMs = s.QueuedMs + m.settings.MaxWaitMs
		f.waits.ReplaceOrInsert(timer{at: s.DeadlineMs, s: s})
	}
}

func (f *FSM) untouch(s *session) {
	if s.idleAt != 0 {
		f.idles.Delete(timer{at: s.idleAt, s: s})
		s.idleAt = 0
	}
}

// unschedule removes a session from every shard-wide timer.
func (f *FSM) unschedule(s *session) {
	f.untouch(s)
	if s.DeadlineMs > 0 {
		f.waits.Delete(timer{at: s.DeadlineMs, s: s})
		s.DeadlineMs = 0
	}
}

// end ends an active session: out of its queue or off its agent, into the
// bounded ring of ended sessions. It returns the agent that gained a free
// slot, if any; the caller drains it.
func (f *FSM) end(m *merchant, s *session, reason pb.EndReason) *agent {
	var freed *agent
	switch s.State {
	case pb.SessionState_SESSION_STATE_QUEUED:
		f.dequeue(m, s)
	case pb.SessionState_SESSION_STATE_ASSIGNED:
		observe(m.stats.HandleMsBuckets, &m.stats.HandleMsSum, f.cur.now-s.AssignedMs)
		m.stats.Handled++
		agentID := s.AgentId
		freed = f.release(m, s)
		s.AgentId = agentID // an ended session remembers its agent
	}
	f.unschedule(s)
	m.setState(s, pb.SessionState_SESSION_STATE_ENDED)
	s.EndReason = reason
	s.EndedMs = f.cur.now
	m.stats.EndedByReason[reason]++
	if g := m.groups[s.GroupId]; g != nil {
		g.active--
	}
	delete(m.sessions, s.SessionId)
	if m.byBuyer[s.BuyerId] == s {
		delete(m.byBuyer, s.BuyerId)
	}
	f.sessionEvent(pb.EventKind_EVENT_KIND_SESSION_ENDED, s)
	f.keepEnded(s)
	return freed
}

// keepEnded keeps the ended session s for queries, encoded.
func (f *FSM) keepEnded(s *session) {
	f.ended.putSession(&s.Session, f.cfg.MaxEnded)
}

// setState moves a session between states, keeping the counters exact.
func (m *merchant) setState(s *session, to pb.SessionState) {
	switch s.State {
	case pb.SessionState_SESSION_STATE_BOT:
		m.stats.InBot--
	case pb.SessionState_SESSION_STATE_QUEUED:
		m.stats.Queued--
	case pb.SessionState_SESSION_STATE_ASSIGNED:
		m.stats.Assigned--
	}
	switch to {
	case pb.SessionState_SESSION_STATE_BOT:
		m.stats.InBot++
	case pb.SessionState_SESSION_STATE_QUEUED:
		m.stats.Queued++
	case pb.SessionState_SESSION_STATE_ASSIGNED:
		m.stats.Assigned++
	}
	s.State = to
}

// queueHead is the first session of g's queue that agent a may take (every
// session except one a transferred away), or nil.
func queueHead(g *group, a *agent) *session {
	var head *session
	g.queue.Ascend(func(s *session) bool {
		if s.ExcludedAgentId != "" && s.ExcludedAgentId == a.id {
			return true
		}
		head = s
		return false
	})
	return head
}

// bestHead is the best session agent a may take from its groups' queues
// (push groups only, unless pull), by queue order, ties by group id.
func bestHead(m *merchant, a *agent, pull bool) *session {
	var best *session
	var bestGroup string
	for _, ag := range a.cfg.Groups {
		g := m.groups[ag.GroupId]
		if g == nil || (g.pull() && !pull) {
			continue
		}
		head := queueHead(g, a)
		if head == nil {
			continue
		}
		if best == nil || queueLess(head, best) || (!queueLess(best, head) && g.id < bestGroup) {
			best, bestGroup = head, g.id
		}
	}
	return best
}

// drainAgent gives a push-mode agent with free slots the best waiting
// buyers of its push groups, best queue head first (ties by group id).
func (f *FSM) drainAgent(m *merchant, a *agent) {
	for a.eligible() {
		best := bestHead(m, a, false)
		if best == nil {
			return
		}
		f.dequeue(m, best)
		f.assign(m, best, a)
	}
}

// drainGroup assigns a push group's queued buyers, in queue order, while it
// has eligible agents (a buyer is never given back to the agent who
// transferred them away).
func (f *FSM) drainGroup(m *merchant, g *group) {
	if g.pull() {
		return
	}
	for {
		var next *session
		var to *agent
		g.queue.Ascend(func(s *session) bool {
			excluded := m.agents[s.ExcludedAgentId]
			if a := g.index(s.QuestionType).best(excluded); a != nil {
				next, to = s, a
				return false
			}
			// Nobody can take s; only if s excluded someone can a later buyer be taken.
			return excluded != nil
		})
		if next == nil {
			return
		}
		f.dequeue(m, next)
		f.assign(m, next, to)
	}
}

func (f *FSM) sessionResult(m *merchant, s *session, outcome pb.Outcome) *pb.Result {
	r := &pb.Result{Outcome: outcome, SessionId: s.SessionId, State: s.State, AgentId: s.AgentId,
		GroupId: s.GroupId, Surge: m.stats.Surge, Compensation: s.Compensation, BuyerId: s.BuyerId,
		EndReason: s.EndReason}
	if s.State == pb.SessionState_SESSION_STATE_QUEUED {
		g := m.groups[s.GroupId]
		pos := g.position(s)
		r.Position = uint32(pos)
		r.EstimatedWaitMs = m.estimatedWait(g, pos)
	}
	return r
}

// estimatedWait: the buyers ahead, times the mean handle time, spread over
// the group's online capacity.
func (m *merchant) estimatedWait(g *group, position int) int64 {
	mean := int64(60_000)
	if m.stats.Handled > 0 {
		mean = int64(m.stats.HandleMsSum / m.stats.Handled)
	}
	capacity := int64(g.capacity)
	if capacity == 0 {
		capacity = 1
	}
	return int64(position) * mean / capacity
}

func (f *FSM) applyConsult(c *pb.Consult) (*pb.Result, *Error) {
	m, err := f.merchant(c.MerchantId)
	if err != nil {
		return nil, err
	}
	if s := m.byBuyer[c.BuyerId]; s != nil {
		return f.sessionResult(m, s, pb.Outcome_OUTCOME_EXISTING), nil
	}
	attrs := pb.Session{
		PageSource: c.PageSource, Category: c.Category, Region: c.Region, UserLevel: c.UserLevel,
		QuestionType: c.QuestionType, Attributes: c.Attributes, PreferredAgentId: c.PreferredAgentId,
	}
	var g *group
	if !m.settings.BotFirst {
		if g, err = m.route(&attrs); err != nil {
			return nil, err
		}
	}
	f.countConsult(m)
	if m.settings.BotFirst {
		s := f.newConsultSession(m, c)
		f.open(m, s, pb.SessionState_SESSION_STATE_BOT)
		f.touch(m, s)
		f.sessionEvent(pb.EventKind_EVENT_KIND_SESSION_BOT, s)
		return f.sessionResult(m, s, pb.Outcome_OUTCOME_BOT), nil
	}
	p, ok := f.place(m, g, c.QuestionType, c.PreferredAgentId, nil, false)
	if !ok {
		m.stats.Busy++
		return &pb.Result{Outcome: pb.Outcome_OUTCOME_BUSY, Surge: m.stats.Surge}, nil
	}
	s := f.newConsultSession(m, c)
	s.QueueKey = m.queueKey(f.cur.now, s.UserLevel)
	f.open(m, s, pb.SessionState_SESSION_STATE_UNSPECIFIED)
	f.applyPlacement(m, g, s, p)
	return f.sessionResult(m, s, outcomeOf(s)), nil
}

func (f *FSM) newConsultSession(m *merchant, c *pb.Consult) *session {
	s := f.newSession(m, c.BuyerId)
	s.PageSource, s.Category, s.Region = c.PageSource, c.Category, c.Region
	s.UserLevel, s.QuestionType = c.UserLevel, c.QuestionType
	s.Attributes, s.PreferredAgentId = c.Attributes, c.PreferredAgentId
	return s
}

func outcomeOf(s *session) pb.Outcome {
	switch s.State {
	case pb.SessionState_SESSION_STATE_BOT:
		return pb.Outcome_OUTCOME_BOT
	case pb.SessionState_SESSION_STATE_QUEUED:
		return pb.Outcome_OUTCOME_QUEUED
	case pb.SessionState_SESSION_STATE_ASSIGNED:
		return pb.Outcome_OUTCOME_ASSIGNED
	}
	return pb.Outcome_OUTCOME_ENDED
}

func (f *FSM) applyEscalate(c *pb.Escalate) (*pb.Result, *Error) {
	m, s, err := f.actedOn(c.MerchantId, c.SessionId, "")
	if err != nil {
		return nil, err
	}
	if s.State != pb.SessionState_SESSION_STATE_BOT {
		return nil, conflict("session_id", "session %q is %s, not with the bot", s.SessionId, s.State)
	}
	g, err := m.route(&s.Session)
	if err != nil {
		return nil, err
	}
	p, ok := f.place(m, g, s.QuestionType, s.PreferredAgentId, nil, false)
	if !ok {
		m.stats.Busy++
		return f.sessionResult(m, s, pb.Outcome_OUTCOME_BUSY), nil
	}
	m.stats.Escalated++
	f.untouch(s)
	s.QueueKey = m.queueKey(f.cur.now, s.UserLevel)
	f.applyPlacement(m, g, s, p)
	return f.sessionResult(m, s, outcomeOf(s)), nil
}

func (f *FSM) applyTransfer(c *pb.Transfer) (*pb.Result, *Error) {
	m, s, err := f.actedOn(c.MerchantId, c.SessionId, c.ActorAgentId)
	if err != nil {
		return nil, err
	}
	if s.State != pb.SessionState_SESSION_STATE_ASSIGNED && s.State != pb.SessionState_SESSION_STATE_QUEUED {
		return nil, conflict("session_id", "session %q is %s; only ASSIGNED or QUEUED sessions transfer", s.SessionId, s.State)
	}
	current := m.agents[s.AgentId]
	var g *group
	var p placement
	if c.ToAgentId != "" {
		a := m.agents[c.ToAgentId]
		switch {
		case a == nil:
			return nil, notFound("to_agent_id", c.ToAgentId)
		case a == current:
			return nil, conflict("to_agent_id", "session %q is already with agent %q", s.SessionId, a.id)
		case !a.eligible():
			return nil, limitErr("to_agent_id", "agent %q is %s with %d of %d buyers", a.id, a.status, a.load, a.limit)
		}
		g, p = m.groups[s.GroupId], placement{agent: a}
	} else {
		if g = m.groups[c.ToGroupId]; g == nil {
			return nil, notFound("to_group_id", c.ToGroupId)
		}
		var ok bool
		if p, ok = f.place(m, g, s.QuestionType, "", current, false); !ok {
			m.stats.Busy++
			return f.sessionResult(m, s, pb.Outcome_OUTCOME_BUSY), nil
		}
	}
	freed := f.end(m, s, pb.EndReason_END_REASON_TRANSFERRED)
	n := f.newSession(m, s.BuyerId)
	n.PageSource, n.Category, n.Region = s.PageSource, s.Category, s.Region
	n.UserLevel, n.QuestionType, n.Attributes = s.UserLevel, s.QuestionType, s.Attributes
	n.QueueKey, n.Compensation, n.TransferredFrom = s.QueueKey, s.Compensation, s.SessionId
	if c.ToGroupId != "" && current != nil {
		n.ExcludedAgentId = current.id // transferred away: not pushed back to them
	}
	f.open(m, n, pb.SessionState_SESSION_STATE_UNSPECIFIED)
	f.applyPlacement(m, g, n, p)
	if freed != nil {
		f.drainAgent(m, freed)
	}
	return f.sessionResult(m, n, outcomeOf(n)), nil
}

func (f *FSM) applyEnd(c *pb.End) (*pb.Result, *Error) {
	m, s, err := f.actedOn(c.MerchantId, c.SessionId, c.ActorAgentId)
	if err != nil {
		return nil, err
	}
	if c.Reason == pb.EndReason_END_REASON_BOT_RESOLVED {
		if s.State != pb.SessionState_SESSION_STATE_BOT {
			return nil, conflict("reason", "BOT_RESOLVED ends only sessions with the bot; session %q is %s", s.SessionId, s.State)
		}
	}
	if freed := f.end(m, s, c.Reason); freed != nil {
		f.drainAgent(m, freed)
	}
	return f.sessionResult(m, s, pb.Outcome_OUTCOME_ENDED), nil
}

func (f *FSM) applyFirstReply(c *pb.FirstReply) (*pb.Result, *Error) {
	m, s, err := f.actedOn(c.MerchantId, c.SessionId, c.ActorAgentId)
	if err != nil {
		return nil, err
	}
	if s.State != pb.SessionState_SESSION_STATE_ASSIGNED {
		return nil, conflict("session_id", "session %q is %s; only an agent's session gets a first reply", s.SessionId, s.State)
	}
	if s.FirstReplyMs == 0 {
		s.FirstReplyMs = f.cur.now
		observe(m.stats.ResponseMsBuckets, &m.stats.ResponseMsSum, s.FirstReplyMs-s.AssignedMs)
		m.stats.Responded++
		f.sessionEvent(pb.EventKind_EVENT_KIND_SESSION_FIRST_REPLY, s)
	}
	f.touch(m, s)
	return f.sessionResult(m, s, pb.Outcome_OUTCOME_ASSIGNED), nil
}

func (f *FSM) applyPullNext(c *pb.PullNext) (*pb.Result, *Error) {
	m, err := f.merchant(c.MerchantId)
	if err != nil {
		return nil, err
	}
	a := m.agents[c.AgentId]
	if a == nil {
		return nil, notFound("agent_id", c.AgentId)
	}
	if !a.eligible() {
		return nil, limitErr("agent_id", "agent %q is %s with %d of %d buyers", a.id, a.status, a.load, a.limit)
	}
	best := bestHead(m, a, true)
	if best == nil {
		return &pb.Result{Outcome: pb.Outcome_OUTCOME_NONE, Surge: m.stats.Surge}, nil
	}
	f.dequeue(m, best)
	f.assign(m, best, a)
	return f.sessionResult(m, best, pb.Outcome_OUTCOME_ASSIGNED), nil
}

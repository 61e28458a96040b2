package fsm

import (
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// applyTick advances log time: queued buyers past their max wait overflow
// or are abandoned, idle sessions end, surge levels decay. Work is
// proportional to what fires, never to the number of sessions.
func (f *FSM) applyTick() (*pb.Result, *Error) {
	now := f.cur.now
	for {
		t, ok := f.waits.Min()
		if !ok || t.at > now {
			break
		}
		f.expireWait(f.merchants[t.s.MerchantId], t.s)
	}
	for {
		t, ok := f.idles.Min()
		if !ok || t.at > now {
			break
		}
		m := f.merchants[t.s.MerchantId]
		if freed := f.end(m, t.s, pb.EndReason_END_REASON_IDLE_TIMEOUT); freed != nil {
			f.drainAgent(m, freed)
		}
	}
	for _, id := range sortedKeys(f.elevated) {
		f.updateSurge(f.merchants[id])
	}
	return okResult(), nil
}

// TickDue reports whether a Tick stamped nowMs (wall-clock milliseconds,
// as the leader stamps commands) would change anything: a queued buyer's
// max wait or a session's idle deadline has come, a merchant's surge level
// is above normal (it decays with time), or a merchant had consults in the
// last minute of log time (its inflow window ages with time). Otherwise a
// Tick only moves log time forward, and leaders skip it: an idle shard
// then writes nothing. It never changes the state machine.
func (f *FSM) TickDue(nowMs int64) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if t, ok := f.waits.Min(); ok && t.at <= nowMs {
		return true
	}
	if t, ok := f.idles.Min(); ok && t.at <= nowMs {
		return true
	}
	if len(f.elevated) > 0 {
		return true
	}
	b := f.now / surgeBucketMs
	for _, m := range f.merchants { // any merchant will do: map order does not matter
		for _, at := range m.stats.SurgeBucket {
			if at > b-surgeBuckets {
				return true
			}
		}
	}
	return false
}

// expireWait handles a queued buyer whose max wait has passed: moved to the
// group's overflow group (at most maxOverflowHops times, only if it can
// take them) or ended as abandoned.
func (f *FSM) expireWait(m *merchant, s *session) {
	g := m.groups[s.GroupId]
	if og := m.groups[g.cfg.OverflowGroupId]; og != nil && s.OverflowHops < maxOverflowHops {
		if p, ok := f.place(m, og, s.QuestionType, "", nil, false); ok {
			f.dequeue(m, s)
			s.OverflowHops++
			f.sessionEvent(pb.EventKind_EVENT_KIND_SESSION_OVERFLOWED, s)
			if p.agent != nil {
				m.moveGroup(s, og)
				f.assign(m, s, p.agent)
			} else {
				f.enqueue(m, og, s)
				f.sessionEvent(pb.EventKind_EVENT_KIND_SESSION_QUEUED, s)
			}
			return
		}
	}
	f.end(m, s, pb.EndReason_END_REASON_ABANDONED)
}

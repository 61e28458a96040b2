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

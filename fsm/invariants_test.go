package fsm

import (
	"fmt"
	"slices"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// checkInvariants inspects the state machine's internal state and returns an
// error describing the first violation it finds, or nil. It checks:
//
//	(a) every agent's load equals its number of ASSIGNED sessions and
//	    len(a.sessions); every ASSIGNED session's agent exists and lists it;
//	(b) the stateless half of the limit invariant: an agent above its limit
//	    is in no index (the stateful half is limitTracker);
//	(c) every session is in exactly one state: active sessions are in
//	    m.sessions and m.byBuyer (one active session per buyer), ended ones
//	    are not, and no session is in two queues or with two agents;
//	(d) each group's queue holds exactly the QUEUED sessions of that group,
//	    in (QueueKey, QueueSeq) order; the InBot/Queued/Assigned counters,
//	    g.active and g.capacity equal what they count;
//	(e) each selection index holds exactly the online member agents below
//	    their limit, with up-to-date scores;
//	(f) the push invariant: in a push group a non-empty queue means no
//	    member agent is eligible;
//	(g) f.waits holds exactly the QUEUED sessions with a deadline and
//	    f.idles exactly the sessions with idleAt != 0;
//
// plus the bookkeeping around them: the ended ring, the dedup table, the
// event log and the surge set.
func checkInvariants(f *FSM) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, mid := range sortedKeys(f.merchants) {
		m := f.merchants[mid]
		if m.id != mid {
			return fmt.Errorf("merchant %q is filed under %q", m.id, mid)
		}
		if err := checkMerchant(f, m); err != nil {
			return fmt.Errorf("merchant %q: %w", mid, err)
		}
	}
	return checkShard(f)
}

// checkMerchant checks (a) to (f) for one merchant.
func checkMerchant(f *FSM, m *merchant) error {
	if err := checkSessions(f, m); err != nil {
		return err
	}
	if err := checkAgents(m); err != nil {
		return err
	}
	if err := checkGroups(m); err != nil {
		return err
	}
	if id := m.settings.DefaultGroupId; id != "" && m.groups[id] == nil {
		return fmt.Errorf("default group %q does not exist", id)
	}
	for i, r := range m.settings.Rules {
		if m.groups[r.GroupId] == nil {
			return fmt.Errorf("routing rule %d names unknown group %q", i, r.GroupId)
		}
	}
	return nil
}

// checkSessions checks (c), the session side of (a), (d)'s counters and
// each session's timers.
func checkSessions(f *FSM, m *merchant) error {
	var inBot, queued, assigned uint64
	active := map[string]int{} // group id -> active sessions in it
	for _, id := range sortedKeys(m.sessions) {
		s := m.sessions[id]
		if s.SessionId != id {
			return fmt.Errorf("session %q is filed under %q", s.SessionId, id)
		}
		if s.MerchantId != m.id {
			return fmt.Errorf("session %q belongs to merchant %q", id, s.MerchantId)
		}
		if m.byBuyer[s.BuyerId] != s {
			return fmt.Errorf("active session %q (%s) is not buyer %q's active session", id, s.State, s.BuyerId)
		}
		if f.ended.has(m.id, id) {
			return fmt.Errorf("session %q is both active and ended", id)
		}
		if s.GroupId != "" {
			if m.groups[s.GroupId] == nil {
				return fmt.Errorf("session %q (%s) is in unknown group %q", id, s.State, s.GroupId)
			}
			active[s.GroupId]++
		}
		switch s.State {
		case pb.SessionState_SESSION_STATE_BOT:
			inBot++
			if s.AgentId != "" || s.DeadlineMs != 0 {
				return fmt.Errorf("BOT session %q has agent %q, deadline %d", id, s.AgentId, s.DeadlineMs)
			}
		case pb.SessionState_SESSION_STATE_QUEUED:
			queued++
			if s.AgentId != "" {
				return fmt.Errorf("QUEUED session %q has agent %q", id, s.AgentId)
			}
			g := m.groups[s.GroupId]
			if g == nil {
				return fmt.Errorf("QUEUED session %q has no group", id)
			}
			if q, ok := g.queue.Get(s); !ok || q != s {
				return fmt.Errorf("QUEUED session %q is not in group %q's queue", id, g.id)
			}
			if s.DeadlineMs > 0 {
				if t, ok := f.waits.Get(timer{at: s.DeadlineMs, s: s}); !ok || t.s != s {
					return fmt.Errorf("QUEUED session %q with deadline %d has no wait timer", id, s.DeadlineMs)
				}
			}
		case pb.SessionState_SESSION_STATE_ASSIGNED:
			assigned++
			a := m.agents[s.AgentId]
			if a == nil {
				return fmt.Errorf("ASSIGNED session %q has unknown agent %q", id, s.AgentId)
			}
			if !listed(a, s) {
				return fmt.Errorf("ASSIGNED session %q is not listed by its agent %q", id, a.id)
			}
			if m.groups[s.GroupId] == nil {
				return fmt.Errorf("ASSIGNED session %q has no group", id)
			}
			if s.DeadlineMs != 0 {
				return fmt.Errorf("ASSIGNED session %q keeps a queue deadline %d", id, s.DeadlineMs)
			}
		default:
			return fmt.Errorf("active session %q is in state %s", id, s.State)
		}
		if s.State != pb.SessionState_SESSION_STATE_ASSIGNED && (s.prev != nil || s.next != nil) {
			return fmt.Errorf("%s session %q is still linked into an agent's list", s.State, id)
		}
		if s.OverflowHops > maxOverflowHops {
			return fmt.Errorf("session %q overflowed %d times, bound %d", id, s.OverflowHops, maxOverflowHops)
		}
		idleState := s.State == pb.SessionState_SESSION_STATE_BOT || s.State == pb.SessionState_SESSION_STATE_ASSIGNED
		wantIdle := idleState && m.settings.IdleTimeoutMs > 0
		switch {
		case wantIdle && s.idleAt != s.LastActivityMs+m.settings.IdleTimeoutMs:
			return fmt.Errorf("%s session %q: idle timer at %d, want last activity %d + timeout %d",
				s.State, id, s.idleAt, s.LastActivityMs, m.settings.IdleTimeoutMs)
		case !wantIdle && s.idleAt != 0:
			return fmt.Errorf("%s session %q has an idle timer at %d (timeout %d)", s.State, id, s.idleAt, m.settings.IdleTimeoutMs)
		}
		if s.idleAt != 0 {
			if t, ok := f.idles.Get(timer{at: s.idleAt, s: s}); !ok || t.s != s {
				return fmt.Errorf("session %q with idleAt %d has no idle timer", id, s.idleAt)
			}
		}
	}
	if len(m.byBuyer) != len(m.sessions) {
		return fmt.Errorf("%d buyers with active sessions but %d active sessions", len(m.byBuyer), len(m.sessions))
	}
	for _, b := range sortedKeys(m.byBuyer) {
		if s := m.byBuyer[b]; s.BuyerId != b || m.sessions[s.SessionId] != s {
			return fmt.Errorf("buyer %q maps to session %q of buyer %q, which is not active", b, s.SessionId, s.BuyerId)
		}
	}
	for _, id := range endedIDs(f, m.id) {
		s := f.ended.get(m.id, id)
		switch {
		case s.SessionId != id:
			return fmt.Errorf("ended session %q is filed under %q", s.SessionId, id)
		case s.MerchantId != m.id:
			return fmt.Errorf("ended session %q of merchant %q is filed under merchant %q", id, s.MerchantId, m.id)
		case s.State != pb.SessionState_SESSION_STATE_ENDED:
			return fmt.Errorf("ended session %q is in state %s", id, s.State)
		case s.EndReason == pb.EndReason_END_REASON_UNSPECIFIED:
			return fmt.Errorf("ended session %q has no end reason", id)
		case s.DeadlineMs != 0:
			return fmt.Errorf("ended session %q keeps a wait deadline %d", id, s.DeadlineMs)
		case m.sessions[id] != nil:
			return fmt.Errorf("ended session %q is still active", id)
		}
	}
	st := m.stats
	if st.InBot != inBot || st.Queued != queued || st.Assigned != assigned {
		return fmt.Errorf("counters in_bot/queued/assigned = %d/%d/%d, actual %d/%d/%d",
			st.InBot, st.Queued, st.Assigned, inBot, queued, assigned)
	}
	for _, gid := range sortedKeys(m.groups) {
		if g := m.groups[gid]; g.active != active[gid] {
			return fmt.Errorf("group %q: active = %d, actual active sessions %d", gid, g.active, active[gid])
		}
	}
	return nil
}

// checkAgents checks (a) and (b) from the agents' side.
func checkAgents(m *merchant) error {
	for _, id := range sortedKeys(m.agents) {
		a := m.agents[id]
		if a.id != id || a.cfg == nil || a.cfg.AgentId != id {
			return fmt.Errorf("agent %q is filed under %q", a.id, id)
		}
		want := a.cfg.Limit
		if want == 0 {
			want = m.defaultLimit()
		}
		if a.limit != want {
			return fmt.Errorf("agent %q: limit %d, configured %d (merchant default %d)", id, a.limit, a.cfg.Limit, m.defaultLimit())
		}
		list, err := agentSessions(a)
		if err != nil {
			return err
		}
		if int(a.load) != len(list) || a.assigned.n != len(list) {
			return fmt.Errorf("agent %q: load %d, list count %d, but %d sessions listed", id, a.load, a.assigned.n, len(list))
		}
		var n uint32
		for _, sid := range sortedKeys(m.sessions) {
			if s := m.sessions[sid]; s.State == pb.SessionState_SESSION_STATE_ASSIGNED && s.AgentId == id {
				n++
			}
		}
		if n != a.load {
			return fmt.Errorf("agent %q: load %d but %d ASSIGNED sessions name it", id, a.load, n)
		}
		for _, s := range list {
			if m.sessions[s.SessionId] != s || s.State != pb.SessionState_SESSION_STATE_ASSIGNED || s.AgentId != id {
				return fmt.Errorf("agent %q lists session %q (%s, agent %q) that is not its ASSIGNED session", id, s.SessionId, s.State, s.AgentId)
			}
		}
		if a.counted != a.capacity() {
			return fmt.Errorf("agent %q: capacity counted %d, want %d", id, a.counted, a.capacity())
		}
		if len(a.groups) != len(a.cfg.Groups) {
			return fmt.Errorf("agent %q: %d groups, configured %d", id, len(a.groups), len(a.cfg.Groups))
		}
		indexes := 0
		for _, gid := range sortedKeys(a.groups) {
			g := m.groups[gid]
			if g == nil {
				return fmt.Errorf("agent %q is in unknown group %q", id, gid)
			}
			if g.members[id] != a {
				return fmt.Errorf("agent %q is in group %q but not its member", id, gid)
			}
			indexes += len(g.indexes)
		}
		if !a.eligible() {
			indexes = 0
		}
		if len(a.indexed) != indexes {
			return fmt.Errorf("agent %q (%s, %d/%d) is in %d indexes, want %d", id, a.status, a.load, a.limit, len(a.indexed), indexes)
		}
		for _, e := range a.indexed {
			if k, ok := e.idx.tree.Get(e.key); !ok || k.a != a {
				return fmt.Errorf("agent %q: recorded index entry is missing", id)
			}
		}
	}
	return nil
}

// agentSessions walks an agent's list of ASSIGNED sessions, checking its links.
func agentSessions(a *agent) ([]*session, error) {
	var out []*session
	seen := map[*session]bool{}
	var prev *session
	for s := a.assigned.head; s != nil; s = s.next {
		if seen[s] {
			return nil, fmt.Errorf("agent %q: session list loops at %q", a.id, s.SessionId)
		}
		if s.prev != prev {
			return nil, fmt.Errorf("agent %q: session %q has a broken back link", a.id, s.SessionId)
		}
		seen[s] = true
		out = append(out, s)
		prev = s
	}
	return out, nil
}

// listed reports whether s is in a's list of ASSIGNED sessions.
func listed(a *agent, s *session) bool {
	for x := a.assigned.head; x != nil; x = x.next {
		if x == s {
			return true
		}
	}
	return false
}

// checkGroups checks (d), (e) and (f) from the groups' side.
func checkGroups(m *merchant) error {
	for _, gid := range sortedKeys(m.groups) {
		g := m.groups[gid]
		if g.id != gid || g.cfg == nil || g.cfg.GroupId != gid {
			return fmt.Errorf("group %q is filed under %q", g.id, gid)
		}
		if o := g.cfg.OverflowGroupId; o != "" && m.groups[o] == nil {
			return fmt.Errorf("group %q overflows into unknown group %q", gid, o)
		}
		var capacity uint64
		eligible := map[string]bool{}
		qts := map[string]bool{"": true}
		for _, aid := range sortedKeys(g.members) {
			a := g.members[aid]
			if m.agents[aid] != a || a.groups[gid] == nil {
				return fmt.Errorf("group %q lists member %q that is not in it", gid, aid)
			}
			capacity += uint64(a.capacity())
			if a.eligible() {
				eligible[aid] = true
			}
			for _, q := range a.groups[gid].QuestionSkills {
				qts[q.QuestionType] = true
			}
		}
		if g.capacity != capacity {
			return fmt.Errorf("group %q: capacity %d, sum of online members' limits %d", gid, g.capacity, capacity)
		}
		// (d) the queue: exactly the group's QUEUED sessions, in order.
		var prev *session
		var bad error
		n := 0
		g.queue.Ascend(func(s *session) bool {
			n++
			switch {
			case m.sessions[s.SessionId] != s:
				bad = fmt.Errorf("group %q queues session %q that is not active", gid, s.SessionId)
			case s.State != pb.SessionState_SESSION_STATE_QUEUED || s.GroupId != gid:
				bad = fmt.Errorf("group %q queues session %q that is %s in group %q", gid, s.SessionId, s.State, s.GroupId)
			case prev != nil && !queueLess(prev, s):
				bad = fmt.Errorf("group %q: queue out of order at %q (key %d seq %d) after %q (key %d seq %d)",
					gid, s.SessionId, s.QueueKey, s.QueueSeq, prev.SessionId, prev.QueueKey, prev.QueueSeq)
			}
			prev = s
			return bad == nil
		})
		if bad != nil {
			return bad
		}
		if n != g.queue.Len() {
			return fmt.Errorf("group %q: queue iterates %d sessions, Len %d", gid, n, g.queue.Len())
		}
		want := 0
		for _, sid := range sortedKeys(m.sessions) {
			if s := m.sessions[sid]; s.State == pb.SessionState_SESSION_STATE_QUEUED && s.GroupId == gid {
				want++
			}
		}
		if n != want {
			return fmt.Errorf("group %q: %d sessions in the queue, %d QUEUED in the group", gid, n, want)
		}
		// (e) the selection indexes.
		if len(g.indexes) != len(qts) {
			return fmt.Errorf("group %q: %d indexes, want one per question type %v", gid, len(g.indexes), sortedKeys(qts))
		}
		for _, qt := range sortedKeys(qts) {
			idx := g.indexes[qt]
			if idx == nil {
				return fmt.Errorf("group %q: no index for question type %q", gid, qt)
			}
			seen := map[string]bool{}
			idx.tree.Ascend(func(k agentKey) bool {
				switch {
				case k.a == nil || k.id != k.a.id:
					bad = fmt.Errorf("group %q index %q: key %q names agent %v", gid, qt, k.id, k.a)
				case k.pre != idPrefix(k.id):
					bad = fmt.Errorf("group %q index %q: key %q has prefix %x", gid, qt, k.id, k.pre)
				case !eligible[k.id] || g.members[k.id] != k.a:
					bad = fmt.Errorf("group %q index %q holds agent %q (%s, %d/%d) that is not an eligible member",
						gid, qt, k.id, k.a.status, k.a.load, k.a.limit)
				case seen[k.id]:
					bad = fmt.Errorf("group %q index %q holds agent %q twice", gid, qt, k.id)
				case k.score != score(&m.w, k.a, gid, qt):
					bad = fmt.Errorf("group %q index %q: agent %q has stale score %d, want %d", gid, qt, k.id, k.score, score(&m.w, k.a, gid, qt))
				}
				seen[k.id] = true
				return bad == nil
			})
			if bad != nil {
				return bad
			}
			if len(seen) != len(eligible) {
				return fmt.Errorf("group %q index %q holds %d agents, %d members are eligible", gid, qt, len(seen), len(eligible))
			}
		}
		// (f) the push invariant: no queued buyer could be taken by an
		// eligible member (other than one who transferred them away).
		if !g.pull() && len(eligible) > 0 {
			g.queue.Ascend(func(s *session) bool {
				for id := range eligible {
					if id != s.ExcludedAgentId {
						bad = fmt.Errorf("push group %q has %s queued while member agent %q is eligible",
							gid, s.SessionId, id)
						return false
					}
				}
				return true
			})
			if bad != nil {
				return bad
			}
		}
	}
	return nil
}

// checkShard checks (g) and the shard-wide bookkeeping.
func checkShard(f *FSM) error {
	var bad error
	waits := 0
	f.waits.Ascend(func(t timer) bool {
		waits++
		m := f.merchants[t.s.MerchantId]
		switch {
		case m == nil || m.sessions[t.s.SessionId] != t.s:
			bad = fmt.Errorf("wait timer for session %q that is not active", t.s.SessionId)
		case t.s.State != pb.SessionState_SESSION_STATE_QUEUED:
			bad = fmt.Errorf("wait timer for session %q in state %s", t.s.SessionId, t.s.State)
		case t.at <= 0 || t.at != t.s.DeadlineMs:
			bad = fmt.Errorf("wait timer at %d for session %q with deadline %d", t.at, t.s.SessionId, t.s.DeadlineMs)
		}
		return bad == nil
	})
	if bad != nil {
		return bad
	}
	idles := 0
	f.idles.Ascend(func(t timer) bool {
		idles++
		m := f.merchants[t.s.MerchantId]
		switch {
		case m == nil || m.sessions[t.s.SessionId] != t.s:
			bad = fmt.Errorf("idle timer for session %q that is not active", t.s.SessionId)
		case t.at == 0 || t.at != t.s.idleAt:
			bad = fmt.Errorf("idle timer at %d for session %q with idleAt %d", t.at, t.s.SessionId, t.s.idleAt)
		}
		return bad == nil
	})
	if bad != nil {
		return bad
	}
	wantWaits, wantIdles := 0, 0
	for _, m := range f.merchants {
		for _, s := range m.sessions {
			if s.State == pb.SessionState_SESSION_STATE_QUEUED && s.DeadlineMs > 0 {
				wantWaits++
			}
			if s.idleAt != 0 {
				wantIdles++
			}
			if s.QueueSeq > f.queueSeq {
				return fmt.Errorf("session %q has queue seq %d beyond the shard's %d", s.SessionId, s.QueueSeq, f.queueSeq)
			}
		}
	}
	if waits != wantWaits {
		return fmt.Errorf("%d wait timers, %d QUEUED sessions with a deadline", waits, wantWaits)
	}
	if idles != wantIdles {
		return fmt.Errorf("%d idle timers, %d sessions with idleAt set", idles, wantIdles)
	}
	for _, mid := range sortedKeys(f.merchants) {
		m := f.merchants[mid]
		if elevated := m.stats.Surge != pb.SurgeLevel_SURGE_LEVEL_NORMAL; f.elevated[mid] != elevated {
			return fmt.Errorf("merchant %q: surge %s but elevated=%v", mid, m.stats.Surge, f.elevated[mid])
		}
	}
	for _, mid := range sortedKeys(f.elevated) {
		if f.merchants[mid] == nil {
			return fmt.Errorf("unknown merchant %q is in the surge set", mid)
		}
	}
	// The store of ended sessions and its index.
	if err := checkEndedStore(f); err != nil {
		return err
	}
	// The dedup table: two generations of disjoint keys, bounded.
	if n := f.dedup.len(); n > f.cfg.MaxDedup {
		return fmt.Errorf("dedup: %d entries, bound %d", n, f.cfg.MaxDedup)
	}
	for gi, gen := range []*dedupGen{&f.dedup.old, &f.dedup.cur} {
		var newest int64
		seen := make(map[dedupKey]bool, gen.slots.len())
		for i := range gen.slots.len() {
			s := gen.slots.at(i)
			k := gen.key(s)
			if seen[k] {
				return fmt.Errorf("dedup: key %v is twice in generation %d", k, gi)
			}
			seen[k] = true
			h := f.dedup.hash(k)
			if !gen.filter.mayHave(h) {
				return fmt.Errorf("dedup: key %v of generation %d is not in its filter", k, gi)
			}
			if gen.find(h, k) != s {
				return fmt.Errorf("dedup: key %v of generation %d is not found by its hash", k, gi)
			}
			if gi == 0 && f.dedup.cur.find(h, k) != nil {
				return fmt.Errorf("dedup: key %v is in both generations", k)
			}
			if s.timeMs > f.now {
				return fmt.Errorf("dedup: entry %v at %d is after log time %d", k, s.timeMs, f.now)
			}
			if err := (&pb.Result{}).UnmarshalVT(gen.result(s)); err != nil {
				return fmt.Errorf("dedup: entry %v: result: %w", k, err)
			}
			newest = max(newest, s.timeMs)
		}
		chained := 0
		for _, v := range gen.index.all() {
			for i := int32(v) - 1; i >= 0; i = gen.slots.at(int(i)).next {
				chained++
			}
		}
		if chained != gen.slots.len() {
			return fmt.Errorf("dedup: generation %d's index reaches %d slots, it has %d", gi, chained, gen.slots.len())
		}
		if gen.newest != newest {
			return fmt.Errorf("dedup: generation %d says newest %d, its entries' newest is %d", gi, gen.newest, newest)
		}
	}
	// The event log: consecutive seqs ending at eventSeq.
	n := f.events.len()
	if n > f.cfg.MaxEvents {
		return fmt.Errorf("%d events kept, bound %d", n, f.cfg.MaxEvents)
	}
	for i := 0; i < n; i++ {
		e := f.events.at(i)
		if want := f.eventSeq - uint64(n-1-i); e.seq != want {
			return fmt.Errorf("event %d of %d has seq %d, want %d", i, n, e.seq, want)
		}
		if e.index > f.lastIndex || e.timeMs > f.now {
			return fmt.Errorf("event seq %d at index %d time %d is after last index %d / log time %d", e.seq, e.index, e.timeMs, f.lastIndex, f.now)
		}
	}
	return nil
}

// limitTracker is the stateful half of invariant (b). Lowering a limit below
// an agent's load keeps its sessions, so load > limit is legal; what is
// never legal is gaining load beyond the limit. Between two checks it fails
// if an agent gained load and ends above its current limit, or was at or
// above its limit, had it not raised, and gained load anyway.
//
// The comparison is exact when the limit changes at most once between two
// checks (one command, or an entry without agent or merchant upserts).
type limitTracker struct {
	prev map[[2]string]loadLimit
}

type loadLimit struct{ load, limit uint32 }

func (lt *limitTracker) check(f *FSM) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	cur := map[[2]string]loadLimit{}
	for _, mid := range sortedKeys(f.merchants) {
		m := f.merchants[mid]
		for _, aid := range sortedKeys(m.agents) {
			a := m.agents[aid]
			k := [2]string{mid, aid}
			now := loadLimit{load: a.load, limit: a.limit}
			cur[k] = now
			p, known := lt.prev[k]
			if !known {
				p = loadLimit{load: 0, limit: now.limit} // a new agent starts empty
			}
			if now.load > p.load && now.load > now.limit {
				return fmt.Errorf("agent %s/%s gained load %d -> %d beyond its limit %d (was %d)", mid, aid, p.load, now.load, now.limit, p.limit)
			}
			if now.load > p.load && p.load >= p.limit && now.limit <= p.limit {
				return fmt.Errorf("agent %s/%s at or above its limit (%d/%d) gained load to %d (limit now %d)", mid, aid, p.load, p.limit, now.load, now.limit)
			}
		}
	}
	lt.prev = cur
	return nil
}

// endedIDs lists the kept ended sessions of merchant, sorted.
func endedIDs(f *FSM, merchant string) []string {
	var ids []string
	f.ended.each(func(m, id, _ []byte) bool {
		if string(m) == merchant {
			ids = append(ids, string(id))
		}
		return true
	})
	slices.Sort(ids)
	return ids
}

// checkEndedStore checks the ended sessions: at most MaxEnded, each of a
// known merchant and kept once, each found through the index (its hash
// reaches it), the index holding only the hashes of kept entries, and the
// arena blocks those the entries use.
func checkEndedStore(f *FSM) error {
	e := &f.ended
	if e.len() > f.cfg.MaxEnded {
		return fmt.Errorf("%d ended sessions kept, bound %d", e.len(), f.cfg.MaxEnded)
	}
	type key struct{ merchant, session string }
	seen := map[key]bool{}
	hashes := map[uint64]bool{}
	var err error
	i := 0
	e.each(func(m, id, _ []byte) bool {
		k := key{string(m), string(id)}
		s := e.slots.at(i)
		seq := e.first + uint64(i)
		i++
		switch {
		case seen[k]:
			err = fmt.Errorf("ended session %q of merchant %q kept twice", k.session, k.merchant)
		case f.merchants[k.merchant] == nil:
			err = fmt.Errorf("ended session %q of unknown merchant %q kept", k.session, k.merchant)
		case s.hash != e.hash(k.merchant, k.session):
			err = fmt.Errorf("ended session %q kept with a wrong hash", k.session)
		case s.prev >= seq:
			err = fmt.Errorf("ended session %q (seq %d) chained to a newer one (%d)", k.session, seq, s.prev)
		case s.block < e.arena.first || s.block >= e.arena.first+uint64(e.arena.blocks.len()):
			err = fmt.Errorf("ended session %q in block %d, blocks %d..%d kept", k.session, s.block, e.arena.first, e.arena.first+uint64(e.arena.blocks.len()))
		case e.find(k.merchant, k.session) != e.slots.ptr(i-1):
			err = fmt.Errorf("ended session %q of merchant %q is not found by its key", k.session, k.merchant)
		}
		seen[k] = true
		hashes[s.hash] = true
		return err == nil
	})
	if err != nil {
		return err
	}
	for h, seq := range e.index.all() {
		switch {
		case !hashes[h]:
			return fmt.Errorf("the ended index holds hash %x of no kept session", h)
		case seq < e.first || seq >= e.first+uint64(e.len()) || e.slots.at(int(seq-e.first)).hash != h:
			return fmt.Errorf("the ended index maps hash %x to seq %d, not an entry with it", h, seq)
		}
	}
	if e.len() > 0 && e.slots.front().block != e.arena.first {
		return fmt.Errorf("arena blocks from %d kept, the oldest entry is in %d", e.arena.first, e.slots.front().block)
	}
	return nil
}

package model

import (
	"slices"
)

// step applies a definite answer to a state: ok is false when the answer
// is impossible in that state. It never changes s.
func step(s *state, in Input, out Output) (bool, *state) {
	n := s.clone()
	var ok bool
	switch in.Kind {
	case Consult:
		ok = n.consult(in, out)
	case Escalate:
		ok = n.escalate(in, out)
	case Transfer:
		ok = n.transfer(in, out)
	case End:
		ok = n.endSession(in, out)
	case FirstReply:
		ok = n.firstReply(in, out)
	case PullNext:
		ok = n.pullNext(in, out)
	case SetStatus:
		ok = n.setStatus(in, out)
	case SetLimit:
		ok = n.setLimit(in, out)
	case GetPosition:
		ok = n.getPosition(in, out)
	case ListAgents:
		ok = n.listAgents(out)
	}
	if !ok {
		return false, nil
	}
	return true, n
}

// gone: the answer for a session the model does not hold (ended, or never
// seen): NOT_FOUND, or CONFLICT for one that ended recently.
func gone(out Output) bool { return out.Err == "not_found" || out.Err == "conflict" }

// matches: the answer describes active session i as it stands.
func (s *state) matches(i int, out Output) bool {
	x := s.sessions[i]
	agent, group := "", ""
	if x.agent >= 0 {
		agent = s.m.Agents[x.agent].ID
	}
	if x.group >= 0 {
		group = s.m.Groups[x.group].ID
	}
	return out.Err == "" && out.Session == x.id && out.State == stateNames[x.state] &&
		out.Agent == agent && out.Group == group && out.Position == s.position(i)
}

// place carries out what the answer says happened to session i routed to
// group g (consult, escalate): assigned to an eligible member, queued
// because nobody could take it, or BUSY because the queue could not
// either. It checks the answer's session fields afterwards.
func (s *state) place(i, g int, out Output) bool {
	switch out.Outcome {
	case "ASSIGNED":
		a := s.m.agent(out.Agent)
		if a < 0 || s.m.Groups[g].Pull || !s.member(a, g) || !s.eligible(a) {
			return false
		}
		s.sessions[i].group = int8(g)
		s.assign(i, a)
	case "QUEUED":
		if s.anyEligible(g, -1) || !s.queueRoom(g) || out.Position < 1 || int(out.Position) > len(s.queues[g])+1 {
			return false
		}
		s.enqueue(i, g, out.Position)
	case "BUSY":
		return !s.anyEligible(g, -1) && !s.queueRoom(g) && (i < 0 || s.matches(i, out))
	default:
		return false
	}
	return s.matches(i, out)
}

func (s *state) consult(in Input, out Output) bool {
	if i := s.byBuyer(in.Buyer); i >= 0 {
		if out.Outcome != "EXISTING" {
			return false
		}
		i = s.lookup(out.Session, in.Buyer)
		return i >= 0 && s.sessions[i].buyer == in.Buyer && s.matches(i, out)
	}
	if out.Err != "" || out.Outcome == "EXISTING" {
		return false
	}
	if out.Outcome == "BUSY" && !s.m.BotFirst {
		return s.place(-1, s.route(in.AfterSales), out)
	}
	if out.Session == "" || s.byID(out.Session) >= 0 {
		return false
	}
	i := s.add(session{id: out.Session, buyer: in.Buyer, after: in.AfterSales, agent: -1, group: -1, excluded: -1})
	if s.m.BotFirst {
		s.sessions[i].state = stBot
		return out.Outcome == "BOT" && s.matches(i, out)
	}
	return s.place(i, s.route(in.AfterSales), out)
}

func (s *state) escalate(in Input, out Output) bool {
	i := s.lookup(in.Session, out.Buyer)
	if i < 0 {
		return gone(out)
	}
	if s.sessions[i].state != stBot {
		return out.Err == "conflict"
	}
	return s.place(i, s.route(s.sessions[i].after), out)
}

func (s *state) transfer(in Input, out Output) bool {
	i := s.lookup(in.Session, out.Buyer)
	if i < 0 {
		return gone(out)
	}
	old := s.sessions[i]
	if old.state == stBot {
		return out.Err == "conflict"
	}
	current := int(old.agent)
	g, to := int(old.group), -1
	if in.Agent != "" {
		to = s.m.agent(in.Agent)
		switch {
		case to < 0:
			return out.Err == "not_found"
		case to == current:
			return out.Err == "conflict"
		case !s.eligible(to):
			return out.Err == "limit"
		}
		if out.Outcome != "ASSIGNED" || out.Agent != in.Agent {
			return false
		}
	} else {
		if g = s.m.group(in.Group); g < 0 {
			return out.Err == "not_found"
		}
		switch out.Outcome {
		case "ASSIGNED":
			to = s.m.agent(out.Agent)
			if to < 0 || to == current || s.m.Groups[g].Pull || !s.member(to, g) || !s.eligible(to) {
				return false
			}
		case "QUEUED":
			// Decided before the old session leaves: if it waits in g it
			// still counts against g's queue length.
			if s.anyEligible(g, current) || !s.queueRoom(g) {
				return false
			}
		case "BUSY":
			return !s.anyEligible(g, current) && !s.queueRoom(g) && s.matches(i, out)
		default:
			return false
		}
	}
	if out.Err != "" || out.Session == "" || s.byID(out.Session) >= 0 {
		return false
	}
	freed := s.end(i)
	n := session{id: out.Session, buyer: old.buyer, after: old.after, agent: -1, group: int8(g), excluded: -1}
	if in.Group != "" && current >= 0 {
		n.excluded = int8(current)
	}
	j := s.add(n)
	if to >= 0 {
		s.assign(j, to)
		s.drain(freed)
	} else {
		// The new session is queued, then the freed agent drains its push
		// group. The new session is excluded from that agent, so the
		// drain takes the same buyers wherever it stands, and the answer's
		// position is its place after the drain.
		s.drain(freed)
		j = s.byID(n.id)
		if out.Position < 1 || int(out.Position) > len(s.queues[g])+1 {
			return false
		}
		s.enqueue(j, g, out.Position)
	}
	return s.matches(s.byID(n.id), out)
}

func (s *state) endSession(in Input, out Output) bool {
	i := s.lookup(in.Session, out.Buyer)
	if i < 0 {
		return gone(out)
	}
	x := s.sessions[i]
	if in.Reason == "BOT_RESOLVED" && x.state != stBot {
		return out.Err == "conflict"
	}
	agent := ""
	if x.agent >= 0 {
		agent = s.m.Agents[x.agent].ID
	}
	if out.Err != "" || out.Outcome != "ENDED" || out.State != "ENDED" || out.Session != x.id || out.Agent != agent {
		return false
	}
	s.drain(s.end(i))
	return true
}

func (s *state) firstReply(in Input, out Output) bool {
	i := s.lookup(in.Session, out.Buyer)
	if i < 0 {
		return gone(out)
	}
	if s.sessions[i].state != stAssigned {
		return out.Err == "conflict"
	}
	return s.matches(i, out)
}

func (s *state) pullNext(in Input, out Output) bool {
	a := s.m.agent(in.Agent)
	if a < 0 {
		return out.Err == "not_found"
	}
	if !s.eligible(a) {
		return out.Err == "limit"
	}
	var heads []int // sessions a may take
	for g := range s.m.Groups {
		if s.member(a, g) {
			if k := s.headFor(g, a); k >= 0 {
				heads = append(heads, s.byID(s.queues[g][k]))
			}
		}
	}
	if out.Err != "" {
		return false
	}
	if out.Outcome == "NONE" {
		return len(heads) == 0
	}
	// The server takes the best of the heads by queue key, which the model
	// does not know: any head will do.
	i := s.lookup(out.Session, out.Buyer)
	if out.Outcome != "ASSIGNED" || i < 0 || !slices.Contains(heads, i) {
		return false
	}
	s.dequeue(i)
	s.assign(i, a)
	return s.matches(i, out)
}

func (s *state) setStatus(in Input, out Output) bool {
	a, st := s.m.agent(in.Agent), statusCode(in.Status)
	if a < 0 || st == 0 {
		return out.Err == "not_found" || out.Err == "invalid"
	}
	if out.Err != "" {
		return false
	}
	if s.agents[a].status != st {
		s.agents[a].status = st
		if st == online {
			s.drain(a)
		}
	}
	return true
}

func (s *state) setLimit(in Input, out Output) bool {
	a := s.m.agent(in.Agent)
	if a < 0 || in.Limit == 0 {
		return out.Err == "not_found" || out.Err == "invalid"
	}
	if out.Err != "" {
		return false
	}
	s.agents[a].limit = in.Limit
	s.drain(a)
	return true
}

func (s *state) getPosition(in Input, out Output) bool {
	i := s.byBuyer(in.Buyer)
	if i < 0 {
		return out.Err == "not_found"
	}
	if s.lookup(out.Session, in.Buyer) != i {
		return false
	}
	return out.Outcome == stateNames[s.sessions[i].state] && s.matches(i, out)
}

func (s *state) listAgents(out Output) bool {
	if out.Err != "" || len(out.Agents) != len(s.agents) {
		return false
	}
	for i, v := range out.Agents {
		a := s.agents[i]
		if v.ID != s.m.Agents[i].ID || v.Status != statusNames[a.status] || v.Limit != a.limit || v.Load != a.load {
			return false
		}
	}
	return true
}

// candidates are the answers an Op could have got in state s, other than
// those that change nothing: for an Op whose answer never came, the model
// tries each (a session it would have made gets the id "?<request id>"
// until a later answer names it).
func candidates(s *state, in Input) []Output {
	id := "?" + in.RequestID
	var outs []Output
	assigned := func(base Output) {
		for _, a := range s.m.Agents {
			o := base
			o.Outcome, o.State, o.Agent = "ASSIGNED", "ASSIGNED", a.ID
			outs = append(outs, o)
		}
	}
	queued := func(base Output, g int) {
		for p := 1; g >= 0 && p <= len(s.queues[g])+1; p++ {
			o := base
			o.Outcome, o.State, o.Position = "QUEUED", "QUEUED", uint32(p)
			outs = append(outs, o)
		}
	}
	switch in.Kind {
	case Consult:
		if s.byBuyer(in.Buyer) >= 0 {
			return nil // EXISTING
		}
		g := s.route(in.AfterSales)
		base := Output{Session: id, Buyer: in.Buyer, Group: s.m.Groups[g].ID}
		outs = append(outs, Output{Outcome: "BOT", State: "BOT", Session: id, Buyer: in.Buyer})
		assigned(base)
		queued(base, g)
	case Escalate, Transfer:
		i := s.byID(in.Session)
		if i < 0 {
			return nil
		}
		x := s.sessions[i]
		g, sid := s.route(x.after), x.id
		if in.Kind == Transfer {
			g, sid = int(x.group), id
			if in.Group != "" {
				g = s.m.group(in.Group)
			}
		}
		if g < 0 {
			return nil
		}
		base := Output{Session: sid, Buyer: x.buyer, Group: s.m.Groups[g].ID}
		assigned(base)
		queued(base, g)
	case End:
		i := s.byID(in.Session)
		if i < 0 {
			return nil
		}
		x := s.sessions[i]
		o := Output{Outcome: "ENDED", State: "ENDED", Session: x.id, Buyer: x.buyer}
		if x.agent >= 0 {
			o.Agent = s.m.Agents[x.agent].ID
		}
		outs = append(outs, o)
	case PullNext:
		for g := range s.queues {
			for _, sid := range s.queues[g] {
				x := s.sessions[s.byID(sid)]
				outs = append(outs, Output{Outcome: "ASSIGNED", State: "ASSIGNED", Session: sid, Buyer: x.buyer,
					Agent: in.Agent, Group: s.m.Groups[g].ID})
			}
		}
	case SetStatus, SetLimit:
		outs = append(outs, Output{})
	}
	return outs
}

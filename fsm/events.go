package fsm

import (
	"errors"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// ErrCompacted: the events asked for have left the bounded event log; the
// reader must resynchronise from a full read of the state.
var ErrCompacted = errors.New("fsm: events compacted")

// event is one entry of the event log, stored by value in a ring so that
// emitting allocates nothing; readers get *pb.Event copies.
type event struct {
	seq, index   uint64
	timeMs       int64
	merchant     string
	session      string
	buyer        string
	agent        string
	group        string
	kind         pb.EventKind
	state        pb.SessionState
	reason       pb.EndReason
	agentStatus  pb.AgentStatus
	surge        pb.SurgeLevel
	compensation bool
}

func (e *event) proto() *pb.Event {
	return &pb.Event{Seq: e.seq, Index: e.index, TimeMs: e.timeMs, MerchantId: e.merchant, Kind: e.kind,
		SessionId: e.session, BuyerId: e.buyer, AgentId: e.agent, GroupId: e.group, State: e.state,
		EndReason: e.reason, Compensation: e.compensation, AgentStatus: e.agentStatus, Surge: e.surge}
}

func eventFromProto(p *pb.Event) event {
	return event{seq: p.Seq, index: p.Index, timeMs: p.TimeMs, merchant: p.MerchantId, kind: p.Kind,
		session: p.SessionId, buyer: p.BuyerId, agent: p.AgentId, group: p.GroupId, state: p.State,
		reason: p.EndReason, compensation: p.Compensation, agentStatus: p.AgentStatus, surge: p.Surge}
}

// eventRing keeps the newest events, oldest first; it grows up to its
// bound and then overwrites the oldest.
type eventRing struct {
	buf   []event
	start int // index of the oldest event in buf
	n     int
}

func (r *eventRing) push(e event, bound int) {
	if r.n < bound && len(r.buf) < bound {
		r.buf = append(r.buf, e)
		r.n++
		return
	}
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)] = e
		r.n++
		return
	}
	r.buf[r.start] = e
	r.start = (r.start + 1) % len(r.buf)
}

func (r *eventRing) at(i int) *event { return &r.buf[(r.start+i)%len(r.buf)] }
func (r *eventRing) len() int        { return r.n }
func (r *eventRing) reset()          { *r = eventRing{} }

// emit appends an event stamped with the entry being applied.
func (f *FSM) emit(e event) {
	f.eventSeq++
	e.seq = f.eventSeq
	e.index = f.cur.index
	e.timeMs = f.cur.now
	f.events.push(e, f.cfg.MaxEvents)
	f.cur.emitted = true
}

func (f *FSM) sessionEvent(kind pb.EventKind, s *session) {
	f.emit(event{
		merchant: s.MerchantId, kind: kind, session: s.SessionId, buyer: s.BuyerId,
		agent: s.AgentId, group: s.GroupId, state: s.State, reason: s.EndReason,
		compensation: s.Compensation,
	})
}

// Events returns up to max events with seq > after, for merchant (all
// merchants when merchant is ""), the seq to pass as after next time, and a
// channel closed when newer events arrive. It returns ErrCompacted when
// events after `after` were already dropped from the bounded log.
func (f *FSM) Events(merchant string, after uint64, max int) ([]*pb.Event, uint64, <-chan struct{}, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	f.watched.Store(true)
	n := f.events.len()
	first := f.eventSeq - uint64(n) + 1 // seq of the oldest event kept
	if after+1 < first {
		return nil, after, f.notify, ErrCompacted
	}
	var out []*pb.Event
	next := after
	for i := int(after + 1 - first); i < n && len(out) < max; i++ {
		e := f.events.at(i)
		next = e.seq
		if merchant == "" || e.merchant == merchant {
			out = append(out, e.proto())
		}
	}
	return out, next, f.notify, nil
}

// LastEventSeq is the seq of the newest event (0 when there is none).
func (f *FSM) LastEventSeq() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.eventSeq
}

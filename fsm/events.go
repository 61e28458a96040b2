package fsm

import (
	"errors"
	"slices"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// ErrCompacted: the events asked for have left the bounded event log; the
// reader must resynchronise from a full read of the state.
var ErrCompacted = errors.New("fsm: events compacted")

// event is one entry of the event log, stored by value in a ring (see
// eventRing); readers get *pb.Event copies.
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

// eventRing keeps the newest events, oldest first, at most a bound of
// them. Events are stored by value in blocks of eventBlock that are only
// ever appended to: dropping the oldest events moves start, and a block
// dropped whole is let go, never reused. So a view taken at one moment
// (view) stays valid while later events are pushed — a snapshot is written
// from one beside new applies — and emitting allocates one block per
// eventBlock events.
type eventRing struct {
	blocks [][]event // each with capacity eventBlock; all full but the last
	start  int       // index of the oldest event in blocks[0]
	n      int
}

// eventBlock is how many events a block of an eventRing holds.
const eventBlock = 1024

func (r *eventRing) push(e event, bound int) {
	last := len(r.blocks) - 1
	if last < 0 || len(r.blocks[last]) == eventBlock {
		r.blocks = append(r.blocks, make([]event, 0, eventBlock))
		last++
	}
	r.blocks[last] = append(r.blocks[last], e)
	r.n++
	for r.n > bound {
		r.start++
		r.n--
		if r.start == eventBlock {
			r.blocks[0] = nil
			r.blocks = r.blocks[1:]
			r.start = 0
		}
	}
}

func (r *eventRing) at(i int) *event {
	i += r.start
	return &r.blocks[i/eventBlock][i%eventBlock]
}

func (r *eventRing) len() int { return r.n }
func (r *eventRing) reset()   { *r = eventRing{} }

// view is the ring as it is now, unchanged by later pushes and resets.
func (r *eventRing) view() eventRing {
	return eventRing{blocks: slices.Clone(r.blocks), start: r.start, n: r.n}
}

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

// MaxEvents is how many events the log keeps (Config.MaxEvents): a reader
// more than that many events behind the newest gets ErrCompacted.
func (f *FSM) MaxEvents() int { return f.cfg.MaxEvents }

// LastEventSeq is the seq of the newest event (0 when there is none).
func (f *FSM) LastEventSeq() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.eventSeq
}

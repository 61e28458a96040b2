package fsm

import (
	"errors"
	"slices"
	"unsafe"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// ErrCompacted: the events asked for have left the bounded event log; the
// reader must resynchronise from a full read of the state.
var ErrCompacted = errors.New("fsm: events compacted")

// event is one entry of the event log, as it is pushed to and read from
// the ring (see eventRing, which keeps it in another form); readers get
// *pb.Event copies.
type event struct {
	eventFacts
	merchant string
	session  string
	buyer    string
	agent    string
	group    string
}

// eventFacts is what an event holds besides its ids, the same in both of
// its forms (event, storedEvent).
type eventFacts struct {
	seq, index   uint64
	timeMs       int64
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
	return event{eventFacts: eventFacts{seq: p.Seq, index: p.Index, timeMs: p.TimeMs, kind: p.Kind, state: p.State,
		reason: p.EndReason, compensation: p.Compensation, agentStatus: p.AgentStatus, surge: p.Surge},
		merchant: p.MerchantId, session: p.SessionId, buyer: p.BuyerId, agent: p.AgentId, group: p.GroupId}
}

// eventRing keeps the newest events, oldest first, at most a bound of
// them. Events are stored by value in blocks of eventBlock that are only
// ever appended to: dropping the oldest events moves start, and a block
// dropped whole is let go, never reused. So a view taken at one moment
// (view) stays valid while later events are pushed — a snapshot is written
// from one beside new applies — and emitting allocates one block per
// eventBlock events.
//
// The ring holds no pointer per event: an event's ids are bytes in its
// block's arena (storedEvent), so the garbage collector, which scanned
// five strings per event (a node keeps up to MaxEvents per shard), skips
// the blocks. Arena bytes are never written again once appended (the
// arena only grows, into a new array when full), so the strings at
// returns may point into it.
type eventRing struct {
	blocks []eventChunk // all full but the last
	start  int          // index of the oldest event in blocks[0]
	n      int
}

// eventChunk is one block of an eventRing.
type eventChunk struct {
	events []storedEvent // capacity eventBlock
	arena  []byte        // the events' ids, appended in event order
}

// storedEvent is an event as the ring keeps it: its ids are
// arena[off:off+sum(lens)] of its chunk, in the order merchant, session,
// buyer, agent, group.
type storedEvent struct {
	eventFacts
	off  uint32
	lens [5]uint16
}

// eventBlock is how many events a block of an eventRing holds.
const eventBlock = 1024

// maxEventID is the longest id an event can keep (storedEvent.lens);
// commands' ids are at most MaxIDLen.
const maxEventID = 1<<16 - 1

// eventIDsFit reports whether e's ids can be kept in the ring.
func eventIDsFit(e *event) bool {
	for _, id := range [...]string{e.merchant, e.session, e.buyer, e.agent, e.group} {
		if len(id) > maxEventID {
			return false
		}
	}
	return true
}

func (r *eventRing) push(e event, bound int) {
	last := len(r.blocks) - 1
	if last < 0 || len(r.blocks[last].events) == eventBlock {
		r.blocks = append(r.blocks, eventChunk{events: make([]storedEvent, 0, eventBlock), arena: make([]byte, 0, eventBlock*48)})
		last++
	}
	c := &r.blocks[last]
	se := storedEvent{eventFacts: e.eventFacts, off: uint32(len(c.arena))}
	for i, id := range [...]string{e.merchant, e.session, e.buyer, e.agent, e.group} {
		if len(id) > maxEventID {
			panic("fsm: an event id over 65535 bytes") // a bug: ids are validated (eventIDsFit on restore)
		}
		se.lens[i] = uint16(len(id))
		c.arena = append(c.arena, id...)
	}
	c.events = append(c.events, se)
	r.n++
	for r.n > bound {
		r.start++
		r.n--
		if r.start == eventBlock {
			r.blocks[0] = eventChunk{}
			r.blocks = r.blocks[1:]
			r.start = 0
		}
	}
}

// stored returns the i-th event kept (0 is the oldest) and its chunk.
func (r *eventRing) stored(i int) (*storedEvent, *eventChunk) {
	i += r.start
	c := &r.blocks[i/eventBlock]
	return &c.events[i%eventBlock], c
}

// at returns the i-th event kept (0 is the oldest).
func (r *eventRing) at(i int) event {
	se, c := r.stored(i)
	return c.event(se)
}

// event builds se, one of c's events; its ids point into c's arena, which
// is never written again.
func (c *eventChunk) event(se *storedEvent) event {
	var ids [5]string
	off := se.off
	for k, n := range se.lens {
		if n > 0 {
			ids[k] = unsafe.String(&c.arena[off], int(n))
		}
		off += uint32(n)
	}
	return event{eventFacts: se.eventFacts, merchant: ids[0], session: ids[1], buyer: ids[2], agent: ids[3], group: ids[4]}
}

// merchant is the merchant id of se, one of c's events, without building
// the event.
func (c *eventChunk) merchant(se *storedEvent) []byte {
	return c.arena[se.off : se.off+uint32(se.lens[0])]
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
		eventFacts: eventFacts{kind: kind, state: s.State, reason: s.EndReason, compensation: s.Compensation},
		merchant:   s.MerchantId, session: s.SessionId, buyer: s.BuyerId, agent: s.AgentId, group: s.GroupId,
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
		se, c := f.events.stored(i)
		next = se.seq
		if merchant == "" || string(c.merchant(se)) == merchant {
			e := c.event(se)
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

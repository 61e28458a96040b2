package transport

import (
	"math"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Quiet shards: heartbeats answered where they start.
//
// Coalescing (beats.go) makes a node's heartbeats to a peer one write per
// window, but every shard's raft still sends each follower a heartbeat
// every tenth of the heartbeat timeout, and each is encoded, sent, decoded,
// handled by the follower's raft and answered back: with 64 idle shards that
// is most of an idle node's CPU (BENCHMARKS.md, "Idle"). hashicorp/raft
// cannot be told to stop heartbeating, so the Transport stops carrying the
// heartbeats instead, once the follower's node has promised what a
// heartbeat's answer would say.
//
// The protocol, between a leader node A and a follower node F, on A's beats
// connection to F (quietShard marks its messages there):
//
//   - Every quiet interval A sends a quiet beat: the shards A's rafts lead in
//     which term and heartbeat F lately (leads), and the number of the last
//     of F's quiet answers A took (ack).
//   - F answers with the shards whose replica here follows A in that term,
//     checked by handing the replica a heartbeat from A in that term (the
//     last real one it served) — which is also what keeps F's raft from
//     timing out while A's heartbeats stay home. Listing a shard is a
//     promise: F's replica will not leave that term (vote, take a newer
//     term, start an election) before A can no longer rely on the answer.
//   - Until lease after it sent a beat, A answers its rafts' heartbeats to F,
//     for the shards and terms F's answer listed, itself: success, as F
//     would have answered. An append without entries that repeats one F
//     acknowledged (the idle append raft sends every CommitTimeout) is
//     answered with F's answer to it the same way.
//   - Before a replica on F leaves the term (an RPC with a newer term, a
//     TimeoutNow, a vote request of its own), F sends A unsolicited news
//     without the shard and waits until A acknowledges an answer that did
//     not list it, or the connection that carried the promise is closed by
//     A (A forgets a connection's promises before closing it; a killed
//     process closes them all), or lease passed since the last answer that
//     listed it. A node's first lease after start is such a wait too: a
//     restarted process does not know what its predecessor promised.
//
// Why that keeps raft's guarantees: the answers A gives itself are true
// when given — F's replica follows A in that term, and A is told before
// that changes, while A cannot rely on the promise any more (a new leader
// needs F's vote or a newer term at F, both of which wait). So a leader
// confirming leadership for a read (VerifyLeader) counts F rightly, and a
// lease (LeaderLeaseTimeout) still ends when F's node goes silent: lease
// after its last answered beat A sends real heartbeats again. An idle
// append's cached answer stays true because F's log only changes through A's
// appends in that term, which go out for real and replace the cache. A
// shard whose leader stops leading is left out of A's next beats; F's raft
// then times out as it would without heartbeats.

// quietShard is the shard number of quiet beats on a beats connection; a
// node that predates them answers "shard not served", and never promises.
const quietShard uint32 = math.MaxUint32

// quietLead is a shard and a term.
type quietLead struct {
	Shard uint32
	Term  uint64
}

// quietBeat is a leader node's periodic quiet beat.
type quietBeat struct {
	From  string      // the sender's advertised address (its rafts' address)
	Ack   uint64      // the last quietAnswer.N taken from this connection
	Leads []quietLead // shards led, and heartbeating this peer lately
}

// quietAnswer answers a quietBeat or, with sequence number 0, is news from
// the follower node taking shards back.
type quietAnswer struct {
	N     uint64      // numbers the follower's quiet answers on a connection
	Quiet []quietLead // shards whose replica promises to follow From in Term
}

// WithQuiet turns on quiet shards (quiet.go) with a quiet beat to each peer
// every interval; the follower's promise is relied on for three intervals.
// Keep the interval at most a fifth of the heartbeat timeout (frontdeskd uses
// a fifth): a quiet follower's raft hears from its leader once per interval,
// and must not go a heartbeat timeout without; held heartbeats (pace) come
// back at most an interval late, inside the leader lease. interval <= 0
// turns it off (the default).
func WithQuiet(interval time.Duration) Option {
	return func(m *Mux) {
		if interval > 0 {
			m.quiet = &quietFollower{m: m, every: interval, lease: 3 * interval, start: time.Now(),
				changed: make(chan struct{}), shards: make(map[uint32]*quietReplica), tick: make(chan struct{})}
		}
	}
}

// ---- the leader's side ----

// leadMarks records, per peer, the term of the last heartbeat a shard's
// raft sent it and when.
type leadMarks struct {
	mu    sync.Mutex
	peers map[raft.ServerAddress]leadMark
}

type leadMark struct {
	term uint64
	at   time.Time
}

func (l *leadMarks) note(peer raft.ServerAddress, term uint64, now time.Time) {
	l.mu.Lock()
	if l.peers == nil {
		l.peers = make(map[raft.ServerAddress]leadMark)
	}
	l.peers[peer] = leadMark{term: term, at: now}
	l.mu.Unlock()
}

// since returns the term of the last heartbeat to peer if it went after t.
func (l *leadMarks) since(peer raft.ServerAddress, t time.Time) (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	mk, ok := l.peers[peer]
	return mk.term, ok && mk.at.After(t)
}

// quietGrant is what a peer promised, from its latest answer on conn.
type quietGrant struct {
	conn   *beatConn
	at     time.Time           // when the answered beat went out
	shards map[uint32]promised // what each promised shard follows
	ack    uint64              // the last answer taken (quietAnswer.N)
}

// promised is a promise's term and generation: the generation changes
// whenever a shard's promise starts afresh (after a gap, on a new
// connection, in a new term), since the replica behind it may be a new one
// — restarted, or reopened — that has not seen what the old one saw.
type promised struct {
	term, gen uint64
}

// idleAck is a follower's answer to an append without entries, given
// under the promise of generation gen.
type idleAck struct {
	term, prev, prevTerm, commit uint64
	gen                          uint64
	resp                         raft.AppendEntriesResponse
}

// quietBeat returns the next quiet beat for p, or nil when there is nothing
// to say (no shard led towards the peer and no promise held).
func (p *beatPeer) quietBeat() *beatCall {
	m := p.m
	since := time.Now().Add(-2 * m.quiet.every)
	m.mu.Lock()
	ts := make([]*Transport, 0, len(m.transports))
	for _, t := range m.transports {
		ts = append(ts, t)
	}
	m.mu.Unlock()
	var leads []quietLead
	for _, t := range ts {
		if term, ok := t.marks.since(p.addr, since); ok {
			leads = append(leads, quietLead{Shard: t.shard, Term: term})
		}
	}
	p.mu.Lock()
	held := len(p.quiet.shards)
	p.mu.Unlock()
	if len(leads) == 0 && held == 0 {
		return nil
	}
	return &beatCall{shard: quietShard, beat: &quietBeat{From: m.addr.String(), Leads: leads},
		flushBy: time.Now(), done: make(chan error, 1)}
}

// takeQuiet applies a quiet answer read from c: the answer to beat call,
// or (call nil) unsolicited news, which only takes shards away.
func (p *beatPeer) takeQuiet(c *beatConn, call *beatCall, errMsg string, ans *quietAnswer) {
	p.mu.Lock()
	if p.cur != c {
		p.mu.Unlock()
		return
	}
	g := &p.quiet
	if g.conn != c {
		*g = quietGrant{conn: c}
	}
	old := g.shards
	g.ack = max(g.ack, ans.N)
	news := call == nil
	switch {
	case errMsg != "":
		g.shards = nil // a node that does not take quiet beats
	case news:
		keep := make(map[uint32]uint64, len(ans.Quiet))
		for _, l := range ans.Quiet {
			keep[l.Shard] = l.Term
		}
		for s, q := range g.shards {
			if keep[s] != q.term {
				delete(g.shards, s)
			}
		}
	default:
		g.at = call.sentAt
		g.shards = make(map[uint32]promised, len(ans.Quiet))
		for _, l := range ans.Quiet {
			q, ok := old[l.Shard]
			if !ok || q.term != l.Term {
				p.quietGen++
				q = promised{term: l.Term, gen: p.quietGen}
			}
			g.shards[l.Shard] = q
		}
	}
	p.mu.Unlock()
	if news {
		// The peer waits for the acknowledgement: send it now.
		select {
		case p.quietNow <- struct{}{}:
		default:
		}
	}
}

// quietFor returns the generation of the promise of the peer's replica of
// shard to follow this node in term, if it holds on the current connection
// and is recent enough to rely on; 0 if not.
func (p *beatPeer) quietFor(shard uint32, term uint64, now time.Time) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := &p.quiet
	q, ok := g.shards[shard]
	if !ok || q.term != term || g.conn == nil || g.conn != p.cur || now.Sub(g.at) >= p.m.quiet.lease {
		return 0
	}
	return q.gen
}

// quietFor returns the generation of the promise that lets the Transport
// answer a call to target in term itself, or 0.
func (t *Transport) quietFor(target raft.ServerAddress, term uint64, now time.Time) uint64 {
	m := t.mux
	if m.quiet == nil {
		return 0
	}
	m.mu.Lock()
	p := m.beatPeers[target]
	m.mu.Unlock()
	if p == nil {
		return 0
	}
	return p.quietFor(t.shard, term, now)
}

// quietHeartbeat answers a heartbeat to target itself if the follower
// promised (see above).
func (t *Transport) quietHeartbeat(target raft.ServerAddress, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) bool {
	if t.mux.quiet == nil {
		return false
	}
	now := time.Now()
	t.marks.note(target, req.Term, now)
	if t.quietFor(target, req.Term, now) == 0 {
		return false
	}
	// Held until the next quiet tick, the answer is checked again: it must
	// be true when raft reads it, not only when the call came.
	t.pace()
	if t.quietFor(target, req.Term, time.Now()) == 0 {
		return false
	}
	*resp = raft.AppendEntriesResponse{Term: req.Term, Success: true}
	t.mux.stats.quietHeartbeats.Add(1)
	return true
}

// pace holds a heartbeat answered at home until the Mux's next quiet tick,
// unless a read hurries (Transport.Hurry) or the Transport closes. raft's
// heartbeat goroutines, one per follower of every shard, each wake on a
// timer of their own; held this way they come back together at the tick,
// and wait their next interval from there: half the wake-ups, which are
// most of an idle node's CPU. The hold lengthens the gap between two
// heartbeats to at most an interval plus a quiet interval (400 ms at the
// defaults), within raft's lease (four fifths of the heartbeat timeout).
func (t *Transport) pace() {
	if t.hurry.Load() > 0 {
		return
	}
	q := t.mux.quiet
	q.tickMu.Lock()
	tick := q.tick
	q.tickMu.Unlock()
	t.hurryMu.Lock()
	if t.hurried == nil {
		t.hurried = make(chan struct{})
	}
	hurried := t.hurried
	t.hurryMu.Unlock()
	if t.hurry.Load() > 0 {
		return
	}
	select {
	case <-tick:
	case <-hurried:
	case <-t.done:
	case <-t.mux.done:
	}
}

// ticks closes the quiet tick channel every quiet interval until the Mux
// closes.
func (f *quietFollower) ticks() {
	defer f.m.wg.Done()
	tk := time.NewTicker(f.every)
	defer tk.Stop()
	for {
		select {
		case <-tk.C:
		case <-f.m.done:
			return
		}
		f.tickMu.Lock()
		close(f.tick)
		f.tick = make(chan struct{})
		f.tickMu.Unlock()
	}
}

// quietAppend answers an append without entries to id itself if it
// repeats the last one id acknowledged under the promise that holds now
// (the same generation: a replica restarted since has not learnt the
// commit index it carries). Otherwise it returns false and the promise's
// generation (0: none), for appended.
func (t *Transport) quietAppend(id raft.ServerID, target raft.ServerAddress, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (bool, uint64) {
	if t.mux.quiet == nil || len(req.Entries) != 0 {
		return false, 0
	}
	gen := t.quietFor(target, req.Term, time.Now())
	if gen == 0 {
		return false, 0
	}
	t.idleMu.Lock()
	a, ok := t.idle[id]
	t.idleMu.Unlock()
	if !ok || a.gen != gen || a.term != req.Term || a.prev != req.PrevLogEntry || a.prevTerm != req.PrevLogTerm || a.commit != req.LeaderCommitIndex {
		return false, gen
	}
	*resp = a.resp
	t.mux.stats.quietAppends.Add(1)
	return true, gen
}

// appended records what id answered to an append that went out while the
// promise of generation gen held (0: none; nothing is kept).
func (t *Transport) appended(id raft.ServerID, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse, err error, gen uint64) {
	if t.mux.quiet == nil {
		return
	}
	t.idleMu.Lock()
	defer t.idleMu.Unlock()
	if err != nil || gen == 0 || len(req.Entries) != 0 || !resp.Success {
		delete(t.idle, id)
		return
	}
	if t.idle == nil {
		t.idle = make(map[raft.ServerID]idleAck)
	}
	t.idle[id] = idleAck{term: req.Term, prev: req.PrevLogEntry, prevTerm: req.PrevLogTerm,
		commit: req.LeaderCommitIndex, gen: gen, resp: *resp}
}

// ---- the follower's side ----

// quietFollower is a node's side of the promises its replicas make.
type quietFollower struct {
	m            *Mux
	every, lease time.Duration
	start        time.Time

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a wait may be over
	shards  map[uint32]*quietReplica

	tickMu sync.Mutex
	tick   chan struct{} // closed and replaced every interval (pace)
}

// quietReplica is a local replica that follows a leader node in a term.
type quietReplica struct {
	leader  string // the leader's address
	term    uint64
	req     *raft.AppendEntriesRequest // a heartbeat from it in term, handed to raft again
	leaving bool                       // promised no more; gone once no promise can be relied on
	grants  map[*quietConn]quietListing
}

// quietListing is the last answer on a connection that listed a replica.
type quietListing struct {
	n  uint64
	at time.Time // when the beat it answered arrived
}

// quietConn is the follower's side of one beats connection.
type quietConn struct {
	out    *beatAnswers
	n      uint64 // answers numbered so far
	acked  uint64 // the last answer the leader took
	ended  bool
	byPeer bool // ended by the leader closing it
}

// broadcast wakes the waiters. Called with mu held.
func (f *quietFollower) broadcast() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// serve answers a quiet beat on qc (sequence number seq).
func (f *quietFollower) serve(qc *quietConn, seq uint64, b *quietBeat) {
	now := time.Now()
	type cand struct {
		shard uint32
		term  uint64
		r     *quietReplica
	}
	var cands []cand
	f.mu.Lock()
	if b.Ack > qc.acked {
		qc.acked = b.Ack
		f.broadcast()
	}
	for _, l := range b.Leads {
		r := f.shards[l.Shard]
		if r != nil && !r.leaving && r.leader == b.From && r.term == l.Term {
			cands = append(cands, cand{l.Shard, l.Term, r})
		}
	}
	f.gc()
	f.mu.Unlock()

	// Hand each replica its leader's heartbeat: it is what a real one would
	// do, and it tells whether the replica still follows in that term.
	ok := make([]bool, len(cands))
	for i, c := range cands {
		f.m.mu.Lock()
		t := f.m.transports[c.shard]
		f.m.mu.Unlock()
		ok[i] = t != nil && t.inject(c.r.req)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	qc.n++
	ans := &quietAnswer{N: qc.n}
	for i, c := range cands {
		if ok[i] && f.shards[c.shard] == c.r && !c.r.leaving && c.r.term == c.term {
			c.r.grants[qc] = quietListing{n: qc.n, at: now}
			ans.Quiet = append(ans.Quiet, quietLead{Shard: c.shard, Term: c.r.term})
		}
	}
	qc.out.add(seq, nil, ans)
}

// gc drops promises that can no longer be relied on, and forgets replicas
// that left once none of theirs can. Called with mu held.
func (f *quietFollower) gc() {
	now := time.Now()
	for s, r := range f.shards {
		if _, left := f.remaining(r, now); r.leaving && !left {
			delete(f.shards, s)
		}
	}
}

// remaining reports whether a promise of r may still be relied on by its
// leader, and for how long at most. Called with mu held.
func (f *quietFollower) remaining(r *quietReplica, now time.Time) (time.Duration, bool) {
	var longest time.Duration
	left := false
	for qc, l := range r.grants {
		if qc.byPeer || qc.acked > l.n {
			delete(r.grants, qc)
			continue
		}
		d := l.at.Add(f.lease).Sub(now)
		if d <= 0 {
			delete(r.grants, qc)
			continue
		}
		left = true
		longest = max(longest, d)
	}
	return longest, left
}

// record notes that the replica of shard answered a heartbeat from leader
// in req.Term with success (a real one, coalesced).
func (f *quietFollower) record(shard uint32, leader string, req *raft.AppendEntriesRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.shards[shard]
	switch {
	case r == nil:
		f.shards[shard] = &quietReplica{leader: leader, term: req.Term, req: req, grants: make(map[*quietConn]quietListing)}
	case r.leaving:
		// Not until the promises of the last term lapsed.
	case r.term == req.Term && r.leader == leader:
		r.req = req
	case req.Term > r.term && len(r.grants) == 0:
		*r = quietReplica{leader: leader, term: req.Term, req: req, grants: r.grants}
	}
}

// mustLeave reports whether an RPC in term (timeoutNow: a TimeoutNow) would
// take the replica of shard out of a term it promised to stay in.
func (f *quietFollower) mustLeave(shard uint32, term uint64, timeoutNow bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.shards[shard]
	return r != nil && (timeoutNow || term > r.term)
}

// leave takes the replica of shard out of its promises before an RPC in
// term (timeoutNow: a TimeoutNow) moves it on, and returns once its leader
// can no longer rely on them (or the Mux closes). A node that started less
// than a lease ago waits for that first.
func (f *quietFollower) leave(shard uint32, term uint64, timeoutNow bool) {
	f.settle()
	f.mu.Lock()
	r := f.shards[shard]
	if r == nil || (!timeoutNow && term <= r.term) {
		f.mu.Unlock()
		return
	}
	f.withdraw(r)
	waited := false
	for {
		d, left := f.remaining(r, time.Now())
		if !left {
			if f.shards[shard] == r {
				delete(f.shards, shard)
			}
			f.mu.Unlock()
			if waited {
				f.m.stats.quietWaits.Add(1)
			}
			return
		}
		waited = true
		ch := f.changed
		f.mu.Unlock()
		t := time.NewTimer(d)
		select {
		case <-ch:
		case <-t.C:
		case <-f.m.done:
			t.Stop()
			return
		}
		t.Stop()
		f.mu.Lock()
	}
}

// withdraw stops listing r and tells its leader at once on every
// connection that carries a promise. Called with mu held.
func (f *quietFollower) withdraw(r *quietReplica) {
	if r.leaving {
		return
	}
	r.leaving = true
	f.m.stats.quietLeaves.Add(1)
	for qc := range r.grants {
		if qc.ended {
			continue
		}
		qc.n++
		news := &quietAnswer{N: qc.n}
		for s, o := range f.shards {
			if _, ok := o.grants[qc]; ok && !o.leaving {
				news.Quiet = append(news.Quiet, quietLead{Shard: s, Term: o.term})
			}
		}
		qc.out.add(0, nil, news)
		qc.out.flush()
	}
}

// forget withdraws the replica of shard without waiting (it is closing).
func (f *quietFollower) forget(shard uint32) {
	f.mu.Lock()
	if r := f.shards[shard]; r != nil {
		f.withdraw(r)
	}
	f.mu.Unlock()
}

// ended notes that qc's connection ended, closed by the leader or not.
func (f *quietFollower) ended(qc *quietConn, byPeer bool) {
	f.mu.Lock()
	qc.ended, qc.byPeer = true, byPeer
	f.broadcast()
	f.mu.Unlock()
}

// settle waits out the first lease after the node started (see above).
func (f *quietFollower) settle() {
	d := time.Until(f.start.Add(f.lease))
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-f.m.done:
	}
}

// inject hands req, a heartbeat from the replica's leader, to raft and
// reports whether raft took it as one from its leader in req.Term.
func (t *Transport) inject(req *raft.AppendEntriesRequest) bool {
	fn := t.hb.Load()
	if fn == nil {
		return false
	}
	ch := make(chan raft.RPCResponse, 1)
	(*fn)(raft.RPC{Command: req, RespChan: ch})
	select {
	case r := <-ch:
		resp, ok := r.Response.(*raft.AppendEntriesResponse)
		return r.Error == nil && ok && resp.Success && resp.Term == req.Term
	default:
		return false
	}
}

// leaveFor runs before raft takes rpc: an RPC that would move the replica
// to a newer term waits until its promises lapsed (see above).
func (t *Transport) leaveFor(rpc raft.RPC) {
	q := t.mux.quiet
	if q == nil {
		return
	}
	switch c := rpc.Command.(type) {
	case *raft.TimeoutNowRequest:
		t.leaveTerm(0, true)
	case *raft.AppendEntriesRequest:
		t.leaveTerm(c.Term, false)
	case *raft.RequestVoteRequest:
		t.leaveTerm(c.Term, false)
	case *raft.InstallSnapshotRequest:
		t.leaveTerm(c.Term, false)
	default:
		q.settle()
	}
}

// leaveTerm waits, if the replica promised to stay in a term older than
// term (timeoutNow: any), until the promise lapsed.
func (t *Transport) leaveTerm(term uint64, timeoutNow bool) {
	q := t.mux.quiet
	if q == nil {
		return
	}
	if q.mustLeave(t.shard, term, timeoutNow) {
		q.leave(t.shard, term, timeoutNow)
		return
	}
	q.settle()
}

// sendQuiet queues a quiet beat, if there is anything to say.
func (p *beatPeer) sendQuiet() {
	if c := p.quietBeat(); c != nil {
		_ = p.enqueue(c) // a peer without coalesced RPCs gets none
	}
}

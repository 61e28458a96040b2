package transport

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// Coalescing heartbeats.
//
// hashicorp/raft keeps every shard's followers alive on its own: a leader
// heartbeats each follower every tenth of the heartbeat timeout (50–100 ms
// with 500 ms, the default until 2026-12-08). With 64 shards on three nodes
// that was some 900 tiny RPCs a second sent and as many received per node, each its own
// write, read and wake-up on both ends — most of an idle cluster's CPU
// (BENCHMARKS.md, "Idle").
//
// So the heartbeats of every shard on a node travel to each peer over one
// connection (header byte headerBeats), in batches: a heartbeat waits up to
// its shard's coalescing window for others to the same peer, and the batch
// is one write. The peer answers each through its shard's raft heartbeat
// handler, at once and off raft's main loop as raft's NetworkTransport
// does, and writes every answer of a batch together. Requests and answers
// carry a sequence number.
//
// Nothing else changes: entries, commit-index updates, votes, snapshots and
// TimeoutNow use the shard's raft.NetworkTransport as before (Transport's
// AppendEntries says why only heartbeats), and a heartbeat that does not go
// through (the peer is gone, slow, or too old to know headerBeats) fails
// like a NetworkTransport call, which raft already retries. A raft leader
// confirming its leadership for a linearizable read does so with a
// heartbeat round; Transport.Hurry lets those go without waiting.

// headerBeats opens a coalesced-RPC connection (see beats.go).
const headerBeats byte = 0xF3

const (
	// maxBeatBatch flushes a batch at once when this many calls wait.
	maxBeatBatch = 256
	// beatsUnsupportedFor is how long calls to a peer that closed a beats
	// connection without answering anything go over the shard's own
	// transport instead (a node that predates headerBeats does that).
	beatsUnsupportedFor = 30 * time.Second
	// beatPeerIdle is how long a peer sender may go unused before it is
	// retired: its goroutine, tickers and connection go, and the next call
	// to the address starts a new one. So a node that left, or came back at
	// another address, leaves nothing running behind at its peers. A peer in
	// use is used far more often: a heartbeat or a quiet beat every fifth
	// of the heartbeat timeout.
	beatPeerIdle = time.Minute
)

// errNoBeats tells Transport to send the call over its NetworkTransport.
var errNoBeats = errors.New("transport: peer does not take coalesced RPCs")

// errRetired: the peer sender was retired between beatPeerFor and enqueue;
// the caller takes a new one.
var errRetired = errors.New("transport: coalesced-RPC sender retired")

var msgpackHandle = &codec.MsgpackHandle{}

// isHeartbeat reports whether raft's NetworkTransport would take req for a
// heartbeat (and answer it through the heartbeat handler, off raft's main
// loop); the test is the one in raft v1.7.3's handleCommand.
func isHeartbeat(req *raft.AppendEntriesRequest) bool {
	return req.Term != 0 && leaderOf(req) != nil && req.PrevLogEntry == 0 && req.PrevLogTerm == 0 &&
		len(req.Entries) == 0 && req.LeaderCommitIndex == 0
}

// leaderOf returns the address of req's sender, as raft reads it.
func leaderOf(req *raft.AppendEntriesRequest) []byte {
	if len(req.RPCHeader.Addr) != 0 {
		return req.RPCHeader.Addr
	}
	return req.Leader //nolint:staticcheck // raft still reads it
}

// beatCall is one coalesced RPC waiting for its answer.
type beatCall struct {
	seq     uint64
	shard   uint32
	req     *raft.AppendEntriesRequest
	resp    *raft.AppendEntriesResponse
	flushBy time.Time
	done    chan error // receives exactly once

	beat   *quietBeat // a quiet beat (shard is quietShard, req nil; quiet.go)
	sentAt time.Time  // when a quiet beat was written
}

// beatPeer sends coalesced RPCs to one peer: callers queue, its goroutine
// writes batches, and a reader goroutine per connection answers callers.
type beatPeer struct {
	m    *Mux
	addr raft.ServerAddress
	kick chan struct{} // cap 1: the queue or its deadline changed
	// quietNow (cap 1) asks for a quiet beat at once (quiet.go).
	quietNow chan struct{}

	mu          sync.Mutex
	queue       []*beatCall
	flushBy     time.Time // earliest flushBy in queue
	pending     map[uint64]*beatCall
	seq         uint64
	cur         *beatConn
	unsupported time.Time // until then, errNoBeats
	stopped     bool
	retired     bool       // stopped for being idle (beatPeerIdle), not by Close
	lastUse     time.Time  // when a call was last queued
	quiet       quietGrant // what the peer promised on cur (quiet.go)
	quietGen    uint64     // the last promise generation given out
}

// beatConn is one connection of a beatPeer.
type beatConn struct {
	c        net.Conn
	w        *bufio.Writer
	enc      *codec.Encoder
	answered bool // under beatPeer.mu
}

// beatPeerFor returns the peer sender for addr, starting it if needed; nil
// once the Mux is closed.
func (m *Mux) beatPeerFor(addr raft.ServerAddress) *beatPeer {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	p := m.beatPeers[addr]
	if p == nil {
		p = &beatPeer{m: m, addr: addr, kick: make(chan struct{}, 1), quietNow: make(chan struct{}, 1),
			pending: make(map[uint64]*beatCall), lastUse: time.Now()}
		m.beatPeers[addr] = p
		m.wg.Add(1)
		go p.run()
	}
	return p
}

// beat sends req to addr coalesced with other shards' calls, waiting at
// most window before the batch goes (none: at once), and for the answer
// at most timeout more.
func (m *Mux) beat(shard uint32, addr raft.ServerAddress, req *raft.AppendEntriesRequest,
	resp *raft.AppendEntriesResponse, window, timeout time.Duration) error {
	c := &beatCall{shard: shard, req: req, resp: resp, flushBy: time.Now().Add(window), done: make(chan error, 1)}
	var p *beatPeer
	for {
		if p = m.beatPeerFor(addr); p == nil {
			return ErrClosed
		}
		err := p.enqueue(c)
		if err == nil {
			break
		}
		if !errors.Is(err, errRetired) {
			return err
		}
	}
	t := time.NewTimer(window + timeout)
	defer t.Stop()
	select {
	case err := <-c.done:
		return err
	case <-t.C:
	}
	if !p.abandon(c) {
		return <-c.done // answered or failed just now
	}
	m.stats.beatTimeouts.Add(1)
	return fmt.Errorf("transport: coalesced AppendEntries to %s: no answer within %v", addr, timeout)
}

func (p *beatPeer) enqueue(c *beatCall) error {
	p.mu.Lock()
	now := time.Now()
	switch {
	case p.retired:
		p.mu.Unlock()
		return errRetired
	case p.stopped:
		p.mu.Unlock()
		return ErrClosed
	case now.Before(p.unsupported):
		p.mu.Unlock()
		return errNoBeats
	}
	p.lastUse = now
	p.queue = append(p.queue, c)
	// Wake the writer only if the batch must now go sooner than it
	// planned: most calls join a batch whose deadline is already earlier.
	sooner := len(p.queue) == 1 || c.flushBy.Before(p.flushBy)
	if sooner {
		p.flushBy = c.flushBy
	}
	if len(p.queue) == maxBeatBatch {
		p.flushBy, sooner = time.Time{}, true
	}
	p.mu.Unlock()
	if sooner {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// abandon takes c off the queue or out of the pending calls and reports
// whether it did; false means c's answer or failure is on its way. A call
// already written to the connection and not answered in time condemns the
// connection, as raft's NetworkTransport drops a connection that timed out.
func (p *beatPeer) abandon(c *beatCall) bool {
	p.mu.Lock()
	for i, q := range p.queue {
		if q == c {
			p.queue = append(p.queue[:i], p.queue[i+1:]...)
			p.mu.Unlock()
			return true
		}
	}
	if p.pending[c.seq] != c {
		p.mu.Unlock()
		return false
	}
	delete(p.pending, c.seq)
	cur := p.cur
	p.mu.Unlock()
	if cur != nil {
		p.drop(cur, errors.New("a call timed out"))
	}
	return true
}

// run writes batches until the Mux closes or the peer sender retires.
func (p *beatPeer) run() {
	defer p.m.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	idle := time.NewTicker(p.m.peerIdle / 4)
	defer idle.Stop()
	var quietTick <-chan time.Time
	if q := p.m.quiet; q != nil {
		t := time.NewTicker(q.every)
		defer t.Stop()
		quietTick = t.C
	}
	for {
		p.mu.Lock()
		n, by := len(p.queue), p.flushBy
		p.mu.Unlock()
		if n > 0 {
			wait := time.Until(by)
			if wait <= 0 {
				p.flush()
				continue
			}
			timer.Reset(wait)
		}
		select {
		case <-p.kick:
		case <-timer.C:
		case <-quietTick:
			p.sendQuiet()
		case <-p.quietNow:
			p.sendQuiet()
		case <-idle.C:
			if p.retireIfIdle() {
				return
			}
		case <-p.m.done:
			p.stop()
			return
		}
		timer.Stop()
	}
}

// flush writes every queued call in one batch, connecting first if needed.
func (p *beatPeer) flush() {
	p.mu.Lock()
	cur := p.cur
	p.mu.Unlock()
	if cur == nil {
		c, err := p.dial()
		if err != nil {
			p.failQueue(err)
			return
		}
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			c.c.Close()
			return
		}
		p.cur, cur = c, c
		p.mu.Unlock()
		p.m.wg.Add(1)
		go p.read(c)
	}

	p.mu.Lock()
	if p.cur != cur {
		// The reader dropped the connection already: a peer that does
		// not take coalesced RPCs closes it as soon as it reads the
		// header. The calls go one by one then; otherwise the next flush
		// dials again.
		var failed []*beatCall
		if time.Now().Before(p.unsupported) {
			failed, p.queue = p.queue, nil
		}
		p.mu.Unlock()
		for _, c := range failed {
			c.done <- errNoBeats
		}
		return
	}
	batch := p.queue
	p.queue = nil
	now := time.Now()
	for _, c := range batch {
		p.seq++
		c.seq = p.seq
		p.pending[c.seq] = c
		if c.beat != nil {
			// The acknowledgement is of this connection's answers only.
			c.beat.Ack, c.sentAt = 0, now
			if p.quiet.conn == cur {
				c.beat.Ack = p.quiet.ack
			}
		}
	}
	p.mu.Unlock()
	if len(batch) == 0 {
		return
	}

	cur.c.SetWriteDeadline(time.Now().Add(beatWriteTimeout))
	var err error
	for _, c := range batch {
		if err = cur.enc.Encode(c.seq); err != nil {
			break
		}
		if err = cur.enc.Encode(c.shard); err != nil {
			break
		}
		if c.beat != nil {
			err = cur.enc.Encode(c.beat)
		} else {
			err = cur.enc.Encode(c.req)
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		err = cur.w.Flush()
	}
	if err != nil {
		p.drop(cur, err)
		return
	}
	p.m.stats.beatBatches.Add(1)
	calls := uint64(0)
	for _, c := range batch {
		if c.beat == nil {
			calls++
		}
	}
	p.m.stats.beatCalls.Add(calls)
}

// beatWriteTimeout bounds writing one batch.
const beatWriteTimeout = 5 * time.Second

func (p *beatPeer) dial() (*beatConn, error) {
	c, err := p.m.dialHeader(p.addr, headerBeats, beatDialTimeout)
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriterSize(c, 16<<10)
	return &beatConn{c: c, w: w, enc: codec.NewEncoder(w, msgpackHandle)}, nil
}

// beatDialTimeout bounds connecting to a peer for coalesced RPCs.
const beatDialTimeout = time.Second

// read hands the answers arriving on c to their callers until c fails.
func (p *beatPeer) read(c *beatConn) {
	defer p.m.wg.Done()
	dec := codec.NewDecoder(bufio.NewReaderSize(c.c, 16<<10), msgpackHandle)
	for {
		var (
			seq    uint64
			errMsg string
			resp   raft.AppendEntriesResponse
		)
		err := dec.Decode(&seq)
		if err == nil {
			err = dec.Decode(&errMsg)
		}
		if err != nil {
			p.drop(c, err)
			return
		}
		p.mu.Lock()
		call := p.pending[seq]
		delete(p.pending, seq)
		c.answered = true
		p.mu.Unlock()
		if seq == 0 || (call != nil && call.beat != nil) {
			// A quiet answer, or the peer's unsolicited news (quiet.go).
			var ans quietAnswer
			if err := dec.Decode(&ans); err != nil {
				p.drop(c, err)
				return
			}
			p.takeQuiet(c, call, errMsg, &ans)
			continue
		}
		if err := dec.Decode(&resp); err != nil {
			p.drop(c, err)
			return
		}
		if call == nil {
			continue // its caller gave up
		}
		if errMsg != "" {
			call.done <- errors.New(errMsg)
			continue
		}
		*call.resp = resp
		call.done <- nil
	}
}

// drop closes c, if it is still the peer's connection, and fails every
// call written to it. A connection the peer closed before answering
// anything marks the peer as not taking coalesced RPCs for a while, and its
// calls go over their shards' own transports.
func (p *beatPeer) drop(c *beatConn, err error) {
	p.mu.Lock()
	if p.cur != c {
		p.mu.Unlock()
		return
	}
	p.cur = nil
	p.quiet = quietGrant{} // forgotten before the peer can see the connection closed
	calls := p.pending
	p.pending = make(map[uint64]*beatCall)
	if !c.answered && !p.stopped && closedByPeer(err) {
		p.unsupported = time.Now().Add(beatsUnsupportedFor)
		err = errNoBeats
		p.m.logger.Warn("peer closed the coalesced-RPC connection without answering; sending its heartbeats one by one for a while",
			"peer", p.addr, "for", beatsUnsupportedFor)
	}
	p.mu.Unlock()
	c.c.Close()
	if !errors.Is(err, errNoBeats) {
		err = fmt.Errorf("transport: coalesced AppendEntries to %s: %w", p.addr, err)
	}
	for _, call := range calls {
		call.done <- err
	}
}

// closedByPeer reports whether err is how a connection the peer closed
// fails: at the end of what it sent, or reset because it closed with our
// bytes unread.
func closedByPeer(err error) bool {
	// The msgpack codec's errors do not unwrap; they name their cause.
	for c, ok := err.(interface{ Cause() error }); ok; c, ok = err.(interface{ Cause() error }) {
		if err = c.Cause(); err == nil {
			return false
		}
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (p *beatPeer) failQueue(err error) {
	p.mu.Lock()
	calls := p.queue
	p.queue = nil
	p.mu.Unlock()
	err = fmt.Errorf("transport: coalesced AppendEntries to %s: %w", p.addr, err)
	for _, c := range calls {
		c.done <- err
	}
}

// retireIfIdle retires the peer sender if nothing was queued for
// peerIdle, nothing waits and the peer holds no quiet promise (and is not
// marked as refusing coalesced RPCs, which a new sender would forget): it
// leaves the Mux's map, so the next call starts a new sender, and its
// connection is closed. Reports whether it retired.
func (p *beatPeer) retireIfIdle() bool {
	m := p.m
	// Under the Mux lock, so that beatPeerFor cannot hand p out while it
	// goes; a caller that got p before fails enqueue with errRetired.
	m.mu.Lock()
	p.mu.Lock()
	now := time.Now()
	idle := !m.closed && len(p.queue) == 0 && len(p.pending) == 0 &&
		len(p.quiet.shards) == 0 && now.Sub(p.lastUse) >= m.peerIdle && !now.Before(p.unsupported)
	if idle {
		p.stopped, p.retired = true, true
		if m.beatPeers[p.addr] == p {
			delete(m.beatPeers, p.addr)
		}
	}
	cur := p.cur
	p.mu.Unlock()
	m.mu.Unlock()
	if !idle {
		return false
	}
	if cur != nil {
		p.drop(cur, errRetired)
	}
	m.stats.peersRetired.Add(1)
	return true
}

// stop fails every waiting call with ErrClosed and closes the connection.
func (p *beatPeer) stop() {
	p.mu.Lock()
	p.stopped = true
	cur := p.cur
	p.mu.Unlock()
	if cur != nil {
		p.drop(cur, ErrClosed)
	}
	p.mu.Lock()
	calls := p.queue
	p.queue = nil
	p.mu.Unlock()
	for _, c := range calls {
		c.done <- ErrClosed
	}
}

// serveBeats answers the heartbeats arriving on an accepted connection
// until it fails or the Mux closes it.
func (m *Mux) serveBeats(c net.Conn) {
	br := bufio.NewReaderSize(c, 16<<10)
	dec := codec.NewDecoder(br, msgpackHandle)
	out := &beatAnswers{ready: make(chan struct{}, 1), stop: make(chan struct{})}
	qc := &quietConn{out: out}
	var writer sync.WaitGroup
	writer.Add(1)
	go func() {
		defer writer.Done()
		out.write(c)
	}()
	defer func() {
		close(out.stop)
		c.Close()
		writer.Wait()
	}()
	for {
		var (
			seq   uint64
			shard uint32
			req   = new(raft.AppendEntriesRequest)
		)
		err := dec.Decode(&seq)
		if err == nil {
			err = dec.Decode(&shard)
		}
		if err == nil && shard == quietShard && m.quiet != nil {
			var b quietBeat
			if err = dec.Decode(&b); err == nil {
				m.quiet.serve(qc, seq, &b)
				if br.Buffered() == 0 {
					out.flush()
				}
				continue
			}
		} else if err == nil {
			err = dec.Decode(req)
		}
		if err != nil {
			if m.quiet != nil {
				m.quiet.ended(qc, closedByPeer(err))
			}
			if !errors.Is(err, io.EOF) && !m.isClosed() {
				m.logger.Debug("coalesced-RPC connection ended", "remote", c.RemoteAddr(), "err", err)
			}
			return
		}
		m.mu.Lock()
		t := m.transports[shard]
		m.mu.Unlock()
		if t == nil {
			out.add(seq, fmt.Errorf("transport: shard %d is not served on %s", shard, m.addr), nil)
		} else {
			t.serveHeartbeat(req, seq, out)
		}
		if br.Buffered() == 0 {
			out.flush()
		}
	}
}

// beatAnswers collects a beats connection's answers for its writer.
type beatAnswers struct {
	ready chan struct{} // cap 1
	stop  chan struct{}

	mu      sync.Mutex
	answers []beatAnswer
}

type beatAnswer struct {
	seq  uint64
	err  string
	resp any // *raft.AppendEntriesResponse, or *quietAnswer
}

// add queues an answer; flush lets the writer send what is queued.
func (a *beatAnswers) add(seq uint64, err error, resp any) {
	ans := beatAnswer{seq: seq}
	if err != nil {
		ans.err = err.Error()
	}
	switch r := resp.(type) {
	case *raft.AppendEntriesResponse:
		if r != nil {
			ans.resp = r
		}
	case *quietAnswer:
		ans.resp = r
	default:
		if err != nil {
			break
		}
		ans.err = fmt.Sprintf("transport: unexpected answer %T", resp)
	}
	if ans.resp == nil {
		ans.resp = &raft.AppendEntriesResponse{}
	}
	a.mu.Lock()
	a.answers = append(a.answers, ans)
	a.mu.Unlock()
}

func (a *beatAnswers) flush() {
	select {
	case a.ready <- struct{}{}:
	default:
	}
}

// write sends queued answers, all that are ready in one write, until stop
// or a write fails (which closes c, ending its reader).
func (a *beatAnswers) write(c net.Conn) {
	w := bufio.NewWriterSize(c, 16<<10)
	enc := codec.NewEncoder(w, msgpackHandle)
	for {
		select {
		case <-a.ready:
		case <-a.stop:
			return
		}
		a.mu.Lock()
		batch := a.answers
		a.answers = nil
		a.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		c.SetWriteDeadline(time.Now().Add(beatWriteTimeout))
		var err error
		for _, ans := range batch {
			if err = enc.Encode(ans.seq); err != nil {
				break
			}
			if err = enc.Encode(ans.err); err != nil {
				break
			}
			if err = enc.Encode(ans.resp); err != nil {
				break
			}
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			c.Close()
			return
		}
	}
}

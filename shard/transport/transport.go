package transport

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Transport is one shard's raft.Transport on a Mux: the shard's
// raft.NetworkTransport, except that heartbeats go coalesced with other
// shards' (beats.go), and that every RPC raft receives passes an optional
// filter first.
type Transport struct {
	*raft.NetworkTransport
	mux     *Mux
	shard   uint32
	window  time.Duration // 0: no coalescing
	timeout time.Duration
	pool    int // the NetworkTransport's MaxPool: retries on stale connections (stale.go)

	out    chan raft.RPC // what raft consumes
	done   chan struct{}
	filter func(raft.RPC) bool
	hb     atomic.Pointer[func(raft.RPC)]
	hbTerm atomic.Uint64 // highest term of a coalesced heartbeat served
	hurry  atomic.Int32
	stamps commitStamps // commit.go

	// Quiet shards (quiet.go): heartbeats sent per peer, and the last
	// append without entries each follower acknowledged.
	marks  leadMarks
	idleMu sync.Mutex
	idle   map[raft.ServerID]idleAck

	hurryMu sync.Mutex
	hurried chan struct{} // closed and replaced by Hurry: wakes paced heartbeats

	closeOnce sync.Once
	relay     sync.WaitGroup
}

// TransportConfig configures Mux.Transport.
type TransportConfig struct {
	// Net configures the shard's raft.NetworkTransport; Stream is set by
	// Mux.Transport to the shard's layer.
	Net raft.NetworkTransportConfig
	// CoalesceWindow is how long a heartbeat may wait for other shards'
	// to the same peer; 0 sends each on its own over the
	// NetworkTransport. Keep it a small fraction of the heartbeat timeout:
	// a heartbeat is late by up to this much.
	CoalesceWindow time.Duration
	// Filter, if set, sees every RPC before raft does; returning true
	// means it answered the RPC itself and raft never sees it. It is
	// called from the transport's goroutines, concurrently.
	Filter func(raft.RPC) bool
}

var _ raft.WithPreVote = (*Transport)(nil)

// Transport registers shard like Layer and returns its raft.Transport.
// Closing the Transport closes the layer and unregisters the shard.
func (m *Mux) Transport(shard uint32, cfg TransportConfig) (*Transport, error) {
	l, err := m.Layer(shard)
	if err != nil {
		return nil, err
	}
	cfg.Net.Stream = l
	t := &Transport{
		NetworkTransport: raft.NewNetworkTransportWithConfig(&cfg.Net),
		mux:              m,
		shard:            shard,
		window:           max(cfg.CoalesceWindow, 0),
		timeout:          cfg.Net.Timeout,
		pool:             max(cfg.Net.MaxPool, 1),
		out:              make(chan raft.RPC),
		done:             make(chan struct{}),
		filter:           cfg.Filter,
	}
	if t.timeout <= 0 {
		t.timeout = 10 * time.Second // NetworkTransport has none then; never wait for ever
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		t.NetworkTransport.Close()
		return nil, ErrClosed
	}
	m.transports[shard] = t
	m.mu.Unlock()
	t.relay.Add(1)
	go t.run()
	return t, nil
}

// Consumer is what raft reads its RPCs from.
func (t *Transport) Consumer() <-chan raft.RPC { return t.out }

// SetHeartbeatHandler sets raft's fast path for heartbeats, for both the
// NetworkTransport and coalesced heartbeats.
func (t *Transport) SetHeartbeatHandler(cb func(raft.RPC)) {
	if cb == nil {
		t.hb.Store(nil)
		t.NetworkTransport.SetHeartbeatHandler(nil)
		return
	}
	t.hb.Store(&cb)
	if t.mux.quiet == nil {
		t.NetworkTransport.SetHeartbeatHandler(cb)
		return
	}
	t.NetworkTransport.SetHeartbeatHandler(func(rpc raft.RPC) {
		t.leaveFor(rpc) // a heartbeat from a newer leader (quiet.go)
		cb(rpc)
	})
}

// Hurry makes heartbeats of this shard go without waiting for others until
// the returned function is called: raft confirms leadership (VerifyLeader)
// with a heartbeat round, and a linearizable read should not wait a
// coalescing window for it.
func (t *Transport) Hurry() (done func()) {
	t.hurry.Add(1)
	t.hurryMu.Lock()
	if t.hurried != nil {
		close(t.hurried)
		t.hurried = nil
	}
	t.hurryMu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { t.hurry.Add(-1) }) }
}

// AppendEntries sends req: coalesced with other shards' if it is a
// heartbeat, over the NetworkTransport otherwise.
//
// Only heartbeats: raft sends them from a goroutine of their own, so a
// heartbeat waiting out the window delays nothing else. An AppendEntries
// without entries that carries the commit index (sent every CommitTimeout
// while idle) comes from the follower's replication loop, and an entry
// proposed while it waited would wait too: one follower falls behind the
// other, and a fast election can pick it first (a refused vote costs a
// stagger, see shard/fastelect.go).
//
// A heartbeat that tells an idle follower the commit index (commit.go) is
// not a heartbeat to the follower's raft: it goes over the NetworkTransport.
//
// Whatever goes over the NetworkTransport is retried if its pooled
// connection turns out closed by the peer (stale.go).
func (t *Transport) AppendEntries(id raft.ServerID, target raft.ServerAddress, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if !isHeartbeat(req) {
		done, gen := t.quietAppend(id, target, req, resp)
		if done {
			return nil
		}
		t.stamps.sending(id, req)
		err := t.appendHeld(id, target, req, resp)
		if err == nil {
			t.stamps.answered(id, req, resp)
		}
		t.appended(id, req, resp, err, gen)
		return err
	}
	if t.hurry.Load() == 0 {
		if stamped := t.stamps.stamp(id, req); stamped != nil {
			err := t.appendDirect(id, target, stamped, resp)
			if err == nil {
				t.stamps.told(id, stamped, resp)
			}
			return err
		}
	}
	if t.quietHeartbeat(target, req, resp) {
		return nil
	}
	if t.window <= 0 {
		return t.appendDirect(id, target, req, resp)
	}
	window := t.window
	if t.hurry.Load() > 0 {
		window = 0
	}
	err := t.mux.beat(t.shard, target, req, resp, window, t.timeout)
	if errors.Is(err, errNoBeats) {
		return t.appendDirect(id, target, req, resp)
	}
	return err
}

// AppendEntriesPipeline refuses: raft then sends every append through
// AppendEntries, where the Transport sees what each follower acknowledged
// (commit.go). (The shards ran without pipelining before: in raft v1.7.3 a
// deposed leader's pipeline can block raft.Shutdown for ever.)
func (t *Transport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

// Close unregisters the shard and closes the NetworkTransport and its
// layer. Further calls return nil.
func (t *Transport) Close() error {
	var err error
	t.closeOnce.Do(func() {
		t.mux.mu.Lock()
		if t.mux.transports[t.shard] == t {
			delete(t.mux.transports, t.shard)
		}
		t.mux.mu.Unlock()
		close(t.done)
		if q := t.mux.quiet; q != nil {
			q.forget(t.shard)
		}
		err = t.NetworkTransport.Close()
		t.relay.Wait()
	})
	return err
}

// run relays the NetworkTransport's RPCs to raft.
func (t *Transport) run() {
	defer t.relay.Done()
	in := t.NetworkTransport.Consumer()
	for {
		select {
		case rpc := <-in:
			t.deliver(rpc)
		case <-t.done:
			return
		}
	}
}

// deliver hands rpc to raft, unless the filter answers it or the transport
// closes first (rpc is then not answered; the NetworkTransport that
// produced it is closing too).
func (t *Transport) deliver(rpc raft.RPC) {
	t.leaveFor(rpc) // quiet.go
	if t.filter != nil && t.filter(rpc) {
		return
	}
	select {
	case t.out <- rpc:
	case <-t.done:
	}
}

// serveHeartbeat answers a coalesced heartbeat through raft's heartbeat
// handler: at once, unless the heartbeat brings a term newer than any
// before. raft then persists the term (an fsync) before answering, so that
// one is answered from a goroutine of its own, not to hold up the other
// shards' heartbeats on the connection.
func (t *Transport) serveHeartbeat(req *raft.AppendEntriesRequest, seq uint64, out *beatAnswers) {
	fn := t.hb.Load()
	if !isHeartbeat(req) || fn == nil {
		out.add(seq, fmt.Errorf("transport: shard %d: only heartbeats are taken coalesced", t.shard), nil)
		return
	}
	q := t.mux.quiet
	leaving := q != nil && q.mustLeave(t.shard, req.Term, false)
	if prev := t.hbTerm.Load(); leaving || req.Term > prev && t.hbTerm.CompareAndSwap(prev, req.Term) {
		go func() {
			if leaving {
				q.leave(t.shard, req.Term, false) // quiet.go
			}
			t.heartbeat(*fn, req, seq, out)
			out.flush()
		}()
		return
	}
	t.heartbeat(*fn, req, seq, out)
}

// heartbeat calls raft's heartbeat handler fn with req and queues its
// answer. With quiet shards on, a heartbeat answered with success may be
// handed to raft again later (quiet.go).
func (t *Transport) heartbeat(fn func(raft.RPC), req *raft.AppendEntriesRequest, seq uint64, out *beatAnswers) {
	ch := make(chan raft.RPCResponse, 1)
	fn(raft.RPC{Command: req, RespChan: ch})
	select {
	case r := <-ch:
		out.add(seq, r.Error, r.Response)
		if resp, ok := r.Response.(*raft.AppendEntriesResponse); ok && r.Error == nil && resp.Success &&
			resp.Term == req.Term && t.mux.quiet != nil {
			t.mux.quiet.record(t.shard, string(leaderOf(req)), req)
		}
	default: // raft is shutting down and ignored it
		out.add(seq, raft.ErrTransportShutdown, nil)
	}
}

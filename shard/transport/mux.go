package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

var (
	// ErrClosed is returned by a closed Mux, and by Accept and Dial of a
	// closed layer.
	ErrClosed = errors.New("transport: closed")
	// ErrShardRegistered is returned by Mux.Layer when the shard already has
	// an open layer.
	ErrShardRegistered = errors.New("transport: shard already registered")
	// ErrNotAdvertisable is returned by NewMux when the address peers would
	// dial is unspecified (0.0.0.0 or ::).
	ErrNotAdvertisable = errors.New("transport: address is not advertisable")
)

// Mux accepts the Raft connections of every shard of a node on one listener
// and routes each to its shard's layer by the connection header. See the
// package documentation for the wire format and the contract.
type Mux struct {
	ln            net.Listener
	addr          net.Addr
	logger        *slog.Logger
	headerTimeout time.Duration
	dial          DialFunc
	tls           *tls.Config

	done    chan struct{} // closed by Close
	mu      sync.Mutex
	closed  bool
	layers  map[uint32]*layer
	pending map[net.Conn]struct{} // accepted, not handed to a layer: header unread, or a watch connection

	watchers map[raft.ServerAddress]*watcher // see watch.go
	peerDown func(raft.ServerAddress)

	transports map[uint32]*Transport            // shards answering coalesced RPCs, see beats.go
	beatPeers  map[raft.ServerAddress]*beatPeer // senders of coalesced RPCs
	peerIdle   time.Duration                    // beatPeerIdle; tests shorten it
	quiet      *quietFollower                   // nil: quiet shards off (quiet.go)

	wg    sync.WaitGroup // serve and route goroutines
	stats counters
}

// Stats counts what the Mux did with accepted connections since it started.
type Stats struct {
	Accepted     uint64 // accepted by the listener
	Routed       uint64 // returned by a shard layer's Accept
	UnknownShard uint64 // closed: no open layer for the shard in the header
	BadHeader    uint64 // closed: header missing, malformed or late
	Watching     uint64 // accepted watch connections held (a peer watching this node)
	WatchLost    uint64 // watch connections to peers that ended
	PeersDown    uint64 // of those, peers found gone (reported to OnPeerDown)
	BeatCalls    uint64 // AppendEntries without entries sent coalesced (beats.go)
	BeatBatches  uint64 // writes that carried them
	BeatTimeouts uint64 // coalesced calls not answered in time
	StaleConns   uint64 // raft RPCs sent again: their pooled connection was closed by the peer (stale.go)
	// RefusedRedials: redials of an append held while the peer refused
	// connections (stale.go).
	RefusedRedials uint64
	// Quiet shards (quiet.go): heartbeats and idle appends this node's
	// leaders answered themselves on a follower's promise; replicas here
	// that withdrew a promise, and of those, how many had to wait.
	QuietHeartbeats, QuietAppends, QuietLeaves, QuietWaits uint64
	// PeersRetired: senders of coalesced RPCs stopped for being idle
	// (a peer that left; beats.go).
	PeersRetired uint64
}

type counters struct {
	accepted, routed, unknownShard, badHeader atomic.Uint64
	watching, watchLost, peersDown            atomic.Uint64
	beatCalls, beatBatches, beatTimeouts      atomic.Uint64
	staleConns, refusedRedials                atomic.Uint64
	quietHeartbeats, quietAppends             atomic.Uint64
	quietLeaves, quietWaits, peersRetired     atomic.Uint64
}

// NewMux returns a Mux that serves ln until Close; it takes ownership of ln.
// advertise is the address peers dial to reach ln, reported by every layer's
// Addr (and so used by raft as this node's address); nil means ln.Addr(). An
// unspecified IP (0.0.0.0, ::) is rejected with ErrNotAdvertisable, and ln is
// then left open.
func NewMux(ln net.Listener, advertise net.Addr, opts ...Option) (*Mux, error) {
	if advertise == nil {
		advertise = ln.Addr()
	}
	if a, ok := advertise.(*net.TCPAddr); ok && (a.IP == nil || a.IP.IsUnspecified()) {
		return nil, fmt.Errorf("%w: %s", ErrNotAdvertisable, advertise)
	}
	m := &Mux{
		ln:            ln,
		addr:          advertise,
		logger:        slog.Default(),
		headerTimeout: DefaultHeaderTimeout,
		dial:          (&net.Dialer{}).DialContext,
		done:          make(chan struct{}),
		layers:        make(map[uint32]*layer),
		pending:       make(map[net.Conn]struct{}),
		watchers:      make(map[raft.ServerAddress]*watcher),
		transports:    make(map[uint32]*Transport),
		beatPeers:     make(map[raft.ServerAddress]*beatPeer),
		peerIdle:      beatPeerIdle,
	}
	for _, o := range opts {
		o(m)
	}
	if m.quiet != nil {
		m.wg.Add(1)
		go m.quiet.ticks()
	}
	m.wg.Add(1)
	go m.serve()
	return m, nil
}

// Addr returns the advertised address: what peers put in a raft.Server's
// Address to reach any shard on this node.
func (m *Mux) Addr() net.Addr { return m.addr }

// Stats returns a snapshot of the connection counters.
func (m *Mux) Stats() Stats {
	return Stats{
		Accepted:       m.stats.accepted.Load(),
		Routed:         m.stats.routed.Load(),
		UnknownShard:   m.stats.unknownShard.Load(),
		BadHeader:      m.stats.badHeader.Load(),
		Watching:       m.stats.watching.Load(),
		WatchLost:      m.stats.watchLost.Load(),
		PeersDown:      m.stats.peersDown.Load(),
		BeatCalls:      m.stats.beatCalls.Load(),
		BeatBatches:    m.stats.beatBatches.Load(),
		BeatTimeouts:   m.stats.beatTimeouts.Load(),
		StaleConns:     m.stats.staleConns.Load(),
		RefusedRedials: m.stats.refusedRedials.Load(),

		QuietHeartbeats: m.stats.quietHeartbeats.Load(),
		QuietAppends:    m.stats.quietAppends.Load(),
		QuietLeaves:     m.stats.quietLeaves.Load(),
		QuietWaits:      m.stats.quietWaits.Load(),
		PeersRetired:    m.stats.peersRetired.Load(),
	}
}

// Layer registers shard and returns its stream layer, for
// raft.NetworkTransportConfig.Stream. It fails with ErrShardRegistered if the
// shard already has an open layer and with ErrClosed after Close. Closing the
// layer unregisters the shard.
func (m *Mux) Layer(shard uint32) (raft.StreamLayer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if _, ok := m.layers[shard]; ok {
		return nil, fmt.Errorf("%w: %d", ErrShardRegistered, shard)
	}
	l := &layer{
		mux:    m,
		shard:  shard,
		accept: make(chan net.Conn),
		done:   make(chan struct{}),
		conns:  make(map[*conn]struct{}),
	}
	m.layers[shard] = l
	return l, nil
}

// Close stops the Mux: it closes the listener, the connections still sending
// their header and every layer, and returns once the Mux's goroutines have
// exited. Further calls return nil.
func (m *Mux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.done)
	layers := make([]*layer, 0, len(m.layers))
	for _, l := range m.layers {
		layers = append(layers, l)
	}
	pending := make([]net.Conn, 0, len(m.pending))
	for c := range m.pending {
		pending = append(pending, c)
	}
	for a, w := range m.watchers {
		w.close()
		delete(m.watchers, a)
	}
	m.mu.Unlock()

	err := m.ln.Close()
	for _, c := range pending {
		c.Close()
	}
	for _, l := range layers {
		l.Close()
	}
	m.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (m *Mux) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// serve is the accept loop. It retries failed Accepts with backoff, like
// raft's own listener, until the Mux is closed.
func (m *Mux) serve() {
	defer m.wg.Done()
	const baseDelay, maxDelay = 5 * time.Millisecond, time.Second
	var delay time.Duration
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if m.isClosed() {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				m.logger.Error("raft listener closed outside Mux.Close; no more connections will be accepted", "addr", m.addr)
				return
			}
			delay = min(max(2*delay, baseDelay), maxDelay)
			m.logger.Error("accepting raft connection", "err", err, "retry_in", delay)
			select {
			case <-m.done:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		m.stats.accepted.Add(1)
		if !m.addPending(c) {
			c.Close()
			return
		}
		go m.route(c)
	}
}

// addPending tracks an accepted connection until it is routed, and accounts
// for its route goroutine. It reports false once the Mux is closed.
func (m *Mux) addPending(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.pending[c] = struct{}{}
	m.wg.Add(1)
	return true
}

func (m *Mux) removePending(c net.Conn) {
	m.mu.Lock()
	delete(m.pending, c)
	m.mu.Unlock()
}

// route reads the header of raw and hands the connection to its shard's
// layer, or closes it.
func (m *Mux) route(raw net.Conn) {
	defer m.wg.Done()
	defer m.removePending(raw)

	c := raw
	if m.tls != nil {
		c = tls.Server(raw, m.tls)
	}
	logger := m.logger.With("remote", raw.RemoteAddr())
	c.SetDeadline(time.Now().Add(m.headerTimeout))
	shard, kind, err := readHeader(c)
	if err == nil {
		err = c.SetDeadline(time.Time{})
	}
	if err != nil {
		m.stats.badHeader.Add(1)
		if !m.isClosed() {
			logger.Warn("dropping raft connection", "err", err)
		}
		c.Close()
		return
	}

	switch kind {
	case headerWatch:
		m.stats.watching.Add(1)
		m.holdAccepted(c)
		m.stats.watching.Add(^uint64(0))
		return
	case headerBeats:
		m.serveBeats(c)
		return
	}

	m.mu.Lock()
	l := m.layers[shard]
	m.mu.Unlock()
	if l == nil {
		m.stats.unknownShard.Add(1)
		logger.Debug("dropping raft connection for unregistered shard", "shard", shard)
		c.Close()
		return
	}
	select {
	case l.accept <- c: // counted as routed by Accept
	case <-l.done:
		m.stats.unknownShard.Add(1)
		logger.Debug("dropping raft connection for closed shard", "shard", shard)
		c.Close()
	}
}

// unregister removes l if it is still the shard's registered layer.
func (m *Mux) unregister(l *layer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.layers[l.shard] == l {
		delete(m.layers, l.shard)
	}
}

package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// Watching peers.
//
// A follower learns that its leader is gone only when no heartbeat has come
// for a heartbeat timeout or more (1–2 s by default): it cannot tell a
// dead leader from a slow one. When the leader's process dies but its host
// does not — a crash, an OOM kill, SIGKILL, a container killed — the kernel
// closes the process's sockets at once, and that is news the follower can
// act on in milliseconds.
//
// So a Mux may watch peers: for each watched address it holds one idle
// connection to that peer's Mux (header byte headerWatch, then nothing in
// either direction). When the connection ends, the Mux dials the address
// again with a short timeout (WatchRedialTimeout); if that fails too, the
// peer's Raft port is gone and the Mux calls the function set by
// OnPeerDown. (A redial that fails other than by refusal — reset, timeout —
// is tried once more first.) A connection that merely broke, to a peer that still
// listens, is replaced without a report. A peer that is paused, partitioned
// or whose host lost power closes nothing; raft's timeouts cover those.
//
// A report is a hint, never a decision: what is done with it (shard starts
// an election at once, see shard/DESIGN.md) must be safe when the hint is
// wrong, as Raft elections always are.

// WatchRedialTimeout bounds the dial that decides, after a watch connection
// ended, whether the peer still listens.
const WatchRedialTimeout = 250 * time.Millisecond

const (
	watchDialTimeout = time.Second // dials while (re)connecting
	// Retries while a peer is unreachable: short, because a restarted
	// node must be watched again before it can lead and die again, and
	// cheap (a refused dial, or one dial a second to a host that is gone).
	watchRetryMin = 100 * time.Millisecond
	watchRetryMax = time.Second
	watchMinLife  = time.Second // shorter-lived connections back off
)

// watcher holds the watch connection to one peer.
type watcher struct {
	addr raft.ServerAddress
	stop chan struct{} // closed by close

	mu      sync.Mutex
	conn    net.Conn // the connection being held, if any
	stopped bool
}

func (w *watcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	w.stopped = true
	close(w.stop)
	if w.conn != nil {
		w.conn.Close()
	}
}

// OnPeerDown sets the function called, from a watcher's goroutine, with the
// address of a watched peer whose Raft port is gone (see WatchPeers); nil
// removes it. fn must not block for long: it delays that peer's watching.
func (m *Mux) OnPeerDown(fn func(addr raft.ServerAddress)) {
	m.mu.Lock()
	m.peerDown = fn
	m.mu.Unlock()
}

// WatchPeers makes the Mux watch exactly addrs: it starts watching the new
// ones and stops watching those not listed. The Mux's own address is
// ignored. It does nothing after Close.
func (m *Mux) WatchPeers(addrs []raft.ServerAddress) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	want := make(map[raft.ServerAddress]bool, len(addrs))
	for _, a := range addrs {
		if a != "" && string(a) != m.addr.String() {
			want[a] = true
		}
	}
	for a, w := range m.watchers {
		if !want[a] {
			w.close()
			delete(m.watchers, a)
		}
	}
	for a := range want {
		if m.watchers[a] != nil {
			continue
		}
		w := &watcher{addr: a, stop: make(chan struct{})}
		m.watchers[a] = w
		m.wg.Add(1)
		go m.watch(w)
	}
}

// Watched returns the addresses being watched, in no particular order.
func (m *Mux) Watched() []raft.ServerAddress {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]raft.ServerAddress, 0, len(m.watchers))
	for a := range m.watchers {
		out = append(out, a)
	}
	return out
}

// watch keeps a watch connection to w.addr until w is closed, reporting the
// peer down each time a connection ends and a redial fails.
func (m *Mux) watch(w *watcher) {
	defer m.wg.Done()
	var (
		c     net.Conn
		delay time.Duration
		err   error
	)
	for {
		if c == nil {
			if delay > 0 {
				select {
				case <-w.stop:
					return
				case <-time.After(delay):
				}
			}
			if c, err = m.dialWatch(w.addr, watchDialTimeout); err != nil {
				c = nil
				delay = min(max(2*delay, watchRetryMin), watchRetryMax)
				continue
			}
		}
		opened := time.Now()
		if !w.hold(c) {
			return
		}
		m.stats.watchLost.Add(1)
		c, err = m.dialWatch(w.addr, WatchRedialTimeout)
		if err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
			// Only a refusal is the kernel saying nobody listens. A
			// dial to a live peer has been seen to fail with a reset
			// (once in 20 kills, a few ms after another node died):
			// ask once more before reporting.
			c, err = m.dialWatch(w.addr, WatchRedialTimeout)
		}
		if err != nil {
			c = nil
			m.stats.peersDown.Add(1)
			m.logger.Info("watched peer's raft port is gone", "peer", w.addr, "err", err)
			m.mu.Lock()
			fn := m.peerDown
			m.mu.Unlock()
			if fn != nil {
				fn(w.addr)
			}
			delay = watchRetryMin
			continue
		}
		if time.Since(opened) < watchMinLife {
			// The peer closes watch connections at once (a version that
			// does not know them, or it is shutting down): retry slowly.
			c.Close()
			c = nil
			delay = min(max(2*delay, watchRetryMin), watchRetryMax)
			continue
		}
		delay = 0
	}
}

// hold reads c until it fails or w is closed, then closes c. It reports
// false if w was closed.
func (w *watcher) hold(c net.Conn) bool {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		c.Close()
		return false
	}
	w.conn = c
	w.mu.Unlock()

	var buf [64]byte
	for {
		if _, err := c.Read(buf[:]); err != nil {
			break
		}
	}
	c.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.conn = nil
	return !w.stopped
}

// dialWatch opens a watch connection to addr within timeout.
func (m *Mux) dialWatch(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return m.dialHeader(addr, headerWatch, timeout)
}

// dialHeader connects to the Mux at addr and writes the one-byte header
// opening a connection of that kind (headerWatch, headerBeats), within
// timeout.
func (m *Mux) dialHeader(addr raft.ServerAddress, header byte, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := m.dialPeer(ctx, addr)
	if err != nil {
		return nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	if _, err := c.Write([]byte{header}); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// dialPeer connects to the Mux at addr, over TLS if the Mux has it.
func (m *Mux) dialPeer(ctx context.Context, addr raft.ServerAddress) (net.Conn, error) {
	c, err := m.dial(ctx, "tcp", string(addr))
	if err != nil {
		return nil, err
	}
	if cfg := m.tls; cfg != nil {
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			if host, _, err := net.SplitHostPort(string(addr)); err == nil {
				cfg.ServerName = host
			}
		}
		c = tls.Client(c, cfg)
	}
	return c, nil
}

// holdAccepted keeps an accepted watch connection open, reading and
// discarding, until the peer closes it or the Mux closes (Close closes the
// connections in pending, where this one stays).
func (m *Mux) holdAccepted(c net.Conn) {
	var buf [64]byte
	for {
		if _, err := c.Read(buf[:]); err != nil {
			break
		}
	}
	c.Close()
}

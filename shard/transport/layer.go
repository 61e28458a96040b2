package transport

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// layer is one shard's raft.StreamLayer on a Mux.
type layer struct {
	mux    *Mux
	shard  uint32
	accept chan net.Conn // from Mux.route
	done   chan struct{} // closed by Close

	mu     sync.Mutex
	closed bool
	conns  map[*conn]struct{} // accepted or dialed, not yet closed
}

var _ raft.StreamLayer = (*layer)(nil)

// Accept waits for the next connection addressed to this shard. It returns
// ErrClosed once the layer or its Mux is closed.
func (l *layer) Accept() (net.Conn, error) {
	select {
	case c := <-l.accept:
		tc, ok := l.track(c)
		if !ok { // closed since the Mux handed c over
			l.mux.stats.unknownShard.Add(1)
			c.Close()
			return nil, ErrClosed
		}
		l.mux.stats.routed.Add(1)
		return tc, nil
	case <-l.done:
		return nil, ErrClosed
	}
}

// Addr returns the Mux's advertised address, shared by every shard.
func (l *layer) Addr() net.Addr { return l.mux.addr }

// Dial connects to the Mux at address and writes the header naming this
// shard, all within timeout (none if timeout <= 0).
func (l *layer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	select {
	case <-l.done:
		return nil, ErrClosed
	default:
	}
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	c, err := l.mux.dialPeer(ctx, address)
	if err != nil {
		return nil, err
	}
	if err := l.writeHeader(ctx, c); err != nil {
		c.Close()
		return nil, fmt.Errorf("transport: shard %d: dialing %s: %w", l.shard, address, err)
	}
	tc, ok := l.track(c)
	if !ok {
		c.Close()
		return nil, ErrClosed
	}
	return tc, nil
}

// writeHeader writes the header (after the TLS handshake, if any) before
// ctx's deadline.
func (l *layer) writeHeader(ctx context.Context, c net.Conn) error {
	if d, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(d); err != nil {
			return err
		}
	}
	if _, err := c.Write(appendHeader(make([]byte, 0, maxHeaderLen), l.shard)); err != nil {
		return err
	}
	return c.SetDeadline(time.Time{})
}

// Close unregisters the shard, makes Accept and Dial fail with ErrClosed and
// closes every connection the layer accepted or dialed. Further calls return
// nil.
func (l *layer) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.done)
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()

	l.mux.unregister(l)
	for c := range conns {
		c.shut()
	}
	return nil
}

// track wraps c so that closing the layer closes it; it reports false if the
// layer is already closed.
func (l *layer) track(c net.Conn) (*conn, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, false
	}
	tc := &conn{Conn: c, layer: l}
	l.conns[tc] = struct{}{}
	return tc, true
}

func (l *layer) untrack(c *conn) {
	l.mu.Lock()
	delete(l.conns, c) // no-op on the nil map of a closed layer
	l.mu.Unlock()
}

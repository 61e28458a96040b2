package transport

import (
	"io"
	"net"
	"sync/atomic"
)

// conn is a connection handed to raft by a layer. The layer tracks it so that
// closing the layer closes it too.
type conn struct {
	net.Conn
	layer *layer
	// cut is set when the layer closes the connection, before closing it.
	cut atomic.Bool
}

// Read reports io.EOF once the owning layer has closed the connection, so
// raft's handlers treat a shutdown like a peer hanging up instead of logging
// an error for it.
func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.cut.Load() {
		err = io.EOF
	}
	return n, err
}

// Close closes the connection and stops tracking it.
func (c *conn) Close() error {
	c.layer.untrack(c)
	return c.Conn.Close()
}

// shut is how the layer closes a connection it tracks.
func (c *conn) shut() {
	c.cut.Store(true)
	c.Conn.Close()
}

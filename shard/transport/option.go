package transport

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"time"
)

// DefaultHeaderTimeout bounds how long an accepted connection may take to
// send its header (and, with TLS, to finish its handshake).
const DefaultHeaderTimeout = 5 * time.Second

// DialFunc opens an outgoing connection; (*net.Dialer).DialContext is one.
// The Mux calls it with network "tcp" and a raft.ServerAddress as address.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Option configures a Mux.
type Option func(*Mux)

// WithLogger sets the logger; the default (and nil) is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(m *Mux) {
		if l != nil {
			m.logger = l
		}
	}
}

// WithHeaderTimeout sets how long an accepted connection may take to deliver
// its header; d <= 0 keeps DefaultHeaderTimeout.
func WithHeaderTimeout(d time.Duration) Option {
	return func(m *Mux) {
		if d > 0 {
			m.headerTimeout = d
		}
	}
}

// WithDialer replaces the function used by every layer's Dial, e.g. to bind
// a source address or to inject faults in tests. The default is a zero
// net.Dialer, also used when dial is nil.
func WithDialer(dial DialFunc) Option {
	return func(m *Mux) {
		if dial != nil {
			m.dial = dial
		}
	}
}

// WithTLS runs every connection, both ways, over TLS with cfg: accepted
// connections as a server, dialed ones as a client. For mutual TLS set
// Certificates, RootCAs, ClientCAs and ClientAuth in the one config. When
// cfg.ServerName is empty, Dial verifies the server against the host of the
// address it dials. cfg must not be modified after the Mux is created.
func WithTLS(cfg *tls.Config) Option {
	return func(m *Mux) { m.tls = cfg }
}

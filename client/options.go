package client

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"time"
)

// Default settings; see the options that change them.
const (
	DefaultCallTimeout = 5 * time.Second
	DefaultMinBackoff  = 20 * time.Millisecond
	DefaultMaxBackoff  = time.Second
)

// Protocol is the RPC protocol spoken to the cluster. Every frontdesk node
// serves all of them on its API port.
type Protocol int

const (
	// ProtocolConnect is the Connect protocol (the default).
	ProtocolConnect Protocol = iota
	// ProtocolGRPC is gRPC; it needs HTTP/2, which the default transport
	// and WithTLS provide.
	ProtocolGRPC
	// ProtocolGRPCWeb is gRPC-Web.
	ProtocolGRPCWeb
)

// Option configures a Client.
type Option func(*config)

type config struct {
	httpClient  *http.Client
	tls         *tls.Config
	token       string
	callTimeout time.Duration
	minBackoff  time.Duration
	maxBackoff  time.Duration
	log         *slog.Logger
	protocol    Protocol
	// onBackoff, for tests, runs before each backoff wait of a call.
	onBackoff func(attempts int)
}

func defaultConfig() config {
	return config{
		callTimeout: DefaultCallTimeout,
		minBackoff:  DefaultMinBackoff,
		maxBackoff:  DefaultMaxBackoff,
		log:         slog.New(slog.DiscardHandler),
	}
}

// WithHTTPClient sends every call through hc instead of the default h2c
// transport. The client is used as it is: WithTLS then only switches the
// address scheme to https, and the gRPC protocol needs hc to speak HTTP/2.
// Close does not close hc's connections.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) { c.httpClient = hc }
}

// WithTLS talks https with cfg (HTTP/2 by ALPN, falling back to HTTP/1.1).
// Addresses without a scheme, including those learned from the shard map,
// get https://.
func WithTLS(cfg *tls.Config) Option {
	return func(c *config) {
		if cfg == nil {
			cfg = &tls.Config{}
		}
		c.tls = cfg
	}
}

// WithToken sends "Authorization: Bearer <token>" with every call and
// stream, including the shard map requests.
func WithToken(token string) Option {
	return func(c *config) { c.token = token }
}

// WithCallTimeout bounds each attempt of a unary call (default 5s); an
// attempt that runs out is retried like an unavailable node, with the same
// request id. Zero or negative leaves attempts bounded by the call's
// context only. Event streams are not bounded by it.
func WithCallTimeout(d time.Duration) Option {
	return func(c *config) { c.callTimeout = d }
}

// WithRetry sets the backoff between retries that had no leader hint to
// follow: the n-th wait is a random duration in [d/2, d] with
// d = min(max, min·2ⁿ). Defaults: 20ms and 1s. Values that are not positive
// keep the defaults; max below min is raised to min.
func WithRetry(min, max time.Duration) Option {
	return func(c *config) {
		if min > 0 {
			c.minBackoff = min
		}
		if max > 0 {
			c.maxBackoff = max
		}
		if c.maxBackoff < c.minBackoff {
			c.maxBackoff = c.minBackoff
		}
	}
}

// WithLogger logs retries, redirects and shard map refreshes at debug level
// (default: nothing is logged).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.log = l
		}
	}
}

// WithProtocol chooses the RPC protocol (default ProtocolConnect).
func WithProtocol(p Protocol) Option {
	return func(c *config) { c.protocol = p }
}

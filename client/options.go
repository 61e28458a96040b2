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
	batchMax    int
	// batchStall: a Batch RPC out this long no longer holds the queue
	// back (defaultBatchStall; tests change it).
	batchStall time.Duration
	// onBackoff, for tests, runs before each backoff wait of a call.
	onBackoff func(attempts int)
}

func defaultConfig() config {
	return config{
		callTimeout: DefaultCallTimeout,
		minBackoff:  DefaultMinBackoff,
		maxBackoff:  DefaultMaxBackoff,
		log:         slog.New(slog.DiscardHandler),
		batchStall:  defaultBatchStall,
		batchMax:    DefaultBatchCalls,
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

// WithBatching coalesces concurrent write calls (Consult, Escalate,
// Transfer, End, FirstReply, SetStatus, PullNext) to the same node into
// DispatchService.Batch RPCs of up to maxCalls calls (at most
// MaxBatchCalls), so that under load the cost of an RPC — HTTP/2 framing,
// Connect encoding, the handler — is paid once per batch instead of once
// per call. There is no linger timer: a call issued while no RPC is out to
// its node goes at once, alone, as its own unary RPC; calls issued while
// one is out queue up and go together in the next Batch when it returns,
// and the node proposes each shard's share of them as one Raft entry. At
// low load calls go one by one; under load batches grow by themselves. A
// Batch out for longer than 100ms no longer holds the others back: the
// calls queued behind it go in another (at most four RPCs out per node).
//
// Batching is invisible to callers except for speed: each call keeps its
// own context, request id, retries, leader-hint redirects and errors
// (the server validates, authorizes and answers each call of a batch as
// it would alone). A call whose context ends while its batch is out
// returns what a unary call would, indeterminate included. Nodes that do
// not serve Batch (UNIMPLEMENTED) get unary calls from then on. Reads are
// never batched.
//
// Batching is on by default with DefaultBatchCalls; maxCalls <= 0 turns it
// off, so that every call is its own unary RPC.
func WithBatching(maxCalls int) Option {
	return func(c *config) { c.batchMax = min(max(maxCalls, 0), MaxBatchCalls) }
}

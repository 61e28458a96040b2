package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
)

// Client talks to a frontdesk cluster. It is safe for concurrent use.
type Client struct {
	cfg      config
	hc       *http.Client
	ownHTTP  bool
	copts    []connect.ClientOption
	routes   *routes
	closeCtx context.Context
	close    context.CancelFunc

	// endpoints maps a base URL to its *endpoint, made once under mu and
	// read without it (every call looks its node up).
	mu        sync.Mutex
	endpoints sync.Map
}

// endpoint holds the service clients of one node.
type endpoint struct {
	addr     string
	dispatch frontdeskv1connect.DispatchServiceClient
	agent    frontdeskv1connect.AgentServiceClient
	admin    frontdeskv1connect.AdminServiceClient
	event    frontdeskv1connect.EventServiceClient
	cluster  frontdeskv1connect.ClusterServiceClient
	// batch coalesces write calls (nil with WithBatching(0)).
	batch *batcher
}

// New connects to a cluster through any of addrs ("host:port", or URLs
// with a scheme): it asks them in turn for the shard map and returns once
// one answers. It keeps trying, with backoff, until ctx ends, so give ctx a
// deadline; it fails at once on an answer that no retry can change (for
// instance UNAUTHENTICATED). ctx bounds New only, not the Client.
func New(ctx context.Context, addrs []string, opts ...Option) (*Client, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	scheme := "http"
	if cfg.tls != nil {
		scheme = "https"
	}
	r, err := newRoutes(scheme, addrs)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, hc: cfg.httpClient, routes: r}
	if c.hc == nil {
		c.hc, c.ownHTTP = &http.Client{Transport: newTransport(cfg.tls)}, true
	}
	c.copts = []connect.ClientOption{
		// Messages are small and the network is a LAN: compressing every
		// response costs more CPU than it saves. (Our transport also sets
		// DisableCompression, or Go would ask for gzip at the HTTP level;
		// nodes compress nothing under dispatch.CompressMinBytes anyway.)
		connect.WithAcceptCompression("gzip", nil, nil),
	}
	switch cfg.protocol {
	case ProtocolGRPC:
		c.copts = append(c.copts, connect.WithGRPC())
	case ProtocolGRPCWeb:
		c.copts = append(c.copts, connect.WithGRPCWeb())
	}
	if cfg.token != "" {
		c.copts = append(c.copts, connect.WithInterceptors(bearer("Bearer "+cfg.token)))
	}
	c.closeCtx, c.close = context.WithCancel(context.Background())

	if err := c.bootstrap(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// bootstrap fetches the first shard map.
func (c *Client) bootstrap(ctx context.Context) error {
	var bo backoff
	for {
		err := c.refresh(ctx, c.routes.generation())
		if err == nil {
			return nil
		}
		if ce := new(connect.Error); errors.As(err, &ce) && !classify(err, true).retry {
			return newError("/frontdesk.v1.ClusterService/GetShardMap", err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("client: no node answered with a shard map: %w", errors.Join(ctx.Err(), err))
		}
		if !bo.sleep(ctx, c.cfg.minBackoff, c.cfg.maxBackoff) {
			return fmt.Errorf("client: no node answered with a shard map: %w", errors.Join(ctx.Err(), err))
		}
	}
}

// newTransport is the default transport: h2c for http (prior knowledge; the
// frontdesk API port serves it), HTTP/2 or HTTP/1.1 by ALPN with TLS. HTTP/2
// pings close a connection to a node that stopped answering, so event
// streams on it fail over instead of hanging.
func newTransport(tlsCfg *tls.Config) *http.Transport {
	p := new(http.Protocols)
	if tlsCfg == nil {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
		p.SetHTTP2(true)
	}
	d := &net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext:         d.DialContext,
		TLSClientConfig:     tlsCfg,
		ForceAttemptHTTP2:   tlsCfg != nil,
		Protocols:           p,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 5 * time.Second,
			PingTimeout:     3 * time.Second,
		},
	}
}

// Close stops the Client's Watchers and closes its idle connections (when
// it made its own transport). Calls after Close fail with ErrClosed.
func (c *Client) Close() error {
	c.close()
	if c.ownHTTP {
		c.hc.CloseIdleConnections()
	}
	return nil
}

// endpoint returns the service clients of a base URL, made once.
func (c *Client) endpoint(addr string) *endpoint {
	if ep, ok := c.endpoints.Load(addr); ok {
		return ep.(*endpoint)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ep, ok := c.endpoints.Load(addr); ok {
		return ep.(*endpoint)
	}
	ep := &endpoint{
		addr:     addr,
		dispatch: frontdeskv1connect.NewDispatchServiceClient(c.hc, addr, c.copts...),
		agent:    frontdeskv1connect.NewAgentServiceClient(c.hc, addr, c.copts...),
		admin:    frontdeskv1connect.NewAdminServiceClient(c.hc, addr, c.copts...),
		event:    frontdeskv1connect.NewEventServiceClient(c.hc, addr, c.copts...),
		cluster:  frontdeskv1connect.NewClusterServiceClient(c.hc, addr, c.copts...),
	}
	if c.cfg.batchMax > 0 {
		ep.batch = newBatcher(c, ep, c.cfg.batchMax, c.cfg.batchStall)
	}
	c.endpoints.Store(addr, ep)
	return ep
}

// Shards is the cluster's shard count.
func (c *Client) Shards() uint32 { return c.routes.shardCount() }

// ShardOf is the shard of a merchant (ForMerchant with the cluster's count).
func (c *Client) ShardOf(merchantID string) uint32 {
	return ForMerchant(merchantID, c.routes.shardCount())
}

// bearer is an interceptor that sends an Authorization header.
type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", string(b))
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", string(b))
		return conn
	}
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

type requestIDKey struct{}

// WithRequestID makes the next mutating call made with ctx carry id
// instead of a fresh random one: repeating a call with the id of an earlier
// attempt (see RetryError.RequestID) returns the earlier result and changes
// nothing. Use one id per intended change.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// NewRequestID returns a fresh request id: 128 random bits in hex.
func NewRequestID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// requestID is ctx's id, or a fresh one.
func requestID(ctx context.Context) string {
	if id, ok := ctx.Value(requestIDKey{}).(string); ok && id != "" {
		return id
	}
	return NewRequestID()
}

// logger returns the configured logger.
func (c *Client) logger() *slog.Logger { return c.cfg.log }

package client

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
)

// maxRedirects bounds how many leader hints in a row a call follows at once
// before it backs off: two nodes that name each other (stale views during
// an election) must not spin.
const maxRedirects = 3

// spec describes one logical call.
type spec struct {
	procedure string
	// shard the call is about, or -1 for any node.
	shard int
	// write: the call changes state, so an unknown outcome matters.
	write bool
	// anyReplica: any replica of the shard may serve it (stale reads).
	anyReplica bool
	requestID  string
}

func (c *Client) merchantSpec(procedure, merchant string, write bool, requestID string) spec {
	return spec{
		procedure: procedure, shard: int(c.ShardOf(merchant)),
		write: write, requestID: requestID,
	}
}

// invoke runs attempt until it succeeds, fails for good or ctx ends; see
// the package documentation for the rules.
func (c *Client) invoke(ctx context.Context, s spec, attempt func(context.Context, *endpoint) error) error {
	var (
		bo        backoff
		attempts  int
		redirects int
		unknown   bool
		last      error
		next      string // address named by a leader hint
		failed    string // address of the last failed attempt
	)
	for {
		if err := c.closeCtx.Err(); err != nil {
			return ErrClosed
		}
		if ctx.Err() != nil {
			return c.giveUp(ctx, s, attempts, unknown, last)
		}
		addr := next
		if addr == "" {
			addr = c.routes.target(s.shard, s.anyReplica, failed)
		}
		next = ""

		actx, cancel := ctx, context.CancelFunc(func() {})
		if c.cfg.callTimeout > 0 {
			actx, cancel = context.WithTimeout(ctx, c.cfg.callTimeout)
		}
		// A node can only apply a request it received whole: until the
		// transport has written all of it, a failure means "not applied".
		// The transport reports the write done (sent) only after it
		// returned, by which time the node may have the request and have
		// applied it; so a call whose own context ends once the headers
		// are out (started) and the write not reported failed is
		// unknown too.
		var sent, started atomic.Bool
		actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
			WroteHeaders: func() { started.Store(true) },
			WroteRequest: func(i httptrace.WroteRequestInfo) {
				sent.Store(i.Err == nil)
				if i.Err != nil {
					started.Store(false)
				}
			},
		})
		err := attempt(actx, c.endpoint(addr))
		cancel()
		attempts++
		if err == nil {
			return nil
		}
		if ctx.Err() != nil && !connect.IsWireError(err) {
			// The call's own context ended during the attempt: its
			// outcome is unknown if the request went out whole, or may
			// have.
			if s.write && (sent.Load() || started.Load()) {
				unknown = true
			}
			c.logger().Debug("context ended during an attempt", slog.String("procedure", s.procedure),
				slog.String("addr", addr), slog.Bool("sent", sent.Load()), slog.Any("err", err))
			if last == nil {
				last = newError(s.procedure, err)
			}
			return c.giveUp(ctx, s, attempts, unknown, last)
		}
		f := classify(err, sent.Load())
		if !f.retry {
			return newError(s.procedure, err)
		}
		if s.write && f.unknown {
			unknown = true
		}
		last = newError(s.procedure, err)
		failed = addr
		c.logger().Debug("retrying", slog.String("procedure", s.procedure), slog.String("addr", addr),
			slog.Int("shard", s.shard), slog.Int("attempt", attempts), slog.String("request_id", s.requestID),
			slog.Bool("unknown", f.unknown), slog.Any("err", err))

		if f.hint != "" {
			hint := c.routes.url(f.hint)
			c.routes.setLeader(f.hintShard, hint)
			if hint != addr && redirects < maxRedirects {
				next = hint
				redirects++
				continue
			}
		} else {
			c.routes.forget(s.shard, addr)
		}
		redirects = 0
		seen := c.routes.generation()
		if c.cfg.onBackoff != nil {
			c.cfg.onBackoff(attempts)
		}
		if !bo.sleep(ctx, c.cfg.minBackoff, c.cfg.maxBackoff) {
			return c.giveUp(ctx, s, attempts, unknown, last)
		}
		if err := c.refresh(ctx, seen); err != nil {
			c.logger().Debug("shard map refresh failed", slog.Any("err", err))
		}
	}
}

// giveUp is the error of a call whose context ended first.
func (c *Client) giveUp(ctx context.Context, s spec, attempts int, unknown bool, last error) error {
	return &RetryError{
		Procedure: s.procedure, RequestID: s.requestID, Attempts: attempts,
		Indeterminate: unknown, Last: last, Ctx: ctx.Err(),
	}
}

// unary runs a unary RPC under invoke and returns its response message.
func unary[Res any](ctx context.Context, c *Client, s spec, call func(context.Context, *endpoint) (*connect.Response[Res], error)) (*Res, error) {
	var out *Res
	err := c.invoke(ctx, s, func(ctx context.Context, ep *endpoint) error {
		resp, err := call(ctx, ep)
		if err != nil {
			return err
		}
		out = resp.Msg
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// backoff is exponential backoff with jitter: the n-th wait is random in
// [d/2, d], d = min(max, min·2ⁿ).
type backoff struct{ n int }

func (b *backoff) next(min, max time.Duration) time.Duration {
	d := min
	for i := 0; i < b.n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	b.n++
	half := d / 2
	return half + rand.N(d-half+1)
}

// sleep waits for the next backoff; false if ctx ended first.
func (b *backoff) sleep(ctx context.Context, min, max time.Duration) bool {
	t := time.NewTimer(b.next(min, max))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (b *backoff) reset() { b.n = 0 }

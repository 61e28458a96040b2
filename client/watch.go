package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"connectrpc.com/connect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/gen/frontdesk/v1/frontdeskv1connect"
)

// errStreamEnded: a node closed an event stream without an error (it is
// shutting down); the Watcher resumes elsewhere.
var errStreamEnded = errors.New("client: event stream ended by the node")

// Watcher is a merchant's event stream that survives failover. Next is
// called by one goroutine; Close may be called from any.
type Watcher struct {
	c        *Client
	ctx      context.Context
	cancel   context.CancelFunc
	stop     func() bool
	closed   atomic.Bool
	merchant string
	shard    int

	last   uint64        // seq of the last event delivered
	resume atomic.Uint64 // seq to resume after: last, or a node's scanned_seq past it
	stream *connect.ServerStreamForClient[pb.WatchResponse]
	addr   string // node of the current stream
	fresh  bool   // nothing new received on this stream yet
	failed string // node of the last failed stream
	next   string // node named by a leader hint
	bo     backoff
	hops   int // leader hints followed in a row
	err    error
}

// Watch streams the events of merchant with seq > afterSeq (0: from the
// oldest event the shard still keeps). The stream starts at the shard's
// leader; when it breaks (node killed, UNAVAILABLE, a node shutting down)
// the Watcher reconnects to any replica of the shard — the leader or
// another voter, in rotation, with backoff and shard map refreshes — and
// asks for the events after ResumeSeq, dropping any it has delivered
// already. Seqs number all events of the merchant's shard, so the seqs of
// one merchant's events increase but are not consecutive. ctx bounds the
// whole stream.
func (c *Client) Watch(ctx context.Context, merchant string, afterSeq uint64) *Watcher {
	wctx, cancel := context.WithCancel(ctx)
	w := &Watcher{
		c: c, ctx: wctx, cancel: cancel, stop: context.AfterFunc(c.closeCtx, cancel),
		merchant: merchant, shard: int(c.ShardOf(merchant)), last: afterSeq,
	}
	w.resume.Store(afterSeq)
	return w
}

// Next blocks until new events arrive and returns them: a non-empty batch
// in increasing seq order, every seq above those returned before. Errors are
// final (later calls return the same error): ErrCompacted when the events
// after the last delivered seq are gone; ErrEventOrder when a node sent
// seqs that do not increase; an *Error for a request the cluster rejects
// (ErrInvalid for an empty merchant id, for instance); ErrClosed after
// Close or the Client's Close; the context's error when ctx ends.
func (w *Watcher) Next() ([]*pb.Event, error) {
	for w.err == nil {
		if w.stream == nil {
			w.open()
			continue
		}
		if w.stream.Receive() {
			msg := w.stream.Msg()
			events, err := w.accept(msg.GetEvents())
			if err != nil {
				w.drop()
				w.err = err
				break
			}
			if s := msg.GetScannedSeq(); s > w.resume.Load() {
				w.resume.Store(s)
			}
			if len(events) > 0 {
				w.bo.reset()
				w.hops = 0
				return events, nil
			}
			continue
		}
		err := w.stream.Err()
		if err == nil {
			err = errStreamEnded
		}
		w.drop()
		w.retry(w.addr, err)
	}
	w.stop() // the Watcher is done: release its context
	w.cancel()
	return nil, w.err
}

// LastSeq is the seq of the last event Next returned (or afterSeq). Call it
// from the goroutine that calls Next.
func (w *Watcher) LastSeq() uint64 { return w.last }

// ResumeSeq is where a new Watch for the same merchant would resume this
// one without missing an event: LastSeq, or past it where the node has
// told the Watcher (scanned_seq) that the shard's later events were other
// merchants'. A quiet merchant's LastSeq can fall behind the shard's
// bounded event log, and a Watch after it fail with ErrCompacted, while
// its ResumeSeq stays near the log's head: it is the seq a subscriber
// should keep to watch again later. Safe to call from any goroutine.
func (w *Watcher) ResumeSeq() uint64 { return w.resume.Load() }

// Close ends the stream; a blocked Next returns ErrClosed.
func (w *Watcher) Close() error {
	w.closed.Store(true)
	w.stop()
	w.cancel()
	return nil
}

func (w *Watcher) drop() {
	if w.stream != nil {
		_ = w.stream.Close()
		w.stream = nil
	}
}

// open starts a stream after ResumeSeq.
func (w *Watcher) open() {
	addr := w.next
	w.next = ""
	if addr == "" {
		addr = w.c.routes.target(w.shard, true, w.failed)
	}
	req := connect.NewRequest(&pb.WatchRequest{MerchantId: w.merchant, AfterSeq: w.resume.Load()})
	stream, err := w.c.endpoint(addr).event.Watch(w.ctx, req)
	if err != nil {
		w.retry(addr, err)
		return
	}
	w.stream, w.addr, w.fresh = stream, addr, true
	w.c.logger().Debug("watching", slog.String("merchant", w.merchant), slog.String("addr", addr), slog.Uint64("after_seq", w.resume.Load()))
}

// accept drops events already delivered or scanned past (a resumed stream
// may repeat the tail of the previous one) and checks that seqs increase.
func (w *Watcher) accept(events []*pb.Event) ([]*pb.Event, error) {
	out := make([]*pb.Event, 0, len(events))
	for _, e := range events {
		if e.GetSeq() <= w.resume.Load() {
			if w.fresh {
				continue
			}
			return nil, fmt.Errorf("%w: seq %d after %d from %s", ErrEventOrder, e.GetSeq(), w.resume.Load(), w.addr)
		}
		w.fresh = false
		w.last = e.GetSeq()
		w.resume.Store(e.GetSeq())
		out = append(out, e)
	}
	return out, nil
}

// retry decides what a stream failure at addr means: give up, follow a
// leader hint at once, or back off, refresh the shard map and try another
// replica.
func (w *Watcher) retry(addr string, err error) {
	if w.ctx.Err() != nil {
		w.err = w.ctx.Err()
		if w.closed.Load() || w.c.closeCtx.Err() != nil {
			w.err = ErrClosed
		}
		return
	}
	p := frontdeskv1connect.EventServiceWatchProcedure
	var hint string
	var hintShard uint32
	if ce := new(connect.Error); errors.As(err, &ce) && connect.IsWireError(err) {
		switch ce.Code() {
		case connect.CodeFailedPrecondition:
			w.err = fmt.Errorf("%w: %w", ErrCompacted, newError(p, err))
			return
		case connect.CodeUnavailable:
			if h := newError(p, err).Hint; h != nil {
				hint, hintShard = h.GetLeaderApiAddr(), h.GetShard()
			}
		default:
			w.err = newError(p, err)
			return
		}
	} else if !classify(err, true).retry {
		w.err = newError(p, err)
		return
	}
	w.c.logger().Debug("event stream failed", slog.String("merchant", w.merchant), slog.String("addr", addr),
		slog.Uint64("resume_seq", w.resume.Load()), slog.Any("err", err))
	w.failed = addr
	if hint != "" {
		u := w.c.routes.url(hint)
		w.c.routes.setLeader(hintShard, u)
		if u != addr && w.hops < maxRedirects {
			w.next = u
			w.hops++
			return
		}
	} else {
		w.c.routes.forget(w.shard, addr)
	}
	w.hops = 0
	seen := w.c.routes.generation()
	if !w.bo.sleep(w.ctx, w.c.cfg.minBackoff, w.c.cfg.maxBackoff) {
		w.retry(addr, w.ctx.Err())
		return
	}
	_ = w.c.refresh(w.ctx, seen)
}

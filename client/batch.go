package client

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptrace"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
	"github.com/frontdeskhq/frontdesk/internal/batchwire"
)

// MaxBatchCalls is the most calls one Batch RPC carries (the server's
// bound); WithBatching lowers larger values to it.
const MaxBatchCalls = 512

// DefaultBatchCalls is the most calls a Batch RPC carries unless
// WithBatching says otherwise. Batching is on by default: it costs nothing
// measurable at low load (a lone call goes as a unary RPC) and about halves
// the CPU per call on both sides under load (W1 at 256 clients: 1.9-2.1x
// the ops/s, half the p99; BENCHMARKS.md, "Client batching").
const DefaultBatchCalls = 256

// One Batch RPC at a time goes to a node: the calls issued while it is out
// all go together in the next one, and each shard the node leads gets them
// as one proposal (one Raft entry). Measured with W1 at 256 clients
// (BENCHMARKS.md): one RPC in flight per node 16.9k–22.2k ops/s at 8 ops
// per Raft entry; two 9.7k–13.2k at 5.3; four 12.7k at 4.9. So that one
// slow batch (a shard electing a leader, a stalled node) does not hold up
// every call to the node, an RPC out for longer than defaultBatchStall stops
// counting: the next calls go in another, up to maxBatchRPCsPerNode.
const (
	defaultBatchStall   = 100 * time.Millisecond
	maxBatchRPCsPerNode = 4
)

// maxBatchBytes bounds a batch's encoded calls well under the server's
// 1 MiB request limit; a call larger than this goes alone, as a unary RPC.
const maxBatchBytes = 256 << 10

// write runs one write call under invoke: through the node's batcher when
// batching is on, else as the call's own unary RPC. The result is of the
// call's kind (never an error result).
func (c *Client) write(ctx context.Context, s spec, call *pb.BatchCall) (*pb.BatchResult, error) {
	var out *pb.BatchResult
	err := c.invoke(ctx, s, func(ctx context.Context, ep *endpoint) error {
		var (
			r   *pb.BatchResult
			err error
		)
		if ep.batch != nil {
			r, err = ep.batch.do(ctx, call)
		} else {
			r, err = callUnary(ctx, ep, call)
		}
		if err == nil {
			out = r
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// callUnary makes call as its own unary RPC.
func callUnary(ctx context.Context, ep *endpoint, call *pb.BatchCall) (*pb.BatchResult, error) {
	switch v := call.GetCall().(type) {
	case *pb.BatchCall_Consult:
		resp, err := ep.dispatch.Consult(ctx, connect.NewRequest(v.Consult))
		if err != nil {
			return nil, err
		}
		return &pb.BatchResult{Result: &pb.BatchResult_Consult{Consult: resp.Msg}}, nil
	case *pb.BatchCall_Escalate:
		resp, err := ep.dispatch.Escalate(ctx, connect.NewRequest(v.Escalate))
		if err != nil {
			return nil, err
		}
		return &pb.BatchResult{Result: &pb.BatchResult_Escalate{Escalate: resp.Msg}}, nil
	case *pb.BatchCall_Transfer:
		resp, err := ep.dispatch.Transfer(ctx, connect.NewRequest(v.Transfer))
		if err != nil {
			return nil, err
		}
		return &pb.BatchResult{Result: &pb.BatchResult_Transfer{Transfer: resp.Msg}}, nil
	case *pb.BatchCall_End:
		resp, err := ep.dispatch.End(ctx, connect.NewRequest(v.End))
		if err != nil {
			return nil, err
		}
		return &pb.BatchResult{Result: &pb.BatchResult_End{End: resp.Msg}}, nil
	case *pb.BatchCall_FirstReply:
		resp, err := ep.dispatch.FirstReply(ctx, connect.NewRequest(v.FirstReply))
		if err != nil {
			return nil, err
		}
		return &pb.BatchResult{Result: &pb.BatchResult_FirstReply{FirstReply: resp.Msg}}, nil
	case *pb.BatchCall_SetStatus:
		resp, err := ep.agent.SetStatus(ctx, connect.NewRequest(v.SetStatus))
		if err != nil {
			return nil, err
		}
		return &pb.BatchResult{Result: &pb.BatchResult_SetStatus{SetStatus: resp.Msg}}, nil
	case *pb.BatchCall_PullNext:
		resp, err := ep.agent.PullNext(ctx, connect.NewRequest(v.PullNext))
		if err != nil {
			return nil, err
		}
		return &pb.BatchResult{Result: &pb.BatchResult_PullNext{PullNext: resp.Msg}}, nil
	}
	return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("client: no procedure for batch call %T", call.GetCall()))
}

// batcher coalesces the write calls to one node (see WithBatching). Like
// the shard's proposal batcher, it has no linger timer: a call issued
// while no RPC is out to the node goes at once; calls issued while one is
// out wait in the queue, and when it returns its runner takes them all (up
// to max calls and maxBatchBytes) into the next Batch. A batch of one goes
// as the call's own unary RPC. An RPC out for longer than stallAfter is
// stalled: the queue then gets a runner of its own (up to
// maxBatchRPCsPerNode in all).
//
// Every call keeps its own context, retries and error handling: do
// returns the call's own answer as an attempt of invoke would get it from
// a unary RPC — the same wire error (rebuilt from its BatchError), the
// same local error when its context ends (its request counts as sent once
// the Batch carrying it was written), the same transport error when the
// whole RPC fails.
type batcher struct {
	c          *Client
	ep         *endpoint
	max        int
	stallAfter time.Duration
	// unary: the node answered Batch UNIMPLEMENTED (an older build); every
	// call goes as its own RPC from then on.
	unary atomic.Bool

	mu      sync.Mutex
	queue   []*batchItem
	running int // runners, each with at most one RPC out
	stalled int // runners whose RPC has been out for stallAfter
}

// batchItem is one call waiting for its answer.
type batchItem struct {
	ctx  context.Context
	call *pb.BatchCall
	size int
	done chan batchDone // buffered: runners never block on a caller
}

type batchDone struct {
	res *pb.BatchResult
	err error
}

func newBatcher(c *Client, ep *endpoint, max int, stallAfter time.Duration) *batcher {
	return &batcher{c: c, ep: ep, max: max, stallAfter: stallAfter}
}

// do queues call and waits for its answer or the end of ctx.
func (b *batcher) do(ctx context.Context, call *pb.BatchCall) (*pb.BatchResult, error) {
	if b.unary.Load() {
		return callUnary(ctx, b.ep, call)
	}
	it := &batchItem{ctx: ctx, call: call, size: call.SizeVT(), done: make(chan batchDone, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, it)
	b.startLocked()
	b.mu.Unlock()
	select {
	case d := <-it.done:
		return d.res, d.err
	case <-ctx.Done():
		return nil, ctxError(ctx)
	}
}

// ctxError is the error a unary RPC returns when its context ends.
func ctxError(ctx context.Context) error {
	code := connect.CodeCanceled
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		code = connect.CodeDeadlineExceeded
	}
	return connect.NewError(code, ctx.Err())
}

// startLocked starts a runner for the queue if every runner is stalled
// (or there is none) and the bound allows one more.
func (b *batcher) startLocked() {
	if len(b.queue) > 0 && b.running == b.stalled && b.running < maxBatchRPCsPerNode {
		b.running++
		go b.run()
	}
}

// stall marks a runner's RPC as out for too long: the queue may get
// another runner. unstall undoes it when the RPC returns.
func (b *batcher) stall() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stalled++
	b.startLocked()
}

func (b *batcher) unstall() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stalled--
}

// run sends the queued calls, a batch at a time, until none are left.
func (b *batcher) run() {
	for {
		b.mu.Lock()
		// Done when nothing waits, or when another runner's RPC is out
		// and not stalled: the queue goes with its next batch.
		if len(b.queue) == 0 || b.running-b.stalled > 1 {
			b.running--
			b.mu.Unlock()
			return
		}
		n, bytes := 0, 0
		for n < len(b.queue) && n < b.max && (n == 0 || bytes+b.queue[n].size <= maxBatchBytes) {
			bytes += b.queue[n].size
			n++
		}
		items := slices.Clone(b.queue[:n])
		if n == len(b.queue) {
			clear(b.queue)
			b.queue = b.queue[:0]
		} else {
			b.queue = slices.Clone(b.queue[n:])
		}
		b.mu.Unlock()
		t := time.AfterFunc(b.stallAfter, b.stall)
		b.send(items)
		if !t.Stop() {
			b.unstall()
		}
	}
}

// send makes one RPC for items and answers each of them.
func (b *batcher) send(items []*batchItem) {
	live := items[:0:0]
	for _, it := range items {
		if it.ctx.Err() != nil { // its caller has returned: leave it out
			it.done <- batchDone{err: ctxError(it.ctx)}
			continue
		}
		live = append(live, it)
	}
	switch {
	case len(live) == 0:
		return
	case len(live) == 1 || b.unary.Load():
		b.sendEach(live)
		return
	}
	ctx, cancel := b.batchContext(live)
	defer cancel()
	req := &pb.BatchRequest{Calls: make([]*pb.BatchCall, len(live))}
	for i, it := range live {
		req.Calls[i] = it.call
	}
	resp, err := b.ep.dispatch.Batch(ctx, connect.NewRequest(req))
	if err != nil {
		if connect.IsWireError(err) && connect.CodeOf(err) == connect.CodeUnimplemented {
			b.unary.Store(true)
			b.sendEach(live)
			return
		}
		for _, it := range live {
			it.done <- batchDone{err: err}
		}
		return
	}
	results := resp.Msg.GetResults()
	if len(results) != len(live) {
		err := connect.NewError(connect.CodeInternal, fmt.Errorf("client: a batch of %d calls was answered with %d results", len(live), len(results)))
		for _, it := range live {
			it.done <- batchDone{err: err}
		}
		return
	}
	for i, it := range live {
		it.done <- answer(it.call, results[i])
	}
}

// sendEach makes each call as its own unary RPC, concurrently, under the
// call's own context.
func (b *batcher) sendEach(items []*batchItem) {
	if len(items) == 1 {
		res, err := callUnary(items[0].ctx, b.ep, items[0].call)
		items[0].done <- batchDone{res, err}
		return
	}
	var wg sync.WaitGroup
	for _, it := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := callUnary(it.ctx, b.ep, it.call)
			it.done <- batchDone{res, err}
		}()
	}
	wg.Wait()
}

// batchContext is the context of a Batch RPC: it ends with the Client or
// at the latest deadline among the calls (none if one has none), and it
// tells each call's trace when the request's headers and then the whole
// request have been written, so that the call counts as (maybe) sent — and
// its outcome as unknown if it fails after — exactly as its own RPC would
// have.
func (b *batcher) batchContext(items []*batchItem) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, it := range items {
		d, ok := it.ctx.Deadline()
		if !ok {
			latest = time.Time{}
			break
		}
		if d.After(latest) {
			latest = d
		}
	}
	ctx, cancel := b.c.closeCtx, context.CancelFunc(func() {})
	if !latest.IsZero() {
		ctx, cancel = context.WithDeadline(ctx, latest)
	}
	var traces []*httptrace.ClientTrace // the calls' own (invoke's), looked up once
	for _, it := range items {
		if tr := httptrace.ContextClientTrace(it.ctx); tr != nil {
			traces = append(traces, tr)
		}
	}
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteHeaders: func() {
			for _, tr := range traces {
				if tr.WroteHeaders != nil {
					tr.WroteHeaders()
				}
			}
		},
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			for _, tr := range traces {
				if tr.WroteRequest != nil {
					tr.WroteRequest(info)
				}
			}
		},
	})
	return ctx, cancel
}

var (
	callOneof   = (&pb.BatchCall{}).ProtoReflect().Descriptor().Oneofs().ByName("call")
	resultOneof = (&pb.BatchResult{}).ProtoReflect().Descriptor().Oneofs().ByName("result")
)

// answer is a call's result: its response, or the error it carries as a
// wire error, the way its unary RPC would have returned it.
func answer(call *pb.BatchCall, r *pb.BatchResult) batchDone {
	if be := r.GetError(); be != nil {
		return batchDone{err: batchwire.Error(be)}
	}
	// The result oneof numbers its responses as the call oneof numbers
	// its requests.
	var want, got protoreflect.FieldNumber
	if f := call.ProtoReflect().WhichOneof(callOneof); f != nil {
		want = f.Number()
	}
	if f := r.ProtoReflect().WhichOneof(resultOneof); f != nil {
		got = f.Number()
	}
	if want == 0 || got != want {
		return batchDone{err: connect.NewError(connect.CodeInternal, fmt.Errorf("client: batch call %d answered with result %d", want, got))}
	}
	return batchDone{res: r}
}
